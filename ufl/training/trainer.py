"""One short training loop; progress, validation, checkpoints and logging are callbacks.

The loop is the same for multi-task pretraining (images through a backbone and heads) and for
training one head on cached features: the caller passes ``forward(model, batch) -> outputs`` and a
loss ``loss_fn(outputs, batch) -> (total, {task: value})``. Callbacks attach to named hooks
(``before_epoch``, ``after_step``, ``after_epoch``, ``after_fit``), in the spirit of avalanche's
strategy plugins.

Reproducibility: every epoch reseeds torch from ``seed + epoch`` and the data order comes from a
generator seeded the same way, so a run resumed after epoch k continues exactly as an uninterrupted
run would (bit for bit on CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..cfg import DEFAULTS
from ..errors import UflError
from ..runtime import Precision
from ..tensors import move_to_device

__all__ = ["Trainer", "TrainState", "Callback", "NonFiniteLoss", "poly_lr"]


class NonFiniteLoss(UflError):
    """The loss became NaN or infinite; the run stops and earlier checkpoints are kept."""


def poly_lr(base_lr: float, epoch: int, epochs: int, power: float = DEFAULTS.poly_power) -> float:
    """Poly decay per epoch (the reference schedule, power 0.9): ``base * (1 - epoch / epochs) ** power``."""
    return base_lr * (1.0 - epoch / max(epochs, 1)) ** power


@dataclass
class TrainState:
    """What callbacks see: the position in the run and the latest figures."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    steps_per_epoch: int = 0
    loss: float = float("nan")
    parts: dict[str, float] = field(default_factory=dict)
    epoch_loss: float = float("nan")
    #: The epoch's mean of ``parts``: each task's loss on its final output, unweighted and without the
    #: deep-supervision terms that ``loss`` / ``epoch_loss`` (the optimised total) also sum.
    epoch_parts: dict[str, float] = field(default_factory=dict)
    lr: float = 0.0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


class Callback:
    """Base class: override the hooks you need."""

    def before_fit(self, trainer: "Trainer", state: TrainState) -> None: ...
    def before_epoch(self, trainer: "Trainer", state: TrainState) -> None: ...
    def after_step(self, trainer: "Trainer", state: TrainState) -> None: ...
    def after_epoch(self, trainer: "Trainer", state: TrainState) -> None: ...
    def after_fit(self, trainer: "Trainer", state: TrainState) -> None: ...


class Trainer:
    """Adam-style training with a per-epoch schedule, AMP on CUDA and callbacks.

    Args:
        model: the module whose trainable parameters ``optimizer`` updates (may be DDP-wrapped).
        optimizer: a torch optimizer.
        forward: ``forward(model, batch) -> outputs``.
        loss_fn: ``loss_fn(outputs, batch) -> (total loss tensor, {name: float or tensor})``.
        epochs: number of epochs in the whole run (the schedule's length).
        base_lr: learning rate at epoch 0; ``lr_schedule(base_lr, epoch, epochs)`` gives later ones.
        device, precision: where and how to run (see :mod:`ufl.runtime`).
        seed: per-epoch seeds are ``seed + epoch``.
        train_mode: called at the start of every epoch to put the model in training mode (e.g. to
            keep a frozen backbone's BatchNorm in eval mode); default ``model.train()``.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 forward: Callable[[nn.Module, Any], Any], loss_fn: Callable[[Any, Any], tuple],
                 *, epochs: int, base_lr: float, device: torch.device, precision: Precision,
                 seed: int = 0, callbacks: Iterable[Callback] = (),
                 lr_schedule: Callable[[float, int, int], float] = poly_lr,
                 train_mode: Callable[[nn.Module], None] | None = None):
        self.model = model
        self.optimizer = optimizer
        self.forward = forward
        self.loss_fn = loss_fn
        self.epochs = epochs
        self.base_lr = base_lr
        self.device = device
        self.precision = precision
        self.seed = seed
        self.callbacks = list(callbacks)
        self.lr_schedule = lr_schedule
        self.train_mode = train_mode or (lambda m: m.train())
        self.scaler = precision.scaler()
        self.state = TrainState()

    def _call(self, hook: str) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, self.state)

    def set_epoch_seed(self, epoch: int, loader: Any) -> None:
        """Reseed torch and the loader's sampler for ``epoch`` (exact resumption)."""
        torch.manual_seed(self.seed + epoch)
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        generator = getattr(loader, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(self.seed + epoch)

    def fit(self, loader: Any, start_epoch: int = 0) -> TrainState:
        """Train from ``start_epoch`` to ``self.epochs``; return the final state."""
        state = self.state
        state.epoch = start_epoch
        state.steps_per_epoch = len(loader)
        state.global_step = start_epoch * state.steps_per_epoch
        self._call("before_fit")
        for epoch in range(start_epoch, self.epochs):
            state.epoch, state.step = epoch, 0
            state.lr = self.lr_schedule(self.base_lr, epoch, self.epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = state.lr
            self.set_epoch_seed(epoch, loader)
            self.train_mode(self.model)
            self._call("before_epoch")
            total, count = 0.0, 0
            part_sums: dict[str, float] = {}
            for batch in loader:
                loss, parts = self.train_step(batch)
                state.loss = loss
                state.parts = parts
                total += loss
                count += 1
                for key, value in parts.items():
                    part_sums[key] = part_sums.get(key, 0.0) + value
                state.step += 1
                state.global_step += 1
                self._call("after_step")
            state.epoch_loss = total / max(count, 1)
            state.epoch_parts = {key: value / max(count, 1) for key, value in part_sums.items()}
            self._call("after_epoch")
        self._call("after_fit")
        return state

    def train_step(self, batch: Any) -> tuple[float, dict[str, float]]:
        batch = move_to_device(batch, self.device, non_blocking=self.device.type == "cuda")
        with self.precision.autocast():
            outputs = self.forward(self.model, batch)
            loss, parts = self.loss_fn(outputs, batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            state = self.state
            raise NonFiniteLoss(
                f"the training loss became {value} at epoch {state.epoch + 1}, step {state.step + 1}; "
                f"the run stopped and the last good checkpoint is kept (try a lower --lr)")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return value, {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in parts.items()}
