"""The commands behind ``python -m bench fit|test|time``: build the row's datamodule, module,
trainer and logger from its config, run, evaluate, and append the record."""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from bench.evaluate import evaluate_bpd, time_flow
from bench.module import FlowModule
from bench.results import append_records, make_record, records_path
from bench.timing import device_name
from datamodules import make_datamodule

log = logging.getLogger(__name__)


def run_dir(config: dict, work_dir: str | Path) -> Path:
    """Where a row's checkpoints, logs and samples go: <work_dir>/<table>/<name>/<profile>."""
    name = Path(config["config_path"]).stem
    return Path(work_dir) / config["table"] / name / config["profile"]


def make_logger(config: dict, directory: Path):
    """W&B (offline unless the user configured W&B) or a CSV logger; never crashes a run."""
    from pytorch_lightning.loggers import CSVLogger

    fallback = CSVLogger(str(directory), name="logs")
    settings = config.get("wandb", {})
    if not settings.get("enabled", True) or os.environ.get("WANDB_MODE") == "disabled":
        return fallback
    try:
        from pytorch_lightning.loggers import WandbLogger

        configured = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
        mode = os.environ.get("WANDB_MODE") or ("online" if configured else "offline")
        logger = WandbLogger(
            project=settings.get("project", "convflow-bench"),
            name=f"{config['table']}/{Path(config['config_path']).stem}/{config['profile']}",
            tags=[*settings.get("tags", []), config["profile"], config["table"]],
            save_dir=str(directory),
            mode=mode,
            config=config,
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


def task_of(config: dict) -> dict[str, Any]:
    """What a row trains: a flow (by NLL), a classifier (``task: classify``) or the Deep
    Fourier Machines generator (``task: dfm``)."""
    if config.get("task", "flow") == "dfm":
        from bench.dfm_module import DFMModule

        return {"module": DFMModule, "monitor": "train/loss", "mode": "min", "metric": "mse"}
    if config.get("task", "flow") == "classify":
        from bench.classify import ClassifierModule

        return {
            "module": ClassifierModule,
            "monitor": "val/acc",
            "mode": "max",
            "metric": "accuracy",
        }
    return {"module": FlowModule, "monitor": "val/bpd", "mode": "min", "metric": "bpd"}


def build(config: dict, data_dir: str | None, sample_dir: Path | None = None):
    """The datamodule and LightningModule of a config (module options the module's constructor
    does not take, such as a flow's sample settings for a classifier, are left out)."""
    data = dict(config.get("data", {}))
    if data_dir is not None:
        data["data_dir"] = data_dir
    model_kwargs = dict(config.get("model_kwargs", {}))
    per_image_latents = config.get("task") == "dfm" and not model_kwargs.get("encoder_hidden")
    if per_image_latents:
        data["with_index"] = True
    datamodule = make_datamodule(config["dataset"], **data)
    if per_image_latents:  # one learned latent per training image
        model_kwargs["num_images"] = len(datamodule.dataset("train"))
    total = config.get("trainer", {}).get("max_steps")
    options = {
        **config.get("module", {}),
        "total_steps": total if total and total > 0 else None,
        "sample_dir": str(sample_dir) if sample_dir else None,
        "seed": config.get("seed", 0),
    }
    module_cls = task_of(config)["module"]
    accepted = inspect.signature(module_cls.__init__).parameters
    module = module_cls(
        model=config["model"],
        model_kwargs=model_kwargs,
        **{k: v for k, v in options.items() if k in accepted},
    )
    return datamodule, module


class CurveRecorder(pl.Callback):
    """Keeps (step, train/bpd) and (step, val/bpd) so the record holds its training curve."""

    def __init__(self, every: int = 10):
        self.every = every
        self.curve: dict[str, list[float]] = {
            "train_step": [],
            "train_bpd": [],
            "val_step": [],
            "val_bpd": [],
        }

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        bpd = trainer.callback_metrics.get("train/bpd")
        if bpd is not None and trainer.global_step % self.every == 0:
            self.curve["train_step"].append(trainer.global_step)
            self.curve["train_bpd"].append(round(float(bpd), 5))

    def on_validation_epoch_end(self, trainer, module):
        bpd = trainer.callback_metrics.get("val/bpd")
        if bpd is not None and not trainer.sanity_checking:
            self.curve["val_step"].append(trainer.global_step)
            self.curve["val_bpd"].append(round(float(bpd), 5))


class TimingCallback(pl.Callback):
    """Runs the timing protocol (`bench.evaluate.time_flow`) on the trained flow at the end of
    fit, logs st_ms/ft_ms to the logger and keeps them in ``metrics``."""

    def __init__(self, config: dict):
        self.config = config
        self.metrics: dict[str, Any] = {}

    def on_fit_end(self, trainer, module):
        if not trainer.is_global_zero or not hasattr(module, "eval_flow"):
            return
        device = evaluation_device(trainer)
        self.metrics = timing_metrics(module.eval_flow(), self.config, device)
        if trainer.logger is not None:
            numbers = {f"timing/{k}": v for k, v in self.metrics.items() if k != "device"}
            trainer.logger.log_metrics(numbers, step=trainer.global_step)
        module.to(trainer.strategy.root_device)


def trainer_for(config: dict, directory: Path, args, logger) -> pl.Trainer:
    from pytorch_lightning.callbacks import ModelCheckpoint

    task = task_of(config)
    checkpoint = ModelCheckpoint(
        dirpath=str(directory / "checkpoints"),
        filename="best",
        monitor=task["monitor"],
        mode=task["mode"],
        save_last=True,
    )
    options = dict(config.get("trainer", {}))
    for key in ("accelerator", "devices", "num_nodes", "strategy"):
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    callbacks = [checkpoint, CurveRecorder()]
    if task["metric"] == "bpd" and config.get("evaluate", {}).get("timing", True):
        callbacks.append(TimingCallback(config))
    return pl.Trainer(
        default_root_dir=str(directory), logger=logger, callbacks=callbacks, **options
    )


def evaluation_device(trainer: pl.Trainer | None = None) -> str:
    if trainer is not None and trainer.strategy.root_device.type == "cuda":
        return str(trainer.strategy.root_device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def timing_metrics(flow, config: dict, device: str) -> dict[str, Any]:
    ev = config.get("evaluate", {})
    return time_flow(
        flow,
        device,
        st_runs=ev.get("st_runs", 5),
        ft_runs=ev.get("ft_runs", 10),
        per_sample_calls=ev.get("per_sample_calls", 100),
    )


def fit_command(config: dict, args) -> dict[str, Any]:
    """Train, test the best checkpoint, time, and append the record. Returns the record."""
    pl.seed_everything(config.get("seed", 0), workers=True)
    directory = run_dir(config, args.work_dir)
    datamodule, module = build(config, args.data_dir, directory)
    logger = make_logger(config, directory)
    trainer = trainer_for(config, directory, args, logger)
    last = directory / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if args.resume and last.is_file() else None
    if args.resume and ckpt_path is None:
        log.warning("--resume: no checkpoint at %s, starting from scratch", last)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_metrics = dict(trainer.callback_metrics)  # trainer.test replaces them
    best = trainer.checkpoint_callback.best_model_path or None
    results = trainer.test(module, datamodule=datamodule, ckpt_path=best or "last", verbose=False)
    if not trainer.is_global_zero:  # every rank tests (collectives); rank 0 writes the record
        return {}
    device = evaluation_device(trainer)
    if task_of(config)["metric"] == "accuracy":
        metrics = {"accuracy": 100.0 * float(results[0]["test/acc"]), "params_m": module.params_m()}
    elif task_of(config)["metric"] == "mse":
        mse = results[0].get("test/mse", fit_metrics.get("train/mse"))
        metrics = {"mse": float(mse), "params_m": module.params_m()}
        fid = config.get("evaluate", {}).get("fid")
        if fid:
            from bench.fid import compute_fid

            metrics.update(
                compute_fid(
                    module.eval_flow().to(device),
                    datamodule.dataset("train"),
                    num_samples=fid,
                    cuda=device.startswith("cuda"),
                )
            )
    else:
        metrics = {
            "bpd": float(results[0]["test/bpd"]),
            "nll": float(results[0]["test/nll"]),
            "params_m": module.params_m(),
        }
        for callback in trainer.callbacks:
            if isinstance(callback, TimingCallback):
                metrics.update({k: v for k, v in callback.metrics.items() if k != "device"})
    curves = [c for c in trainer.callbacks if isinstance(c, CurveRecorder)]
    return record_row(
        config,
        args,
        metrics,
        device_name(device),
        config.get("note", ""),
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
        wandb_url=wandb_url(logger),
        curve=curves[0].curve if curves else None,
    )


def load_module(config: dict, checkpoint: str | Path) -> pl.LightningModule:
    """The row's LightningModule (flow, classifier or DFM generator) from a checkpoint."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    return task_of(config)["module"].load_from_checkpoint(str(path), map_location="cpu")


def require_flow(config: dict, command: str) -> None:
    """`test` and `time` evaluate flows (BPD, sampling time); other rows are evaluated by fit."""
    if task_of(config)["metric"] != "bpd":
        raise ValueError(
            f"'python -m bench {command}' evaluates flows; {config['row']!r} is a "
            f"'{config.get('task')}' row, evaluated at the end of 'python -m bench fit'"
        )


def record_row(config: dict, args, metrics: dict, device: str, note: str = "", **extra) -> dict:
    """Append one record of ``config``'s row to results/runs/<table>.jsonl and return it."""
    record = make_record(
        config["table"],
        config["row"],
        config["dataset"],
        metrics,
        device=device,
        profile=config["profile"],
        config=config,
        **extra,
    )
    record["note"] = note
    append_records(records_path(Path(args.results_dir), config["table"]), [record])
    return record


def best_checkpoint(config: dict, args) -> Path:
    return Path(args.checkpoint or run_dir(config, args.work_dir) / "checkpoints" / "best.ckpt")


def test_command(config: dict, args) -> dict[str, Any]:
    """Test-set BPD/NLL of a checkpoint (default: the row's best), appended as a record."""
    require_flow(config, "test")
    module = load_module(config, best_checkpoint(config, args))
    datamodule, _ = build(config, args.data_dir)
    device = evaluation_device()
    metrics = evaluate_bpd(module.eval_flow(), datamodule.test_dataloader(), device)
    metrics["params_m"] = module.params_m()
    return record_row(config, args, metrics, device_name(device))


def time_command(config: dict, args) -> dict[str, Any]:
    """ST/FT of the row's model (from a checkpoint if given, else freshly initialised)."""
    require_flow(config, "time")
    if args.checkpoint:
        flow = load_module(config, args.checkpoint).eval_flow()
    else:
        _, module = build(config, args.data_dir)
        flow = module.flow
    metrics = timing_metrics(flow, config, args.device or evaluation_device())
    note = "timing only" + (" (untrained weights)" if not args.checkpoint else "")
    return record_row(config, args, metrics, metrics.pop("device"), note)


def fid_command(config: dict, args) -> dict[str, Any]:
    """FID of the row's model (a checkpoint, else the row's best) against the training split."""
    from bench.fid import compute_fid

    checkpoint = best_checkpoint(config, args)
    device = evaluation_device()
    flow = load_module(config, checkpoint).eval_flow().to(device)
    datamodule, _ = build(config, args.data_dir)
    metrics = compute_fid(
        flow,
        datamodule.dataset("train"),
        num_samples=args.num_samples,
        temperature=args.temperature,
        seed=args.seed,
        feature_extractor=args.feature_extractor,
        cuda=device.startswith("cuda"),
    )
    note = (
        f"FID: {args.num_samples} samples at temperature {args.temperature}, seed {args.seed}, "
        f"against the {config['dataset']} training split; checkpoint {checkpoint}"
    )
    return record_row(config, args, metrics, device_name(device), note)
