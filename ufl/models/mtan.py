"""MTAN (Liu, Johns, Davison, CVPR 2019: "End-to-End Multi-Task Learning with Attention",
https://arxiv.org/abs/1803.10704) on ufl's shared multi-scale backbone, with the poster's
DeepLab-v3+ decoder per task, in ufl's model contract.

Sources: lorenmt/mtan im2im_pred/model_resnet_mtan/resnet_mtan.py (``MTANDeepLabv3``: ``att_layer``,
the shared ``encoder_block_att`` Bottlenecks, ``down_sampling``) and
SimonVandenhende/Multi-Task-Learning-PyTorch models/mtan.py (``AttentionLayer``,
``RefinementBlock``). Per task t and scale s (C_s channels, finest first):

* mask: ``att_layer`` = conv1x1 (in -> C_s // 4) - BN - ReLU - conv1x1 (C_s // 4 -> C_s) - BN -
  sigmoid, with in = C_0 at the finest scale and 2·C_s below it, where the shared features are
  concatenated with the task's attended features of the finer scale passed on by the encoder;
* attended features a_{t,s} = mask_{t,s} ⊙ f_s: the mask multiplies the **shared** features, the
  backbone itself stays one network for all tasks;
* encoder (shared by the tasks, one per scale but the coarsest): a Bottleneck C_s -> C_{s+1}
  (1x1 conv-BN shortcut) on a_{t,s}, then a 2x2 max-pool to scale s + 1 (adaptive, so any stride
  ratio fits).

NOTE: MTAN computes each mask from the features *before* a stage's last block and applies it to
that block's output; ufl's :class:`~ufl.models.backbone.Backbone` exposes only the four scales'
outputs (HRNet's last module fuses every branch), so the mask is computed from, and applied to, the
same scale output.

Decoder per task (DeepLab-v3+, Chen et al., ECCV 2018, https://arxiv.org/abs/1802.02611; the
structure of ``refine_by_decoder`` in tensorflow/models research/deeplab/model.py):
torchvision's ASPP (``torchvision.models.segmentation.deeplabv3.ASPP``: a 1x1 branch, three
atrous 3x3 branches, image pooling, 1x1 projection with dropout 0.5, all ``width`` wide) on the
task's attended coarsest features a_{t,3} (stride 32 on HRNet), upsampled (bilinear) to stride 4
and concatenated with the low-level skip, conv1x1 (C_0 -> ``low_width``) - BN - ReLU of a_{t,0};
then two conv3x3 (``width``) - BN - ReLU and a 1x1 conv to the task's outputs.

NOTE: the reference's DeepLab heads use atrous rates (12, 24, 36) on a dilated ResNet at output
stride 8; on HRNet's stride-32 features we use (3, 6, 9), the same field of view in pixels.
NOTE: the ASPP's image-pooling branch normalises one value per image and channel; a training
batch of one image would make BatchNorm fail there, so that one BatchNorm uses its running
statistics for batches of one (any other batch size trains as torchvision's).

MTAN has no deep supervision and no interaction between task heads: auxiliary tasks (``--aux``)
are ordinary tasks with their own masks and decoder, evaluated like the others.

Parameters beyond the backbone, per task (o outputs, w = ``width``, l = ``low_width``, r atrous
rates, h_s = C_s // 4, in_s = C_0 or 2·C_s): masks sum_s (in_s·h_s + 3h_s + h_s·C_s + 3C_s); ASPP
C_3·w (1x1) + 9r·C_3·w (atrous) + C_3·w (pooling) + (r + 2)·w² (projection) + 2w·(r + 3)
(BatchNorms); skip C_0·l + 2l; fuse 9(w + l)·w + 9w² + 4w; classifier w·o + o. Shared by the
tasks: one encoder Bottleneck per pair of neighbouring scales (:func:`~ufl.models.heads.bottleneck`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UflError
from ..tensors import resize
from .backbone import Backbone
from .heads import MultiTaskModel, bottleneck, conv_bn_relu, prediction_conv

__all__ = ["MTAN", "DeepLabV3PlusDecoder", "attention_layer"]


def attention_layer(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """MTAN's ``att_layer``: conv1x1 - BN - ReLU - conv1x1 - BN - sigmoid (convs with bias)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, out_channels, 1), nn.BatchNorm2d(out_channels), nn.Sigmoid(),
    )


