"""The model of ``ufl continual``: a shared backbone and one Medusa head per task label."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from avalanche.models.dynamic_modules import DynamicModule, MultiTaskModule

from ..errors import UflError
from ..models import Backbone, MedusaHead

__all__ = ["ContinualMedusa"]


class ContinualMedusa(MultiTaskModule):
    """Medusa as an avalanche ``MultiTaskModule``: a backbone shared by all tasks and one
    :class:`~ufl.models.MedusaHead` per task label, added by :meth:`adaptation` when a training
    experience brings a new label.

    Args:
        backbone: the shared :class:`~ufl.models.Backbone` (frozen or not).
        out_channels: ``{task label: output channels}`` of every task the stream may bring.
        seed: heads are initialised from ``seed`` and their label only, so every strategy starts
            each task from the same head whatever it consumed from the global RNG before.
        head_options: :class:`~ufl.models.MedusaHead` options (``width``, ``attention_reduction``).

    ``forward(images (B, 3, H, W), task_labels (B,) or int)`` returns the current task's head output
    ``{"out": logits (B, C_t, H, W) at the images' size, "initial": [per-scale logits] (training
    mode)}``; a mini-batch holds one task (every experience is one task). After each forward,
    :attr:`features` holds the backbone's multi-scale features, for :class:`DenseFeatureDistillation`.
    """

    def __init__(self, backbone: Backbone, out_channels: Mapping[int, int], seed: int = 0,
                 head_options: Mapping[str, Any] | None = None):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict()
        self.out_channels = {int(k): int(v) for k, v in out_channels.items()}
        self.seed = int(seed)
        self.head_options = dict(head_options or {})
        self.features: list[torch.Tensor] | None = None

    def adaptation(self, experience) -> None:
        # NOTE: MultiTaskModule.adaptation reads experience.classes_in_this_experience, which dense
        # datasets do not have: only the task-label bookkeeping is kept.
        DynamicModule.adaptation(self, experience)
        if not self.training:
            return  # eval never adds heads: only tasks seen in training are evaluated
        for label in experience.task_labels:
            self.known_train_tasks_labels.add(int(label))
            if str(label) not in self.heads:
                self.heads[str(label)] = self._new_head(int(label)).to(self._adaptation_device)

    def _new_head(self, label: int) -> MedusaHead:
        if label not in self.out_channels:
            raise UflError(f"task label {label} has no declared output channels (known: {sorted(self.out_channels)})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + label)
            return MedusaHead(self.backbone.channels, self.out_channels[label], **self.head_options)

    def head(self, label: int) -> MedusaHead:
        key = str(int(label))
        if key not in self.heads:
            raise UflError(f"no head for task label {label} yet (heads: {sorted(self.heads, key=int)}); "
                           f"a task is evaluated only after its training experience")
        return self.heads[key]

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | int) -> dict[str, Any]:
        if isinstance(task_labels, int):
            return self.forward_single_task(x, task_labels)
        labels = torch.unique(task_labels)
        if labels.numel() != 1:
            raise ValueError(f"a mini-batch must hold one task, got task labels {labels.tolist()}")
        return self.forward_single_task(x, int(labels.item()))

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> dict[str, Any]:
        features = self.backbone(x)
        self.features = features
        return self.head(task_label)(features, out_size=x.shape[-2:])