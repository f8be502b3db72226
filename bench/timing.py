"""One careful way to time a call, used by every benchmark and by `python -m bench time`.

Warm-up calls first; on CUDA, events around each call and a synchronize before reading them;
on CPU, `time.perf_counter`. Returns mean and standard deviation in milliseconds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    mean_ms: float
    std_ms: float
    runs: int
    samples: tuple[float, ...] = ()

    def ratio(self, other: Timing) -> float:
        return self.mean_ms / other.mean_ms


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def time_call(
    fn: Callable[[], object],
    device: torch.device | str = "cpu",
    runs: int = 10,
    warmup: int = 2,
) -> Timing:
    """Time ``fn()`` ``runs`` times after ``warmup`` calls; mean +- std in ms."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    samples = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(runs):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            samples.append(start.elapsed_time(end))
    else:
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1000)
    std = statistics.stdev(samples) if len(samples) > 1 else 0.0
    return Timing(statistics.fmean(samples), std, len(samples), tuple(samples))


def trimmed_mean_ms(samples: list[float], keep: int = 60) -> float:
    """Mean of the middle ``keep`` samples (the SNF per-sample protocol: 100 calls, middle 60)."""
    ordered = sorted(samples)
    cut = max(0, (len(ordered) - keep) // 2)
    middle = ordered[cut : len(ordered) - cut] or ordered
    return statistics.fmean(middle)
