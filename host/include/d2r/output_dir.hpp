#pragma once
// A folder that a run writes its files into, kept safe: checked before anything is written
// (creating nothing), locked for one process, cleared of the temporaries a killed run left; the
// files themselves are replaced atomically (write_text_atomic, write_csv in d2r/data.hpp).
//
// The checks throw d2r::Error (invalid_argument, argument `option`) whose message is
// "d2r COMMAND: OPTION: what" (the words of the program's bad input, as the runs of d2r/fit_run.hpp).
//
// Use: check_output_dir("fit", "--out", dir); ... every other argument checked ...;
// lock_output_dir("fit", "--out", dir); remove_stale_temporaries(dir, names); write_text_atomic(dir / name, text).
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace d2r {

/// Checks, without creating anything, that files can be written into `dir`: an existing path must
/// be a directory in which a file can be created (probed with a temporary file ".d2r-probe-*" that
/// is removed at once); a missing one must have a nearest existing ancestor that is such a
/// directory (it is made later by ensure_directory).
void check_output_dir(std::string_view command, std::string_view option, const std::filesystem::path& dir);

/// Creates `dir` (and its parents) when missing. Throws d2r::Error (io) on failure.
void ensure_directory(const std::filesystem::path& dir);

/// After every check of the arguments and data, before the first write: creates `dir` and locks it
/// for this process (flock on the directory, released when the process ends, kill -9 included);
/// a folder another process holds is refused ("... is busy"). A second call is a no-op (one
/// folder per process).
void lock_output_dir(std::string_view command, std::string_view option, const std::filesystem::path& dir);

/// Which of the files `names` exist in `dir` (in the order of `names`); one that exists but is not
/// a regular file (a directory, a device, a dangling link) is refused.
std::vector<std::string> present_files(std::string_view command, std::string_view option,
                                       const std::filesystem::path& dir, std::span<const std::string> names);

/// Removes the regular files of `dir` that a killed process left while writing one of `names`:
/// ".NAME.tmp-PID-N" (write_text_atomic, write_csv), "NAME.tmp.XXXXXX" (checkpoints of earlier
/// versions) and ".d2r-probe-*" (check_output_dir). Only these exact shapes: a file that merely
/// contains ".tmp" is left alone. Errors are ignored (a temporary that cannot be removed stays).
void remove_stale_temporaries(const std::filesystem::path& dir, std::span<const std::string> names);

}  // namespace d2r
