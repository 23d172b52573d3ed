// Checkpoint container: see checkpoint.hpp for the layout and the atomic-write guarantee.
#include "host/src/checkpoint.hpp"

#include <cstring>
#include <fstream>
#include <iterator>
#include <system_error>

#include <fmt/format.h>

#include "d2r/data.hpp"
#include "d2r/error.hpp"

namespace d2r::detail {

std::uint64_t fnv1a(const char* data, std::size_t size, std::uint64_t h) {
  for (std::size_t i = 0; i < size; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 1099511628211ull;
  }
  return h;
}

namespace {

constexpr char kMagic[8] = {'D', '2', 'R', 'C', 'K', 'P', 'T', '\x01'};
constexpr std::uint32_t kF32 = 0, kF64 = 1, kI64 = 2, kBytes = 3;

template <class U>
void put(std::string& out, U value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(U));
}

template <class U>
U take(const std::string& in, std::size_t& at, const std::filesystem::path& path) {
  if (in.size() - at < sizeof(U)) {
    throw Error(ErrorKind::io, "path", fmt::format("checkpoint '{}' is truncated", path.string()));
  }
  U value;
  std::memcpy(&value, in.data() + at, sizeof(U));
  at += sizeof(U);
  return value;
}

[[noreturn]] void fail_io(const std::filesystem::path& path, const std::string& what) {
  throw Error(ErrorKind::io, "path", fmt::format("checkpoint '{}': {}", path.string(), what));
}

const char* type_name(std::uint32_t type) {
  switch (type) {
    case kF32: return "float32";
    case kF64: return "float64";
    case kI64: return "int64";
    default: return "bytes";
  }
}

}  // namespace

void CheckpointWriter::add_raw(const std::string& name, std::uint32_t type, std::uint64_t count, const void* data,
                               std::size_t bytes) {
  put(body_, static_cast<std::uint32_t>(name.size()));
  body_ += name;
  put(body_, type);
  put(body_, count);
  body_.append(static_cast<const char*>(data), bytes);
  ++sections_;
}

void CheckpointWriter::add(const std::string& name, std::span<const float> v) {
  add_raw(name, kF32, v.size(), v.data(), v.size_bytes());
}
void CheckpointWriter::add(const std::string& name, std::span<const double> v) {
  add_raw(name, kF64, v.size(), v.data(), v.size_bytes());
}
void CheckpointWriter::add(const std::string& name, std::span<const std::int64_t> v) {
  add_raw(name, kI64, v.size(), v.data(), v.size_bytes());
}
void CheckpointWriter::add_text(const std::string& name, const std::string& text) {
  add_raw(name, kBytes, text.size(), text.data(), text.size());
}

void CheckpointWriter::write(const std::filesystem::path& path) const {
  std::string file(kMagic, sizeof(kMagic));
  put(file, sections_);
  file += body_;
  put(file, fnv1a(file.data(), file.size()));

  if (path.empty() || std::filesystem::is_directory(path)) fail_io(path, "expected a file path, got a directory");
  write_text_atomic(path, file);  // d2r/data.hpp: a temporary beside it, flushed, renamed over it
}

CheckpointReader::CheckpointReader(const std::filesystem::path& path) : path_(path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_io(path, "cannot be opened for reading");
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (file.size() < sizeof(kMagic) + 16 || std::memcmp(file.data(), kMagic, sizeof(kMagic)) != 0) {
    fail_io(path, "is not a d2r checkpoint (bad magic or too short)");
  }
  std::uint64_t stored;
  std::memcpy(&stored, file.data() + file.size() - 8, 8);
  if (stored != fnv1a(file.data(), file.size() - 8)) fail_io(path, "checksum mismatch (corrupted or truncated)");
  const std::string body = file.substr(0, file.size() - 8);
  std::size_t at = sizeof(kMagic);
  const auto count = take<std::uint64_t>(body, at, path);
  for (std::uint64_t s = 0; s < count; ++s) {
    const auto name_len = take<std::uint32_t>(body, at, path);
    if (body.size() - at < name_len) fail_io(path, "is truncated");
    std::string name = body.substr(at, name_len);
    at += name_len;
    Section sec;
    sec.type = take<std::uint32_t>(body, at, path);
    sec.count = take<std::uint64_t>(body, at, path);
    const std::uint64_t width = sec.type == kF32 ? 4 : sec.type == kBytes ? 1 : 8;
    if (sec.type > kBytes || sec.count > (body.size() - at) / width) fail_io(path, "is truncated or malformed");
    sec.payload = body.substr(at, sec.count * width);
    at += sec.count * width;
    sections_[name] = std::move(sec);
  }
  if (at != body.size()) fail_io(path, "has trailing bytes");
}

const CheckpointReader::Section& CheckpointReader::get(const std::string& name, std::uint32_t type) const {
  const auto it = sections_.find(name);
  if (it == sections_.end()) {
    throw Error(ErrorKind::io, name, fmt::format("checkpoint '{}' has no section '{}'", path_.string(), name));
  }
  if (it->second.type != type) {
    throw Error(ErrorKind::io, name,
                fmt::format("checkpoint '{}': section '{}' holds {}, expected {}", path_.string(), name,
                            type_name(it->second.type), type_name(type)));
  }
  return it->second;
}

template <class U>
static std::vector<U> decode(const std::string& payload, std::uint64_t count) {
  std::vector<U> out(count);
  if (count != 0) std::memcpy(out.data(), payload.data(), count * sizeof(U));
  return out;
}

std::vector<float> CheckpointReader::floats(const std::string& name) const {
  const Section& s = get(name, kF32);
  return decode<float>(s.payload, s.count);
}
std::vector<double> CheckpointReader::doubles(const std::string& name) const {
  const Section& s = get(name, kF64);
  return decode<double>(s.payload, s.count);
}
std::vector<std::int64_t> CheckpointReader::integers(const std::string& name) const {
  const Section& s = get(name, kI64);
  return decode<std::int64_t>(s.payload, s.count);
}
std::string CheckpointReader::text(const std::string& name) const { return get(name, kBytes).payload; }

}  // namespace d2r::detail
