"""Deep Fourier Machines: the Fourier layer against its formula, coefficient counts, batching."""

from __future__ import annotations

import math

import pytest
import torch

from models.generators.dfm import (
    FourierGenerator,
    FourierImage,
    FourierNet,
    fourier_layer,
    frequency_grid,
    pixel_grid,
)


def test_fourier_layer_matches_the_formula_on_hand_made_inputs():
    x = torch.tensor([[[0.25, 0.5]]])  # one image, one point, m = 2
    freqs = frequency_grid(2)  # (0,0), (0,1), (1,0), (1,1)
    a = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])  # n = 1
    b = torch.tensor([[[0.5, -1.0, 2.0, 1.0]]])
    out = fourier_layer(x, a, b, freqs, residual=False)
    phases = [0.0, 2 * math.pi * 0.5, 2 * math.pi * 0.25, 2 * math.pi * 0.75]
    expected = sum(
        ai * math.cos(p) + bi * math.sin(p)
        for ai, bi, p in zip(a[0, 0].tolist(), b[0, 0].tolist(), phases, strict=True)
    )
    torch.testing.assert_close(out, torch.tensor([[[expected]]]))
    square = fourier_layer(x, a.expand(1, 2, 4), b.expand(1, 2, 4), freqs, residual=True)
    torch.testing.assert_close(square, torch.full((1, 1, 2), expected) + x)


def test_coefficient_counts_equal_the_thesis_decoder_outputs():
    assert FourierNet(width=4, depth=6, channels=1).num_coefficients == 352  # MNIST
    assert FourierNet(width=6, depth=10, channels=3).num_coefficients == 3672  # CIFAR-10


def test_batched_evaluation_equals_a_per_pixel_loop():
    torch.manual_seed(0)
    net = FourierNet(width=3, depth=2, channels=2)
    a, b = torch.randn(2, net.num_coefficients), torch.randn(2, net.num_coefficients)
    grid = pixel_grid(3, 4)
    batched = net(grid, a, b)
    looped = torch.stack(
        [torch.cat([net(p[None], a[i : i + 1], b[i : i + 1])[0] for p in grid]) for i in range(2)]
    )
    torch.testing.assert_close(batched, looped)
    assert batched.shape == (2, 12, 2) and batched.abs().max() < 1


def test_generator_decodes_samples_and_interpolates():
    torch.manual_seed(0)
    gen = FourierGenerator(
        (1, 6, 5), width=2, depth=2, latent=4, decoder_hidden=(8,), num_images=10
    )
    images = torch.randint(0, 256, (3, 1, 6, 5)).float()
    loss = gen.loss(images, torch.tensor([0, 1, 2]))
    assert torch.isfinite(loss) and loss > 0
    samples = gen.sample(4)
    assert samples.shape == (4, 1, 6, 5) and samples.min() >= 0 and samples.max() <= 255
    z0, z1 = torch.randn(4), torch.randn(4)
    path = gen.interpolate(z0, z1, steps=5)
    torch.testing.assert_close(path[0], (gen.decode(z0[None])[0] + 1) * 127.5)
    torch.testing.assert_close(path[-1], (gen.decode(z1[None])[0] + 1) * 127.5)


def test_fourier_image_fits_a_small_picture():
    torch.manual_seed(0)
    model = FourierImage(width=3, depth=2, channels=1)
    coords = pixel_grid(4, 4)
    target = torch.linspace(-0.5, 0.5, 16)[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(100):
        loss = (model(coords) - target).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def _fit_dfm(tmp_path, config_path, **model_kwargs):
    import yaml

    from tests.helpers import fit_row

    torch.set_default_dtype(torch.float32)
    config = yaml.safe_load(open(config_path))
    config["model_kwargs"].update(model_kwargs)
    c = config["model_kwargs"]["shape"][0]
    config.update(
        dataset="synthetic",
        data={
            "shape": [c, 8, 8],
            "num_train": 64,
            "num_test": 16,
            "val_size": 16,
            "batch_size": 16,
        },
        trainer={"max_steps": 5, "max_epochs": -1, "enable_progress_bar": False},
        evaluate={"fid": 0},
    )
    return fit_row(tmp_path, config)


def test_dfm_fit_with_per_image_latents(tmp_path):
    record = _fit_dfm(
        tmp_path,
        "bench/configs/dfm_mnist/dfm_mnist.yaml",
        shape=[1, 8, 8],
        width=2,
        depth=2,
        latent=4,
        decoder_hidden=[8],
    )
    assert record["metrics"]["mse"] >= 0 and record["row"] == "Fourier Net (MNIST)"
    assert list((tmp_path / "o").rglob("interpolation_*.png"))
    assert list((tmp_path / "o").rglob("reconstructions_*.png"))


def test_dfm_fit_with_encoder_and_fid_interface(tmp_path):
    record = _fit_dfm(
        tmp_path,
        "bench/configs/dfm_t5_2/dfm_cifar10.yaml",
        shape=[3, 8, 8],
        width=2,
        depth=2,
        latent=4,
        decoder_hidden=[8],
        encoder_hidden=[16],
    )
    assert record["metrics"]["mse"] >= 0 and record["table"] == "dfm_t5_2"
    gen = FourierGenerator(
        (3, 8, 8), width=2, depth=2, latent=4, decoder_hidden=(8,), encoder_hidden=(16,)
    )
    from bench.evaluators.fid import FlowSampler

    images = FlowSampler(gen)(torch.randn(3, gen.num_dims))
    assert images.shape == (3, 3, 8, 8) and images.dtype == torch.uint8


def test_fid_command_loads_a_dfm_checkpoint(tmp_path):
    """`python -m bench fid` restores the row's own module (here the DFM generator)."""
    import json

    import tests.test_fid  # noqa: F401  (registers the tiny feature extractor)
    from bench.__main__ import main

    _fit_dfm(
        tmp_path,
        "bench/configs/dfm_t5_2/dfm_cifar10.yaml",
        shape=[3, 8, 8],
        width=2,
        depth=2,
        latent=4,
        decoder_hidden=[8],
        encoder_hidden=[16],
    )
    assert (
        main(
            [
                "fid",
                "--config",
                str(tmp_path / "row.yaml"),
                "--results_dir",
                str(tmp_path / "r"),
                "--work_dir",
                str(tmp_path / "o"),
                "--num_samples",
                "16",
                "--feature_extractor",
                "tiny-test",
            ]
        )
        == 0
    )
    records = [json.loads(x) for x in (tmp_path / "r/runs/dfm_t5_2.jsonl").open()]
    assert records[-1]["metrics"]["fid"] >= 0 and "16 samples" in records[-1]["note"]
    with pytest.raises(ValueError, match="evaluates flows"):
        main(["test", "--config", str(tmp_path / "row.yaml"), "--work_dir", str(tmp_path / "o")])
