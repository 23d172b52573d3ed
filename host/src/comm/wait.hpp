#pragma once
// Waiting for a communicator's pending collectives with a deadline: one polling loop and one
// reading of D2R_COMM_TIMEOUT for MpiCommunicator::wait and NcclCommunicator::sync.
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "d2r/error.hpp"

namespace d2r::comm_detail {

/// D2R_COMM_TIMEOUT in seconds (600 when unset); a value that is not a number > 0 throws
/// d2r::Error (communication) with the message "<who>: D2R_COMM_TIMEOUT must be ...".
inline double env_timeout(const char* who) {
  if (const char* s = std::getenv("D2R_COMM_TIMEOUT"); s != nullptr && *s != '\0') {
    char* end = nullptr;
    const double v = std::strtod(s, &end);
    if (end != nullptr && *end == '\0' && v > 0) return v;
    throw Error(ErrorKind::communication, "",
                fmt::format("{}: D2R_COMM_TIMEOUT must be a number of seconds > 0, got '{}'", who, s));
  }
  return 600;
}

/// Polls `done()` until it returns true; once `timeout_seconds` have passed, calls `on_timeout()`
/// (which throws). It spins briefly (a collective between busy ranks finishes in microseconds),
/// then yields the core between polls: ranks oversubscribed on few cores must not starve the peer
/// they wait for.
template <class Done, class OnTimeout>
void wait_until(double timeout_seconds, Done&& done, OnTimeout&& on_timeout) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  for (long polls = 0;; ++polls) {
    if (done()) return;
    if (polls > 1000) {
      if (std::chrono::steady_clock::now() > deadline) on_timeout();
      std::this_thread::sleep_for(std::chrono::microseconds(polls > 100000 ? 1000 : 20));
    }
  }
}

}  // namespace d2r::comm_detail
