#pragma once
// Helpers of the data layer shared by its two halves (data_csv.cpp: CSV text in and out; data.cpp:
// datasets, standardisation, splits): the error messages and how a user's name is shown.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "d2r/error.hpp"

namespace d2r::data_detail {

// ------------------------------------------------------------------------------------ helpers

[[noreturn]] inline void fail(ErrorKind kind, std::string_view function, std::string_view argument, const std::string& what) {
  throw Error(kind, std::string(argument), fmt::format("d2r::{}: argument '{}': {}", function, argument, what));
}

[[noreturn]] inline void fail_input(std::string_view function, std::string_view argument, const std::string& what) {
  fail(ErrorKind::invalid_argument, function, argument, what);
}

inline bool is_blank(char c) { return c == ' ' || c == '\t'; }

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

/// The index of the first byte of `s` that is not part of valid UTF-8 (overlong forms, surrogates
/// and code points above U+10FFFF included), or npos.
inline std::size_t invalid_utf8_at(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0, min = 0;
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + len > s.size()) return i;
    for (std::size_t k = 1; k < len; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return std::string_view::npos;
}

/// A cell or name as it appears in a message: quoted, control bytes escaped, long values cut.
inline std::string shown(std::string_view s) {
  constexpr std::size_t max_shown = 40;
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < max_shown; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max_shown) out += "...";
  out += "'";
  return out;
}

/// "<source> line <L>, column <C> '<name>'" (the name only when the column has one).
inline std::string where(std::string_view source, std::int64_t line, std::int64_t column_index,
                  std::string_view column_name) {
  if (column_name.empty()) return fmt::format("{} line {}, column {}", source, line, column_index + 1);
  return fmt::format("{} line {}, column {} {}", source, line, column_index + 1, shown(column_name));
}

inline std::string list_columns(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ", ";
    out += shown(names[i]);
  }
  return out;
}

}  // namespace d2r::data_detail
