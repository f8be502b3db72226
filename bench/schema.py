"""The configuration schema: one pydantic model per config section, and one ``module``
section per task. Pydantic (which the W&B client already brings, so no new dependency) gives
typed fields, defaults and located errors; ``extra="forbid"`` makes an unknown key an error.
`bench.config` merges the YAML layers and validates them against these models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSection(Section):
    """Datamodule options (`datamodules`); ``None`` leaves the datamodule's own default."""

    batch_size: int = 100
    val_size: int = 5000
    num_workers: int = 0
    subset: int | None = None
    download: bool | None = None
    shape: list[int] | None = None
    num_train: int | None = None
    num_test: int | None = None
    crop_size: int | None = None
    crops_per_image: int | None = None
    random_crops: bool | None = None


class TrainerSection(Section):
    """`pytorch_lightning.Trainer` options; ``None`` leaves Lightning's default."""

    max_epochs: int | None = 100
    max_steps: int = -1
    max_time: str | dict[str, int] | None = None
    gradient_clip_val: float | None = 50.0
    log_every_n_steps: int = 50
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    limit_test_batches: int | float | None = None
    val_check_interval: int | float | None = None
    check_val_every_n_epoch: int | None = None
    num_sanity_val_steps: int | None = None
    accumulate_grad_batches: int = 1
    precision: str | int | None = None
    deterministic: bool | None = None
    enable_progress_bar: bool | None = None
    enable_model_summary: bool | None = None
    accelerator: str | None = None
    devices: int | str | list[int] | None = None
    num_nodes: int | None = None
    strategy: str | None = None


class OptimSection(Section):
    """What every task trains with (`bench.tasks.base.Task.configure_optimizers`): the
    optimizer, a linear warm-up over ``warmup_steps`` (or ``warmup_epochs``), then a constant,
    cosine (to 0) or linear (to ``final_lr``) schedule over the run's ``trainer.max_steps``, or
    an exponential one: the lr times ``gamma`` every ``decay_every`` epochs (``decay_unit:
    epoch``, torch's ExponentialLR / StepLR stepped once per epoch) or steps."""

    lr: float = 1e-3
    optimizer: Literal["adam", "adamax", "sgd"] = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    betas: list[float] = [0.9, 0.999]
    warmup_steps: int = 0
    warmup_epochs: float = 0.0
    # Equal-budget runs (bench.protocol.WARMUP_RULE): the warm-up, in steps, is at most this.
    warmup_max_steps: int | None = None
    schedule: Literal["constant", "cosine", "linear", "exponential"] = "constant"
    final_lr: float | None = None
    gamma: float | None = None
    decay_every: int = 1
    decay_unit: Literal["epoch", "step"] = "epoch"


class FlowModuleSection(OptimSection):
    ema_decay: float | None = None
    num_samples: int = 16
    temperature: float = 1.0


class ClassifierModuleSection(OptimSection):
    weight_decay: float = 5e-4
    num_classes: int = 10
    augment: bool = True


class DFMModuleSection(OptimSection):
    num_samples: int = 16


class GeneratorModuleSection(OptimSection):
    """VAE, WAE and GAN rows (`bench.tasks.generators`); their loss weights are model_kwargs."""

    num_samples: int = 64


class EvaluateSection(Section):
    timing: bool = True
    st_runs: int = 10
    ft_runs: int = 20
    per_sample_calls: int = 100
    fid: int = 0


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
    task: Literal["flow", "classify", "dfm", "vae", "wae", "gan"] = "flow"
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
    profile: Literal["paper", "short", "demo"] = "paper"


class FlowRowConfig(RowConfig):
    module: FlowModuleSection = FlowModuleSection()


class ClassifierRowConfig(RowConfig):
    module: ClassifierModuleSection = ClassifierModuleSection()


class DFMRowConfig(RowConfig):
    module: DFMModuleSection = DFMModuleSection()


class GeneratorRowConfig(RowConfig):
    module: GeneratorModuleSection = GeneratorModuleSection()


SCHEMAS: dict[str, type[RowConfig]] = {
    "flow": FlowRowConfig,
    "classify": ClassifierRowConfig,
    "dfm": DFMRowConfig,
    "vae": GeneratorRowConfig,
    "wae": GeneratorRowConfig,
    "gan": GeneratorRowConfig,
}


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