def _pool_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """MTAN's 2x2 max-pool down to the next scale (adaptive max-pooling when the sides do not halve)."""
    if (x.shape[-2] // 2, x.shape[-1] // 2) == tuple(size) and x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0:
        return F.max_pool2d(x, 2)
    return F.adaptive_max_pool2d(x, tuple(size))


class _PooledBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d that uses its running statistics when training on a single value per channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class DeepLabV3PlusDecoder(nn.Module):
    """DeepLab-v3+ decoder: ASPP on deep features + a projected low-level skip (see the module docstring).

    Shapes: deep (B, C_deep, h, w), low (B, C_low, H, W) -> logits (B, out_channels, H, W).
    """

    def __init__(self, deep_channels: int, low_channels: int, out_channels: int, width: int = 256,
                 low_width: int = 48, atrous_rates: Sequence[int] = (3, 6, 9)):
        super().__init__()
        from torchvision.models.segmentation.deeplabv3 import ASPP  # here: importing torchvision costs seconds

        self.aspp = ASPP(deep_channels, list(atrous_rates), width)
        pooling = self.aspp.convs[-1]
        pooled_bn = _PooledBatchNorm(width)
        pooled_bn.load_state_dict(pooling[2].state_dict())
        pooling[2] = pooled_bn
        self.low = conv_bn_relu(low_channels, low_width, kernel_size=1)
        self.fuse = nn.Sequential(conv_bn_relu(width + low_width, width, 3), conv_bn_relu(width, width, 3))
        self.classifier = prediction_conv(width, out_channels)

    def forward(self, deep: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        x = resize(self.aspp(deep), low.shape[-2:])
        return self.classifier(self.fuse(torch.cat([x, self.low(low)], dim=1)))


class MTAN(MultiTaskModel):
    """MTAN's task attention over the shared backbone's scales, one DeepLab-v3+ decoder per task.

    Args:
        backbone: the shared multi-scale backbone (``model.backbone``; the part ``ufl init
            --checkpoint`` freezes).
        out_channels: {task: output channels}.
        width: ASPP and decoder width (DeepLab's 256).
        low_width: channels of the projected low-level skip (DeepLab's 48).
        atrous_rates: the ASPP's atrous rates.

    Every scale after the finest must have a multiple of 4 channels (MTAN's Bottleneck encoders).

    ``model(images, out_size=None, return_attention=False)`` -> {task: {"out": logits at
    ``out_size`` (default the images' H, W)}} (no initial predictions), plus ``"attention"``: the
    per-scale masks [(B, C_s, H_s, W_s)] with ``return_attention=True``.
    """

    def __init__(self, backbone: Backbone, out_channels: Mapping[str, int], width: int = 256,
                 low_width: int = 48, atrous_rates: Sequence[int] = (3, 6, 9)):
        super().__init__()
        if not out_channels:
            raise UflError("a model needs at least one task")
        c = [int(ch) for ch in backbone.channels]
        odd = [ch for ch in c[1:] if ch % 4]
        if odd:
            raise UflError(f"mtan needs backbone scales (after the finest) with a multiple of 4 channels, got {c}")
        if width < 1 or low_width < 1 or not atrous_rates or min(atrous_rates) < 1:
            raise UflError(f"mtan: invalid decoder sizes width={width}, low_width={low_width}, "
                           f"atrous_rates={list(atrous_rates)}")
        self.backbone = backbone
        self.attention = nn.ModuleDict({
            t: nn.ModuleList(attention_layer(ch if s == 0 else 2 * ch, max(ch // 4, 1), ch) for s, ch in enumerate(c))
            for t in out_channels
        })
        self.encoders = nn.ModuleList(bottleneck(c[s], c[s + 1]) for s in range(len(c) - 1))
        self.heads = nn.ModuleDict({
            t: DeepLabV3PlusDecoder(c[-1], c[0], n, width, low_width, atrous_rates) for t, n in out_channels.items()
        })

    def forward(self, images: torch.Tensor, out_size: Sequence[int] | None = None,
                return_attention: bool = False) -> dict[str, dict[str, Any]]:
        size = tuple(images.shape[-2:]) if out_size is None else out_size
        shared = self.backbone(images)
        out: dict[str, dict[str, Any]] = {}
        for task, layers in self.attention.items():
            attended, masks = [], []
            passed = None
            for s, (att, f) in enumerate(zip(layers, shared)):
                mask = att(f if passed is None else torch.cat([f, passed], dim=1))
                attended.append(mask * f)
                masks.append(mask)
                if s + 1 < len(shared):
                    passed = _pool_to(self.encoders[s](attended[-1]), shared[s + 1].shape[-2:])
            out[task] = {"out": resize(self.heads[task](attended[-1], attended[0]), size)}
            if return_attention:
                out[task]["attention"] = masks
        return out
