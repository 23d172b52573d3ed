#include "host/src/validate.hpp"

#include <cmath>
#include <limits>

#include "host/src/backend.hpp"
#include "kernels/checks/launch.hpp"

namespace d2r::detail {

void fail_argument(std::string_view function, std::string_view argument, const std::string& message) {
  throw Error(ErrorKind::invalid_argument, std::string(argument),
              fmt::format("d2r::{}: argument '{}': {}", function, argument, message));
}

void fail_unsupported(std::string_view function, std::string_view argument, const std::string& message) {
  throw Error(ErrorKind::unsupported, std::string(argument),
              fmt::format("d2r::{}: argument '{}': {}", function, argument, message));
}

void check_matrix(const Context& ctx, std::string_view function, const MatrixArg& arg, std::int64_t rows,
                  std::int64_t cols) {
  D2R_EXPECTS(arg.rows == rows && arg.cols == cols, function, arg.name, "expected a {} x {} matrix, got {} x {}", rows,
              cols, arg.rows, arg.cols);
  D2R_EXPECTS(rows > 0 && cols > 0, function, arg.name, "expected a non-empty matrix, got {} x {}", rows, cols);
  D2R_EXPECTS(arg.data != nullptr, function, arg.name, "data pointer is null");
  D2R_EXPECTS(rows == 1 || arg.row_stride >= cols, function, arg.name, "expected row_stride >= cols ({}), got {}",
              cols, arg.row_stride);
  run_on<void>(
      ctx, [] {},
      [&](const auto&) {
#if D2R_WITH_CUDA
        cudaPointerAttributes attributes{};
        const cudaError_t status = cudaPointerGetAttributes(&attributes, arg.data);
        if (status != cudaSuccess) (void)cudaGetLastError();
        const bool device_accessible = status == cudaSuccess && (attributes.type == cudaMemoryTypeDevice ||
                                                                 attributes.type == cudaMemoryTypeManaged);
        D2R_EXPECTS(device_accessible, function, arg.name,
                    "the cuda backend needs device or managed memory, got a host pointer");
#endif
      });
}

namespace {
/// Whether two strided views share an element. Views whose address ranges interleave (for
/// example the [mean | log_std] halves of one network output, same row stride) are disjoint when
/// their column ranges within the common row stride do not meet; anything else that shares an
/// address range counts as overlapping (conservative).
bool views_overlap(const MatrixArg& a, const MatrixArg& b) {
  if (!(a.begin() < b.end() && b.begin() < a.end())) return false;
  if (a.element_size != b.element_size || a.row_stride != b.row_stride || a.rows <= 1 || b.rows <= 1) return true;
  const auto elem = static_cast<std::intptr_t>(a.element_size);
  const std::intptr_t bytes = static_cast<std::intptr_t>(b.begin()) - static_cast<std::intptr_t>(a.begin());
  if (bytes % elem != 0) return true;
  const std::int64_t stride = a.row_stride;
  const auto first = [stride](const MatrixArg& lo, const MatrixArg& hi, std::int64_t offset) {
    const std::int64_t column = ((offset % stride) + stride) % stride;  // hi's first column in lo's rows
    return !(lo.cols <= column && column + hi.cols <= stride);
  };
  const std::int64_t d = bytes / elem;
  return d >= 0 ? first(a, b, d) : first(b, a, -d);
}
}  // namespace

void check_disjoint(std::string_view function, const MatrixArg& output, const MatrixArg& other) {
  if (output.data == nullptr || other.data == nullptr) return;
  D2R_EXPECTS(!views_overlap(output, other), function, output.name, "output memory overlaps argument '{}'", other.name);
}

namespace {
template <class T>
std::int64_t first_bad_host(MatrixView<const T> m, ValueRule rule) {
  for (std::int64_t r = 0; r < m.rows; ++r) {
    for (std::int64_t c = 0; c < m.cols; ++c) {
      const T v = m(r, c);
      const bool bad = rule == ValueRule::finite ? !std::isfinite(v) : (std::isnan(v) || v == std::numeric_limits<T>::infinity());
      if (bad) return r * m.cols + c;
    }
  }
  return -1;
}
template <class T>
std::int64_t first_row_without_finite_host(MatrixView<const T> m) {
  for (std::int64_t r = 0; r < m.rows; ++r) {
    bool any = false;
    for (std::int64_t c = 0; c < m.cols && !any; ++c) any = std::isfinite(m(r, c));
    if (!any) return r;
  }
  return -1;
}
}  // namespace

template <class T>
void check_values(Context& ctx, std::string_view function, std::string_view name, MatrixView<const T> m,
                  ValueRule rule) {
  if (ctx.value_checks() == ValueChecks::none) return;
  std::int64_t bad = -1;
  std::int64_t bad_row = -1;
  detail::run_on<T>(
      ctx,
      [&] {
        bad = first_bad_host(m, rule);
        if (bad < 0 && rule == ValueRule::logits) bad_row = first_row_without_finite_host(m);
      },
      [&](const auto& ex) {
        auto* scratch = static_cast<std::int64_t*>(ctx.workspace(sizeof(std::int64_t)));
        bad = rule == ValueRule::finite ? ex.launch(kernels::checks::first_nonfinite, m, scratch)
                                        : ex.launch(kernels::checks::first_bad_logit, m, scratch);
        if (bad < 0 && rule == ValueRule::logits)
          bad_row = ex.launch(kernels::checks::first_row_without_finite, m, scratch);
      });
  if (bad >= 0) {
    const std::int64_t r = bad / m.cols, c = bad % m.cols;
    T v{};
    ctx.to_host(&v, &m(r, c), sizeof(T));
    const double value = static_cast<double>(v);
    fail_argument(function, name,
                  fmt::format("element ({}, {}) is {}; expected {}", r, c, value,
                              rule == ValueRule::finite ? "finite values" : "finite values or -inf"));
  }
  if (bad_row >= 0) {
    fail_argument(function, name, fmt::format("row {} has no finite logit (every class masked with -inf)", bad_row));
  }
}
template void check_values<float>(Context&, std::string_view, std::string_view, MatrixView<const float>, ValueRule);
template void check_values<double>(Context&, std::string_view, std::string_view, MatrixView<const double>, ValueRule);

void check_indices(Context& ctx, std::string_view function, std::string_view name, MatrixView<const std::int32_t> m,
                   std::int32_t upper) {
  if (ctx.value_checks() == ValueChecks::none) return;
  std::int64_t bad = -1;
  std::int32_t value = 0;
  run_on<std::int32_t>(
      ctx,
      [&] {
        for (std::int64_t r = 0; r < m.rows && bad < 0; ++r)
          for (std::int64_t c = 0; c < m.cols && bad < 0; ++c)
            if (m(r, c) < 0 || m(r, c) >= upper) bad = r * m.cols + c, value = m(r, c);
      },
      [&](const auto& ex) {
        auto* scratch = static_cast<std::int64_t*>(ex.workspace(sizeof(std::int64_t)));
        bad = ex.launch(kernels::checks::first_index_out_of_range, m, upper, scratch);
        if (bad >= 0) ctx.to_host(&value, &m(bad / m.cols, bad % m.cols), sizeof value);
      });
  D2R_EXPECTS(bad < 0, function, name, "element ({}, {}) is {}; expected a class index in [0, {})", bad / m.cols,
              bad % m.cols, value, upper);
}

template <class T>
void check_scalar_type(const Context& ctx, std::string_view function) {
  check_backend_type<T>(ctx, function, "head");
}
template void check_scalar_type<float>(const Context&, std::string_view);
template void check_scalar_type<double>(const Context&, std::string_view);

void check_draw_key(const Context& ctx, std::string_view function, const DrawKey& key, std::int64_t rows) {
  constexpr std::int64_t kRows = std::int64_t{1} << 32;
  D2R_EXPECTS(key.step < (std::uint64_t{1} << 32), function, "key.step", "expected step < 2^32, got {}", key.step);
  D2R_EXPECTS(key.first_row >= 0 && key.first_row + rows <= kRows, function, "key.first_row",
              "expected 0 <= first_row and first_row + rows <= 2^32, got first_row {} with {} rows", key.first_row,
              rows);
  if (key.step_offset != nullptr) {
    check_matrix(ctx, function, MatrixArg("key.step_offset", VectorView<const std::int64_t>{key.step_offset, 1}), 1, 1);
  }
}

}  // namespace d2r::detail
