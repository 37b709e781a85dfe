"""Medusa: a shared multi-scale backbone and one independent attention head per task.

Each :class:`MedusaHead` holds, for its task only: one :class:`SharedFeatureAttention` block per
scale, one initial predictor per scale (deep supervision, training only) and one
:class:`MultiScaleAttentionHead`. Heads never look at each other, so a head can be trained on
cached features, saved on its own, added or removed without touching the other tasks, and the cost
of the model grows linearly with the number of tasks.

Source: Spencer, Bowden, Hadfield, "Medusa: Universal Feature Learning via Attentional
Multitasking", CVPR Workshops 2022. Layer sizes are ours (the poster leaves them open); see
:mod:`ufl.models.attention`.

Ablations of the mechanism (issue 12), each a model of its own in ``ufl.models.MODELS`` and a
``MedusaHead`` option, all defaulting to the full head:

* ``medusa-no-sfa`` (``sfa=False``): no shared feature attention; the mask is fixed to 1 and the
  refinement block goes with it, so the head has **no** SFA parameters: the backbone's features go
  straight to the initial predictors and the MSA head (-567k parameters per head on HRNet-18).
* ``medusa-no-msa`` (``msa=False``): the multi-scale attention head is replaced by an
  :class:`~ufl.models.heads.HRNetHead` (the MT baseline's head) on the attended features.
* ``medusa-no-ip`` (``initial=False``): no per-scale initial predictors, hence no deep supervision;
  the output never holds ``"initial"`` and the loss has only its final-output term.
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
from ..tensors import resize
from .attention import MultiScaleAttentionHead, SharedFeatureAttention
from .backbone import Backbone
from .heads import HRNetHead, MultiTaskModel, prediction_conv

__all__ = ["MedusaHead", "Medusa", "build_head"]

HEAD_FORMAT = "ufl.medusa_head/1"


class MedusaHead(nn.Module):
    """One task's head: per-scale shared feature attention, initial predictions, MSA head.

    Args:
        in_channels: channels of the backbone's scales, finest first (``Backbone.channels``).
        out_channels: the task's output channels (classes, 1 for depth, 3 for normals, ...).
        width: channels D of the MSA head's common width (default 64).
        attention_reduction: bottleneck ratio r of the SFA masks (default 4).
        sfa: with the per-scale :class:`SharedFeatureAttention` blocks (default). ``False``
            (ablation ``medusa-no-sfa``): no SFA module at all, the features are used as they are.
        msa: with the :class:`MultiScaleAttentionHead` (default). ``False`` (``medusa-no-msa``):
            an :class:`~ufl.models.heads.HRNetHead` (attribute ``hrnet``) predicts instead.
        initial: with the per-scale initial predictors (default). ``False`` (``medusa-no-ip``):
            none, and the output never holds ``"initial"`` (no deep supervision).

    The initial predictor of scale s is a 1x1 conv (C_s -> out) on the SFA output, as MTI-Net's
    per-scale decoders; it only feeds the deep-supervision loss and is skipped at inference.

    ``forward(features, out_size=None, return_initial=None, return_attention=False)`` takes the
    backbone's list of (B, C_s, H_s, W_s) and returns a dict:

    * ``"out"``: logits (B, out, H_0, W_0) at the finest scale (stride 4), or resized (bilinear) to
      ``out_size`` = (H, W);
    * ``"initial"``: list of per-scale logits (B, out, H_s, W_s), finest first; present in training
      mode, or when ``return_initial=True`` (``False`` never); never for a head built with
      ``initial=False``;
    * ``"attention"`` (only with ``return_attention=True``): ``{"sfa": [(B, C_s, H_s, W_s) masks],
      "msa": (B, S, H_0, W_0) scale weights}``, each key only where the head has that module.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, width: int = 64,
                 attention_reduction: int = 4, sfa: bool = True, msa: bool = True, initial: bool = True):
        super().__init__()
        for flag, value in (("sfa", sfa), ("msa", msa), ("initial", initial)):
            if not isinstance(value, bool):
                raise UflError(f"Medusa head option {flag} must be true or false, got {value!r}")
        self.use_sfa, self.use_msa, self.use_initial = sfa, msa, initial
        self.in_channels = [int(c) for c in in_channels]
        self.out_channels = int(out_channels)
        self.width = int(width)
        self.attention_reduction = int(attention_reduction)
        if not self.in_channels or min(self.in_channels) < 1 or self.out_channels < 1 or self.width < 1:
            raise UflError(f"invalid Medusa head sizes: in_channels={self.in_channels}, "
                           f"out_channels={self.out_channels}, width={self.width}")
        # an ablated part is absent (no module, no parameters, no state-dict keys), not bypassed
        if sfa:
            self.sfa = nn.ModuleList(SharedFeatureAttention(c, self.attention_reduction) for c in self.in_channels)
        if initial:
            self.initial = nn.ModuleList(prediction_conv(c, self.out_channels) for c in self.in_channels)
        if msa:
            self.msa = MultiScaleAttentionHead(self.in_channels, self.out_channels, self.width)
        else:
            self.hrnet = HRNetHead(self.in_channels, self.out_channels)

    def forward(self, features: Sequence[torch.Tensor], out_size: Sequence[int] | None = None,
                return_initial: bool | None = None, return_attention: bool = False) -> dict[str, Any]:
        self._check(features)
        attention: dict[str, Any] = {}
        if self.use_sfa:
            attended, masks = zip(*(sfa(f) for sfa, f in zip(self.sfa, features)))
            attention["sfa"] = list(masks)
        else:
            attended = tuple(features)
        if self.use_msa:
            out, attention["msa"] = self.msa(attended)
        else:
            out = self.hrnet(attended)
        result: dict[str, Any] = {"out": resize(out, out_size) if out_size is not None else out}
        if self.use_initial and (self.training if return_initial is None else return_initial):
            result["initial"] = [pred(f) for pred, f in zip(self.initial, attended)]
        if return_attention:
            result["attention"] = attention
        return result

    def _check(self, features: Sequence[torch.Tensor]) -> None:
        got = [int(f.shape[1]) for f in features]
        if got != self.in_channels:
            raise ValueError(f"Medusa head expects features with channels {self.in_channels}, got {got} "
                             f"(features from another backbone?)")

    # -- persistence ------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments (a head file saved before the ablation options existed has
        no ``sfa``/``msa``/``initial`` keys and loads as the full head, their default)."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "width": self.width,
                "attention_reduction": self.attention_reduction, "sfa": self.use_sfa, "msa": self.use_msa,
                "initial": self.use_initial}

    @property
    def ablated(self) -> list[str]:
        """The parts of the full head this one lacks (``[]``, or some of ``"sfa"``, ``"msa"``, ``"initial"``)."""
        return [part for part, used in (("sfa", self.use_sfa), ("msa", self.use_msa), ("initial", self.use_initial))
                if not used]

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
    """A Medusa head for a backbone with ``in_channels`` (options: ``width``, ``attention_reduction``,
    and the ablations' ``sfa``, ``msa``, ``initial``)."""
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
        return cls._build(backbone, out_channels, width=width, attention_reduction=attention_reduction)

    @classmethod
    def _build(cls, backbone: Backbone, out_channels: Mapping[str, int], **head_options: Any) -> "Medusa":
        return cls(backbone, {task: MedusaHead(backbone.channels, n, **head_options)
                              for task, n in out_channels.items()})

    # The ablations' factories (``ufl.models.MODELS``). Each takes only the options its head still
    # uses (``build_model`` reads them from the signature): no ``attention_reduction`` without SFA,
    # no ``width`` without the MSA head.
    @classmethod
    def build_no_sfa(cls, backbone: Backbone, out_channels: Mapping[str, int], width: int = 64) -> "Medusa":
        """``medusa-no-sfa``: heads without shared feature attention (``MedusaHead(sfa=False)``)."""
        return cls._build(backbone, out_channels, width=width, sfa=False)

    @classmethod
    def build_no_msa(cls, backbone: Backbone, out_channels: Mapping[str, int],
                     attention_reduction: int = 4) -> "Medusa":
        """``medusa-no-msa``: heads with an HRNet head instead of the MSA head (``MedusaHead(msa=False)``)."""
        return cls._build(backbone, out_channels, attention_reduction=attention_reduction, msa=False)

    @classmethod
    def build_no_ip(cls, backbone: Backbone, out_channels: Mapping[str, int], width: int = 64,
                    attention_reduction: int = 4) -> "Medusa":
        """``medusa-no-ip``: heads without initial predictions, so no deep supervision
        (``MedusaHead(initial=False)``)."""
        return cls._build(backbone, out_channels, width=width, attention_reduction=attention_reduction,
                          initial=False)

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
