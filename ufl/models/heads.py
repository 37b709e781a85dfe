"""Small shared blocks and the HRNet-style head of the baselines.

The blocks are torchvision's ``BasicBlock`` and ``Conv2dNormActivation``, so that the architectures
read like their papers: MTI-Net's reference code builds everything from ResNet BasicBlocks with a
1x1 conv-BN shortcut when the width changes, and from conv-BN-ReLU units.

NOTE: both are re-declared here (same submodule names, so the same state-dict keys; same creation
order, so the same initial weights for a seed; same forward): importing torchvision costs seconds
(``torchvision.ops`` pulls ``torch._dynamo``), and loading a head for ``ufl evaluate`` or
``predict`` should not pay for it. ``tests/test_speed.py`` checks them against torchvision's.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..tensors import resize

__all__ = ["BasicBlock", "Conv2dNormActivation", "basic_block", "bottleneck", "conv_bn_relu", "prediction_conv",
           "init_prediction_bias", "HRNetHead"]


class BasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock`` at stride 1: conv3x3-BN-ReLU-conv3x3-BN, plus the input
    (through ``downsample`` when given), ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Conv2dNormActivation(nn.Sequential):
    """torchvision's ``Conv2dNormActivation`` with its defaults: Conv2d (no bias, ``'same'``
    padding for an odd kernel) - BatchNorm2d - ReLU, as ``Sequential`` entries 0, 1, 2."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
        self.out_channels = out_channels


def basic_block(in_channels: int, out_channels: int) -> BasicBlock:
    """ResNet BasicBlock (conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU), stride 1.

    When the width changes the shortcut is a 1x1 conv + BN, as in MTI-Net's
    ``InitialTaskPredictionModule`` and ``FPM``.
    Params: 9·in·out + 9·out² (+ in·out for the shortcut) + BatchNorms.
    """
    downsample = None
    if in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                   nn.BatchNorm2d(out_channels))
    return BasicBlock(in_channels, out_channels, downsample=downsample)


def bottleneck(in_channels: int, out_channels: int) -> Bottleneck:
    """ResNet Bottleneck (conv1x1-BN-ReLU, conv3x3-BN-ReLU, conv1x1-BN + shortcut, ReLU), stride 1,
    ``out_channels // 4`` inner width (``out_channels`` must be a multiple of 4).

    When the width changes the shortcut is a 1x1 conv + BN, as in PAD-Net's
    ``InitialTaskPredictionModule`` and MTAN's ``RefinementBlock`` in MTI-Net's reference code.
    Params (p = out/4): in·p + 9·p² + 4·p² + 2·(p + p + out) (+ in·out + 2·out for the shortcut).
    """
    from torchvision.models.resnet import Bottleneck  # here: only the PAD-Net / MTAN baselines need it

    if out_channels % Bottleneck.expansion:
        raise ValueError(f"a Bottleneck's width must be a multiple of {Bottleneck.expansion}, got {out_channels}")
    downsample = None
    if in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                   nn.BatchNorm2d(out_channels))
    return Bottleneck(in_channels, out_channels // Bottleneck.expansion, downsample=downsample)


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> Conv2dNormActivation:
    """Conv (no bias, 'same' padding) - BatchNorm - ReLU."""
    return Conv2dNormActivation(in_channels, out_channels, kernel_size=kernel_size)


def prediction_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    """The 1x1 conv that outputs a task's prediction (tagged, so its bias can start at the prior)."""
    conv = nn.Conv2d(in_channels, out_channels, 1)
    conv.predicts_task = True
    return conv


def init_prediction_bias(model: nn.Module, task: str, value: float) -> int:
    """Set the bias of every prediction conv of ``task`` in ``model`` to ``value``; return their count.

    A task's prediction convs are the :func:`prediction_conv` layers under a submodule keyed by the
    task's name (``heads.depth...``, ``initial.0.decode.depth``), or all of them when ``model`` is a
    single head. Used to start regression outputs at the training mean (e.g. depth in metres): with
    Adam's bounded steps a 64-wide head otherwise needs many steps just to reach the target scale,
    the same reasoning as RetinaNet's prior-probability bias initialisation.
    """
    count = 0
    for name, module in model.named_modules():
        if getattr(module, "predicts_task", False) and (task in name.split(".") or not hasattr(model, "tasks")):
            with torch.no_grad():
                module.bias.fill_(value)
            count += 1
    return count


class MultiTaskModel(nn.Module):
    """A shared backbone with one head per task in ``self.heads`` (every model of ``build_model``).

    ``tasks`` are the tasks with a final output; ``aux_tasks`` those built as auxiliary only (no
    final output; only PAD-Net and MTI-Net have any).
    """

    heads: nn.ModuleDict
    aux_tasks: Sequence[str] = ()

    @classmethod
    def build(cls, backbone, out_channels: Mapping[str, int], **options: Any) -> "MultiTaskModel":
        """The model for ``out_channels`` ({task: channels}) on ``backbone``."""
        return cls(backbone, out_channels, **options)

    @property
    def tasks(self) -> list[str]:
        return list(self.heads)


class HRNetHead(nn.Module):
    """HRNet's segmentation head, as MTI-Net's ``HighResolutionHead`` (models/seg_hrnet.py).

    All scales are upsampled (bilinear) to the finest one, concatenated (sum(C_i) channels),
    then 1x1 conv (sum -> sum) - BN - ReLU - 1x1 conv (sum -> out). For HRNet-18 that is
    270 -> 270 -> out: 73.4k + 270·(out + 1) parameters.

    Shapes: list of (B, C_i, H_i, W_i), finest first -> (B, out_channels, H_0, W_0).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int):
        super().__init__()
        total = int(sum(in_channels))
        self.in_channels = [int(c) for c in in_channels]
        self.out_channels = int(out_channels)
        # NOTE: the reference's first 1x1 conv keeps its bias although BN follows; kept for
        # parameter-count parity with MTI-Net's tables.
        self.fuse = nn.Sequential(nn.Conv2d(total, total, 1), nn.BatchNorm2d(total), nn.ReLU(inplace=True))
        self.classifier = prediction_conv(total, out_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        x = torch.cat([resize(f, size) for f in features], dim=1)
        return self.classifier(self.fuse(x))
