#include "d2r/error.hpp"

#include <cstdio>

#include <fmt/format.h>

namespace d2r::detail {

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  throw Error(ErrorKind::cuda, "",
              fmt::format("d2r: CUDA call '{}' failed with {} ({}): {} at {}:{}", call, cudaGetErrorName(status),
                          static_cast<int>(status), cudaGetErrorString(status), file, line));
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw Error(ErrorKind::cublas, "",
              fmt::format("d2r: cuBLAS call '{}' failed with {} ({}) at {}:{}", call, cublasGetStatusName(status),
                          static_cast<int>(status), file, line));
}

void log_cuda_error(cudaError_t status, const char* call, const char* file, int line) noexcept {
  std::fprintf(stderr, "d2r: CUDA call '%s' failed with %s at %s:%d (ignored)\n", call, cudaGetErrorName(status), file,
               line);
}

}  // namespace d2r::detail
