#include "d2r/error.hpp"

#include <cstdio>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "host/src/backend.hpp"

namespace d2r::detail {

#if D2R_WITH_CUDA

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

#else
void throw_built_without_cuda(const char* call, const char* file, int line) {
  throw Error(ErrorKind::unsupported, "",
              fmt::format("d2r: '{}' needs the cuda backend, but d2r was built without CUDA "
                          "(-DD2R_ENABLE_CUDA=OFF) at {}:{}",
                          call, file, line));
}
#endif

// backend.hpp
void fail_double_on_cuda(std::string_view function, std::string_view argument) {
  throw Error(ErrorKind::unsupported, std::string(argument),
              fmt::format("d2r::{}: argument '{}': the cuda backend runs float only; got double views (use the cpu "
                          "backend)",
                          function, argument));
}
void fail_built_without_cuda(std::string_view function) {
  throw Error(ErrorKind::unsupported, "",
              fmt::format("d2r::{}: the cuda backend is not available: d2r was built without CUDA "
                          "(-DD2R_ENABLE_CUDA=OFF)",
                          function));
}

}  // namespace d2r::detail
