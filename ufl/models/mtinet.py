"""MTI-Net (Vandenhende, Georgoulis, Van Gool, ECCV 2020: "MTI-Net: Multi-Scale Task Interaction
Networks for Multi-Task Learning", https://arxiv.org/abs/2001.06902), in ufl's model contract.

Follows the paper and the authors' models/mti_net.py (SimonVandenhende/Multi-Task-Learning-PyTorch):

1. Initial task predictions per scale, coarsest first: per task two BasicBlocks refine the
   backbone features of the scale (concatenated, below the coarsest scale, with the task's features
   propagated from the coarser scale and upsampled) to the scale's width, and a 1x1 conv decodes
   them (deep supervision).
2. Feature propagation modules (FPM) after every scale but the finest: the tasks' features are
   concatenated, a non-linear function gives per-task attention (softmax over tasks), the
   attended features are reduced back to one scale's width, and a per-task squeeze-excitation adds
   them to each task's features.
3. Multi-modal distillation at every scale: each task's features plus, for **every other** task, a
   spatial-attention-weighted transform of that task's features (MTI-Net's SABlock): N·(N-1)
   blocks per scale, the quadratic term of MTI-Net's cost.
4. Per task, an HRNet head aggregates the four distilled scales.

Auxiliary tasks (``aux``, e.g. ``--aux normals,edges``) are built as the reference builds its
``AUXILARY_TASKS`` (utils/common_config.py, losses/loss_schemes.py ``MTINetLoss``): they have initial
predictions at every scale (deep supervision), take part in the feature propagation, and are
distillation *sources*; they get no distillation target, no HRNet head, no final output and so no
final-output loss. The final tasks (``model.tasks``) are every task not in ``aux``; they are
auxiliary tasks too, in the reference's sense (initial predictions, propagation, sources).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..errors import UflError
from ..tensors import resize
from .backbone import Backbone
from .heads import HRNetHead, MultiTaskModel, basic_block, prediction_conv

__all__ = ["MTINet", "InitialTaskPrediction", "FeaturePropagation", "SpatialAttention", "MultiModalDistillation"]


class InitialTaskPrediction(nn.Module):
    """One scale's per-task refinement (2 BasicBlocks, ``in_channels`` -> ``channels``) and 1x1 decoder.

    Shapes: shared (B, C_s, H, W) and optionally ``propagated`` {task: (B, C_{s+1}, h, w)} ->
    ({task: features (B, C_s, H, W)}, {task: logits (B, out_t, H, W)} or None).
    """

    def __init__(self, out_channels: Mapping[str, int], in_channels: int, channels: int):
        super().__init__()
        self.refine = nn.ModuleDict({
            t: nn.Sequential(basic_block(in_channels, channels), basic_block(channels, channels)) for t in out_channels
        })
        self.decode = nn.ModuleDict({t: prediction_conv(channels, n) for t, n in out_channels.items()})

    def forward(self, shared: torch.Tensor, propagated: Mapping[str, torch.Tensor] | None = None,
                predict: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        features = {}
        for task, refine in self.refine.items():
            x = shared
            if propagated is not None:
                x = torch.cat([shared, resize(propagated[task], shared.shape[-2:])], dim=1)
            features[task] = refine(x)
        preds = {t: self.decode[t](f) for t, f in features.items()} if predict else None
        return features, preds


class FeaturePropagation(nn.Module):
    """MTI-Net's feature propagation module (FPM) at one scale of ``channels`` C, N tasks.

    non-linear f: BasicBlock (N·C -> N·C/4), BasicBlock (N·C/4), conv1x1 (N·C/4 -> N·C); softmax over
    the N tasks per channel and pixel; the attended concatenation is reduced by a BasicBlock
    (N·C -> C); per task a squeeze-excitation (reduction 16) of it is added to the task's features.

    NOTE: the reference reshapes the task-major concatenation as (B, C, N, H, W) before the softmax,
    so its softmax groups N consecutive channels rather than the N tasks of one channel; we group by
    task as the paper describes. Parameter and FLOP counts are identical.
    """

    def __init__(self, tasks: Sequence[str], channels: int):
        super().__init__()
        self.tasks = list(tasks)
        shared = len(self.tasks) * channels
        hidden = max(shared // 4, 1)
        self.non_linear = nn.Sequential(basic_block(shared, hidden), basic_block(hidden, hidden),
                                        nn.Conv2d(hidden, shared, 1))
        self.reduce = basic_block(shared, channels)
        from torchvision.ops import SqueezeExcitation  # here: importing torchvision costs seconds

        self.se = nn.ModuleDict({t: SqueezeExcitation(channels, max(channels // 16, 1)) for t in self.tasks})

    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        concat = torch.cat([features[t] for t in self.tasks], dim=1)
        b, _, h, w = concat.shape
        grouped = concat.view(b, len(self.tasks), -1, h, w)
        mask = torch.softmax(self.non_linear(concat).view_as(grouped), dim=1)
        shared = self.reduce((mask * grouped).view(b, -1, h, w))
        return {t: self.se[t](shared) + features[t] for t in self.tasks}


class SpatialAttention(nn.Module):
    """MTI-Net's SABlock: conv3x3(x) * sigmoid(conv3x3(x)), both C -> C without bias (18·C² params)."""

    def __init__(self, channels: int):
        super().__init__()
        self.attention = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.Sigmoid())
        self.transform = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x) * self.attention(x)


