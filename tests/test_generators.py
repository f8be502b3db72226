"""The VAE, WAE and DCGAN baselines of the Deep Fourier Machines FID table: shapes, parameter
counts, each loss, both GAN optimizers, and the rows through the CLI on generated data."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import yaml

from bench.evaluators.timing import time_train_step
from bench.tasks import TASKS, model_index
from bench.tasks.generators import GANTask, VAETask
from models.generators.dcgan import DCGAN
from models.generators.vae import VAE, WAE, mmd_imq
from models.registry import count_params

TINY = {"shape": [3, 8, 8], "latent": 4, "width": 4, "depth": 2}
TINY_GAN = {"shape": [3, 8, 8], "latent": 4, "width": 4}
ROWS = {
    "vae": ("bench/configs/dfm_t5_2/vae_cifar10.yaml", TINY),
    "wae": ("bench/configs/dfm_t5_2/wae_cifar10.yaml", TINY),
    "gan": ("bench/configs/dfm_t5_2/dcgan_cifar10.yaml", TINY_GAN),
}


@pytest.fixture(autouse=True)
def float32():
    torch.set_default_dtype(torch.float32)


def images(n: int, shape=(3, 8, 8), seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=gen).float()


def conv(c_in: int, c_out: int, k: int = 4, bias: bool = False) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def test_dcgan_cifar10_layers_and_count():
    """Radford et al.'s 32x32 nets: G 100 -> 512 (4x4) -> 256 -> 128 -> 3, D 3 -> 64 -> 128 ->
    256 -> 1 logit, bias-free convs, batch norm (scale and shift) where the paper puts it."""
    net = model_index("gan")["dcgan_cifar10"]()
    generator = conv(100, 512) + conv(512, 256) + conv(256, 128) + conv(128, 3)
    generator += 2 * (512 + 256 + 128)
    discriminator = conv(3, 64) + conv(64, 128) + conv(128, 256) + conv(256, 1)
    discriminator += 2 * (128 + 256)
    assert count_params(net.generator) == generator == 3_448_576
    assert count_params(net.discriminator) == discriminator
    z = torch.randn(5, 100)
    out = net.decode(z)
    assert out.shape == (5, 3, 32, 32) and out.abs().max() <= 1
    assert net.discriminate(out).shape == (5,)


@pytest.mark.parametrize("name", ["vae_cifar10", "wae_cifar10"])
def test_autoencoder_cifar10_layers_and_count(name):
    """Encoder 3 -> 128 -> 256 -> 512 -> 1024 (2x2) -> latent 128 (x2 for the VAE); decoder
    128 -> 1024 x 8 x 8 -> 512 -> 256 -> 5x5 conv to 3 channels."""
    objective = name.split("_")[0]
    net = model_index(objective)[name]()
    heads = 2 if objective == "vae" else 1
    encoder = conv(3, 128) + conv(128, 256) + conv(256, 512) + conv(512, 1024)
    encoder += 2 * (128 + 256 + 512 + 1024) + (1024 * 4 + 1) * 128 * heads
    decoder = (128 + 1) * 1024 * 64 + conv(1024, 512) + conv(512, 256) + conv(256, 3, 5, True)
    decoder += 2 * (512 + 256)
    assert count_params(net.encoder) == encoder and count_params(net.decoder) == decoder
    x = images(2, (3, 32, 32))
    assert net.generate(torch.randn(2, 128)).shape == x.shape
    samples = net.sample(3)
    assert samples.shape == (3, 3, 32, 32) and 0 <= samples.min() and samples.max() <= 255


def test_bad_sizes_are_one_line_errors():
    with pytest.raises(ValueError, match="divisible by 2\\^depth = 16"):
        VAE((3, 24, 24), depth=4)
    with pytest.raises(ValueError, match="4 x 2\\^k"):
        DCGAN((3, 24, 24))
    with pytest.raises(ValueError, match="decoder_std must be positive"):
        VAE((3, 8, 8), latent=4, width=4, depth=2, decoder_std=0)
    with pytest.raises(ValueError, match="task 'vae' trains"):
        VAETask(model="dcgan_cifar10")


def test_vae_loss_is_the_gaussian_negative_elbo():
    """-ELBO = ||x - decode(z)||^2 / (2 s^2) + D/2 log(2 pi s^2) + KL, recomputed by hand with
    the same reparameterization noise."""
    torch.manual_seed(0)
    vae = VAE(**TINY, decoder_std=0.5).eval()
    x = images(3)
    torch.manual_seed(1)
    loss, mse, kl = vae.loss(x)
    mu, logvar = vae.encode(x)
    torch.manual_seed(1)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    squared = (vae.decode(z) - (x / 127.5 - 1)).pow(2).flatten(1).sum(1)
    dims = 3 * 8 * 8
    nll = squared / 0.5 + 0.5 * dims * math.log(2 * math.pi * 0.25)
    var = logvar.exp()
    kl_hand = 0.5 * (var + mu.pow(2) - 1 - logvar).sum(1)
    torch.testing.assert_close(loss, (nll + kl_hand).mean())
    torch.testing.assert_close(kl, kl_hand.mean())
    torch.testing.assert_close(mse, squared.mean() / dims)
    assert kl >= 0


def test_vae_elbo_is_finite_and_decreases_on_generated_data():
    torch.manual_seed(0)
    task = VAETask(model="vae_cifar10", model_kwargs=TINY, lr=1e-2)
    optimizer = task.configure_optimizers()["optimizer"]
    batch = (images(8), None)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = task.training_loss(batch)[0]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5


def test_imq_mmd_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    torch.manual_seed(0)
    p, q = torch.randn(256, 8), torch.randn(256, 8)
    same = mmd_imq(q, p).item()
    shifted = mmd_imq(q + 1.0, p).item()
    far = mmd_imq(q + 3.0, p).item()
    assert abs(same) < 0.02 * shifted and 0 < shifted < far


def test_imq_mmd_matches_its_formula_on_a_small_case():
    qz, pz = torch.tensor([[0.0], [1.0]]), torch.tensor([[2.0], [0.5]])
    expected = 0.0
    for scale in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
        c = 2 * 1 * scale

        def k(a, b, c=c):
            return c / (c + (a - b) ** 2)

        within = (2 * k(0.0, 1.0) + 2 * k(2.0, 0.5)) / 2
        across = sum(k(a, b) for a in (0.0, 1.0) for b in (2.0, 0.5)) * 2 / 4
        expected += within - across
    torch.testing.assert_close(mmd_imq(qz, pz), torch.tensor(expected))
    with pytest.raises(ValueError, match="two \\[n >= 2, d\\] batches"):
        mmd_imq(qz, pz[:1])


def test_wae_loss_weights_reconstruction_and_mmd():
    torch.manual_seed(0)
    wae = WAE(**TINY, mmd_weight=7.0).eval()
    x = images(6)
    torch.manual_seed(3)
    loss, mse, mmd = wae.loss(x)
    assert torch.isfinite(loss) and mse > 0
    torch.testing.assert_close(loss, 0.05 * mse * 3 * 8 * 8 + 7.0 * mmd)


def test_dcgan_step_updates_both_networks_with_their_own_optimizer():
    torch.manual_seed(0)
    task = GANTask(model="dcgan_cifar10", model_kwargs=TINY_GAN, lr=1e-3, betas=[0.5, 0.999])
    entries = task.configure_optimizers()
    opt_d, opt_g = (e["optimizer"] for e in entries)
    assert opt_d.param_groups[0]["betas"] == (0.5, 0.999)
    owned_d = {id(p) for p in opt_d.param_groups[0]["params"]}
    assert owned_d == {id(p) for p in task.net.discriminator.parameters()}
    assert {id(p) for p in opt_g.param_groups[0]["params"]} == {
        id(p) for p in task.net.generator.parameters()
    }
    before = [p.detach().clone() for p in task.net.parameters()]
    loss_d, loss_g = task.adversarial_step(images(8), opt_d, opt_g, torch.Tensor.backward)
    assert torch.isfinite(loss_d) and torch.isfinite(loss_g)
    changed = [not torch.equal(b, p) for b, p in zip(before, task.net.parameters(), strict=True)]
    names = [n for n, _ in task.net.named_parameters()]
    assert any(c for c, n in zip(changed, names, strict=True) if n.startswith("generator"))
    assert any(c for c, n in zip(changed, names, strict=True) if n.startswith("discriminator"))
    assert opt_d.state and opt_g.state


@pytest.mark.parametrize("objective", ["vae", "wae", "gan"])
def test_a_training_step_is_timed_for_every_objective(objective):
    model = next(iter(model_index(objective)))
    kwargs = ROWS[objective][1]
    task = TASKS[objective](model=model, model_kwargs=kwargs)
    before = [p.detach().clone() for p in task.net.parameters()]
    timing = time_train_step(task, batch_size=4, runs=2)
    assert timing.runs == 2 and len(timing.samples) == 2
    assert all(torch.equal(b, p) for b, p in zip(before, task.net.parameters(), strict=True))


def tiny_row(objective: str) -> dict:
    """The row's config with a tiny model on generated 8x8 images; its demo profile (the last
    layer over the suite's demo defaults) trains 6 steps and measures no FID."""
    path, kwargs = ROWS[objective]
    config = yaml.safe_load(open(path))
    config["model_kwargs"] = {**config.get("model_kwargs", {}), **kwargs}
    config["dataset"] = "synthetic"
    config["data"] = {"shape": [3, 8, 8], "num_train": 64, "num_test": 16, "val_size": 16}
    config["profiles"] = {
        "demo": {
            "data": {"batch_size": 16, "subset": None, "val_size": 16},
            "trainer": {"max_steps": 6, "enable_progress_bar": False},
            "module": {"num_samples": 4, "warmup_steps": 2},
            "evaluate": {"fid": 0, "st_runs": 2, "ft_runs": 2},
        }
    }
    return config


