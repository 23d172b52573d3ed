"""Timing rules shared by the PyTorch peer scripts, matching bench/bench_common.hpp: CUDA-event
timing of each iteration, L2 flushed before every timed iteration, warm-up first, results written
in Google Benchmark's JSON layout so that tools/bench_report.py can join them with ours."""

import json
import platform
import statistics

import torch


def l2_flush_buffer(device):
    l2 = torch.cuda.get_device_properties(device).L2_cache_size
    return torch.empty(3 * l2, dtype=torch.uint8, device=device)


def time_cuda(work, iterations=20, warmup=3, device="cuda"):
    """Mean and min milliseconds of `work()` over `iterations`, L2 flushed before each."""
    flush = l2_flush_buffer(device)
    for _ in range(warmup):
        work()
    torch.cuda.synchronize()
    times = []
    for _ in range(iterations):
        flush.zero_()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        work()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.mean(times), min(times)


def write_results(path, rows):
    """rows: dicts with name, real_time (microseconds), bytes and any counters."""
    context = {
        "host_name": platform.node(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    benchmarks = []
    for row in rows:
        entry = {"name": row["name"], "real_time": row["real_time"], "time_unit": "us", "iterations": row["iterations"]}
        entry.update({k: v for k, v in row.items() if k not in entry})
        benchmarks.append(entry)
    with open(path, "w") as f:
        json.dump({"context": context, "benchmarks": benchmarks}, f, indent=1)
