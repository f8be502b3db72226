"""Every row whose paper prints a parameter count (``params_m`` in results/published/*.csv):
our model, built on the meta device (no memory, no initialisation), within `TOLERANCE` of it,
or an entry of results/published/param_exceptions.yaml that says why not. Every committed
record's count is the count of the model its row config builds now."""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import torch

from bench.catalog import row_configs, row_label
from bench.config import CONFIG_DIR, load_config
from bench.fidelity import row_configs_on_disk
from bench.published import PUBLISHED_DIR, load_published, param_exceptions
from bench.records import load_records
from bench.tasks import model_index
from models.registry import MODELS, count_params

# The registry's widths were chosen to reproduce the printed counts.
TOLERANCE = 0.03
EXCEPTIONS = param_exceptions()


def counted_rows() -> list:
    """(table, row, row config path, printed count in millions) of every row config with one."""
    published = load_published(PUBLISHED_DIR)
    counts = published[published["metric"] == "params_m"]
    rows = []
    for table, stem in row_configs_on_disk(CONFIG_DIR):
        path = CONFIG_DIR / table / f"{stem}.yaml"
        config = load_config(path, "paper")
        hit = counts[(counts["table"] == table) & (counts["row"] == config.row)]
        if not hit.empty:
            case = (table, config.row, path, float(hit["value"].iloc[0]))
            rows.append(pytest.param(*case, id=f"{table}/{stem}"))
    return rows


ROWS = counted_rows()


def millions_on_meta(build, **kwargs) -> float:
    with torch.device("meta"):
        return count_params(build(**kwargs)) / 1e6


@cache
def config_millions(path: Path, profile: str) -> float:
    """The parameter count, in millions, of the model a row config builds at ``profile``."""
    config = load_config(path, profile)
    return millions_on_meta(model_index(config.task)[config.model], **config.model_kwargs)


@pytest.mark.parametrize("table, row, path, printed", ROWS)
def test_parameter_count_matches_the_paper(table, row, path, printed):
    error = abs(config_millions(path, "paper") / printed - 1)
    exception = EXCEPTIONS.get((table, row))
    if exception is None:
        assert error <= TOLERANCE, (
            f"{table}/{row}: {error:.1%} from the printed {printed}M; fix the model or say why in "
            "results/published/param_exceptions.yaml"
        )
        return
    assert error > TOLERANCE, f"{table}/{row}: matches now; remove its exception"
    if exception["tolerance"] is not None:
        assert error <= exception["tolerance"], (error, exception["reason"])


def test_every_exception_is_a_printed_count_with_a_reason():
    counted = {(p.values[0], p.values[1]) for p in ROWS}
    assert set(EXCEPTIONS) <= counted, set(EXCEPTIONS) - counted
    assert all(len(e["reason"]) > 40 for e in EXCEPTIONS.values())


def test_the_row_walk_finds_every_table_that_prints_counts():
    published = load_published(PUBLISHED_DIR)
    tables = set(published.loc[published["metric"] == "params_m", "table"])
    assert {p.values[0] for p in ROWS} == tables and len(ROWS) >= 50


def test_committed_records_count_the_models_their_rows_build_now():
    """A record's parameter count is that of the model its row config builds today (at the
    record's profile): a record of a model since changed would show one model's timings beside
    another's size. Such records are moved to results/retired/ with the reason."""
    results = Path(__file__).resolve().parents[1] / "results"
    stale, checked = [], 0
    for record in load_records(results).rows:
        recorded = record["metrics"].get("params_m")
        paths = [p for p in row_configs(record["table"]) if row_label(p) == record["row"]]
        if recorded is None or record.get("compared_layer") or not paths:
            continue  # no count, a user's layer in the row, or a row without a config
        if load_config(paths[0]).per_image_latents:
            continue  # a DFM generator's count depends on the data loaded, not the config alone
        ours = config_millions(paths[0], record.get("profile", "paper"))
        checked += 1
        if ours != pytest.approx(recorded, rel=1e-4, abs=1e-6):
            stale.append(f"{record['_source']}: {record['row']} {recorded}M, the row now {ours}M")
    assert checked >= 80 and not stale, stale


def test_maf_counted_densely_is_cdflows_count():
    """CDFlow's 105.0M is our MAF with the masked-out weights counted (its exception)."""
    with torch.device("meta"):
        maf = MODELS["maf_cifar10"]()
    assert sum(p.numel() for p in maf.parameters()) == 105_000_960


def test_snf_linear_counts_conv_and_learned_inverse():
    """SNF's 9-layer flow is the exact one plus a learned inverse R per conv (its exception)."""
    snf = millions_on_meta(MODELS["snf_mnist_linear9"]) * 1e6
    exact = millions_on_meta(MODELS["exact_mnist_linear9"]) * 1e6
    convs = 3 * (1 + 16 + 256) * 9  # R: 3x3, C^2 per conv, three convs per block
    assert round(snf) == round(exact) + convs


def test_meta_counts_equal_counts_of_a_real_build():
    """Masked layers say their free entries without values (`free_parameter_counts`): the same
    numbers as their masks on a real build."""
    kwargs = {"input_shape": (3, 8, 8), "levels": 2}
    for name, small in {
        "mintnet_cifar10_k16": dict(steps=1, multiplier=2),
        "finc_cifar10_k4": dict(steps=1, width=4),
        "cinc_cifar10_k16": dict(steps=1, width=4),
        "emerging_cifar10": dict(steps=1, width=4),
        "maf_cifar10": dict(layers=2, hidden=(8,), levels=None),
    }.items():
        args = {k: v for k, v in {**kwargs, **small}.items() if v is not None}
        real = count_params(MODELS[name](**args))
        assert millions_on_meta(MODELS[name], **args) * 1e6 == pytest.approx(real), name


def test_realnvp_cifar10_is_the_real_nvp_papers_two_scale_model():
    """Two scales, not three: 3 checkerboard + 3 channel couplings, then 4 checkerboard at the
    last scale, 8 residual blocks of 64 features: the Real NVP paper's 6.19M."""
    with torch.device("meta"):
        flow = MODELS["realnvp_cifar10"]()
    kinds = Counter(type(m).__name__ for m in flow.modules())
    assert (kinds["CheckerboardCoupling"], kinds["ChannelCoupling"]) == (7, 3)
    assert count_params(flow) / 1e6 == pytest.approx(6.19, abs=0.005)


def test_glow_imagenet32_is_glows_imagenet_model():
    """Glow's ImageNet 32x32 model: L=3 levels of K=48 steps, width 512: CDFlow's 66.2M."""
    with torch.device("meta"):
        flow = MODELS["glow_imagenet32"]()
    kinds = Counter(type(m).__name__ for m in flow.modules())
    assert kinds["AffineCoupling"] == kinds["InvConv1x1LU"] == 3 * 48
    widths = {m.net[0].out_channels for m in flow.modules() if type(m).__name__ == "AffineCoupling"}
    assert widths == {512}
    assert count_params(flow) / 1e6 == pytest.approx(66.2, rel=0.005)
