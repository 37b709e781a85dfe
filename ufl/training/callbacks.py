"""Callbacks for :class:`ufl.training.Trainer`: progress bar, validation, checkpoints, JSON log.

Only the main process (rank 0 under torchrun) draws progress bars and writes files; validation runs
on every process (each evaluates its share and the metric counts are summed).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from ..runtime import progress_disable

from .. import distributed
from ..checkpoint import save_checkpoint
from .trainer import Callback, Trainer, TrainState

__all__ = ["ProgressBar", "Validation", "Checkpointer", "JsonLog", "TensorBoardLog", "format_metrics", "format_loss",
           "require_tensorboard", "tensorboard_writer"]


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """``{"semseg": {"mIoU": 41.2}}`` -> ``"semseg mIoU 41.20"``."""
    return " | ".join(f"{task} " + " ".join(f"{k} {v:.4g}" for k, v in values.items())
                      for task, values in metrics.items())


def format_loss(state: TrainState) -> str:
    """The epoch's loss, said for what it is: the optimised total is a weighted sum over tasks and
    deep-supervision terms (so it is several times a single loss), then each task's loss on its
    final output alone."""
    text = f"loss {state.epoch_loss:.4f} (weighted sum over tasks and deep-supervision terms)"
    if state.epoch_parts:
        text += "; final output: " + " ".join(f"{k} {v:.4f}" for k, v in state.epoch_parts.items())
    return text


class ProgressBar(Callback):
    """A tqdm bar per epoch with the live loss, and one summary line per epoch."""

    def __init__(self, desc: str = "train", enabled: bool = True):
        self.desc = desc
        self.enabled = enabled and distributed.is_main()
        self.bar = None
        self.started = 0.0

    def before_epoch(self, trainer: Trainer, state: TrainState) -> None:
        if self.enabled:
            self.started = time.perf_counter()
            self.bar = tqdm(total=state.steps_per_epoch, desc=f"{self.desc} {state.epoch + 1}/{trainer.epochs}",
                            leave=False, dynamic_ncols=True, unit="batch",
                            disable=progress_disable(True))

    def after_step(self, trainer: Trainer, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{state.loss:.4f}", lr=f"{state.lr:.2e}", refresh=False)
            self.bar.update(1)

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            line = f"{self.desc} epoch {state.epoch + 1}/{trainer.epochs}: {format_loss(state)} " \
                   f"({time.perf_counter() - self.started:.1f} s)"
            if state.history and "metrics" in state.history[-1]:
                line += "  " + format_metrics(state.metrics)
            tqdm.write(line, file=sys.stderr)


class Validation(Callback):
    """Evaluate every ``every`` epochs and after the last one; results go to ``state.metrics``."""

    def __init__(self, evaluate: Callable[[], dict[str, dict[str, float]]], every: int = 1):
        self.evaluate = evaluate
        self.every = max(1, every)

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        done = state.epoch + 1
        entry: dict[str, Any] = {"epoch": done, "loss": state.epoch_loss, "final_loss": dict(state.epoch_parts),
                                 "lr": state.lr}
        if done % self.every == 0 or done == trainer.epochs:
            state.metrics = self.evaluate()
            entry["metrics"] = state.metrics
        state.history.append(entry)


class Checkpointer(Callback):
    """Save a checkpoint after every epoch (rank 0); ``meta()`` gives the run's fixed metadata."""

    def __init__(self, run_dir: str | Path, meta: Callable[[], dict[str, Any]], model_state: Callable[[], dict]):
        self.run_dir = Path(run_dir)
        self.meta = meta
        self.model_state = model_state

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        if distributed.is_main():
            meta = {**self.meta(), "epoch": state.epoch + 1, "metrics": state.metrics, "history": state.history,
                    "grad_scaler": trainer.scaler.state_dict() if trainer.scaler.is_enabled() else None}
            save_checkpoint(self.run_dir, self.model_state(), meta, trainer.optimizer.state_dict())
        distributed.barrier()


class JsonLog(Callback):
    """Append one JSON line per epoch (loss, lr, metrics) to ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        if distributed.is_main() and state.history:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(state.history[-1]) + "\n")


def require_tensorboard():
    """:class:`torch.utils.tensorboard.SummaryWriter`; without the optional ``tensorboard`` package
    one clear error saying how to install it (call early, before hours of work)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        from ..errors import UflError

        raise UflError("--log-dir writes TensorBoard events, which needs the tensorboard package: "
                       "pip install 'ufl[tensorboard]' (or pip install tensorboard)") from None
    return SummaryWriter


def tensorboard_writer(log_dir: str | Path):
    """A :class:`torch.utils.tensorboard.SummaryWriter` writing into ``log_dir`` (created)."""
    writer_class = require_tensorboard()
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    return writer_class(log_dir=str(log_dir))


class TensorBoardLog(Callback):
    """TensorBoard scalars (rank 0): per step ``train/loss``; per epoch ``epoch/loss`` (the optimised
    total), ``epoch/final_loss/TASK``, ``epoch/lr`` and ``val/TASK/METRIC`` when validated. x = the
    global step for step scalars, the epoch (1-based) for epoch scalars. Open with
    ``tensorboard --logdir LOG_DIR``."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self.writer = None

    def before_fit(self, trainer: Trainer, state: TrainState) -> None:
        if distributed.is_main() and self.writer is None:
            self.writer = tensorboard_writer(self.log_dir)

    def after_step(self, trainer: Trainer, state: TrainState) -> None:
        if self.writer is not None:
            self.writer.add_scalar("train/loss", state.loss, state.global_step)

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        if self.writer is None:
            return
        epoch = state.epoch + 1
        self.writer.add_scalar("epoch/loss", state.epoch_loss, epoch)
        self.writer.add_scalar("epoch/lr", state.lr, epoch)
        for task, value in state.epoch_parts.items():
            self.writer.add_scalar(f"epoch/final_loss/{task}", value, epoch)
        if state.history and "metrics" in state.history[-1]:
            for task, values in state.history[-1]["metrics"].items():
                for metric, value in values.items():
                    if isinstance(value, (int, float)):
                        self.writer.add_scalar(f"val/{task}/{metric}", value, epoch)
        self.writer.flush()

    def after_fit(self, trainer: Trainer, state: TrainState) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
