#pragma once
/// @file fields.hpp
/// Generic walks over the fields of the options structs. Every options struct of the library
/// (AdamOptions, PgOptions, TransformOptions, CgOptions, NeumannOptions, InnerOptions,
/// BilevelOptions, PolicyFitOptions, ClassifierFitOptions) has a `for_each_field(options, f)`
/// beside it that calls f(name, value) for each field in declaration order, a nested options
/// struct as one value. Code that must see every setting walks these visitors instead of
/// listing fields by hand, so a field added to a struct (and to its visitor) reaches it:
/// BilevelTrainer's checkpoint fingerprint (flatten_fields) and the d2r program's JSON of its
/// settings. field_differences says what differs between two such lists (a refused resume).
///
/// @code
///   d2r::BilevelOptions<float> o;
///   for (const auto& [name, value] : d2r::flatten_fields(o)) std::printf("%s = %s\n", name.c_str(), value.c_str());
///   // inner.objective = reinforce, inner.steps = 50, inner.adam.learning_rate = 0.01, ...
/// @endcode
#include <charconv>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace d2r {

namespace fields_detail {
struct NoOp {
  template <class V>
  void operator()(std::string_view, const V&) const {}
};
}  // namespace fields_detail

/// A struct with a for_each_field visitor (found by argument-dependent lookup).
template <class O>
concept HasFields = requires(const O& o) { for_each_field(o, fields_detail::NoOp{}); };

/// An enum with a `const char* to_string(E)` beside it.
template <class E>
concept NamedEnum = std::is_enum_v<E> && requires(E e) {
  { to_string(e) } -> std::convertible_to<const char*>;
};

/// One field's value as text: numbers in their shortest exact form (a float or double reads back
/// to the same value), bools as true/false, enums by name (their integer when they have no
/// to_string), vectors as [a, b, ...].
template <class V>
std::string field_text(const V& v) {
  if constexpr (std::is_same_v<V, bool>) {
    return v ? "true" : "false";
  } else if constexpr (std::is_arithmetic_v<V>) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
    return std::string(buf, r.ptr);
  } else if constexpr (NamedEnum<V>) {
    return to_string(v);
  } else if constexpr (std::is_enum_v<V>) {
    return field_text(static_cast<std::underlying_type_t<V>>(v));
  } else if constexpr (std::is_convertible_v<const V&, std::string_view>) {
    return std::string(std::string_view(v));
  } else {
    std::string out = "[";
    bool first = true;
    for (const auto& x : v) {
      if (!first) out += ", ";
      out += field_text(x);
      first = false;
    }
    return out + "]";
  }
}

/// Every leaf field of `options` as ("a.b.c", text) pairs, nested structs expanded with dotted
/// names, in declaration order.
template <HasFields O>
std::vector<std::pair<std::string, std::string>> flatten_fields(const O& options, const std::string& prefix = "") {
  std::vector<std::pair<std::string, std::string>> out;
  for_each_field(options, [&](std::string_view name, const auto& value) {
    using V = std::remove_cvref_t<decltype(value)>;
    const std::string full = prefix + std::string(name);
    if constexpr (HasFields<V>) {
      auto inner = flatten_fields(value, full + ".");
      out.insert(out.end(), inner.begin(), inner.end());
    } else {
      out.emplace_back(full, field_text(value));
    }
  });
  return out;
}

namespace fields_detail {
template <class To, class From>
void assign_fields(To& to, const From& from) {
  std::size_t i = 0;
  for_each_field(from, [&](std::string_view, const auto& source) {
    using S = std::remove_cvref_t<decltype(source)>;
    std::size_t j = 0;
    for_each_field(std::as_const(to), [&](std::string_view, const auto& field) {
      using D = std::remove_cvref_t<decltype(field)>;
      if (j++ != i) return;
      // The visitor hands out const references; `to` itself is not const, so writing is defined.
      D& target = const_cast<D&>(field);
      if constexpr (HasFields<S> && HasFields<D>) {
        assign_fields(target, source);
      } else if constexpr (std::is_arithmetic_v<S> && std::is_arithmetic_v<D>) {
        target = static_cast<D>(source);
      } else if constexpr (std::is_assignable_v<D&, const S&>) {
        target = source;
      }
    });
    ++i;
  });
}
}  // namespace fields_detail

/// The same options in another scalar type (a program keeps BilevelOptions<double> and trains in
/// float): every field for_each_field lists, in order, numbers converted with static_cast, nested
/// structs field by field; the fields a visitor leaves out (hooks, BilevelOptions::cuda_graph)
/// keep To's defaults.
template <class To, HasFields From>
To options_cast(const From& from) {
  To to{};
  fields_detail::assign_fields(to, from);
  return to;
}

/// What differs between the settings a checkpoint was saved with and the current ones (both as
/// flatten_fields gives them: ("a.b", text) pairs), one line per setting, current order first:
/// "a.b: saved X, now Y", "a.b: not in the checkpoint, now Y", then "a.b: saved X, not set now".
inline std::vector<std::string> field_differences(const std::vector<std::pair<std::string, std::string>>& saved,
                                                  const std::vector<std::pair<std::string, std::string>>& now) {
  const auto find = [](const auto& list, const std::string& name) -> const std::string* {
    for (const auto& [n, v] : list) {
      if (n == name) return &v;
    }
    return nullptr;
  };
  std::vector<std::string> out;
  for (const auto& [name, value] : now) {
    const std::string* old = find(saved, name);
    if (old == nullptr) {
      out.push_back(name + ": not in the checkpoint, now " + value);
    } else if (*old != value) {
      out.push_back(name + ": saved " + *old + ", now " + value);
    }
  }
  for (const auto& [name, value] : saved) {
    if (find(now, name) == nullptr) out.push_back(name + ": saved " + value + ", not set now");
  }
  return out;
}

}  // namespace d2r
