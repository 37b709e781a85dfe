"""Colours of one map per task kind, and the keys that explain them: leaf utilities (numpy,
matplotlib and torch only) that the task kinds (:meth:`ufl.kinds.Kind.colorize`,
:meth:`~ufl.kinds.Kind.colour_key`) call; :func:`ufl.viz.colorize` picks the kind by name.

Colours per task kind (one map in, ``(H, W, 3)`` uint8 RGB out):

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
from dataclasses import dataclass
from typing import Any, Callable

import matplotlib
import numpy as np

from .labels import IGNORE_INDEX
from .tensors import to_numpy

__all__ = [
    "ClassColours", "colorize_labels", "colorize_depth", "colorize_normals", "colorize_probabilities",
    "depth_range", "shared_depth_range", "as_rgb", "apply_cmap",
    "class_legend", "depth_key", "normals_sphere_key", "probability_key", "normals_key",
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


@dataclass(frozen=True)
class ClassColours:
    """The colours and names of a label map's classes (:func:`ufl.viz.maps.class_colours` looks
    them up in the catalogue).

    Attributes:
        palette: one RGB triple per class; labels at or beyond its length are errors.
        names: class names by label; labels beyond it are named ``class N`` in a legend.
        where: what the classes are, for errors (``pascal/semseg``, ``40 classes``, ``labels 0..254``).
    """

    palette: tuple[tuple[int, int, int], ...]
    names: tuple[str, ...] = ()
    where: str = ""


def colorize_labels(array: Any, classes: Callable[[], ClassColours], valid: Any = None) -> np.ndarray:
    """Class labels ``(H, W)`` / ``(1, H, W)`` -> their palette colours; 255 (ignore) and pixels
    outside ``valid`` black. ``classes`` gives the palette (called once the labels are checked).
    A non-integer label or one outside the palette is a ValueError."""
    labels = _single_map(array, "segmentation")
    if not np.issubdtype(labels.dtype, np.integer):
        if labels.dtype == bool or not np.issubdtype(labels.dtype, np.number) or \
                not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise ValueError("segmentation maps must hold integer class labels; turn logits into labels "
                             "with ufl.evaluation.postprocess('segmentation', logits) first")
    labels = labels.astype(np.int64)
    ignored = (labels == IGNORE_INDEX) | ~_valid_mask(valid, labels.shape)
    colours = classes()
    palette, where = colours.palette, colours.where
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
    pixels (metres), or None when no pixel is valid. Shapes as :func:`colorize_depth`."""
    d = _single_map(depth, "depth").astype(np.float64)
    values = d[_depth_valid(d, valid)]
    if values.size == 0:
        return None
    near, far = np.percentile(values, DEPTH_PERCENTILES)
    return float(near), float(far)


def shared_depth_range(gt: Any, pred: Any) -> tuple[float, float] | None:
    """The range that colours a ground truth and its prediction on one scale, so their colours
    compare: the ground truth's robust :func:`depth_range`, else the prediction's (``gt`` may be None)."""
    ranges = [r for r in (depth_range(gt) if gt is not None else None, depth_range(pred)) if r]
    return ranges[0] if ranges else None


def colorize_depth(array: Any, valid: Any = None, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Depth in metres ``(H, W)`` / ``(1, H, W)`` -> :data:`DEPTH_CMAP` colours, ``value_range`` =
    ``(near, far)`` at its two ends (None: the map's own :func:`depth_range`); depth <= 0, not
    finite or outside ``valid`` black."""
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


def colorize_normals(array: Any, valid: Any = None) -> np.ndarray:
    """Normals ``(3, H, W)`` -> RGB = (n / |n| + 1) / 2; zero vectors, non-finite ones and pixels
    outside ``valid`` black."""
    normals = _normals_map(array)
    with np.errstate(invalid="ignore"):
        norm = np.sqrt((normals ** 2).sum(0))
        mask = np.isfinite(norm) & (norm > 0) & _valid_mask(valid, norm.shape)
    unit = normals[:, mask] / norm[mask]
    rgb = np.zeros(norm.shape + (3,), dtype=np.uint8)
    # The PASCAL_MT normals_distill PNG encoding, inverted (n = 2v/255 - 1 -> v = (n + 1) / 2 * 255).
    rgb[mask] = np.rint((np.clip(unit, -1, 1).T + 1) / 2 * 255).astype(np.uint8)
    return rgb


def colorize_probabilities(array: Any, kind: str, valid: Any = None) -> np.ndarray:
    """Probabilities in [0, 1] ``(H, W)`` / ``(1, H, W)`` -> grey (0 black, 1 white); 255 (ignore),
    NaN and pixels outside ``valid`` :data:`IGNORE_COLOUR`. ``kind`` names the maps in errors."""
    p = _single_map(array, kind).astype(np.float64)
    ignored = (p == IGNORE_INDEX) | np.isnan(p) | ~_valid_mask(valid, p.shape)
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
def class_legend(gt: Any, pred: Any, classes: Callable[[], ClassColours]) -> list[dict[str, Any]]:
    """The legend of label maps: the :data:`LEGEND_CLASSES` most frequent classes of ``gt`` (may
    be None) and ``pred`` with their names and colours, a ``+N more`` entry, and ``ignore`` when
    a pixel is 255."""
    labels = [_single_map(x, "segmentation") for x in (gt, pred) if x is not None]
    values = np.concatenate([np.asarray(x).astype(np.int64).ravel() for x in labels])
    ignored = bool((values == IGNORE_INDEX).any())
    values = values[(values != IGNORE_INDEX) & (values >= 0)]
    counts = np.bincount(values) if values.size else np.zeros(0, dtype=np.int64)
    present = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    colours = classes()
    names, palette = colours.names, colours.palette
    shown = sorted(present[:LEGEND_CLASSES])
    entries = [(names[c] if c < len(names) else f"class {c}", palette[c]) for c in shown]
    if len(present) > LEGEND_CLASSES:
        entries.append((f"+{len(present) - LEGEND_CLASSES} more", None))
    if ignored:
        entries.append(("ignore", _BLACK))
    return [{"type": "legend", "title": "classes", "entries": entries}]


def depth_key(value_range: tuple[float, float] | None) -> list[dict[str, Any]]:
    """The colour bar of depth coloured between ``value_range`` = ``(near, far)`` metres (none without a range)."""
    if value_range is None:
        return []
    return [{"type": "colorbar", "cmap": DEPTH_CMAP, "range": value_range, "label": "depth (m)"}]


def normals_sphere_key() -> list[dict[str, Any]]:
    """The key of normals: the sphere of :func:`normals_key`."""
    return [{"type": "image", "image": normals_key(), "title": "normal: x→R y↓G z→B"}]


def probability_key() -> list[dict[str, Any]]:
    """The grey colour bar of probabilities in [0, 1]."""
    return [{"type": "colorbar", "cmap": "gray", "range": (0.0, 1.0), "label": "probability"}]


def normals_key(size: int = 65) -> np.ndarray:
    """A sphere seen from the camera, coloured like :func:`colorize_normals`: the key of a normals
    map (each colour is the normal of the sphere's surface there; outside the sphere black)."""
    axis = np.linspace(-1, 1, size)
    x, y = np.meshgrid(axis, axis)  # x right, y down (image axes)
    inside = x ** 2 + y ** 2 <= 1
    z = np.sqrt(np.clip(1 - x ** 2 - y ** 2, 0, None))  # towards the camera
    normals = np.stack([x, y, z]) * inside
    return colorize_normals(normals)
