"""One table row end to end: ``python -m bench fit|test|time|fid``.

``fit``: build the row's datamodule and task (`bench.tasks`) from its validated config, train,
test the best checkpoint, time it (flows), and append the record. ``test``, ``time``, ``fid``
evaluate a saved checkpoint. Every command appends one record to
``results/runs/<table>.jsonl`` (`bench.records`) and returns it; a job of the launcher
(`bench.experiments.launcher`, ``options.record_file``) writes it to a file of its own instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from bench.evaluators.bpd import evaluate_bpd
from bench.evaluators.fid import compute_fid
from bench.evaluators.timing import device_name, time_train_step, timing_summary
from bench.experiments.callbacks import (
    AtomicCheckpointIO,
    CurveRecorder,
    PreemptionStop,
    SaveLastStep,
    TimingCallback,
    evaluation_device,
)
from bench.experiments.options import RunOptions
from bench.experiments.run_dir import (
    RUN_CONFIG,
    check_checkpoint_matches,
    check_resumable,
    checkpoint_step,
    run_dir,
)
from bench.protocol import validation_interval
from bench.records import (
    Record,
    append_records,
    check_writable,
    make_record,
    records_path,
    write_atomic,
    write_record,
)
from bench.report.tables import table_report
from bench.schema import RowConfig
from bench.tasks import TASKS
from bench.tasks.base import Task
from datamodules import make_datamodule

log = logging.getLogger(__name__)


def make_logger(config: RowConfig, directory: Path):
    """W&B (offline unless the user configured W&B) or a CSV logger; never crashes a run."""
    fallback = CSVLogger(str(directory), name="logs")
    settings = config.wandb
    if not settings.enabled or os.environ.get("WANDB_MODE") == "disabled":
        return fallback
    try:
        configured = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
        mode = os.environ.get("WANDB_MODE") or ("online" if configured else "offline")
        logger = WandbLogger(
            project=settings.project,
            name=f"{config.table}/{Path(config.config_path).stem}/{config.profile}",
            tags=[*settings.tags, config.profile, config.table],
            save_dir=str(directory),
            mode=mode,
            config=config.model_dump(),
        )
        logger.experiment  # noqa: B018 - start the run now so a failure falls back here
        return logger
    except Exception as err:
        log.warning("W&B unavailable (%s); logging to CSV in %s", err, directory)
        return fallback


def _netrc_has_wandb() -> bool:
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_url(logger) -> str | None:
    try:
        return logger.experiment.url if hasattr(logger.experiment, "url") else None
    except Exception:
        return None


def steps_per_epoch(config: RowConfig, datamodule) -> int | None:
    """Full training batches per epoch (the loader drops the last partial one), where the
    module counts its warm-up or decay in epochs; else None (no data set is read)."""
    module = config.module
    exponential = module.schedule == "exponential" and module.decay_unit == "epoch"
    if not (module.warmup_epochs or exponential):
        return None
    return len(datamodule.dataset("train")) // datamodule.batch_size


def build(config: RowConfig, data_dir: str | None, sample_dir: Path | None = None):
    """The datamodule and task (LightningModule) of a validated row config."""
    data = config.data.model_dump(exclude_none=True)
    if data_dir is not None:
        data["data_dir"] = data_dir
    data["order_seed"] = config.seed  # each seed trains on its own order of batches
    model_kwargs = dict(config.model_kwargs)
    if config.per_image_latents:  # a DFM row without an encoder
        data["with_index"] = True
    datamodule = make_datamodule(config.dataset, **data)
    if config.per_image_latents:  # one learned latent per training image
        model_kwargs["num_images"] = len(datamodule.dataset("train"))
    total = config.trainer.max_steps
    module = TASKS[config.task](
        model=config.model,
        model_kwargs=model_kwargs,
        total_steps=total if total and total > 0 else None,
        steps_per_epoch=steps_per_epoch(config, datamodule),
        sample_dir=str(sample_dir) if sample_dir else None,
        seed=config.seed,
        **config.module.model_dump(),
    )
    return datamodule, module


def trainer_for(
    config: RowConfig, directory: Path, launch: dict[str, Any], logger, preemption: Any = None
) -> pl.Trainer:
    """The row's Trainer: the config's ``trainer:`` options, then ``launch`` (accelerator,
    devices, nodes, strategy from the command line); a launcher job's ``preemption`` stops the
    fit at a step boundary with ``last.ckpt`` saved."""
    task = TASKS[config.task]
    checkpoints = directory / "checkpoints"
    best = ModelCheckpoint(
        dirpath=str(checkpoints),
        filename="best",
        monitor=task.monitor,
        mode=task.mode,
        save_last=False,  # last.ckpt is SaveLastStep's: saved where training stops
        # a validation metric is scored at the validation's end, before SaveLastStep saves;
        # a training one (DFM) or none (the GAN) at Lightning's default, the epoch's end
        save_on_train_epoch_end=False if (task.monitor or "").startswith("val/") else None,
        enable_version_counter=False,  # one checkpoint set: best.ckpt and last.ckpt
    )
    settings = config.trainer.model_dump(exclude_none=True)
    if config.budget_steps:  # equal budget: every row validated at the same steps
        settings["val_check_interval"] = validation_interval(config.budget_steps)
        settings["check_val_every_n_epoch"] = None  # count steps across epochs
    settings.update(launch)
    save_last = SaveLastStep(checkpoints / "last.ckpt")
    callbacks = [best, CurveRecorder(), save_last]  # save_last after best (its docstring)
    if task.timed and config.evaluate.timing:
        callbacks.append(TimingCallback(config))
    if preemption is not None:  # a launcher job: stop at a step, saved
        callbacks.append(PreemptionStop(preemption, save_last))
    # inference_mode=False: validation and test run under no_grad instead, where models whose
    # density needs autograd (FFJORD's trace, the residual flows' logdet series) can enable it.
    # use_distributed_sampler=False: the training sampler shards itself across processes and
    # keeps its place for an exact resume (datamodules.base.EpochSeededSampler); evaluation
    # loaders are not sharded, every process evaluates the whole split (no padded duplicates).
    return pl.Trainer(
        default_root_dir=str(directory),
        logger=logger,
        callbacks=callbacks,
        inference_mode=False,
        use_distributed_sampler=False,
        plugins=[AtomicCheckpointIO()],  # best.ckpt and last.ckpt: tmp file + rename
        **settings,
    )


def fit_command(config: RowConfig, options: RunOptions) -> Record:
    """Train, test the best checkpoint, time, and append the record. Returns the record."""
    check_writable(options.results_dir)  # before training, not after it
    pl.seed_everything(config.seed, workers=True)
    directory = run_dir(config, options.work_dir)
    datamodule, module = build(config, options.data_dir, directory)
    logger = make_logger(config, directory)
    trainer = trainer_for(config, directory, options.launch, logger, options.preemption)
    last = directory / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if options.resume and last.is_file() else None
    if options.resume and ckpt_path is None:
        log.warning("--resume: no checkpoint at %s, starting from scratch", last)
    if ckpt_path:
        check_resumable(config, directory / RUN_CONFIG)
        check_checkpoint_matches(config, ckpt_path)  # readable, and this row's
    write_atomic(directory / RUN_CONFIG, yaml.safe_dump(config.model_dump(), sort_keys=False))
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_metrics = dict(trainer.callback_metrics)  # trainer.test replaces them
    tested = trainer.checkpoint_callback.best_model_path or str(last)
    results = trainer.test(module, datamodule=datamodule, ckpt_path=tested, verbose=False)
    if not trainer.is_global_zero:  # every rank tests (collectives); rank 0 writes the record
        return {}
    device = evaluation_device(trainer)
    context = {"datamodule": datamodule, "device": device, "config": config}
    context["fit_metrics"] = fit_metrics
    metrics = module.record_metrics(results[0], context)
    for callback in trainer.callbacks:
        if isinstance(callback, TimingCallback):
            metrics.update(callback.metrics)
    recorders = [c for c in trainer.callbacks if isinstance(c, CurveRecorder)]
    curves = [c.curve for c in recorders]
    if recorders:
        metrics.update(recorders[0].start_and_end())
    record = record_row(
        config,
        options,
        metrics,
        device_name(device),
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
        step_tested=checkpoint_step(tested),
        data=datamodule.provenance,
        wandb_url=wandb_url(logger),
        curve=curves[0] if curves else None,
    )
    log_tables(logger, record, options.results_dir)
    if isinstance(logger, WandbLogger):  # one W&B run per row, also when run-tables fits many
        logger.experiment.finish()
    return record


def log_tables(logger, record: Record, results_dir: Path) -> None:
    """With W&B, log the run's record and the regenerated comparison table of its table, so
    the W&B workspace shows the same side-by-side as the markdown. Other loggers: nothing."""
    if not hasattr(logger, "log_table"):
        return
    flat = {k: v for k, v in record.items() if k not in ("metrics", "curve", "data")}
    flat.update({f"metrics/{k}": v for k, v in record["metrics"].items()})
    logger.log_table("record", columns=list(flat), data=[[str(v) for v in flat.values()]])
    table = table_report(results_dir, record["table"])
    visible = table.frame[[c for c in table.frame.columns if not c.startswith("_")]]
    logger.log_table(f"table/{record['table']}", dataframe=visible.astype(str))


def load_module(config: RowConfig, checkpoint: str | Path) -> Task:
    """The row's task (flow, classifier or DFM generator) from a checkpoint, which must hold
    the config's model (`check_checkpoint_matches`); loaded weights-only."""
    path = Path(checkpoint)
    check_checkpoint_matches(config, path)
    task = TASKS[config.task]
    return task.load_from_checkpoint(str(path), map_location="cpu", weights_only=True)


