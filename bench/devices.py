"""The device a command runs on when none is given: the one place that decides it."""

from __future__ import annotations


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"`` (torch imported here, on first use, so
    that importing the CLI stays quick)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
