"""The reference baselines of MTI-Net's and Medusa's tables, in ufl's model contract.

* :class:`MultiTaskBaseline` ("mt-baseline"): a shared backbone and one HRNet head per task, no
  interaction between tasks and no deep supervision.
* :class:`SingleTaskModel` ("single-task"): the same for exactly one task (the S_t reference of
  Delta_m).

Contract shared by every ufl model: ``model(images, out_size=None)`` -> ``{task: {"out": logits
(B, C_t, H, W)}}`` at ``out_size`` (default: the images' H, W); these baselines have no initial
predictions, so their outputs never hold an ``"initial"`` key. ``model.backbone`` is a
:class:`~ufl.models.backbone.Backbone` and ``model.tasks`` lists the task names.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..errors import UflError
from .backbone import Backbone
from .heads import HRNetHead, MultiTaskModel, resize

__all__ = ["MultiTaskBaseline", "SingleTaskModel"]


class MultiTaskBaseline(MultiTaskModel):
    """Shared backbone, one :class:`~ufl.models.heads.HRNetHead` per task."""

    def __init__(self, backbone: Backbone, out_channels: Mapping[str, int]):
        super().__init__()
        if not out_channels:
            raise UflError("a model needs at least one task")
        self.backbone = backbone
        self.heads = nn.ModuleDict({task: HRNetHead(backbone.channels, n) for task, n in out_channels.items()})

    def forward(self, images: torch.Tensor, out_size: Sequence[int] | None = None) -> dict[str, dict[str, Any]]:
        size = tuple(images.shape[-2:]) if out_size is None else out_size
        features = self.backbone(images)
        return {task: {"out": resize(head(features), size)} for task, head in self.heads.items()}


class SingleTaskModel(MultiTaskBaseline):
    """Backbone + one HRNet head: ``out_channels`` must name exactly one task."""

    def __init__(self, backbone: Backbone, out_channels: Mapping[str, int]):
        if len(out_channels) != 1:
            raise UflError(f"a single-task model takes exactly one task, got {sorted(out_channels) or 'none'}")
        super().__init__(backbone, out_channels)
