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

from .. import distributed
from ..checkpoint import save_checkpoint
from .trainer import Callback, Trainer, TrainState

__all__ = ["ProgressBar", "Validation", "Checkpointer", "JsonLog", "format_metrics"]


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """``{"semseg": {"mIoU": 41.2}}`` -> ``"semseg mIoU 41.20"``."""
    return " | ".join(f"{task} " + " ".join(f"{k} {v:.4g}" for k, v in values.items())
                      for task, values in metrics.items())


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
                            leave=False, dynamic_ncols=True, unit="batch")

    def after_step(self, trainer: Trainer, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{state.loss:.4f}", lr=f"{state.lr:.2e}", refresh=False)
            self.bar.update(1)

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            line = (f"{self.desc} epoch {state.epoch + 1}/{trainer.epochs}: loss {state.epoch_loss:.4f} "
                    f"({time.perf_counter() - self.started:.1f} s)")
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
        entry: dict[str, Any] = {"epoch": done, "loss": state.epoch_loss, "lr": state.lr}
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
