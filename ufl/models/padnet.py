"""PAD-Net (Xu, Ouyang, Wang, Sebe, CVPR 2018: "PAD-Net: Multi-Tasks Guided Prediction-and-Distillation
Network for Simultaneous Depth Estimation and Scene Parsing", https://arxiv.org/abs/1805.04409), in
ufl's model contract, built on a multi-scale backbone as MTI-Net's reference code builds it on HRNet
(SimonVandenhende/Multi-Task-Learning-PyTorch: models/padnet.py, ``get_backbone`` with
``fuse_hrnet: True`` in utils/common_config.py, configs/nyud/hrnet18/pad_net*.yml):

1. Fuse: the backbone's scales upsampled (bilinear) to the finest one (stride 4) and concatenated
   (sum C_s channels; 270 on HRNet-18), then conv1x1 (with bias) - BN - ReLU, HRNet's
   ``HighResolutionFuse`` (models/seg_hrnet.py).
2. Initial predictions of **every** task (final and auxiliary): per task two Bottlenecks
   (sum C_s -> ``channels`` -> ``channels``, 1x1 conv-BN shortcut on the first) and a 1x1 conv
   decoder (deep supervision, training only).
3. Multi-modal distillation at that one scale: each final task's features plus, for every other
   task (auxiliary ones included), MTI-Net's spatial-attention block (``SABlock``) applied to that
   task's features (:class:`~ufl.models.mtinet.MultiModalDistillation`).
4. Per final task a head of two Bottlenecks (``channels``) and a 1x1 conv, at stride 4, upsampled
   to the output size.

NOTE: the poster's table labels PAD-Net's head "HRHead"; the reference code (which produced the
numbers that table quotes from MTI-Net's paper) predicts from HRNet's fused features through the
Bottleneck heads above, ignoring its ``head: hrnet`` setting for PAD-Net. We follow the code.

Auxiliary tasks (``aux``) follow the reference's ``AUXILARY_TASKS`` and ``PADNetLoss``
(losses/loss_schemes.py): an initial prediction (supervised) and a distillation source, no final
head and no final-output loss.

Parameters beyond the backbone (F = sum C_s, c = ``channels``, p = c / 4, T final and A
auxiliary tasks, o_t output channels): fuse F² + 3F; per task (T + A) the two Bottlenecks
(F·p + 13p² + 2(2p + c) + F·c + 2c) + (c·p + 13p² + 2(2p + c)) and its decoder c·o_t + o_t;
distillation T·(T + A - 1)·18c²; per final task a head 2·(c·p + 13p² + 2(2p + c)) + c·o_t + o_t.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..errors import UflError
from ..tensors import resize
from .backbone import Backbone
from .heads import MultiTaskModel, bottleneck, prediction_conv
from .mtinet import MultiModalDistillation

__all__ = ["PADNet"]


class PADNet(MultiTaskModel):
    """PAD-Net on any multi-scale backbone; ``out_channels`` = {task: channels}, ``aux`` the names
    among them that are auxiliary only, ``channels`` the width of the task features (the
    reference's 256; a multiple of 4).

    ``model(images, out_size=None)`` -> {task: {"out": logits (B, o_t, H, W) at ``out_size``
    (default the images' H, W), "initial": [logits (B, o_t, H_0, W_0) at stride 4] (training mode
    only)}} for each final task, and in training mode {aux: {"initial": [...]}} for each auxiliary
    task.
    """

    def __init__(self, backbone: Backbone, out_channels: Mapping[str, int], aux: Sequence[str] = (),
                 channels: int = 256):
        super().__init__()
        if not out_channels:
            raise UflError("a model needs at least one task")
        if channels < 4 or channels % 4:
            raise UflError(f"pad-net: channels must be a positive multiple of 4, got {channels}")
        self.backbone = backbone
        self.channels = int(channels)
        tasks = list(out_channels)
        self.aux_tasks = [t for t in tasks if t in set(aux)]
        final = [t for t in tasks if t not in set(aux)]
        fused = int(sum(backbone.channels))
        self.fuse = nn.Sequential(nn.Conv2d(fused, fused, 1), nn.BatchNorm2d(fused), nn.ReLU(inplace=True))
        self.initial = nn.ModuleDict({t: nn.Sequential(bottleneck(fused, channels), bottleneck(channels, channels))
                                      for t in tasks})
        self.decode = nn.ModuleDict({t: prediction_conv(channels, n) for t, n in out_channels.items()})
        self.distillation = MultiModalDistillation(final, channels, sources=tasks)
        self.heads = nn.ModuleDict({
            t: nn.Sequential(bottleneck(channels, channels), bottleneck(channels, channels),
                             prediction_conv(channels, out_channels[t]))
            for t in final
        })

    def forward(self, images: torch.Tensor, out_size: Sequence[int] | None = None) -> dict[str, dict[str, Any]]:
        size = tuple(images.shape[-2:]) if out_size is None else out_size
        shared = self.backbone(images)
        finest = shared[0].shape[-2:]
        x = self.fuse(torch.cat([resize(f, finest) for f in shared], dim=1))
        features = {t: refine(x) for t, refine in self.initial.items()}
        distilled = self.distillation(features)
        out: dict[str, dict[str, Any]] = {}
        for task, head in self.heads.items():
            out[task] = {"out": resize(head(distilled[task]), size)}
            if self.training:
                out[task]["initial"] = [self.decode[task](features[task])]
        if self.training:
            for task in self.aux_tasks:
                out[task] = {"initial": [self.decode[task](features[task])]}
        return out
