#pragma once
/// @file error.hpp
/// The one exception type d2r throws, and the checks that raise it.
///
/// Every public entry point validates its arguments before it touches any output and throws
/// d2r::Error with a message of the form
///   `d2r::<function>: argument '<name>': <what was expected>, got <what was given>`.
/// CUDA and cuBLAS failures are reported through the same type, carrying the call text, the
/// error name and the source location.

#include <stdexcept>
#include <string>

#include "d2r/config.hpp"
#include "d2r/types/cuda.hpp"

namespace d2r {

/// What went wrong, so that callers can react without parsing the message.
enum class ErrorKind {
  invalid_argument,  ///< a shape, stride, value or hyperparameter is out of its documented range
  cuda,              ///< a CUDA runtime call failed
  cublas,            ///< a cuBLAS call failed
  unsupported,       ///< the request is valid but this build or backend does not provide it
  io,                ///< a file could not be read or written
  communication,     ///< a collective of a d2r::Communicator failed or timed out (communicator.hpp)
};

/// The exception type of d2r.
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string argument, const std::string& message)
      : std::runtime_error(message), kind_(kind), argument_(std::move(argument)) {}

  /// The kind of failure.
  [[nodiscard]] ErrorKind kind() const noexcept { return kind_; }
  /// Name of the offending argument ("" when the error is not about one argument).
  [[nodiscard]] const std::string& argument() const noexcept { return argument_; }

 private:
  ErrorKind kind_;
  std::string argument_;
};

namespace detail {
#if D2R_WITH_CUDA
[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);
void log_cuda_error(cudaError_t status, const char* call, const char* file, int line) noexcept;
#else
/// What the CUDA macros do in a build without CUDA: the call is not compiled (its text is
/// dropped), and reaching it throws d2r::Error (unsupported) "d2r was built without CUDA".
[[noreturn]] void throw_built_without_cuda(const char* call, const char* file, int line);
#endif
}  // namespace detail

}  // namespace d2r

#if D2R_WITH_CUDA
/// Throws d2r::Error (kind cuda) when a CUDA runtime call fails; clears the sticky error first.
#define D2R_CUDA_TRY(call)                                                   \
  do {                                                                       \
    const cudaError_t d2r_status_ = (call);                                  \
    if (d2r_status_ != cudaSuccess) {                                        \
      (void)cudaGetLastError();                                              \
      ::d2r::detail::throw_cuda_error(d2r_status_, #call, __FILE__, __LINE__); \
    }                                                                        \
  } while (0)

/// Logs (never throws) a failing CUDA call: for destructors.
#define D2R_CUDA_TRY_NO_THROW(call)                                          \
  do {                                                                       \
    const cudaError_t d2r_status_ = (call);                                  \
    if (d2r_status_ != cudaSuccess) {                                        \
      (void)cudaGetLastError();                                              \
      ::d2r::detail::log_cuda_error(d2r_status_, #call, __FILE__, __LINE__); \
    }                                                                        \
  } while (0)

/// Throws d2r::Error (kind cublas) when a cuBLAS call fails.
#define D2R_CUBLAS_TRY(call)                                                     \
  do {                                                                           \
    const cublasStatus_t d2r_status_ = (call);                                   \
    if (d2r_status_ != CUBLAS_STATUS_SUCCESS) {                                  \
      ::d2r::detail::throw_cublas_error(d2r_status_, #call, __FILE__, __LINE__); \
    }                                                                            \
  } while (0)

/// After a kernel launch: reports launch errors. With D2R_DEBUG_SYNC defined it also
/// synchronises the stream so that asynchronous faults surface at the launch that caused them.
#ifdef D2R_DEBUG_SYNC
#define D2R_CHECK_LAUNCH(stream)                 \
  do {                                           \
    D2R_CUDA_TRY(cudaPeekAtLastError());         \
    D2R_CUDA_TRY(cudaStreamSynchronize(stream)); \
  } while (0)
#else
#define D2R_CHECK_LAUNCH(stream)         \
  do {                                   \
    (void)(stream);                      \
    D2R_CUDA_TRY(cudaPeekAtLastError()); \
  } while (0)
#endif
#else  // a build without CUDA: the calls are dropped, reaching one throws (destructors: nothing)
#define D2R_CUDA_TRY(call) ::d2r::detail::throw_built_without_cuda(#call, __FILE__, __LINE__)
#define D2R_CUDA_TRY_NO_THROW(call) \
  do {                              \
  } while (0)
#define D2R_CUBLAS_TRY(call) ::d2r::detail::throw_built_without_cuda(#call, __FILE__, __LINE__)
#define D2R_CHECK_LAUNCH(stream) ::d2r::detail::throw_built_without_cuda("kernel launch", __FILE__, __LINE__)
#endif