class MultiModalDistillation(nn.Module):
    """For each target task t: f_t + sum over every other source task a of SpatialAttention_{t<-a}(f_a).

    As the reference's ``MultiTaskDistillationModule`` (models/padnet.py, shared by PAD-Net and
    MTI-Net): targets are the final tasks, sources every task including the auxiliary ones
    (``sources`` defaults to ``tasks``); T targets and S sources cost T·(S-1) blocks when the
    targets are among the sources.
    """

    def __init__(self, tasks: Sequence[str], channels: int, sources: Sequence[str] | None = None):
        super().__init__()
        self.tasks = list(tasks)
        self.sources = list(tasks if sources is None else sources)
        self.attention = nn.ModuleDict({
            t: nn.ModuleDict({a: SpatialAttention(channels) for a in self.sources if a != t}) for t in self.tasks
        })

    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for t in self.tasks:
            x = features[t]
            for a, block in self.attention[t].items():
                x = x + block(features[a])
            out[t] = x
        return out


class MTINet(MultiTaskModel):
    """MTI-Net on any four-level backbone; ``out_channels`` = {task: channels}, ``aux`` the names
    among them that are auxiliary only (see the module docstring).

    ``model(images, out_size=None)`` -> {task: {"out": logits at ``out_size`` (default the images'
    H, W), "initial": [per-scale logits (B, C_t, H_s, W_s), finest first] (training mode only)}}
    for each final task, and in training mode {aux: {"initial": [...]}} for each auxiliary task
    (no ``"out"``: the loss supervises only its initial predictions).
    """

    def __init__(self, backbone: Backbone, out_channels: Mapping[str, int], aux: Sequence[str] = ()):
        super().__init__()
        if not out_channels:
            raise UflError("a model needs at least one task")
        self.backbone = backbone
        tasks = list(out_channels)
        self.aux_tasks = [t for t in tasks if t in set(aux)]
        final = [t for t in tasks if t not in set(aux)]
        c = backbone.channels
        last = len(c) - 1
        self.initial = nn.ModuleList(
            InitialTaskPrediction(out_channels, c[s] + (c[s + 1] if s < last else 0), c[s]) for s in range(len(c))
        )
        # fpm[s - 1] propagates scale s (s >= 1) to scale s - 1.
        self.fpm = nn.ModuleList(FeaturePropagation(tasks, c[s]) for s in range(1, len(c)))
        self.distillation = nn.ModuleList(MultiModalDistillation(final, ch, sources=tasks) for ch in c)
        self.heads = nn.ModuleDict({t: HRNetHead(c, out_channels[t]) for t in final})

    def forward(self, images: torch.Tensor, out_size: Sequence[int] | None = None) -> dict[str, dict[str, Any]]:
        size = tuple(images.shape[-2:]) if out_size is None else out_size
        shared = self.backbone(images)
        scales = len(shared)
        task_features: list[dict[str, torch.Tensor]] = [{} for _ in range(scales)]
        initial: list[dict[str, torch.Tensor] | None] = [None] * scales
        propagated = None
        for s in reversed(range(scales)):  # coarsest scale first
            task_features[s], initial[s] = self.initial[s](shared[s], propagated, predict=self.training)
            if s > 0:
                propagated = self.fpm[s - 1](task_features[s])
        distilled = [distill(f) for distill, f in zip(self.distillation, task_features)]

        out: dict[str, dict[str, Any]] = {}
        for task, head in self.heads.items():
            out[task] = {"out": resize(head([d[task] for d in distilled]), size)}
            if self.training:
                out[task]["initial"] = [initial[s][task] for s in range(scales)]
        if self.training:
            for task in self.aux_tasks:
                out[task] = {"initial": [initial[s][task] for s in range(scales)]}
        return out
