"""Colours of one map per task kind, and the key that explains them (leaf utilities: numpy,
matplotlib and torch only, plus the class catalogue).

Colours per task kind (:func:`colorize`, one map in, ``(H, W, 3)`` uint8 RGB out):

============  ==================================  =============================================
kind          input (one sample)                  colours
============  ==================================  =============================================
segmentation  (H, W) / (1, H, W) integer labels   the (dataset, task) palette of
                                                  :data:`~ufl.datasets.catalog.MetadataCatalog`
                                                  (VOC colour map); 255 = ignore -> black
depth         (H, W) / (1, H, W) metres           ``viridis_r`` between robust percentiles of the
                                                  valid pixels (near = bright yellow, far = dark
                                                  purple); depth <= 0 or not finite -> black
normals       (3, H, W) unit vectors              RGB = (n + 1) / 2 (x right -> red, y down ->
                                                  green, z to camera -> blue); zero -> black
edges,        (H, W) / (1, H, W) in [0, 1]        grey (0 black, 1 white); 255 = ignore ->
saliency                                          dark red :data:`IGNORE_COLOUR`
============  ==================================  =============================================
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import matplotlib
import numpy as np

from ..datasets.catalog import MetadataCatalog, voc_palette
from ..taskspec import KINDS
from ..tensors import to_numpy

__all__ = [
    "colorize", "depth_range", "as_rgb", "normals_key", "colour_key", "apply_cmap",
    "DEPTH_CMAP", "DEPTH_PERCENTILES", "HEATMAP_CMAP", "IGNORE_COLOUR", "SCALE_COLOURS", "TAB10", "LEGEND_CLASSES",
]

DEPTH_CMAP = "viridis_r"
"""Depth colour map. NOTE: not ``magma_r``, whose far end (0, 0, 4) cannot be told from the black
of missing depth; viridis' far end is dark purple (68, 1, 84) and its lightness rises monotonically."""

HEATMAP_CMAP = "inferno"
"""Colour map of attention heatmaps (0 black, 1 pale yellow)."""

IGNORE_COLOUR = (139, 0, 0)
"""Dark red: pixels of an edge or saliency target marked 255 (ignore), or outside ``valid``."""

TAB10: tuple[tuple[int, int, int], ...] = tuple(
    tuple(int(round(255 * c)) for c in rgb) for rgb in matplotlib.colormaps["tab10"].colors)
"""matplotlib's ``tab10`` as uint8 RGB: the colours of the scales, and of the bars of the charts."""

SCALE_COLOURS = TAB10
"""One colour per backbone scale (matplotlib's ``tab10``): scale 0 (finest) blue, 1 orange, 2 green,
3 red, ...; used by the MSA "which scale wins" map."""

DEPTH_PERCENTILES = (2.0, 98.0)
"""Per-image depth normalisation: the 2nd and 98th percentiles of the valid depths, so a few
outliers (sensor noise, sky) do not flatten the colours of the rest."""

_IGNORE_LABEL = 255
_BLACK = (0, 0, 0)

LEGEND_CLASSES = 8
"""Classes listed in a segmentation legend: the most frequent in ground truth and prediction."""


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def _single_map(x: Any, kind: str) -> np.ndarray:
    """``(H, W)`` or ``(1, H, W)`` -> ``(H, W)``; any other shape is a ValueError naming the kind."""
    arr = to_numpy(x)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"a {kind} map must be one sample of shape (H, W) or (1, H, W), got shape "
                         f"{tuple(arr.shape)}; index a batch first (x[i])")
    return arr


def _normals_map(x: Any) -> np.ndarray:
    arr = to_numpy(x)
    if arr.ndim != 3 or arr.shape[0] != 3 or arr.size == 0:
        raise ValueError(f"a normals map must be one sample of shape (3, H, W), got shape {tuple(arr.shape)}; "
                         f"index a batch first (x[i]) and put the channels first")
    return arr.astype(np.float64)


