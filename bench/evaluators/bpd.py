"""Test-set bits per dimension: ``bpd = -log p(x) / (D ln 2)`` averaged over a loader, and the
NLL in nats per image (``bpd * D ln 2``)."""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader

from models.core import Flow


@torch.no_grad()
def evaluate_bpd(flow: Flow, loader: DataLoader, device: str = "cpu") -> dict[str, float]:
    """Mean test BPD and NLL (nats per image) of ``flow`` over ``loader``."""
    flow = flow.to(device).eval()
    total, count = 0.0, 0
    for x, _ in loader:
        bpd = flow.bpd(x.to(device))
        total += bpd.double().sum().item()
        count += len(bpd)
    bpd = total / count
    return {"bpd": bpd, "nll": bpd * flow.num_dims * math.log(2)}
