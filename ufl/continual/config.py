"""The configuration of ``ufl continual`` (:class:`ContinualConfig`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..cfg import DEFAULTS
from ..errors import UflError
from .strategies import DEFAULT_STRATEGIES
from .stream import DEFAULT_TASKS

__all__ = ["ContinualConfig"]


@dataclass
class ContinualConfig:
    """Everything ``ufl continual`` needs.

    Args:
        data_root: folder holding ``NYUD_MT/`` and ``PASCAL_MT/``.
        strategies: names from :data:`STRATEGIES`, run in this order.
        tasks: the stream, ``DATASET:TASK`` entries (:data:`DEFAULT_TASKS`).
        checkpoint: a ``ufl pretrain`` run folder whose backbone starts every strategy; else
        backbone, pretrained: a timm backbone (``pretrained`` as :class:`~ufl.models.Backbone`'s).
        epochs, batch_size, lr, weight_decay: per experience; Adam at a constant learning rate.
            Defaults (and those of backbone and seed): ``ufl/cfg/default.yaml`` (``continual_epochs``
            10, lr 1e-4 and weight decay 1e-4 as the reference protocol, DESIGN.md section 6).
        size: (H, W) of every image (default: each dataset's reference size); HRNet needs sides
            divisible by 32.
        augment: the reference training augmentations.
        ewc_lambda: EWC's penalty weight. The mean Fisher importance of an HRNet-18 backbone
            parameter under these losses is about 1e-7, so small lambdas change nothing: on the
            synthetic stream (96 px, random init, 3 epochs) a sweep over 1e3..1e9 found 1e5 to
            halve the forgetting of semseg while the new tasks still learn (1e7 and more stop
            saliency from learning). Tune it on real data.
        si_lambda: Synaptic Intelligence's penalty weight (avalanche clips SI's importances at 1e-3).
            The same sweep (10..1e5) kept 1e3: 1e5 again stops saliency from learning.
        distill_alpha: weight of lwf's cosine feature distillation (LwF's lambda_o = 1).
        head_options: :class:`~ufl.models.MedusaHead` options.
        device: ``auto`` | ``cpu`` | ``cuda``. workers: DataLoader workers (default: by device).
        seed: one seed for everything; every strategy runs with it.
        log_dir: write avalanche's TextLogger to ``log_dir/STRATEGY.log`` (and, with
            ``tensorboard``, TensorBoard events to ``log_dir/tensorboard/STRATEGY``).
        progress: avalanche's InteractiveLogger (progress bars and metrics) on stderr.
    """

    data_root: str | os.PathLike | None = None
    strategies: Sequence[str] = DEFAULT_STRATEGIES
    tasks: Sequence[str] = DEFAULT_TASKS
    checkpoint: str | os.PathLike | None = None
    backbone: str = DEFAULTS.backbone
    pretrained: bool | str | os.PathLike | None = None
    epochs: int = DEFAULTS.continual_epochs
    batch_size: int = DEFAULTS.batch_size
    lr: float = DEFAULTS.lr
    weight_decay: float = DEFAULTS.weight_decay
    size: Sequence[int] | None = None
    augment: bool = True
    ewc_lambda: float = 1e5
    si_lambda: float = 1e3
    distill_alpha: float = 1.0
    head_options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    workers: int | None = None
    seed: int = DEFAULTS.seed
    log_dir: str | os.PathLike | None = None
    tensorboard: bool = False
    progress: bool = True

    def __post_init__(self):
        self.strategies = list(self.strategies)
        self.tasks = list(self.tasks)
        self.size = tuple(int(s) for s in self.size) if self.size is not None else None
        if self.epochs < 1 or self.batch_size < 1:
            raise UflError(f"--epochs and --batch-size must be at least 1, got {self.epochs} and {self.batch_size}")
        if not self.lr > 0:
            raise UflError(f"--lr must be positive, got {self.lr}")
        for name in ("ewc_lambda", "si_lambda", "distill_alpha", "weight_decay"):
            if getattr(self, name) < 0:
                raise UflError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.tensorboard and self.log_dir is None:
            raise UflError("TensorBoard logging needs a --log-dir to write to")