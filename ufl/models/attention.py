"""Medusa's two attention modules (Spencer, Bowden, Hadfield, CVPRW 2022).

* :class:`SharedFeatureAttention` (SFA): one per task **and** per scale. A learned attention mask
  over the *shared* backbone features of that scale selects what the task uses, and a small
  task-specific residual block refines the selection. The backbone itself stays generic.
* :class:`MultiScaleAttentionHead` (MSA): one per task. The per-scale task features are brought to
  the finest scale (stride 4), a per-pixel softmax over the scales decides which scale to trust
  where, and a small conv head predicts the task from the weighted sum.

The poster leaves the layer sizes open; the choices are documented on each class. With the
defaults a head on HRNet-18 (18/36/72/144 channels) costs 640.3k parameters plus 339 per output
channel (567k SFA, 74k MSA, the rest the per-scale initial predictors), so a 4-task NYUD Medusa
(3.86M backbone + 4 heads) has 6.44M parameters, against 17.96M for a 4-task MTI-Net on the same
backbone (14.8M in MTI-Net's own "+N,E" setting, where normals and edges are auxiliary only).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..tensors import resize
from .heads import basic_block, conv_bn_relu, prediction_conv

__all__ = ["SharedFeatureAttention", "MultiScaleAttentionHead"]


class SharedFeatureAttention(nn.Module):
    """Task-specific attention over one scale's shared features, then refinement.

    Layers (C = the scale's channels, r = ``reduction``, hidden = max(C // r, 8)):

    * mask: conv3x3 (C -> hidden, no bias) - BN - ReLU - conv1x1 (hidden -> C) - sigmoid. The mask
      is per pixel **and** per channel (B, C, H, W), in the spirit of MTAN's attention modules: a
      task can keep a channel in one region and drop it in another. The 3x3 conv gives the mask a
      little spatial context; the bottleneck (r = 4) keeps it cheap: 2.5·C² parameters.
    * refinement: one residual BasicBlock (C -> C), the task's own processing of what it selected
      (MTI-Net refines with two such blocks per scale; one keeps Medusa small): 18·C² parameters.

    The output keeps the scale's width C, so the initial prediction and the MSA head read it
    directly. Shapes: (B, C, H, W) -> features (B, C, H, W), mask (B, C, H, W) in (0, 1).
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.mask = nn.Sequential(
            conv_bn_relu(channels, hidden, kernel_size=3),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )
        self.refine = basic_block(channels, channels)

    def forward(self, shared: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.mask(shared)
        return self.refine(shared * mask), mask


class MultiScaleAttentionHead(nn.Module):
    """Combine a task's per-scale features with learned spatial attention over scales, predict.

    Layers (S scales of C_s channels, D = ``width``):

    * projection, per scale: conv1x1 (C_s -> D) - BN - ReLU, applied at the scale's own resolution
      and then upsampled (bilinear) to the finest scale (stride 4): the 1x1 conv is cheaper before
      the upsampling, and a common width D is what lets the scales be summed.
    * scale attention: conv1x1 (S·D -> D) - BN - ReLU - conv3x3 (D -> S), softmax over S: per
      pixel, how much to trust each scale (fine scales for edges and thin structures, coarse ones
      for large regions). It sees all scales at once, so the choice is made jointly.
    * predictor: conv3x3 (D -> D) - BN - ReLU - conv1x1 (D -> out) on sum_s w_s · f_s.

    D = 64 by default: about 17k (projection) + 18.7k (attention) + 37k (predictor) parameters on
    HRNet-18, plus 65 per output channel.

    Shapes: list of (B, C_s, H_s, W_s), finest first -> logits (B, out, H_0, W_0) and weights
    (B, S, H_0, W_0) summing to 1 over S.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, width: int = 64):
        super().__init__()
        scales = len(in_channels)
        self.project = nn.ModuleList(conv_bn_relu(c, width, kernel_size=1) for c in in_channels)
        self.scale_attention = nn.Sequential(
            conv_bn_relu(scales * width, width, kernel_size=1),
            nn.Conv2d(width, scales, 3, padding=1),
        )
        self.predict = nn.Sequential(conv_bn_relu(width, width, kernel_size=3), prediction_conv(width, out_channels))

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        size = features[0].shape[-2:]
        projected = [resize(proj(f), size) for proj, f in zip(self.project, features)]
        weights = torch.softmax(self.scale_attention(torch.cat(projected, dim=1)), dim=1)
        stacked = torch.stack(projected, dim=1)  # (B, S, D, H, W)
        combined = (weights.unsqueeze(2) * stacked).sum(dim=1)
        return self.predict(combined), weights
