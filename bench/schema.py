"""The configuration schema: one pydantic model per config section, and one ``module``
section per task (`bench.tasks.TASK_SPECS` says which task validates with which row schema).
Pydantic (which the W&B client already brings, so no new dependency) gives typed fields,
defaults and located errors; ``extra="forbid"`` makes an unknown key an error.
`bench.config` merges the YAML layers and validates them against these models.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The training profiles a row runs under: ``paper`` (the paper's training), ``short`` (paper
# architecture and batch, a few epochs) and ``demo`` (shrunk for a CPU); see `bench.config`.
Profile = Literal["paper", "short", "demo"]
PROFILES: tuple[str, ...] = get_args(Profile)
# Which record a table cell shows when several profiles measured it: the highest rank.
PROFILE_RANK = {"paper": 3, "short": 2, "demo": 1}

# Value bounds shared by the sections below: a count of things (>= 1), a count that may be 0,
# a rate (> 0). A value of the right type outside its bounds is a `bench.config.ConfigError`
# naming the key, before anything runs.
Count = Annotated[int, Field(ge=1)]
CountOrZero = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
# `datamodules.base.ImageDataModule` keeps a fifth of a ``subset`` (at least one image) for
# validation, so a subset needs five images.
MIN_SUBSET = 5
# The smallest crop `bench.experiments.dfm_compression` scores: SSIM's Gaussian window is 11
# pixels wide.
MIN_CROP = 16


def at_least(minimum: float, kind: Callable[[str], Any] = int, above: bool = False):
    """An argparse ``type=`` for a command-line number: ``kind(text)``, refused (argparse's one
    line, exit status 2) below ``minimum`` (or at it, with ``above``)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value < minimum or (above and value == minimum):
            bound = f"above {minimum}" if above else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {bound}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _steps_or_unlimited(value: int | None, key: str) -> int | None:
    """Lightning's -1 (no limit) or a positive count: 0 steps would train nothing."""
    if value is not None and value != -1 and value < 1:
        raise ValueError(f"{key} must be -1 (no limit) or at least 1, got {value}")
    return value


def rule_broken(problem: dict) -> str:
    """The message of a schema validator's ``ValueError`` (without pydantic's prefix)."""
    error = problem.get("ctx", {}).get("error")
    return str(error) if error is not None else problem["msg"]


class Section(BaseModel):
    """A config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSection(Section):
    """Datamodule options (`datamodules`); ``None`` leaves the datamodule's own default."""

    batch_size: Count = 100
    val_size: Count = 5000
    num_workers: CountOrZero = 0
    subset: Annotated[int, Field(ge=MIN_SUBSET)] | None = None
    download: bool | None = None
    shape: list[int] | None = None
    num_train: Count | None = None
    num_test: Count | None = None
    crop_size: Count | None = None
    crops_per_image: Count | None = None
    random_crops: bool | None = None


class TrainerSection(Section):
    """`pytorch_lightning.Trainer` options; ``None`` leaves Lightning's default."""

    max_epochs: int | None = 100
    max_steps: int = -1
    max_time: str | dict[str, int] | None = None
    gradient_clip_val: NonNegative | None = 50.0
    log_every_n_steps: Count = 50
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    limit_test_batches: int | float | None = None
    val_check_interval: int | float | None = None
    check_val_every_n_epoch: int | None = None
    num_sanity_val_steps: int | None = None
    accumulate_grad_batches: Count = 1
    precision: str | int | None = None
    deterministic: bool | None = None
    enable_progress_bar: bool | None = None
    enable_model_summary: bool | None = None
    accelerator: str | None = None
    devices: int | str | list[int] | None = None
    num_nodes: int | None = None
    strategy: str | None = None

    @field_validator("max_steps", "max_epochs")
    @classmethod
    def _a_run_trains(cls, value: int | None, info) -> int | None:
        return _steps_or_unlimited(value, info.field_name)


class OptimSection(Section):
    """What every task trains with (`bench.tasks.base.Task.configure_optimizers`): the
    optimizer, a linear warm-up over ``warmup_steps`` (or ``warmup_epochs``), then a constant,
    cosine (to 0) or linear (to ``final_lr``) schedule over the run's ``trainer.max_steps``, or
    an exponential one: the lr times ``gamma`` every ``decay_every`` epochs (``decay_unit:
    epoch``, torch's ExponentialLR / StepLR stepped once per epoch) or steps."""

    lr: Positive = 1e-3
    optimizer: Literal["adam", "adamax", "sgd"] = "adam"
    weight_decay: NonNegative = 0.0
    momentum: NonNegative = 0.9
    betas: list[float] = [0.9, 0.999]
    warmup_steps: CountOrZero = 0
    warmup_epochs: NonNegative = 0.0
    # Equal-budget runs (bench.protocol.WARMUP_RULE): the warm-up, in steps, is at most this.
    warmup_max_steps: CountOrZero | None = None
    schedule: Literal["constant", "cosine", "linear", "exponential"] = "constant"
    final_lr: NonNegative | None = None
    gamma: Positive | None = None
    decay_every: Count = 1
    decay_unit: Literal["epoch", "step"] = "epoch"

    @field_validator("betas")
    @classmethod
    def _two_betas(cls, value: list[float]) -> list[float]:
        if len(value) != 2:
            raise ValueError(f"betas must be two numbers (beta1, beta2), got {value!r}")
        return value

    @model_validator(mode="after")
    def _schedule_is_complete(self) -> OptimSection:
        """The rules between keys, here so that ``bench config`` refuses what ``fit`` would."""
        if self.schedule == "linear" and self.final_lr is None:
            raise ValueError("schedule 'linear' needs module.final_lr")
        if self.schedule == "exponential" and self.gamma is None:
            raise ValueError("schedule 'exponential' needs module.gamma")
        if self.warmup_steps and self.warmup_epochs:
            raise ValueError("set module.warmup_steps or module.warmup_epochs, not both")
        return self