def run_cli(*args) -> int:
    from bench.__main__ import main

    return main(list(args))


@pytest.mark.parametrize("objective", ["wae", "gan"])
def test_fit_time_and_fid_of_a_tiny_row_through_the_cli(objective, tmp_path):
    """fit (train, test, time) on generated data, then `bench time` and `bench fid` (the tiny
    feature extractor of tests/test_fid.py stands in for Inception, offline)."""
    import tests.test_fid  # noqa: F401  (registers the tiny feature extractor)
    from tests.helpers import fit_row

    config = tiny_row(objective)
    record = fit_row(tmp_path, config, "--profile", "demo")
    metrics = record["metrics"]
    assert record["profile"] == "demo" and record["table"] == "dfm_t5_2"
    assert metrics["st_ms"] > 0 and metrics["params_m"] == pytest.approx(
        count_params(
            TASKS[objective](model=config["model"], model_kwargs=config["model_kwargs"]).net
        )
        / 1e6
    )
    assert ("mse" in metrics) == (objective != "gan") and "fid" not in metrics
    assert list((tmp_path / "o").rglob("samples_*.png"))
    row = str(tmp_path / "row.yaml")
    common = ["--profile", "demo", "--results_dir", str(tmp_path / "r"), "--work_dir"]
    common.append(str(tmp_path / "o"))
    assert run_cli("time", "--config", row, "--device", "cpu", *common) == 0
    assert (
        run_cli(
            "fid",
            "--config",
            row,
            "--num_samples",
            "16",
            "--feature_extractor",
            "tiny-test",
            *common,
        )
        == 0
    )
    records = [json.loads(x) for x in (tmp_path / "r/runs/dfm_t5_2.jsonl").open()]
    assert "train_step_ms" in records[1]["metrics"] and "ft_ms" not in records[1]["metrics"]
    assert records[2]["metrics"]["fid"] >= 0
    with pytest.raises(ValueError, match="'python -m bench test' evaluates flows"):
        run_cli("test", "--config", row, *common)