def _valid_mask(valid: Any, shape: tuple[int, int]) -> np.ndarray:
    """The caller's ``valid`` mask as bool ``(H, W)`` (all True when None)."""
    if valid is None:
        return np.ones(shape, dtype=bool)
    mask = to_numpy(valid)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.shape != shape:
        raise ValueError(f"valid mask has shape {tuple(mask.shape)} but the map is {shape}")
    return mask.astype(bool)


def as_rgb(image: Any) -> np.ndarray:
    """An input image as ``(H, W, 3)`` uint8 RGB.

    Accepts ``(H, W, 3)`` / ``(H, W, 4)`` (alpha dropped) / ``(3, H, W)`` (the datasets' tensors) /
    ``(H, W)`` grey; uint8 values as they are, floats in [0, 1] scaled by 255. A float image outside
    [0, 1] (e.g. ImageNet-normalised) is a ValueError: pass the un-normalised image.
    """
    arr = to_numpy(image)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3]
    elif arr.ndim == 3 and arr.shape[0] in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.size == 0:
        raise ValueError(f"an image must be (H, W, 3), (3, H, W) or (H, W), got shape {tuple(to_numpy(image).shape)}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"an image must be uint8 or float in [0, 1], got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"integer image values must be in [0, 255], got [{arr.min()}, {arr.max()}]")
        return arr.astype(np.uint8)
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"float image values must be in [0, 1], got [{lo:.3g}, {hi:.3g}]; "
                         f"pass the image before mean/std normalisation")
    return np.rint(np.clip(np.nan_to_num(arr), 0, 1) * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# One map -> RGB
# ---------------------------------------------------------------------------------------------
def apply_cmap(name: str, values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (NaN allowed) -> (..., 3) uint8 through a matplotlib colour map (the
    colour-map registry is read-only here: no global state changes)."""
    return matplotlib.colormaps[name](np.clip(values, 0.0, 1.0), bytes=True)[..., :3]


def colorize(kind: str, array: Any, *, dataset: str | None = None, task: str | None = None,
             num_classes: int | None = None, valid: Any = None,
             depth_range: tuple[float, float] | None = None) -> np.ndarray:
    """Colour one prediction or target map as ``(H, W, 3)`` uint8 RGB (see the module table).

    Args:
        kind: a task kind of :data:`ufl.taskspec.KINDS` (segmentation, depth, normals, edges,
            saliency).
        array: one sample in the kind's convention (a target as the datasets return it, or a
            prediction as :func:`ufl.evaluation.postprocess` returns it, batch index removed):
            labels ``(H, W)`` / ``(1, H, W)``; depth in metres ``(H, W)`` / ``(1, H, W)``; normals
            ``(3, H, W)``; edge / saliency probabilities in [0, 1] ``(H, W)`` / ``(1, H, W)``.
            numpy array or tensor (any device).
        dataset, task: segmentation: the palette of ``MetadataCatalog.get(dataset, task,
            num_classes)`` (both or neither). Without them, or for a pair the catalogue does not
            know and no ``num_classes``: the VOC colour map (``voc_palette``). Ignored by the other
            kinds (so callers may pass them for every task).
        num_classes: segmentation: labels must be below it (255 excepted); ignored otherwise.
        valid: optional ``(H, W)`` bool mask; pixels outside it are drawn as invalid (black, dark
            red for edges / saliency), in addition to the kind's own invalid values.
        depth_range: depth only: ``(near, far)`` metres mapped to the two ends of the colour map,
            instead of the image's own robust range (:func:`depth_range`); give the ground truth's
            range to colour a prediction on the same scale. Ignored by the other kinds.

    Raises:
        ValueError: unknown kind, wrong shape, labels outside the classes, non-integer labels,
            probabilities outside [0, 1].
    """
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; known kinds: {', '.join(KINDS)}")
    if kind == "segmentation":
        return _colorize_labels(array, dataset, task, num_classes, valid)
    if kind == "depth":
        return _colorize_depth(array, valid, depth_range)
    if kind == "normals":
        return _colorize_normals(array, valid)
    return _colorize_probabilities(array, kind, valid)


def _colorize_labels(array: Any, dataset: str | None, task: str | None, num_classes: int | None,
                     valid: Any) -> np.ndarray:
    labels = _single_map(array, "segmentation")
    if not np.issubdtype(labels.dtype, np.integer):
        if labels.dtype == bool or not np.issubdtype(labels.dtype, np.number) or \
                not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise ValueError("segmentation maps must hold integer class labels; turn logits into labels "
                             "with ufl.evaluation.postprocess('segmentation', logits) first")
    labels = labels.astype(np.int64)
    ignored = (labels == _IGNORE_LABEL) | ~_valid_mask(valid, labels.shape)
    if (dataset is None) != (task is None):
        raise ValueError(f"give both dataset and task to pick a palette, got dataset={dataset!r}, task={task!r}")
    if dataset is not None and ((dataset, task) in MetadataCatalog or num_classes is not None):
        meta = MetadataCatalog.get(dataset, task, num_classes)
        palette = meta.palette or voc_palette(meta.num_classes)
        where = f"{dataset}/{task}"
    else:
        # voc_palette is defined for any index; without a class count every label below 255 is drawn.
        palette = voc_palette(num_classes if num_classes is not None else _IGNORE_LABEL)
        where = f"{num_classes} classes" if num_classes is not None else "labels 0..254"
    lut = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    drawn = labels[~ignored]
    if drawn.size and (drawn.min() < 0 or drawn.max() >= len(lut)):
        bad = int(drawn[(drawn < 0) | (drawn >= len(lut))][0])
        raise ValueError(f"label {bad} is outside the {len(lut)} classes of {where} (255 = ignore)")
    rgb = lut[np.where(ignored, 0, labels)]
    rgb[ignored] = _BLACK
    return rgb


def _depth_valid(depth: np.ndarray, valid: Any) -> np.ndarray:
    """Valid depth: finite and > 0 (0 = missing measurement, DESIGN.md section 4), and ``valid``."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0) & _valid_mask(valid, depth.shape)


def depth_range(depth: Any, valid: Any = None) -> tuple[float, float] | None:
    """The robust ``(near, far)`` range of one depth map: the :data:`DEPTH_PERCENTILES` of its valid
    pixels (metres), or None when no pixel is valid. Shapes as :func:`colorize`'s depth."""
    d = _single_map(depth, "depth").astype(np.float64)
    values = d[_depth_valid(d, valid)]
    if values.size == 0:
        return None
    near, far = np.percentile(values, DEPTH_PERCENTILES)
    return float(near), float(far)


def _colorize_depth(array: Any, valid: Any, value_range: tuple[float, float] | None) -> np.ndarray:
    depth = _single_map(array, "depth").astype(np.float64)
    mask = _depth_valid(depth, valid)
    rgb = np.zeros(depth.shape + (3,), dtype=np.uint8)
    if value_range is None:
        value_range = depth_range(depth, mask)
        if value_range is None:
            return rgb
    near, far = (float(v) for v in value_range)
    if not (math.isfinite(near) and math.isfinite(far) and far >= near):
        raise ValueError(f"depth_range must be (near, far) with near <= far, got {value_range}")
    # NOTE: a flat map (far == near) has nothing to stretch: all its pixels get the near colour.
    position = (depth[mask] - near) / max(far - near, 1e-12)
    rgb[mask] = apply_cmap(DEPTH_CMAP, position)
    return rgb


def _colorize_normals(array: Any, valid: Any) -> np.ndarray:
    normals = _normals_map(array)
    with np.errstate(invalid="ignore"):
        norm = np.sqrt((normals ** 2).sum(0))
        mask = np.isfinite(norm) & (norm > 0) & _valid_mask(valid, norm.shape)
    unit = normals[:, mask] / norm[mask]
    rgb = np.zeros(norm.shape + (3,), dtype=np.uint8)
    # The PASCAL_MT normals_distill PNG encoding, inverted (n = 2v/255 - 1 -> v = (n + 1) / 2 * 255).
    rgb[mask] = np.rint((np.clip(unit, -1, 1).T + 1) / 2 * 255).astype(np.uint8)
    return rgb


def _colorize_probabilities(array: Any, kind: str, valid: Any) -> np.ndarray:
    p = _single_map(array, kind).astype(np.float64)
    ignored = (p == _IGNORE_LABEL) | np.isnan(p) | ~_valid_mask(valid, p.shape)
    shown = p[~ignored]
    if shown.size and (shown.min() < 0 or shown.max() > 1):
        raise ValueError(f"{kind} maps must hold probabilities in [0, 1] (255 = ignore), got values in "
                         f"[{shown.min():.3g}, {shown.max():.3g}]; apply ufl.evaluation.postprocess to logits")
    grey = np.rint(np.where(ignored, 0.0, p) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[ignored] = IGNORE_COLOUR
    return rgb



# ---------------------------------------------------------------------------------------------
# Keys: what the colours mean
# ---------------------------------------------------------------------------------------------
def colour_key(kind: str, gt: Any, pred: Any, options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The key of a task kind's colours: class legend, depth / probability colour bar, normals sphere,
    as ``[{"type": "legend" | "colorbar" | "image", ...}]`` (the key cell of a prediction figure draws
    them); ``options`` are the :func:`colorize` options the maps were coloured with."""
    if kind == "segmentation":
        labels = [_single_map(x, "segmentation") for x in (gt, pred) if x is not None]
        values = np.concatenate([np.asarray(x).astype(np.int64).ravel() for x in labels])
        ignored = bool((values == _IGNORE_LABEL).any())
        values = values[(values != _IGNORE_LABEL) & (values >= 0)]
        counts = np.bincount(values) if values.size else np.zeros(0, dtype=np.int64)
        present = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
        dataset, task, num_classes = options.get("dataset"), options.get("task"), options.get("num_classes")
        if dataset is not None and ((dataset, task) in MetadataCatalog or num_classes is not None):
            meta = MetadataCatalog.get(dataset, task, num_classes)
            names, palette = meta.class_names, meta.palette or voc_palette(meta.num_classes)
        else:
            size = num_classes if num_classes is not None else max(present, default=0) + 1
            names, palette = tuple(f"class {i}" for i in range(size)), voc_palette(size)
        shown = sorted(present[:LEGEND_CLASSES])
        entries = [(names[c] if c < len(names) else f"class {c}", palette[c]) for c in shown]
        if len(present) > LEGEND_CLASSES:
            entries.append((f"+{len(present) - LEGEND_CLASSES} more", None))
        if ignored:
            entries.append(("ignore", _BLACK))
        return [{"type": "legend", "title": "classes", "entries": entries}]
    if kind == "depth":
        near_far = options.get("depth_range")
        if near_far is None:
            return []
        return [{"type": "colorbar", "cmap": DEPTH_CMAP, "range": near_far, "label": "depth (m)"}]
    if kind == "normals":
        return [{"type": "image", "image": normals_key(), "title": "normal: x→R y↓G z→B"}]
    return [{"type": "colorbar", "cmap": "gray", "range": (0.0, 1.0), "label": "probability"}]


def normals_key(size: int = 65) -> np.ndarray:
    """A sphere seen from the camera, coloured like :func:`colorize`'s normals: the key of a normals
    map (each colour is the normal of the sphere's surface there; outside the sphere black)."""
    axis = np.linspace(-1, 1, size)
    x, y = np.meshgrid(axis, axis)  # x right, y down (image axes)
    inside = x ** 2 + y ** 2 <= 1
    z = np.sqrt(np.clip(1 - x ** 2 - y ** 2, 0, None))  # towards the camera
    normals = np.stack([x, y, z]) * inside
    return colorize("normals", normals)
