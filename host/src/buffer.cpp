#include "d2r/buffer.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

#include "d2r/error.hpp"

namespace d2r::detail {

void* buffer_allocate(Backend backend, std::size_t bytes) {
  if (bytes == 0) return nullptr;
  if (backend == Backend::cuda) {
    void* p = nullptr;
    D2R_CUDA_TRY(cudaMalloc(&p, bytes));
    return p;
  }
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void buffer_free(Backend backend, void* ptr) noexcept {
  if (ptr == nullptr) return;
  if (backend == Backend::cuda) {
    D2R_CUDA_TRY_NO_THROW(cudaFree(ptr));
  } else {
    std::free(ptr);
  }
}

void buffer_copy(Backend backend, void* dst, const void* src, std::size_t bytes, [[maybe_unused]] bool to_host,
                 [[maybe_unused]] cudaStream_t stream) {
  if (bytes == 0) return;
  if (backend == Backend::cuda) {
    D2R_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, to_host ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice, stream));
    D2R_CUDA_TRY(cudaStreamSynchronize(stream));
  } else {
    std::memcpy(dst, src, bytes);
  }
}

}  // namespace d2r::detail
