"""One map of a task kind in its colours: :func:`colorize` asks the kind (:mod:`ufl.kinds`) by
name, and :func:`class_colours` looks up the palette and names of a label map's classes in the
catalogue (:data:`~ufl.datasets.catalog.MetadataCatalog`) for the kinds whose maps hold classes."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from ..datasets.catalog import MetadataCatalog, voc_palette
from ..kinds import KINDS, Kind, get_kind
from ..colours import ClassColours

__all__ = ["colorize", "class_colours", "drawn_kind"]

_IGNORE_LABEL = 255


def class_colours(dataset: str | None = None, task: str | None = None, num_classes: int | None = None) -> ClassColours:
    """The palette and names of the classes of ``dataset``'s ``task`` (``MetadataCatalog.get(dataset,
    task, num_classes)``; both or neither). Without them, or for a pair the catalogue does not know
    and no ``num_classes``: the VOC colour map (``voc_palette``) of ``num_classes`` classes, or of
    every label below 255 (255 = ignore) without a count, and no names."""
    if (dataset is None) != (task is None):
        raise ValueError(f"give both dataset and task to pick a palette, got dataset={dataset!r}, task={task!r}")
    if dataset is not None and ((dataset, task) in MetadataCatalog or num_classes is not None):
        meta = MetadataCatalog.get(dataset, task, num_classes)
        return ClassColours(meta.palette or voc_palette(meta.num_classes), meta.class_names, f"{dataset}/{task}")
    # voc_palette is defined for any index; without a class count every label below 255 is drawn.
    return ClassColours(voc_palette(num_classes if num_classes is not None else _IGNORE_LABEL), (),
                        f"{num_classes} classes" if num_classes is not None else "labels 0..254")


def colorize(kind: str, array: Any, *, dataset: str | None = None, task: str | None = None,
             num_classes: int | None = None, valid: Any = None,
             depth_range: tuple[float, float] | None = None) -> np.ndarray:
    """Colour one prediction or target map as ``(H, W, 3)`` uint8 RGB (the table of
    :mod:`ufl.colours`), through the kind's :meth:`~ufl.kinds.Kind.colorize`.

    Args:
        kind: a registered task kind (:data:`ufl.kinds.KINDS`: segmentation, depth, normals,
            edges, saliency, ...).
        array: one sample in the kind's convention (a target as the datasets return it, or a
            prediction as :func:`ufl.evaluation.postprocess` returns it, batch index removed):
            labels ``(H, W)`` / ``(1, H, W)``; depth in metres ``(H, W)`` / ``(1, H, W)``; normals
            ``(3, H, W)``; edge / saliency probabilities in [0, 1] ``(H, W)`` / ``(1, H, W)``.
            numpy array or tensor (any device).
        dataset, task: segmentation: the palette of :func:`class_colours` (both or neither).
            Ignored by the other kinds (so callers may pass them for every task).
        num_classes: segmentation: labels must be below it (255 excepted); ignored otherwise.
        valid: optional ``(H, W)`` bool mask; pixels outside it are drawn as invalid (black, dark
            red for edges / saliency), in addition to the kind's own invalid values.
        depth_range: depth only: ``(near, far)`` metres mapped to the two ends of the colour map,
            instead of the image's own robust range (:func:`~ufl.colours.depth_range`); give the
            ground truth's range to colour a prediction on the same scale. Ignored by the other kinds.

    Raises:
        ValueError: unknown kind, wrong shape, labels outside the classes, non-integer labels,
            probabilities outside [0, 1].
    """
    return drawn_kind(kind).colorize(array, valid=valid, classes=partial(class_colours, dataset, task, num_classes),
                                   value_range=depth_range)


def drawn_kind(name: str) -> Kind:
    """The registered task kind ``name`` (:func:`ufl.kinds.get_kind`); an unknown name is a
    ValueError listing the known kinds, as for any other bad argument of a picture function."""
    if name not in KINDS:
        raise ValueError(f"unknown task kind {name!r}; known kinds: {', '.join(KINDS)}")
    return get_kind(name)