def require_flow(config: RowConfig, command: str) -> None:
    """`test` evaluates densities (test BPD) and `time` the tasks with a timing protocol (flows:
    ST and FT; generators: ST); other rows are evaluated at the end of fit."""
    task = TASKS[config.task]
    if not (task.density if command == "test" else task.timed):
        what = "flows" if command == "test" else "flows and generators"
        raise ValueError(
            f"'python -m bench {command}' evaluates {what}; {config.row!r} is a "
            f"'{config.task}' row, evaluated at the end of 'python -m bench fit'"
        )


def record_row(
    config: RowConfig, options: RunOptions, metrics: dict, device: str, **extra
) -> Record:
    """Append one record of ``config``'s row to results/runs/<table>.jsonl (a launcher job:
    write it to its own file, ``options.record_file``) and return it."""
    record = make_record(
        config.table,
        config.row,
        config.dataset,
        metrics,
        device=device,
        profile=config.profile,
        config=config.model_dump(),
        note=extra.pop("note", config.note),
        compared_layer=config.compared_layer,  # a user row (python -m bench compare)
        seed=config.seed,
        batch_size=config.data.batch_size,
        budget_steps=config.budget_steps,  # an equal-budget run (bench.protocol)
        **extra,
    )
    if options.record_file is not None:
        write_record(options.record_file, record)
    else:
        append_records(records_path(options.results_dir, config.table), [record])
    return record


