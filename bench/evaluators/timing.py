"""One careful way to time a call, used by every benchmark and by `python -m bench time`.

`time_call`: warm-up calls first (they absorb lazy initialisation, autotuning and kernel
compilation); on CUDA, events around each call and a synchronize before reading them; on CPU,
`time.perf_counter`. Each `Timing` keeps its samples, mean +- std, median and interquartile
range, in milliseconds.

`time_flow` is the whole-model protocol, the same for every row: ST = one call drawing 100
samples, FT = one density pass (log_prob) on a batch of 100, each after warm-up, 10 (ST) and
20 (FT) runs by default; also SNF's per-sample protocol (100 calls of sample(1), trimmed mean
of the middle 60: ``st_per_sample_ms``). `time_train_step` times forward + backward + optimizer step
at the row's batch size (``train_step_ms``): what sets how long a table takes to train.
`layer_timings` times single layers (``python -m bench compare``): density (forward), sampling
(inverse) and the backward of the forward, each paired with a 3x3 conv2d of the same shape
timed just before it.
`time_sampling` is ST alone, for generators that are not flows (no density to time).
"""

from __future__ import annotations

import copy
import logging
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from models.core import Flow
from models.registry import count_params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    mean_ms: float
    std_ms: float
    runs: int
    samples: tuple[float, ...] = ()

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples) if self.samples else self.mean_ms

    @property
    def iqr_ms(self) -> float:
        """Interquartile range (75th - 25th percentile) of the samples."""
        if len(self.samples) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q3 - q1

    def ratio(self, other: Timing) -> float:
        return self.mean_ms / other.mean_ms


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def time_call(
    fn: Callable[[], object],
    device: torch.device | str = "cpu",
    runs: int = 10,
    warmup: int = 2,
) -> Timing:
    """Time ``fn()`` ``runs`` times after ``warmup`` calls."""
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


def timing_summary(prefix: str, timing: Timing) -> dict[str, float]:
    """``<prefix>_ms`` (mean), ``<prefix>_std``, ``<prefix>_median``, ``<prefix>_iqr``."""
    return {
        f"{prefix}_ms": timing.mean_ms,
        f"{prefix}_std": timing.std_ms,
        f"{prefix}_median": timing.median_ms,
        f"{prefix}_iqr": timing.iqr_ms,
    }


@torch.no_grad()
def time_flow(
    flow: Flow,
    device: str = "cpu",
    num_samples: int = 100,
    batch_size: int = 100,
    st_runs: int = 10,
    ft_runs: int = 20,
    per_sample_calls: int = 100,
) -> dict[str, float | str]:
    """ST, FT and the per-sample ST of ``flow`` on ``device`` (ms), with the device name."""
    flow = flow.to(device).eval()
    x = torch.randint(0, 256, (batch_size, *flow.input_shape), device=device).float()
    st = time_call(lambda: flow.sample(num_samples), device, runs=st_runs, warmup=1)
    ft = time_call(lambda: flow.log_prob(x), device, runs=ft_runs, warmup=2)
    metrics: dict[str, float | str] = {
        **timing_summary("st", st),
        **timing_summary("ft", ft),
        "params_m": count_params(flow) / 1e6,
        "device": device_name(device),
    }
    if per_sample_calls:
        single = time_call(lambda: flow.sample(1), device, runs=per_sample_calls, warmup=1)
        metrics["st_per_sample_ms"] = trimmed_mean_ms(list(single.samples))
    return metrics


@torch.no_grad()
def time_sampling(
    generator, device: str = "cpu", num_samples: int = 100, st_runs: int = 10
) -> dict[str, float | str]:
    """ST of a generator that is not a flow (``sample(n)``; no density, so no FT): one call
    drawing ``num_samples`` images after one warm-up call, with the parameter count (the whole
    trained model: an auto-encoder's encoder, a GAN's discriminator) and the device name."""
    generator = generator.to(device).eval()
    st = time_call(lambda: generator.sample(num_samples), device, runs=st_runs, warmup=1)
    return {
        **timing_summary("st", st),
        "params_m": count_params(generator) / 1e6,
        "device": device_name(device),
    }


def time_train_step(task, batch_size: int, device: str = "cpu", runs: int = 10) -> Timing:
    """One training step of ``task`` (a `bench.tasks.Task`) at ``batch_size``: its
    ``timing_step`` (zero_grad, ``training_loss``, backward, optimizer step; a GAN: one
    discriminator and one generator update) on random uint8 images. It runs on a copy, so the
    task's weights are untouched. Three warm-up steps."""
    trial = copy.deepcopy(task).to(device).train()
    configured = trial.configure_optimizers()
    entries = configured if isinstance(configured, list | tuple) else [configured]
    optimizers = [entry["optimizer"] for entry in entries]
    shape = (batch_size, *trial.net.input_shape)
    batch = (torch.randint(0, 256, shape, device=device).float(), None)
    return time_call(lambda: trial.timing_step(batch, optimizers), device, runs=runs, warmup=3)


LAYER_PASSES = ("density", "sampling", "backward")


def _backward(layer, x: torch.Tensor, weight: torch.Tensor) -> None:
    z, logdet = layer(x)
    inputs = [x, *(p for p in layer.parameters() if p.requires_grad)]
    torch.autograd.grad((z * weight).sum() + logdet.sum(), inputs, allow_unused=True)


def time_layer(layer, shape, batch: int, device: str, runs: int) -> dict[str, Timing]:
    """Density (forward), sampling (inverse) and backward timings, each with its own conv2d
    (3x3, C -> C, padding 1) timed just before it."""
    layer = layer.to(device).eval()
    x = torch.randn(batch, *shape, device=device)
    kernel = torch.randn(shape[0], shape[0], 3, 3, device=device) / (3 * shape[0])
    conv = partial(torch.nn.functional.conv2d, x, kernel, padding=1)
    with torch.no_grad():
        z, _ = layer(x)
    calls = {
        "density": lambda: layer(x),
        "sampling": lambda: layer.inverse(z),
    }
    out: dict[str, Timing] = {}
    for what, call in calls.items():
        with torch.no_grad():
            out[f"conv2d/{what}"] = time_call(conv, device, runs)
            out[what] = time_call(call, device, runs)
    x_grad = x.clone().requires_grad_()
    weight = torch.randn_like(z)
    with torch.no_grad():
        out["conv2d/backward"] = time_call(conv, device, runs)
    out["backward"] = time_call(partial(_backward, layer, x_grad, weight), device, runs)
    return out


def layer_timings(
    layers: dict[str, Any], shapes, batch: int, device: str, runs: int
) -> list[dict[str, Any]]:
    """One row per (shape, layer, pass): median ms, IQR and the ratio to its conv2d."""
    rows = []
    for shape in shapes:
        for name, make in layers.items():
            torch.manual_seed(0)
            try:
                layer = make(shape)
                timings = time_layer(layer, shape, batch, device, runs)
            except Exception as error:  # a baseline that does not fit this shape is skipped
                log.warning("%s at %s not timed: %s", name, shape, error)
                continue
            for what in LAYER_PASSES:
                t, conv = timings[what], timings[f"conv2d/{what}"]
                rows.append(
                    {
                        "shape": "x".join(map(str, shape)),
                        "layer": name,
                        "pass": what,
                        "ms": t.median_ms,
                        "iqr_ms": t.iqr_ms,
                        "ratio_to_conv2d": t.median_ms / conv.median_ms,
                        "device": device_name(device),
                        "batch": batch,
                    }
                )
    return rows
