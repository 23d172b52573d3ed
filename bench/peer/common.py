"""Timing rules shared by the PyTorch peer scripts, matching bench/bench_common.hpp: CUDA-event
timing of each iteration, L2 flushed before every timed iteration, warm-up first, results written
in Google Benchmark's JSON layout so that tools/bench_report.py can join them with ours."""

import json
import platform
import statistics
import time

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


def time_host(work, iterations=20, warmup=3):
    """Mean and min milliseconds of `work()` on the CPU (wall clock; no cache flush): the
    `--device cpu` mode of the peers, for checking them on a machine without a GPU."""
    for _ in range(warmup):
        work()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.mean(times), min(times)


def time_work(work, device, iterations=20, warmup=3):
    """time_cuda on a CUDA device, time_host on the CPU."""
    if torch.device(device).type == "cuda":
        return time_cuda(work, iterations=iterations, warmup=warmup, device=device)
    return time_host(work, iterations=iterations, warmup=warmup)


def dynamo_stats():
    """Graph breaks and graphs compiled so far by torch.compile (cumulative; None if unknown)."""
    try:
        from torch._dynamo.utils import counters
        return {"graph_breaks": sum(counters["graph_break"].values()),
                "unique_graphs": counters["stats"]["unique_graphs"]}
    except Exception:  # the counters are internal: their layout may change between versions
        return None


def failure_reason(error, limit=2000):
    """One line for the JSON: the exception's type and the last `limit` characters of its message."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else "..." + text[-limit:]


def write_results(path, rows, device=None):
    """rows: dicts with name, real_time (microseconds), bytes and any counters. A row with
    "error_occurred": True and an "error_message" records a variant that could not run (the
    layout Google Benchmark uses for skipped benchmarks); bench_report.py shows the reason."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    context = {
        "host_name": platform.node(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if torch.device(device).type == "cuda" else "cpu",
    }
    benchmarks = []
    for row in rows:
        entry = {"name": row["name"], "real_time": row.get("real_time", 0.0), "time_unit": "us",
                 "iterations": row.get("iterations", 0)}
        entry.update({k: v for k, v in row.items() if k not in entry})
        benchmarks.append(entry)
    with open(path, "w") as f:
        json.dump({"context": context, "benchmarks": benchmarks}, f, indent=1)