def best_checkpoint(config: RowConfig, options: RunOptions) -> Path:
    """The checkpoint test, time and FID evaluate: ``options.checkpoint``, else the row's best."""
    best = run_dir(config, options.work_dir) / "checkpoints" / "best.ckpt"
    return Path(options.checkpoint or best)


def test_command(config: RowConfig, options: RunOptions) -> Record:
    """Test-set BPD/NLL of a checkpoint (default: the row's best), appended as a record."""
    require_flow(config, "test")
    checkpoint = best_checkpoint(config, options)
    module = load_module(config, checkpoint)
    datamodule, _ = build(config, options.data_dir)
    device = evaluation_device()
    metrics = evaluate_bpd(module.eval_model(), datamodule.test_dataloader(), device)
    metrics["params_m"] = module.params_m()
    step = checkpoint_step(checkpoint)
    return record_row(
        config, options, metrics, device_name(device), step_tested=step, data=datamodule.provenance
    )


def time_command(config: RowConfig, options: RunOptions) -> Record:
    """ST/FT of the row's model (from a checkpoint if given, else freshly initialised)."""
    require_flow(config, "time")
    if options.checkpoint:
        module = load_module(config, options.checkpoint)
    else:
        _, module = build(config, options.data_dir)
    device = options.device or evaluation_device()
    metrics = module.timing_metrics(config.evaluate, device)
    step = time_train_step(module, config.data.batch_size, device, runs=config.evaluate.ft_runs)
    metrics.update(timing_summary("train_step", step))
    note = "timing only" + (" (untrained weights)" if not options.checkpoint else "")
    return record_row(config, options, metrics, metrics.pop("device"), note=note)


def fid_command(config: RowConfig, options: RunOptions) -> Record:
    """FID of the row's model (a checkpoint, else the row's best) against the training split."""
    checkpoint = best_checkpoint(config, options)
    device = evaluation_device()
    model = load_module(config, checkpoint).eval_model().to(device)
    datamodule, _ = build(config, options.data_dir)
    metrics = compute_fid(
        model,
        datamodule.dataset("train"),
        num_samples=options.num_samples,
        temperature=options.temperature,
        seed=options.fid_seed,
        feature_extractor=options.feature_extractor,
        cuda=device.startswith("cuda"),
    )
    note = (
        f"FID: {options.num_samples} samples at temperature {options.temperature}, "
        f"seed {options.fid_seed}, "
        f"against the {config.dataset} training split; checkpoint {checkpoint}"
    )
    return record_row(
        config, options, metrics, device_name(device), note=note, data=datamodule.provenance
    )


COMMANDS = {"fit": fit_command, "test": test_command, "time": time_command, "fid": fid_command}
