#pragma once
// Argument checking shared by every public entry point. Internal header.
//
// The rule: check everything (shapes, strides, memory space, aliasing, hyperparameters and, when
// the context asks for it, values) before the first write to any output, and say in the message
// which function, which argument, what was expected and what was given.

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "d2r/context.hpp"
#include "d2r/distributions.hpp"
#include "d2r/error.hpp"
#include "d2r/view.hpp"
#include "host/src/backend.hpp"

namespace d2r::detail {

[[noreturn]] void fail_argument(std::string_view function, std::string_view argument, const std::string& message);
[[noreturn]] void fail_unsupported(std::string_view function, std::string_view argument, const std::string& message);

/// Throws d2r::Error(invalid_argument) with "d2r::<fn>: argument '<arg>': <formatted message>".
#define D2R_EXPECTS(cond, function, argument, ...)                                 \
  do {                                                                            \
    if (!(cond)) ::d2r::detail::fail_argument(function, argument, fmt::format(__VA_ARGS__)); \
  } while (0)

/// What a value check accepts.
enum class ValueRule {
  finite,        ///< every element finite
  logits,        ///< no NaN, no +inf; -inf allowed; every row holds at least one finite value
  class_index,   ///< integer in [0, upper)
};

/// Everything the checks need to know about one matrix argument, type-erased.
struct MatrixArg {
  std::string_view name;
  const void* data;
  std::int64_t rows, cols, row_stride;
  std::size_t element_size;
  template <class T>
  MatrixArg(std::string_view n, MatrixView<T> v)
      : name(n), data(v.data), rows(v.rows), cols(v.cols), row_stride(v.row_stride), element_size(sizeof(T)) {}
  template <class T>
  MatrixArg(std::string_view n, VectorView<T> v)
      : name(n), data(v.data), rows(1), cols(v.size), row_stride(v.size), element_size(sizeof(T)) {}
  /// First and one-past-last byte addresses touched.
  [[nodiscard]] std::uintptr_t begin() const { return reinterpret_cast<std::uintptr_t>(data); }
  [[nodiscard]] std::uintptr_t end() const {
    return begin() + static_cast<std::uintptr_t>(((rows - 1) * row_stride + cols) * static_cast<std::int64_t>(element_size));
  }
};

/// Shape, stride and pointer of a matrix argument: exactly rows x cols, row_stride >= cols,
/// non-null data in the backend's memory space.
void check_matrix(const Context& ctx, std::string_view function, const MatrixArg& arg, std::int64_t rows,
                  std::int64_t cols);
/// Outputs must not overlap any other argument (inputs are never modified, outputs never alias).
void check_disjoint(std::string_view function, const MatrixArg& output, const MatrixArg& other);
/// Value rule on a float/double matrix (both backends). On cuda this reads the data once more
/// and synchronises the stream. No-op when ctx.value_checks() is none.
template <class T>
void check_values(Context& ctx, std::string_view function, std::string_view name, MatrixView<const T> m, ValueRule rule);
/// Class indices in [0, upper).
void check_indices(Context& ctx, std::string_view function, std::string_view name, MatrixView<const std::int32_t> m,
                   std::int32_t upper);
/// The cuda backend runs float only.
template <class T>
void check_scalar_type(const Context& ctx, std::string_view function);
/// DrawKey limits: step < 2^32, first_row >= 0 and first_row + rows <= 2^32, and key.step_offset,
/// when given, one int64 in the backend's memory.
void check_draw_key(const Context& ctx, std::string_view function, const DrawKey& key, std::int64_t rows);

}  // namespace d2r::detail
