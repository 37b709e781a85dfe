"""Models: the backbone, Medusa and its baselines, behind one contract and one registry.

Every model is built as ``build_model(name, backbone, out_channels={task: channels}, **options)``
and called as ``model(images, out_size=None)`` with RGB images (B, 3, H, W) in [0, 1]; it returns
``{task: {"out": logits (B, C_t, H, W) at out_size (default the images' H, W), "initial": [per-scale
logits] (training mode only, models with deep supervision)}}``. Each model exposes
``model.backbone`` (a :class:`Backbone`) and ``model.tasks``.

================  ==========================================  =======================
name              model                                       options
================  ==========================================  =======================
``medusa``        :class:`Medusa` (one MedusaHead per task)   width, attention_reduction
``mt-baseline``   :class:`MultiTaskBaseline`                  -
``single-task``   :class:`SingleTaskModel` (one task)         -
``mti-net``       :class:`MTINet`                             -
================  ==========================================  =======================
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from torch import nn

from ..errors import UflError
from ..registry import Registry
from .attention import MultiScaleAttentionHead, SharedFeatureAttention
from .backbone import DEFAULT_BACKBONE, Backbone
from .baselines import MultiTaskBaseline, SingleTaskModel
from .heads import HRNetHead, init_prediction_bias
from .medusa import Medusa, MedusaHead, build_head, read_head_metadata
from .mtinet import MTINet

__all__ = [
    "Backbone", "DEFAULT_BACKBONE", "Medusa", "MedusaHead", "SharedFeatureAttention", "MultiScaleAttentionHead",
    "HRNetHead", "MultiTaskBaseline", "SingleTaskModel", "MTINet", "MODELS", "build_model", "build_head",
    "read_head_metadata", "init_prediction_bias",
]

#: Model factories by name: ``factory(backbone, out_channels, **options) -> nn.Module``.
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
MODELS.register("medusa", Medusa.build)
MODELS.register("mt-baseline", MultiTaskBaseline.build)
MODELS.register("single-task", SingleTaskModel.build)
MODELS.register("mti-net", MTINet.build)


def build_model(name: str, backbone: Backbone, out_channels: Mapping[str, int], **options: Any) -> nn.Module:
    """Build the model registered as ``name`` on ``backbone`` with one output per task.

    An unknown name or option is a :class:`~ufl.errors.UflError` that lists what is accepted.
    """
    factory = MODELS.get(name)
    accepted = [p for p in inspect.signature(factory).parameters if p not in ("backbone", "out_channels")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UflError(f"model {name!r} takes no option(s) {unknown}; accepted: {accepted or 'none'}")
    bad = {t: n for t, n in out_channels.items() if isinstance(n, bool) or not isinstance(n, int) or n < 1}
    if bad:
        raise UflError(f"output channels must be positive integers, got {bad}")
    return factory(backbone, dict(out_channels), **options)