def test_the_three_rows_load_and_the_table_shows_them_not_run(tmp_path):
    from bench.config import load_config
    from bench.report.tables import table_report

    for objective, (path, _) in ROWS.items():
        config = load_config(path, "paper")
        assert config.task == objective and config.evaluate.fid == 50000
        assert config.model in model_index(objective)
    markdown = table_report(tmp_path, "dfm_t5_2").markdown
    for row, paper in (("VAE [22]", "106.0"), ("WAE [58]", "80.9"), ("DCGAN [15]", "30.9")):
        assert f"| {row} | {paper} | not run |" in markdown
    assert "not built" not in markdown.split("`paper`")[0]


def test_run_tables_trains_the_dcgan_row_on_the_demo_profile(tmp_path, capsys):
    """run-tables handles a generator row with no special case: the demo profile measures no
    FID, which the line of the row says."""
    overrides = [
        "dataset=synthetic",
        "data.shape=[3,8,8]",
        "data.num_train=48",
        "data.num_test=16",
        "data.val_size=16",
        "data.subset=null",
        "data.batch_size=16",
        "trainer.max_steps=4",
        "trainer.enable_progress_bar=false",
        "model_kwargs.shape=[3,8,8]",
        "model_kwargs.latent=4",
        "model_kwargs.width=4",
        "module.num_samples=4",
    ]
    published = tmp_path / "r" / "published"
    published.mkdir(parents=True)  # the DFM tables only: the report then skips the flows' ones
    shutil.copy("results/published/dfm.csv", published / "dfm.csv")
    code = run_cli(
        "run-tables", "--tables", "dfm_t5_2", "--rows", "dcgan_cifar10", "--profile", "demo",
        "--results_dir", str(tmp_path / "r"), "--work_dir", str(tmp_path / "o"),
        "--set", *overrides,
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "dfm_t5_2 / DCGAN [15]: no fid measured" in out
    (record,) = [json.loads(x) for x in (tmp_path / "r/runs/dfm_t5_2.jsonl").open()]
    assert record["steps"] == 4 and record["metrics"]["st_ms"] > 0
    assert (tmp_path / "r/tables/samples/dfm_t5_2-dcgan_cifar10.png").is_file()
