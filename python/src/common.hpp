#pragma once
// Shared pieces of the d2r._core bindings: DLPack arrays → d2r views without copies, with every
// check a ValueError naming the argument; dtype dispatch; the error translation.
//
// Arrays arrive as plain Python objects and are imported here (nb::try_cast, no conversion), so
// that a wrong dtype, device, rank or stride gets a message naming the argument instead of
// nanobind's generic overload TypeError, and nothing is ever copied: a float64 array for a float32
// argument is an error, not a silent conversion. Inputs are imported read-only (a JAX array or a
// read-only NumPy array is accepted and never written through); outputs must be writable.
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "d2r/d2r.hpp"

namespace d2rpy {

namespace nb = nanobind;
using InArray = nb::ndarray<nb::ro>;
using OutArray = nb::ndarray<>;

/// Raised for a bad argument (a d2r::Error of kind invalid_argument or unsupported, or a check of
/// the bindings): a ValueError whose message names the argument (python: d2r.ArgumentError).
[[noreturn]] void bad_argument(std::string_view fn, std::string_view arg, const std::string& what);

/// The scalar types the primitives take.
enum class Scalar { f32, f64 };
const char* dtype_name(nb::dlpack::dtype dt);

/// An imported array with the name of its argument (for messages).
struct Arg {
  std::string_view name;
  InArray in;        // valid for inputs
  OutArray out;      // valid for outputs
  bool present = false;
  bool is_out = false;
  [[nodiscard]] nb::dlpack::dtype dtype() const { return is_out ? out.dtype() : in.dtype(); }
  [[nodiscard]] std::size_t ndim() const { return is_out ? out.ndim() : in.ndim(); }
  [[nodiscard]] std::int64_t shape(std::size_t i) const {
    return static_cast<std::int64_t>(is_out ? out.shape(i) : in.shape(i));
  }
  [[nodiscard]] std::int64_t stride(std::size_t i) const { return is_out ? out.stride(i) : in.stride(i); }
  [[nodiscard]] int device_type() const { return is_out ? out.device_type() : in.device_type(); }
  [[nodiscard]] int device_id() const { return is_out ? out.device_id() : in.device_id(); }
  [[nodiscard]] void* data() const { return is_out ? out.data() : const_cast<void*>(in.data()); }
};

/// One call's argument checker: imports arrays, checks memory space against the context, dtype
/// consistency and strides, and builds views.
class Call {
 public:
  Call(std::string_view fn, d2r::Context& ctx) : fn_(fn), ctx_(ctx) {}

  /// Imports an input (read-only) array; None gives an absent argument when optional.
  Arg input(std::string_view name, const nb::handle& obj, bool optional = false);
  /// Imports an output (writable) array; None gives an absent argument when optional.
  Arg output(std::string_view name, const nb::handle& obj, bool optional = false);

  /// The floating dtype of the call, fixed by the first float argument given to `scalar()`.
  Scalar scalar(const Arg& a);
  /// Checks that `a` has the call's scalar dtype.
  void expect_scalar(const Arg& a);

  template <class T>
  d2r::MatrixView<T> matrix(const Arg& a) {
    check_dtype<T>(a);
    if (!a.present) return {};
    return {static_cast<T*>(a.data()), rows_of(a), cols_of(a), row_stride_of(a)};
  }
  template <class T>
  d2r::VectorView<T> vector(const Arg& a) {
    check_dtype<T>(a);
    if (!a.present) return {};
    return {static_cast<T*>(a.data()), vector_size_of(a)};
  }

  [[nodiscard]] std::string_view fn() const { return fn_; }
  [[nodiscard]] d2r::Context& ctx() const { return ctx_; }

 private:
  template <class T>
  void check_dtype(const Arg& a) {
    if (!a.present) return;
    const nb::dlpack::dtype want = nb::dtype<std::remove_const_t<T>>();
    if (a.dtype() != want) {
      bad_argument(fn_, a.name,
                   std::string("expected dtype ") + dtype_name(want) + ", got " + dtype_name(a.dtype()) +
                       " (d2r never converts: pass an array of the expected dtype)");
    }
  }
  void check_space(const Arg& a);
  std::int64_t rows_of(const Arg& a);
  std::int64_t cols_of(const Arg& a);
  std::int64_t row_stride_of(const Arg& a);
  std::int64_t vector_size_of(const Arg& a);

  std::string_view fn_;
  d2r::Context& ctx_;
  bool have_scalar_ = false;
  Scalar scalar_ = Scalar::f32;
  std::string_view scalar_from_;
};

/// Calls f.template operator()<T>() with T = float or double.
template <class F>
decltype(auto) dispatch(Scalar s, F&& f) {
  if (s == Scalar::f64) return f.template operator()<double>();
  return f.template operator()<float>();
}

/// The per-module binding functions (one source file each, compiled in parallel).
void bind_core(nb::module_& m);
void bind_distributions(nb::module_& m);
void bind_objectives(nb::module_& m);
void bind_second_order(nb::module_& m);
void bind_network(nb::module_& m);
void bind_optim(nb::module_& m);
void bind_trainers(nb::module_& m);
void bind_sweep(nb::module_& m);
void bind_jax(nb::module_& m);  // only with D2R_PY_JAX

/// Parsers of the option strings the Python side passes (ValueError naming the argument).
d2r::RewardForm parse_reward_form(std::string_view fn, const std::string& s);
d2r::Transform parse_transform(std::string_view fn, const std::string& s);
d2r::Activation parse_activation(std::string_view fn, const std::string& s);

}  // namespace d2rpy
