#pragma once
// A small binary container for trainer checkpoints: named, typed sections, a checksum, and an
// atomic write (temporary file in the same directory, flushed, then renamed over the target), so
// that a run killed at any moment leaves either the previous checkpoint or the new one, never a
// torn file.
//
// Layout (little-endian, as the hosts d2r runs on):
//   "D2RCKPT\x01"  u64 section count
//   per section: u32 name length, name bytes, u32 type (0 f32, 1 f64, 2 i64, 3 bytes), u64 count, payload
//   u64 FNV-1a hash of every byte before it
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace d2r::detail {

/// FNV-1a (64 bits) of `size` bytes, continuing from `h` (the offset basis for a fresh hash): the
/// checkpoint's checksum and a run's data hash (runs::data_hash).
std::uint64_t fnv1a(const char* data, std::size_t size, std::uint64_t h = 1469598103934665603ull);

class CheckpointWriter {
 public:
  void add(const std::string& name, std::span<const float> values);
  void add(const std::string& name, std::span<const double> values);
  void add(const std::string& name, std::span<const std::int64_t> values);
  void add_text(const std::string& name, const std::string& text);
  /// Writes the container to `path` atomically; throws d2r::Error (io, argument "path") on failure,
  /// leaving any existing file at `path` as it was.
  void write(const std::filesystem::path& path) const;

 private:
  void add_raw(const std::string& name, std::uint32_t type, std::uint64_t count, const void* data, std::size_t bytes);
  std::string body_;
  std::uint64_t sections_ = 0;
};

class CheckpointReader {
 public:
  /// Reads and verifies the whole file; throws d2r::Error (io, argument "path") when it cannot be
  /// read, is not a d2r checkpoint, is truncated or fails its checksum.
  explicit CheckpointReader(const std::filesystem::path& path);
  [[nodiscard]] bool has(const std::string& name) const { return sections_.count(name) != 0; }
  /// Each throws d2r::Error naming the section when it is missing or of another type/length.
  [[nodiscard]] std::vector<float> floats(const std::string& name) const;
  [[nodiscard]] std::vector<double> doubles(const std::string& name) const;
  [[nodiscard]] std::vector<std::int64_t> integers(const std::string& name) const;
  [[nodiscard]] std::string text(const std::string& name) const;

 private:
  struct Section {
    std::uint32_t type;
    std::uint64_t count;
    std::string payload;
  };
  const Section& get(const std::string& name, std::uint32_t type) const;
  std::filesystem::path path_;
  std::map<std::string, Section> sections_;
};

}  // namespace d2r::detail
