"""Task kinds as objects, and their registry by name.

A task spec's ``kind:`` (:mod:`ufl.taskspec`) names one :class:`Kind` object, which owns everything
that depends on the kind: the target convention and how targets move under the transforms (its
:class:`Modality`), decoding a folder dataset's target files, the cache layout, the allowed and
default loss, the metric and its keys, the output activation and post-processing, the trivial
prior and the linear probe's encoding (:mod:`ufl.kinds.base` lists who asks for what). Nothing
outside this package branches on a kind's name.

Built-in kinds (tensors as the datasets return them; the direction of each metric comes from
:data:`ufl.metrics.METRIC_DIRECTIONS`):

============  ================================  ==================  ==================
kind          target                            loss (default)      headline metric
============  ================================  ==================  ==================
segmentation  (H, W) int64, 255 = ignore        cross_entropy       mIoU (higher)
depth         (1, H, W) float32 metres, 0 = n/a l1                  rmse (lower)
normals       (3, H, W) float32 unit, 0 = n/a   normals_l1          mean (lower)
edges         (1, H, W) float32 {0, 1}, 255     balanced_bce        odsF (higher)
saliency      (1, H, W) float32 {0, 1}, 255     balanced_bce        maxF (higher)
============  ================================  ==================  ==================

Normals are in camera coordinates with x to the right, y down (image rows) and z towards the
camera, as NYUD-v2 stores them; a horizontal flip negates x.

A new kind is one subclass of :class:`Kind` (and, when its targets move differently from the
built-in modalities, of :class:`Modality`) registered with :func:`register_kind`, from a module of
``ufl`` or from the user's own code before the CLI or the API reads a spec that names it (README,
"A new task kind")::

    from ufl.kinds import Kind, register_kind

    class Flow(Kind):
        name = "flow"; modality = FlowModality(); losses = ("l1",)
        metric_keys = ("epe",); headline = "epe"; metric = EPEMetric; fixed_channels = 2

    register_kind(Flow())
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from ..errors import SpecError
from .base import Kind, Modality
from .depth import DepthKind
from .edges import EdgesKind
from .normals import NormalsKind
from .saliency import SaliencyKind
from .segmentation import SegmentationKind

__all__ = ["Kind", "Modality", "KINDS", "MODALITIES", "register_kind", "unregister_kind", "get_kind",
           "get_modality"]

_KINDS: dict[str, Kind] = {}
_MODALITIES: dict[str, Modality] = {}

KINDS: Mapping[str, Kind] = MappingProxyType(_KINDS)
"""The registered kinds by name (read-only; :func:`register_kind` adds to it)."""

MODALITIES: Mapping[str, Modality] = MappingProxyType(_MODALITIES)
"""The modalities of the registered kinds by name (``label``, ``binary``, ``depth``, ``normals``, ...)."""


def register_kind(kind: Kind | type[Kind], *, check_directions: bool = True) -> Kind:
    """Register ``kind`` (an instance, or a class, which is instantiated) under ``kind.name``, and
    its modality under ``kind.modality.name`` unless that name is registered already with an
    object of the same class. A taken name, or (``check_directions``) a metric key without a
    direction in :data:`ufl.metrics.METRIC_DIRECTIONS`, is a :class:`SpecError`; returns the instance.

    The built-in kinds are registered without the direction check, so that importing this package
    does not import the metrics (and torch); ``tests/test_kinds.py`` checks their directions."""
    if isinstance(kind, type):
        kind = kind()
    if not isinstance(kind, Kind):
        raise SpecError(f"register_kind takes a ufl.kinds.Kind, got {type(kind).__name__}")
    kind.check(directions=check_directions)
    if kind.name in _KINDS:
        raise SpecError(f"task kind {kind.name!r} is already registered ({_KINDS[kind.name]!r}); choose another name")
    modality = _MODALITIES.get(kind.modality.name)
    if modality is not None and type(modality) is not type(kind.modality):
        raise SpecError(f"task kind {kind.name!r}: modality name {kind.modality.name!r} is taken by "
                        f"{type(modality).__name__}; give {type(kind.modality).__name__} another name")
    _MODALITIES.setdefault(kind.modality.name, kind.modality)
    _KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> Kind:
    """Remove the kind ``name`` (and its modality when no other kind uses it); returns it."""
    kind = get_kind(name)
    del _KINDS[name]
    if all(other.modality.name != kind.modality.name for other in _KINDS.values()):
        _MODALITIES.pop(kind.modality.name, None)
    return kind


def get_kind(name: str) -> Kind:
    """The kind registered as ``name``; an unknown name is a :class:`SpecError` listing the known ones."""
    try:
        return _KINDS[name]
    except (KeyError, TypeError):
        raise SpecError(f"unknown task kind {name!r}; known kinds: {', '.join(sorted(_KINDS))} "
                        f"(a new kind is registered with ufl.kinds.register_kind)") from None


def get_modality(name: str) -> Modality:
    """The modality registered as ``name``; an unknown name is a ValueError listing the known ones."""
    try:
        return _MODALITIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown target modality {name!r}; known: {', '.join(sorted(_MODALITIES))}") from None


for _kind in (SegmentationKind, DepthKind, NormalsKind, EdgesKind, SaliencyKind):
    register_kind(_kind, check_directions=False)
