"""Medusa: a shared multi-scale backbone and one independent attention head per task.

Each :class:`MedusaHead` holds, for its task only: one :class:`SharedFeatureAttention` block per
scale, one initial predictor per scale (deep supervision, training only) and one
:class:`MultiScaleAttentionHead`. Heads never look at each other, so a head can be trained on
cached features, saved on its own, added or removed without touching the other tasks, and the cost
of the model grows linearly with the number of tasks.

Source: Spencer, Bowden, Hadfield, "Medusa: Universal Feature Learning via Attentional
Multitasking", CVPR Workshops 2022. Layer sizes are ours (the poster leaves them open); see
:mod:`ufl.models.attention`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors import safe_open
from torch import nn

from ..errors import UflError
from ..io import load_weights, save_weights
from .attention import MultiScaleAttentionHead, SharedFeatureAttention
from .backbone import Backbone
from .heads import MultiTaskModel, prediction_conv, resize

__all__ = ["MedusaHead", "Medusa", "build_head"]

HEAD_FORMAT = "ufl.medusa_head/1"


class MedusaHead(nn.Module):
    """One task's head: per-scale shared feature attention, initial predictions, MSA head.

    Args:
        in_channels: channels of the backbone's scales, finest first (``Backbone.channels``).
        out_channels: the task's output channels (classes, 1 for depth, 3 for normals, ...).
        width: channels D of the MSA head's common width (default 64).
        attention_reduction: bottleneck ratio r of the SFA masks (default 4).

    The initial predictor of scale s is a 1x1 conv (C_s -> out) on the SFA output, as MTI-Net's
    per-scale decoders; it only feeds the deep-supervision loss and is skipped at inference.

    ``forward(features, out_size=None, return_initial=None, return_attention=False)`` takes the
    backbone's list of (B, C_s, H_s, W_s) and returns a dict:

    * ``"out"``: logits (B, out, H_0, W_0) at the finest scale (stride 4), or resized (bilinear) to
      ``out_size`` = (H, W);
    * ``"initial"``: list of per-scale logits (B, out, H_s, W_s), finest first; present in training
      mode, or when ``return_initial=True`` (``False`` never);
    * ``"attention"`` (only with ``return_attention=True``): ``{"sfa": [(B, C_s, H_s, W_s) masks],
      "msa": (B, S, H_0, W_0) scale weights}``.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, width: int = 64,
                 attention_reduction: int = 4):
        super().__init__()
        self.in_channels = [int(c) for c in in_channels]
        self.out_channels = int(out_channels)
        self.width = int(width)
        self.attention_reduction = int(attention_reduction)
        if not self.in_channels or min(self.in_channels) < 1 or self.out_channels < 1 or self.width < 1:
            raise UflError(f"invalid Medusa head sizes: in_channels={self.in_channels}, "
                           f"out_channels={self.out_channels}, width={self.width}")
        self.sfa = nn.ModuleList(SharedFeatureAttention(c, self.attention_reduction) for c in self.in_channels)
        self.initial = nn.ModuleList(prediction_conv(c, self.out_channels) for c in self.in_channels)
        self.msa = MultiScaleAttentionHead(self.in_channels, self.out_channels, self.width)

    def forward(self, features: Sequence[torch.Tensor], out_size: Sequence[int] | None = None,
                return_initial: bool | None = None, return_attention: bool = False) -> dict[str, Any]:
        self._check(features)
        attended, masks = zip(*(sfa(f) for sfa, f in zip(self.sfa, features)))
        out, scale_weights = self.msa(attended)
        result: dict[str, Any] = {"out": resize(out, out_size) if out_size is not None else out}
        if self.training if return_initial is None else return_initial:
            result["initial"] = [pred(f) for pred, f in zip(self.initial, attended)]
        if return_attention:
            result["attention"] = {"sfa": list(masks), "msa": scale_weights}
        return result

    def _check(self, features: Sequence[torch.Tensor]) -> None:
        got = [int(f.shape[1]) for f in features]
        if got != self.in_channels:
            raise ValueError(f"Medusa head expects features with channels {self.in_channels}, got {got} "
                             f"(features from another backbone?)")

    # -- persistence ------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "width": self.width,
                "attention_reduction": self.attention_reduction}

    def save(self, path: str | os.PathLike, extra: Mapping[str, str] | None = None) -> None:
        """Save weights and config as one safetensors file (atomic); ``extra`` strings go into the
        metadata too (e.g. the backbone fingerprint)."""
        metadata = {"format": HEAD_FORMAT, "config": json.dumps(self.config())}
        metadata.update({str(k): str(v) for k, v in (extra or {}).items()})
        save_weights(path, self.state_dict(), metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "MedusaHead":
        """Rebuild a head saved by :meth:`save` (config from the file's metadata)."""
        metadata = read_head_metadata(path)
        head = cls(**json.loads(metadata["config"]))
        state = load_weights(path, device=device)
        try:
            head.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise UflError(f"head weights {path} do not match their config ({str(e).splitlines()[0]}); "
                           f"re-save the head") from None
        return head.to(device)


def read_head_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a head file saved by :meth:`MedusaHead.save` (``format``, ``config``, ...)."""
    path = Path(path)
    if not path.is_file():
        raise UflError(f"head weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
    except Exception as e:
        raise UflError(f"head weights file {path} is unreadable ({e}); re-create it") from None
    if metadata.get("format") != HEAD_FORMAT or "config" not in metadata:
        raise UflError(f"{path} is not a Medusa head file (no {HEAD_FORMAT} config in its metadata); "
                       f"save heads with MedusaHead.save")
    return metadata


def build_head(in_channels: Sequence[int], out_channels: int, **options: Any) -> MedusaHead:
    """A Medusa head for a backbone with ``in_channels`` (options: ``width``, ``attention_reduction``)."""
    return MedusaHead(in_channels, out_channels, **options)


class Medusa(MultiTaskModel):
    """Shared backbone + one :class:`MedusaHead` per task.

    ``model(images, out_size=None)`` -> ``{task: head output}`` with ``"out"`` resized to
    ``out_size`` (default: the images' H, W); see :class:`MedusaHead` for the keys.
    """

    def __init__(self, backbone: Backbone, heads: Mapping[str, MedusaHead]):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict()
        for name, head in heads.items():
            self.add_head(name, head)

    @classmethod
    def build(cls, backbone: Backbone, out_channels: Mapping[str, int], width: int = 64,
              attention_reduction: int = 4) -> "Medusa":
        """One fresh head per task of ``out_channels`` ({task: channels})."""
        return cls(backbone, {task: MedusaHead(backbone.channels, n, width, attention_reduction)
                              for task, n in out_channels.items()})

    def add_head(self, task: str, head: MedusaHead) -> None:
        if task in self.heads:
            raise UflError(f"task {task!r} already has a head; remove it first")
        if head.in_channels != self.backbone.channels:
            raise UflError(f"head for {task!r} expects channels {head.in_channels} but backbone "
                           f"{self.backbone.name} gives {self.backbone.channels}")
        self.heads[task] = head

    def remove_head(self, task: str) -> MedusaHead:
        if task not in self.heads:
            raise UflError(f"no head for task {task!r}; tasks: {', '.join(self.heads) or 'none'}")
        head = self.heads[task]
        del self.heads[task]
        return head

    def forward_features(self, features: Sequence[torch.Tensor], out_size: Sequence[int] | None = None,
                         return_attention: bool = False) -> dict[str, dict[str, Any]]:
        """Run every head on precomputed (e.g. cached) backbone features."""
        return {task: head(features, out_size=out_size, return_attention=return_attention)
                for task, head in self.heads.items()}

    def forward(self, images: torch.Tensor, out_size: Sequence[int] | None = None,
                return_attention: bool = False) -> dict[str, dict[str, Any]]:
        size = tuple(images.shape[-2:]) if out_size is None else out_size
        return self.forward_features(self.backbone(images), size, return_attention)