class FlowModuleSection(OptimSection):
    ema_decay: Annotated[float, Field(gt=0, lt=1)] | None = None
    num_samples: CountOrZero = 16
    temperature: Positive = 1.0


class ClassifierModuleSection(OptimSection):
    weight_decay: float = 5e-4
    num_classes: int = 10
    augment: bool = True


class DFMModuleSection(OptimSection):
    num_samples: CountOrZero = 16


class GeneratorModuleSection(OptimSection):
    """VAE, WAE and GAN rows (`bench.tasks.generators`); their loss weights are model_kwargs."""

    num_samples: CountOrZero = 64


class EvaluateSection(Section):
    timing: bool = True
    st_runs: Count = 10
    ft_runs: Count = 20
    per_sample_calls: CountOrZero = 100  # 0: no per-sample timing
    fid: CountOrZero = 0


class WandbSection(Section):
    enabled: bool = True
    project: str = "convflow-bench"
    tags: list[str] = []


class RowConfig(Section):
    """One table row: what to build (``model`` with ``model_kwargs``), on what data, how to
    train it (``module``, ``trainer``) and evaluate it."""

    table: str
    row: str
    model: str
    dataset: str
    task: str = "flow"  # a `bench.tasks.TASK_SPECS` name
    recipe: str | None = None
    seed: int = 0
    # Set by an equal-budget run (--steps, --budget-minutes): the optimizer steps every row of
    # the run trains; recorded so a row that ended short of it is shown and never ranked.
    budget_steps: int | None = None
    model_kwargs: dict[str, Any] = {}
    data: DataSection = DataSection()
    module: OptimSection = OptimSection()
    trainer: TrainerSection = TrainerSection()
    evaluate: EvaluateSection = EvaluateSection()
    wandb: WandbSection = WandbSection()
    note: str = ""
    # Set by `python -m bench compare`: the layer it put in the reference row's slot. The
    # record is then a user row (marked so in the tables); None for the suite's rows.
    compared_layer: str | None = None
    config_path: str = ""
    profile: Profile = "paper"

    @field_validator("table")
    @classmethod
    def _table_is_a_file_name(cls, value: str) -> str:
        """The table names files (``runs/<table>.jsonl``, ``tables/<table>.md``) and a folder
        of the run directory: `bench.records.check_path_name`'s rule."""
        from bench.records import check_path_name  # bench.records imports this module

        return check_path_name(value, "table")

    @property
    def per_image_latents(self) -> bool:
        """Whether the model learns one latent per training image (`DFMRowConfig`): its size
        then comes from the data loaded, not from the config alone."""
        return False

    @field_validator("task")
    @classmethod
    def _task_is_known(cls, value: str) -> str:
        from bench.tasks import TASK_SPECS  # bench.tasks names these schemas

        if value not in TASK_SPECS:
            raise ValueError(f"unknown task {value!r}; tasks: {', '.join(TASK_SPECS)}")
        return value


class FlowRowConfig(RowConfig):
    module: FlowModuleSection = FlowModuleSection()


class ClassifierRowConfig(RowConfig):
    module: ClassifierModuleSection = ClassifierModuleSection()


class DFMRowConfig(RowConfig):
    module: DFMModuleSection = DFMModuleSection()

    @property
    def per_image_latents(self) -> bool:
        """A generator without an encoder learns one latent per training image: `fit` gives
        it ``num_images`` from the data loaded (so its size is not the config's alone)."""
        return not self.model_kwargs.get("encoder_hidden")


class GeneratorRowConfig(RowConfig):
    module: GeneratorModuleSection = GeneratorModuleSection()


class CompareSection(Section):
    """``compare:`` of a ``_table.yaml``: the table's reference step for ``python -m bench
    compare``. ``row``: the row YAML (in the table's folder) whose architecture, data and recipe
    a compared layer takes; ``slot``: its model argument that takes the layer (`models.slots`);
    ``layers``: the table's own linear layers (`models.slots.SLOT_LAYERS` names) the compared
    layer is timed against at the slot's shapes."""

    row: str
    slot: str
    layers: list[str] = []


class TableSection(Section):
    """``configs/<table>/_table.yaml``."""

    title: str
    groups: list[str] = []
    order: int = 0
    experiment: str | None = None
    compare: CompareSection | None = None


class CompressionCell(Section):
    """One ``--cells WIDTHxDEPTH`` network of ``python -m bench dfm-compress``: a Fourier Net
    layer of width w holds 2^w frequency vectors per output, so the width is bounded (the
    thesis's widest is 10)."""

    width: Annotated[int, Field(ge=1, le=16)]
    depth: Annotated[int, Field(ge=1, le=64)]
