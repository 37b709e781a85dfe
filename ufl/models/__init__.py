"""Models: the backbone, Medusa and its baselines, behind one contract and one registry.

Every model is built as ``build_model(name, backbone, out_channels={task: channels}, aux=(),
**options)`` and called as ``model(images, out_size=None)`` with RGB images (B, 3, H, W) in [0, 1];
it returns ``{task: {"out": logits (B, C_t, H, W) at out_size (default the images' H, W), "initial":
[per-scale logits] (training mode only, models with deep supervision)}}``. Each model exposes
``model.backbone`` (a :class:`Backbone`, the part ``ufl init --checkpoint`` freezes),
``model.tasks`` (the tasks with a final output) and ``model.aux_tasks``.

Auxiliary tasks (``aux``, ``ufl pretrain --aux``) are built one of two ways:

* **auxiliary only** (PAD-Net, MTI-Net, as the reference code's ``AUXILARY_TASKS``): initial
  predictions, feature propagation and distillation sources only; no final head, so the model's
  output holds only ``{"initial": [...]}`` for them (training mode) and nothing at inference;
* **independent heads** (Medusa and its ablations, MT baseline, MTAN): an auxiliary task is an ordinary task of the
  model, with its own head and final output; it is only reported apart.

==================  =============================================  ==================================  ===========
name                model                                          options                             aux
==================  =============================================  ==================================  ===========
``medusa``          :class:`Medusa` (one MedusaHead per task)      width, attention_reduction          own heads
``medusa-no-sfa``   Medusa, heads without SFA (``sfa=False``)      width                               own heads
``medusa-no-msa``   Medusa, HRNet head for MSA (``msa=False``)     attention_reduction                 own heads
``medusa-no-ip``    Medusa, no initial preds (``initial=False``)   width, attention_reduction          own heads
``mt-baseline``     :class:`MultiTaskBaseline`                     -                                   own heads
``single-task``     :class:`SingleTaskModel` (one task)            -                                   (none)
``mtan``            :class:`MTAN` (DeepLab-v3+ decoder per task)   width, low_width, atrous_rates      own heads
``pad-net``         :class:`PADNet`                                channels                            aux only
``mti-net``         :class:`MTINet`                                -                                   aux only
==================  =============================================  ==================================  ===========

The three ``medusa-no-*`` models are the ablations of Medusa's mechanism (issue 12; see
:mod:`ufl.models.medusa`): shared feature attention absent (mask fixed to 1, no SFA parameters),
the multi-scale attention head replaced by an :class:`HRNetHead` on the attended features, and no
initial predictions (no deep supervision).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from ..errors import UflError
from ..model_names import MODEL_NAMES
from ..registry import Registry
from .attention import MultiScaleAttentionHead, SharedFeatureAttention
from .backbone import DEFAULT_BACKBONE, Backbone
from .baselines import MultiTaskBaseline, SingleTaskModel
from .heads import HRNetHead, init_prediction_bias
from .medusa import Medusa, MedusaHead, build_head, read_head_metadata
from .mtan import MTAN
from .mtinet import MTINet
from .padnet import PADNet

__all__ = [
    "Backbone", "DEFAULT_BACKBONE", "Medusa", "MedusaHead", "SharedFeatureAttention", "MultiScaleAttentionHead",
    "HRNetHead", "MultiTaskBaseline", "SingleTaskModel", "MTINet", "MTAN", "PADNet", "MODELS", "build_model", "build_head",
    "read_head_metadata", "init_prediction_bias", "aux_only",
]

#: Model factories (classes or builders) by name: ``factory(backbone, out_channels, [aux,] **options) -> nn.Module``.
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
MODELS.register("medusa", Medusa.build)
MODELS.register("medusa-no-sfa", Medusa.build_no_sfa)
MODELS.register("medusa-no-msa", Medusa.build_no_msa)
MODELS.register("medusa-no-ip", Medusa.build_no_ip)
MODELS.register("mt-baseline", MultiTaskBaseline.build)
MODELS.register("single-task", SingleTaskModel.build)
MODELS.register("mti-net", MTINet)
MODELS.register("mtan", MTAN)
MODELS.register("pad-net", PADNet)
if sorted(MODELS) != sorted(MODEL_NAMES):  # the CLI's torch-free list of choices must name exactly these
    raise RuntimeError(f"ufl.model_names.MODEL_NAMES {MODEL_NAMES} differs from the registered models {tuple(MODELS)}")


def aux_only(name: str) -> bool:
    """Whether the model registered as ``name`` builds auxiliary tasks without a final head
    (its factory takes ``aux``)."""
    return "aux" in inspect.signature(MODELS.get(name)).parameters


def build_model(name: str, backbone: Backbone, out_channels: Mapping[str, int], aux: Sequence[str] = (),
                **options: Any) -> nn.Module:
    """Build the model registered as ``name`` on ``backbone`` with one output per task.

    ``out_channels`` names every task, auxiliary ones included; ``aux`` says which are auxiliary.
    Models whose factory takes ``aux`` (PAD-Net, MTI-Net) build those without a final head; the
    others build them as ordinary tasks with independent heads (see the module docstring).
    An unknown name or option is a :class:`~ufl.errors.UflError` that lists what is accepted.
    """
    factory = MODELS.get(name)
    accepted = [p for p in inspect.signature(factory).parameters if p not in ("backbone", "out_channels", "aux")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UflError(f"model {name!r} takes no option(s) {unknown}; accepted: {accepted or 'none'}")
    bad = {t: n for t, n in out_channels.items() if isinstance(n, bool) or not isinstance(n, int) or n < 1}
    if bad:
        raise UflError(f"output channels must be positive integers, got {bad}")
    aux = list(dict.fromkeys(aux))
    missing = [t for t in aux if t not in out_channels]
    if missing:
        raise UflError(f"auxiliary task(s) {missing} have no output channels; give them in out_channels too")
    if out_channels and len(aux) == len(out_channels):
        raise UflError(f"every task is auxiliary ({', '.join(aux)}); give at least one main task")
    if aux_only(name):
        return factory(backbone, dict(out_channels), aux=aux, **options)
    return factory(backbone, dict(out_channels), **options)
