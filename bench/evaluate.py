"""Evaluators: test-set BPD/NLL and the timing protocol for whole flows.

Timing protocol (the same for every row): ST = one call drawing 100 samples, FT = one density
pass (log_prob) on a batch of 100, each after warm-up, synchronized on CUDA, mean +- std over
>= 5 (ST) and 10 (FT) runs. Also SNF's per-sample protocol: 100 calls of sample(1), trimmed mean
of the middle 60 (``st_per_sample_ms``).
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader

from bench.timing import device_name, time_call, trimmed_mean_ms
from models.core import Flow
from models.registry import count_params


@torch.no_grad()
def evaluate_bpd(flow: Flow, loader: DataLoader, device: str = "cpu") -> dict[str, float]:
    """Mean test BPD and NLL (nats per image) over a loader."""
    flow = flow.to(device).eval()
    total, count = 0.0, 0
    for x, _ in loader:
        bpd = flow.bpd(x.to(device))
        total += bpd.double().sum().item()
        count += len(bpd)
    bpd = total / count
    return {"bpd": bpd, "nll": bpd * flow.num_dims * math.log(2)}


@torch.no_grad()
def time_flow(
    flow: Flow,
    device: str = "cpu",
    num_samples: int = 100,
    batch_size: int = 100,
    st_runs: int = 5,
    ft_runs: int = 10,
    per_sample_calls: int = 100,
) -> dict[str, float | str]:
    """ST, FT and the per-sample ST of ``flow`` on ``device`` (ms), with the device name."""
    flow = flow.to(device).eval()
    x = torch.randint(0, 256, (batch_size, *flow.input_shape), device=device).float()
    st = time_call(lambda: flow.sample(num_samples), device, runs=st_runs, warmup=1)
    ft = time_call(lambda: flow.log_prob(x), device, runs=ft_runs, warmup=2)
    metrics: dict[str, float | str] = {
        "st_ms": st.mean_ms,
        "st_std": st.std_ms,
        "ft_ms": ft.mean_ms,
        "ft_std": ft.std_ms,
        "params_m": count_params(flow) / 1e6,
        "device": device_name(device),
    }
    if per_sample_calls:
        single = time_call(lambda: flow.sample(1), device, runs=per_sample_calls, warmup=1)
        metrics["st_per_sample_ms"] = trimmed_mean_ms(list(single.samples))
    return metrics
