"""Classification tables: every i-ConvNet variant builds, the invertible ones invert exactly up to
the head, the inverse-conv classifier has 16 conv parameters, and a demo fit runs."""

from __future__ import annotations

import pytest
import torch
import yaml

from models.classifiers import CLASSIFIERS, ICONVNET_VARIANTS, IConvNetClassifier
from models.registry import count_params, randomize


@pytest.mark.parametrize("variant", sorted(ICONVNET_VARIANTS))
def test_every_variant_builds_and_classifies(variant):
    net = IConvNetClassifier(variant, width=4)
    assert net(torch.rand(2, 3, 32, 32) * 255).shape == (2, 10)


def test_paper_width_has_about_four_million_parameters():
    for variant in ICONVNET_VARIANTS:
        n = count_params(IConvNetClassifier(variant)) / 1e6
        assert 3.0 < n < 4.6, (variant, n)


@pytest.mark.parametrize("variant", ["checkerboard", "nearest", "avgpool"])
def test_invertible_variants_invert_exactly_up_to_the_head(variant):
    net = randomize(IConvNetClassifier(variant, width=4), 0.05).eval()
    for conv in (m for m in net.modules() if isinstance(m, torch.nn.Conv2d)):
        with torch.no_grad():  # well conditioned: near the identity, as a trained flow starts
            torch.nn.init.dirac_(conv.weight).add_(0.05 * torch.randn_like(conv.weight))
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.normal_(0, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    x = torch.randint(0, 256, (2, 3, 16, 16)).double()
    features = net.features(x / 255.0 - 0.5)
    torch.testing.assert_close(net.invert_features(features), x, atol=1e-6, rtol=0)  # of 255


def test_maxpool_variants_refuse_inversion():
    with pytest.raises(ValueError, match="not invertible"):
        IConvNetClassifier("base", width=4).invert_features(torch.zeros(1, 32, 4, 4))


def test_inverse_conv_classifier_has_sixteen_conv_parameters():
    net = CLASSIFIERS["inverse_conv_classifier_mnist"]()
    assert sum(count_params(c) for c in net.convs) == 16
    assert net(torch.rand(3, 1, 28, 28) * 255).shape == (3, 10)


def test_demo_fit_of_a_classifier_writes_an_accuracy_record(tmp_path):
    from tests.helpers import fit_row

    torch.set_default_dtype(torch.float32)
    config = yaml.safe_load(open("bench/configs/iconvnet_t1/iconvnet_classifier_nearest.yaml"))
    config.update(
        dataset="synthetic",
        model_kwargs={"width": 4},
        data={"shape": [3, 16, 16], "num_train": 96, "num_test": 32},
        # the demo profile's own steps and batches would override the row's: 300 steps
        profiles={
            "demo": {
                "data": {"batch_size": 16, "subset": None, "val_size": 16},
                "trainer": {"max_steps": 6, "enable_progress_bar": False},
            }
        },
    )
    record = fit_row(tmp_path, config, "--profile", "demo")
    assert 0 <= record["metrics"]["accuracy"] <= 100 and record["row"] == "MaxPool2d -> iINN"
    assert (record["profile"], record["steps"]) == ("demo", 6)
