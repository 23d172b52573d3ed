#pragma once
/// @file buffer.hpp
/// d2r::Buffer<T>: an owning array in the memory space of a Context's backend (host memory for
/// cpu, device memory for cuda), with explicit copies to and from the host. It lets programs
/// and tests be written once for both backends.
///
/// @code
///   d2r::Buffer<float> mean(ctx, B * n);
///   mean.copy_from_host(host_values);
///   d2r::MatrixView<float> v = mean.matrix(B, n);
///   std::vector<float> back = mean.to_host();
/// @endcode

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "d2r/context.hpp"
#include "d2r/view.hpp"

namespace d2r {

namespace detail {
void* buffer_allocate(Backend backend, std::size_t bytes);
void buffer_free(Backend backend, void* ptr) noexcept;
void buffer_copy(Backend backend, void* dst, const void* src, std::size_t bytes, bool to_host, cudaStream_t stream);
}  // namespace detail

template <class T>
class Buffer {
 public:
  Buffer() = default;
  /// Allocates `size` elements (uninitialised) on `ctx`'s backend.
  Buffer(const Context& ctx, std::size_t size)
      : backend_(ctx.backend()), stream_(ctx.stream()), size_(size),
        data_(static_cast<T*>(detail::buffer_allocate(backend_, size * sizeof(T)))) {}
  /// Allocates and copies `values` in.
  Buffer(const Context& ctx, std::span<const T> values) : Buffer(ctx, values.size()) { copy_from_host(values); }
  ~Buffer() { detail::buffer_free(backend_, data_); }
  Buffer(Buffer&& other) noexcept { swap(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    Buffer tmp(std::move(other));
    swap(tmp);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  [[nodiscard]] T* data() noexcept { return data_; }
  [[nodiscard]] const T* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] Backend backend() const noexcept { return backend_; }

  /// Copies host values into the first values.size() elements (synchronous).
  void copy_from_host(std::span<const T> values) {
    detail::buffer_copy(backend_, data_, values.data(), std::min(values.size(), size_) * sizeof(T), false, stream_);
  }
  /// Copies the whole buffer to a host vector (synchronous).
  [[nodiscard]] std::vector<T> to_host() const {
    std::vector<T> out(size_);
    detail::buffer_copy(backend_, out.data(), data_, size_ * sizeof(T), true, stream_);
    return out;
  }

  /// Views over the buffer.
  [[nodiscard]] MatrixView<T> matrix(std::int64_t rows, std::int64_t cols) { return {data_, rows, cols, cols}; }
  [[nodiscard]] MatrixView<const T> matrix(std::int64_t rows, std::int64_t cols) const { return {data_, rows, cols, cols}; }
  [[nodiscard]] VectorView<T> vector() { return {data_, static_cast<std::int64_t>(size_)}; }
  [[nodiscard]] VectorView<const T> vector() const { return {data_, static_cast<std::int64_t>(size_)}; }

 private:
  void swap(Buffer& o) noexcept {
    std::swap(backend_, o.backend_);
    std::swap(stream_, o.stream_);
    std::swap(size_, o.size_);
    std::swap(data_, o.data_);
  }
  Backend backend_ = Backend::cpu;
  cudaStream_t stream_ = nullptr;
  std::size_t size_ = 0;
  T* data_ = nullptr;
};

}  // namespace d2r
