// The one timer (moved from host/cli/bench_command.cpp; bench/bench_common.hpp times with it too).
#include "host/checks/timer.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "d2r/error.hpp"
#if D2R_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace d2r::checks {

Timer::Timer(Context& ctx) : ctx_(ctx), cuda_(ctx.backend() == Backend::cuda) {
  if (!cuda_) return;
#if D2R_WITH_CUDA  // without CUDA no cuda context exists, so cuda_ is false
  int l2 = 0;
  D2R_CUDA_TRY(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, ctx.device()));
  flush_ = Buffer<char>(ctx, static_cast<std::size_t>(std::max(l2, 1)) * 3);
  D2R_CUDA_TRY(cudaEventCreate(&start_));
  D2R_CUDA_TRY(cudaEventCreate(&stop_));
#endif
}

Timer::~Timer() {
#if D2R_WITH_CUDA
  if (start_ != nullptr) D2R_CUDA_TRY_NO_THROW(cudaEventDestroy(start_));
  if (stop_ != nullptr) D2R_CUDA_TRY_NO_THROW(cudaEventDestroy(stop_));
#endif
}

void Timer::warm_up(const std::function<void()>& work) {
  work();
  ctx_.synchronize();
}

double Timer::once(const std::function<void()>& work) {
#if D2R_WITH_CUDA
  if (cuda_) {
    D2R_CUDA_TRY(cudaMemsetAsync(flush_.data(), 0, flush_.size(), ctx_.stream()));
    D2R_CUDA_TRY(cudaEventRecord(start_, ctx_.stream()));
    work();
    D2R_CUDA_TRY(cudaEventRecord(stop_, ctx_.stream()));
    D2R_CUDA_TRY(cudaEventSynchronize(stop_));
    float ms = 0;
    D2R_CUDA_TRY(cudaEventElapsedTime(&ms, start_, stop_));
    return static_cast<double>(ms) * 1e-3;
  }
#endif
  const auto t0 = std::chrono::steady_clock::now();
  work();
  ctx_.synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<double> Timer::run(const std::function<void()>& work, int reps, int min_reps, double budget_s) {
  warm_up(work);
  std::vector<double> t;
  const auto begun = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) {
    t.push_back(once(work));
    const double spent = std::chrono::duration<double>(std::chrono::steady_clock::now() - begun).count();
    if (i + 1 >= min_reps && spent > budget_s) break;
  }
  std::sort(t.begin(), t.end());
  return t;
}

double copy_bandwidth(Context& ctx, std::size_t& bytes) {
#if D2R_WITH_CUDA
  if (ctx.backend() == Backend::cuda) {
    std::size_t free_bytes = 0, total_bytes = 0;
    D2R_CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes));
    while (bytes > (std::size_t{16} << 20) && 3 * bytes > free_bytes) bytes /= 2;
    Buffer<char> a(ctx, bytes), b(ctx, bytes);
    D2R_CUDA_TRY(cudaMemsetAsync(a.data(), 1, bytes, ctx.stream()));
    cudaEvent_t start = nullptr, stop = nullptr;
    D2R_CUDA_TRY(cudaEventCreate(&start));
    D2R_CUDA_TRY(cudaEventCreate(&stop));
    float best_ms = 1e30f;
    for (int i = 0; i < 11; ++i) {
      D2R_CUDA_TRY(cudaEventRecord(start, ctx.stream()));
      D2R_CUDA_TRY(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, ctx.stream()));
      D2R_CUDA_TRY(cudaEventRecord(stop, ctx.stream()));
      D2R_CUDA_TRY(cudaEventSynchronize(stop));
      float ms = 0;
      D2R_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
      if (i > 0) best_ms = std::min(best_ms, ms);
    }
    D2R_CUDA_TRY(cudaEventDestroy(start));
    D2R_CUDA_TRY(cudaEventDestroy(stop));
    return 2.0 * static_cast<double>(bytes) / (static_cast<double>(best_ms) * 1e-3);
  }
#else
  (void)ctx;
#endif
  std::vector<char> a(bytes, 1), b(bytes, 0);
  double best = 1e30;
  for (int i = 0; i < 11; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(b.data(), a.data(), bytes);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i > 0) best = std::min(best, s);
  }
  // Keep the copy observable.
  if (b[bytes / 2] != 1) throw Error(ErrorKind::io, "", "copy bandwidth: memcpy check failed");
  return 2.0 * static_cast<double>(bytes) / best;
}

double median(const std::vector<double>& s) {
  const std::size_t k = s.size();
  return k == 0 ? 0.0 : k % 2 ? s[k / 2] : 0.5 * (s[k / 2 - 1] + s[k / 2]);
}

}  // namespace d2r::checks
