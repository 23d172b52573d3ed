#pragma once
/// @file view.hpp
/// Non-owning views: the way every d2r primitive receives its inputs and outputs.
///
/// A view is a pointer plus extents plus a row stride, so that d2r can work on buffers owned by
/// another engine (PyTorch, CuPy, your own allocator) without copies. Where the memory lives is
/// given by the Context the view is passed with: host memory for the cpu backend, device (or
/// managed) memory for the cuda backend. Views are trivially copyable and cheap to pass by value.
///
/// @code
///   std::vector<float> mu(B * n);
///   d2r::MatrixView<const float> mean{mu.data(), B, n, n};   // row-major, packed rows
/// @endcode

#include <cstdint>
#include <type_traits>

namespace d2r {

/// Row-major matrix view: element (r, c) is `data[r * row_stride + c]`.
/// `row_stride >= cols` unless rows <= 1.
template <class T>
struct MatrixView {
  T* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t row_stride = 0;

  /// Element access (host or device code, whichever may dereference the memory).
#if defined(__CUDACC__)
  __host__ __device__
#endif
  T& operator()(std::int64_t r, std::int64_t c) const { return data[r * row_stride + c]; }

  /// A view over rows [first, first + count).
  [[nodiscard]] MatrixView row_range(std::int64_t first, std::int64_t count) const {
    return {data + first * row_stride, count, cols, row_stride};
  }
  [[nodiscard]] bool empty() const { return data == nullptr && rows == 0; }

  /// Views of T convert implicitly to views of const T.
  template <class U = T>
    requires(!std::is_const_v<U>)
  operator MatrixView<const U>() const {
    return {data, rows, cols, row_stride};
  }
};

/// Contiguous vector view.
template <class T>
struct VectorView {
  T* data = nullptr;
  std::int64_t size = 0;

#if defined(__CUDACC__)
  __host__ __device__
#endif
  T& operator[](std::int64_t i) const { return data[i]; }

  [[nodiscard]] bool empty() const { return data == nullptr && size == 0; }

  template <class U = T>
    requires(!std::is_const_v<U>)
  operator VectorView<const U>() const {
    return {data, size};
  }
};

/// Input views of function templates whose scalar type is fixed by another argument (the head):
/// a non-deduced context, so that a MatrixView<float> converts to MatrixView<const float> at the
/// call instead of failing template argument deduction.
template <class T>
using ConstMatrix = std::type_identity_t<MatrixView<const T>>;
template <class T>
using ConstVector = std::type_identity_t<VectorView<const T>>;

/// A packed row-major matrix view (row_stride == cols).
template <class T>
MatrixView<T> matrix_view(T* data, std::int64_t rows, std::int64_t cols) {
  return {data, rows, cols, cols};
}
/// A row-major matrix view with an explicit row stride.
template <class T>
MatrixView<T> matrix_view(T* data, std::int64_t rows, std::int64_t cols, std::int64_t row_stride) {
  return {data, rows, cols, row_stride};
}
template <class T>
VectorView<T> vector_view(T* data, std::int64_t size) {
  return {data, size};
}

}  // namespace d2r
