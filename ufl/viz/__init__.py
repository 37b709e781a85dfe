"""Pictures of predictions, targets and attention: colour maps per task kind, and PNG figures.

Pure functions over numpy arrays or torch tensors (no workspace logic): ``ufl predict``,
``ufl evaluate --plot`` and ``ufl reproduce`` call them.

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

Figures are drawn with :class:`matplotlib.figure.Figure` on an Agg canvas, never through
``pyplot``: no GUI backend is touched, no global figure list grows, and nothing is left open. Every
file is written atomically (:func:`ufl.io.atomic_path`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from ..datasets.catalog import MetadataCatalog, voc_palette
from ..errors import UflError
from ..io import atomic_path
from ..taskspec import KINDS

__all__ = [
    "colorize", "depth_range", "as_rgb", "blend", "attention_images", "save_png",
    "prediction_grid", "prediction_grids", "prediction_figure", "normals_key", "bar_chart", "grouped_bars",
    "metric_unit", "unit_figure", "unit_chart",
    "DEPTH_CMAP", "DEPTH_PERCENTILES", "HEATMAP_CMAP", "IGNORE_COLOUR", "SCALE_COLOURS",
]

DEPTH_CMAP = "viridis_r"
"""Depth colour map. NOTE: not ``magma_r``, whose far end (0, 0, 4) cannot be told from the black
of missing depth; viridis' far end is dark purple (68, 1, 84) and its lightness rises monotonically."""

HEATMAP_CMAP = "inferno"
"""Colour map of attention heatmaps (0 black, 1 pale yellow)."""

IGNORE_COLOUR = (139, 0, 0)
"""Dark red: pixels of an edge or saliency target marked 255 (ignore), or outside ``valid``."""

_TAB10: tuple[tuple[int, int, int], ...] = tuple(
    tuple(int(round(255 * c)) for c in rgb) for rgb in matplotlib.colormaps["tab10"].colors)

SCALE_COLOURS = _TAB10
"""One colour per backbone scale (matplotlib's ``tab10``): scale 0 (finest) blue, 1 orange, 2 green,
3 red, ...; used by the MSA "which scale wins" map."""

DEPTH_PERCENTILES = (2.0, 98.0)
"""Per-image depth normalisation: the 2nd and 98th percentiles of the valid depths, so a few
outliers (sensor noise, sky) do not flatten the colours of the rest."""

_IGNORE_LABEL = 255
_BLACK = (0, 0, 0)
_FIGURE_DPI = 120


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def _to_numpy(x: Any) -> np.ndarray:
    """A tensor (any device, any float width) or array-like -> numpy array (no copy when possible)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype != torch.float64:
            x = x.float()  # bfloat16 / float16 have no numpy equivalent (bf16) or lose range
        return x.numpy()
    return np.asarray(x)


def _single_map(x: Any, kind: str) -> np.ndarray:
    """``(H, W)`` or ``(1, H, W)`` -> ``(H, W)``; any other shape is a ValueError naming the kind."""
    arr = _to_numpy(x)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"a {kind} map must be one sample of shape (H, W) or (1, H, W), got shape "
                         f"{tuple(arr.shape)}; index a batch first (x[i])")
    return arr


def _normals_map(x: Any) -> np.ndarray:
    arr = _to_numpy(x)
    if arr.ndim != 3 or arr.shape[0] != 3 or arr.size == 0:
        raise ValueError(f"a normals map must be one sample of shape (3, H, W), got shape {tuple(arr.shape)}; "
                         f"index a batch first (x[i]) and put the channels first")
    return arr.astype(np.float64)


def _valid_mask(valid: Any, shape: tuple[int, int]) -> np.ndarray:
    """The caller's ``valid`` mask as bool ``(H, W)`` (all True when None)."""
    if valid is None:
        return np.ones(shape, dtype=bool)
    mask = _to_numpy(valid)
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
    arr = _to_numpy(image)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3]
    elif arr.ndim == 3 and arr.shape[0] in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.size == 0:
        raise ValueError(f"an image must be (H, W, 3), (3, H, W) or (H, W), got shape {tuple(_to_numpy(image).shape)}")
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
def _cmap(name: str, values: np.ndarray) -> np.ndarray:
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
    rgb[mask] = _cmap(DEPTH_CMAP, position)
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
# Attention
# ---------------------------------------------------------------------------------------------
def blend(image: Any, overlay: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """``(1 - alpha) * image + alpha * overlay``, both ``(H, W, 3)``, as uint8."""
    base = as_rgb(image).astype(np.float64)
    if base.shape != overlay.shape:
        raise ValueError(f"cannot blend an overlay of shape {overlay.shape} over an image of shape {base.shape}")
    return np.rint((1 - alpha) * base + alpha * overlay.astype(np.float64)).astype(np.uint8)


def _one_sample(x: Any, name: str, index: int | None) -> torch.Tensor:
    """(C, H, W) or (B, C, H, W) -> (C, H, W) float tensor on the CPU."""
    t = x.detach().cpu().float() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if t.ndim == 4:
        if index is None and t.shape[0] != 1:
            raise ValueError(f"attention {name} holds a batch of {t.shape[0]} samples; pass index=i to pick one")
        t = t[0 if index is None else index]
    if t.ndim != 3 or t.numel() == 0:
        raise ValueError(f"attention {name} must be (C, H, W) or (B, C, H, W), got shape {tuple(t.shape)}")
    return t


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) -> (C, H, W) numpy, bilinear (align_corners=False, as the heads resize)."""
    if tuple(maps.shape[-2:]) != size:
        maps = F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]
    return maps.numpy().astype(np.float64)


def attention_images(attention: Mapping[str, Any], image: Any = None, *, index: int | None = None,
                     size: tuple[int, int] | None = None, alpha: float = 0.6) -> dict[str, list[np.ndarray]]:
    """Heatmaps of one sample's Medusa attention (``MedusaHead(..., return_attention=True)``).

    Args:
        attention: ``{"sfa": [per-scale masks (B, C_s, H_s, W_s) in (0, 1)], "msa": (B, S, H_0, W_0)
            softmax weights over the S scales}`` (or a head output holding it under
            ``"attention"``); the batch dimension may be absent. Either key may be missing.
        image: optional input image (any :func:`as_rgb` layout); the heatmaps are drawn at its size
            and blended over it with weight ``alpha``.
        index: which sample of a batch (required when B > 1).
        size: ``(H, W)`` of the heatmaps without an image (default: the MSA / finest SFA size).

    Returns:
        ``{"sfa": [S heatmaps], "msa": [S heatmaps], "msa_argmax": [1 map]}``, each ``(H, W, 3)``
        uint8, finest scale first:

        * ``sfa``: each scale's mask averaged over channels, upsampled bilinearly, in
          :data:`HEATMAP_CMAP`. NOTE: stretched per map between its min and max, since averaged
          sigmoid masks crowd around mid-grey and a fixed [0, 1] scale would hide their structure.
        * ``msa``: each scale's weight on the fixed [0, 1] scale (the weights are comparable: they
          sum to 1 over scales at every pixel).
        * ``msa_argmax``: the scale with the largest weight at each pixel, in :data:`SCALE_COLOURS`.
    """
    if "attention" in attention and "sfa" not in attention and "msa" not in attention:
        attention = attention["attention"]
    unknown = set(attention) - {"sfa", "msa"}
    if unknown or not attention:
        raise ValueError(f"attention must be a dict with keys 'sfa' and/or 'msa', got keys {sorted(attention)}")
    sfa = [_one_sample(m, f"sfa[{s}]", index) for s, m in enumerate(attention.get("sfa") or [])]
    msa = _one_sample(attention["msa"], "msa", index) if attention.get("msa") is not None else None
    if msa is not None and sfa and msa.shape[0] != len(sfa):
        raise ValueError(f"attention msa weighs {msa.shape[0]} scales but sfa has {len(sfa)}")
    if msa is not None and msa.shape[0] > len(SCALE_COLOURS):
        raise ValueError(f"at most {len(SCALE_COLOURS)} scales can be coloured, got {msa.shape[0]}")

    rgb = as_rgb(image) if image is not None else None
    if rgb is not None:
        size = rgb.shape[:2]
    elif size is None:
        size = tuple(msa.shape[-2:]) if msa is not None else tuple(sfa[0].shape[-2:])
    size = (int(size[0]), int(size[1]))

    def finish(overlay: np.ndarray) -> np.ndarray:
        return blend(rgb, overlay, alpha) if rgb is not None else overlay

    out: dict[str, list[np.ndarray]] = {}
    if sfa:
        out["sfa"] = []
        for mask in sfa:
            mean = mask.mean(0, keepdim=True)
            # The range of the scale's own map (bilinear upsampling cannot leave it); a flat map
            # stays flat instead of stretching float rounding noise of the upsampling to full range.
            lo, hi = float(mean.min()), float(mean.max())
            mean = _upsample(mean, size)[0]
            stretched = (mean - lo) / (hi - lo) if hi - lo > 1e-6 else np.zeros_like(mean)
            out["sfa"].append(finish(_cmap(HEATMAP_CMAP, stretched)))
    if msa is not None:
        weights = _upsample(msa, size)
        out["msa"] = [finish(_cmap(HEATMAP_CMAP, w)) for w in weights]
        winner = weights.argmax(0)
        out["msa_argmax"] = [finish(np.asarray(SCALE_COLOURS, dtype=np.uint8)[winner])]
    return out


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def _png_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UflError(f"cannot write {path}: images are written as PNG, give a path ending in .png")
    return path


def save_png(array: Any, path: str | os.PathLike) -> Path:
    """Write a uint8 image ``(H, W)`` grey, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA as a PNG,
    atomically (parent folders created); returns the path."""
    path = _png_path(path)
    arr = _to_numpy(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"save_png takes uint8 images, got dtype {arr.dtype}; colour maps with colorize() first")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))) or arr.size == 0:
        raise ValueError(f"save_png takes (H, W), (H, W, 3) or (H, W, 4) images, got shape {tuple(arr.shape)}")
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG")
    return path


def _save_figure(fig: Figure, path: Path, dpi: int) -> Path:
    """Render ``fig`` on an Agg canvas into ``path`` atomically, then release it."""
    try:
        FigureCanvasAgg(fig)
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        fig.clear()
    return path


# ---------------------------------------------------------------------------------------------
# Prediction grids
# ---------------------------------------------------------------------------------------------
_ROW_KEYS = {"task", "gt", "pred", "attention", "attention_labels", "kind", "dataset", "num_classes", "target"}

MAX_FIGURE_INCHES = 12.0
"""Widest prediction figure (inches; 1440 px at the default 120 dpi): panels shrink to fit."""

MAX_PANELS_PER_LINE = 5
"""Attention maps per line of a task's row before it wraps (SFA and MSA each start a line)."""

LEGEND_CLASSES = 8
"""Classes listed in a segmentation legend: the most frequent in ground truth and prediction."""


def _row_panels(row: Mapping[str, Any], where: str
                ) -> tuple[np.ndarray | None, np.ndarray, list[tuple[str, np.ndarray]], list[dict[str, Any]]]:
    """A row dict -> (gt RGB or None, prediction RGB, [(label, attention RGB)], keys of the prediction
    line: ``[{"type": ..., ...}]`` as :func:`_draw_key` takes them)."""
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: each row must be a dict with keys 'task' and 'pred', got {type(row).__name__}")
    unknown = set(row) - _ROW_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown row key(s) {sorted(unknown)}; allowed: {sorted(_ROW_KEYS)}")
    if "task" not in row or row.get("pred") is None:
        raise ValueError(f"{where}: a row needs 'task' and 'pred'")
    task, kind, gt, pred = str(row["task"]), row.get("kind"), row.get("gt"), row["pred"]
    keys: list[dict[str, Any]] = []
    if kind is not None:
        options: dict[str, Any] = {}
        target = str(row.get("target") or task)
        if kind == "segmentation":
            options = {"num_classes": row.get("num_classes")}
            if row.get("dataset") is not None:
                options.update(dataset=row["dataset"], task=target)
        if kind == "depth":
            # Prediction and ground truth on one scale (the ground truth's), so colours compare.
            ranges = [r for r in (depth_range(gt) if gt is not None else None, depth_range(pred)) if r]
            options = {"depth_range": ranges[0] if ranges else None}
        raw_gt, raw_pred = gt, pred
        gt = colorize(kind, gt, **options) if gt is not None else None
        pred = colorize(kind, pred, **options)
        keys = _kind_keys(kind, raw_gt, raw_pred, options)  # after colorize: bad labels fail there, clearly
    gt = _panel(gt, f"{where} ({task}) 'gt'") if gt is not None else None
    pred = _panel(pred, f"{where} ({task}) 'pred'")
    maps = list(row.get("attention") or [])
    labels = list(row.get("attention_labels") or [f"attention {i + 1}" for i in range(len(maps))])
    if len(labels) != len(maps):
        raise ValueError(f"{where} ({task}): {len(labels)} attention_labels for {len(maps)} attention maps")
    attention = [(str(label), _panel(m, f"{where} ({task}) attention {i}"))
                 for i, (label, m) in enumerate(zip(labels, maps))]
    return gt, pred, attention, keys


def _kind_keys(kind: str, gt: Any, pred: Any, options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The key of a task kind's colours: class legend, depth / probability colour bar, normals sphere."""
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


def _attention_keys(labels: Sequence[str], scales: int) -> list[dict[str, Any]]:
    """Keys of a line of attention maps, from their labels' conventions (``SFA ...``, ``MSA s..``,
    ``MSA argmax``, as :func:`attention_images` names them in ``ufl predict`` / ``visualize``)."""
    keys: list[dict[str, Any]] = []
    if any(label.startswith("SFA") for label in labels):
        keys.append({"type": "colorbar", "cmap": HEATMAP_CMAP, "range": (0.0, 1.0), "ticks": {0.0: "low", 1.0: "high"},
                     "label": "SFA mask (per map)"})
    if any(label.startswith("MSA") and "argmax" not in label for label in labels):
        keys.append({"type": "colorbar", "cmap": HEATMAP_CMAP, "range": (0.0, 1.0), "label": "MSA weight"})
    if any("argmax" in label for label in labels):
        keys.append({"type": "legend", "title": "winning scale",
                     "entries": [(f"s{s}" + (" (finest)" if s == 0 else ""), SCALE_COLOURS[s])
                                 for s in range(max(1, scales))]})
    return keys


def _panel(x: Any, what: str) -> np.ndarray:
    arr = _to_numpy(x)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{what} is not a colourised uint8 (H, W, 3) image (got {arr.dtype} {tuple(arr.shape)}); "
                         f"give the row's 'kind' to colourise raw values")
    return arr


def _show(ax, rgb: np.ndarray | None, title: str | None = None) -> None:
    """An image panel without ticks (the frame stays, so a row label can sit beside it)."""
    if rgb is not None:
        ax.imshow(rgb, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def _row_lines(gt, pred, attention) -> list[tuple[list[tuple[str, np.ndarray | None]], str]]:
    """A task row's panels split into lines: ``[(panels, what)]``; the first holds the ground truth
    and the prediction, then each attention group (its labels' first word: SFA, MSA) starts a line,
    wrapped after :data:`MAX_PANELS_PER_LINE` maps. ``what`` is "prediction" or "attention"."""
    lines: list[tuple[list[tuple[str, np.ndarray | None]], str]] = [
        (([("ground truth", gt)] if gt is not None else []) + [("prediction", pred)], "prediction")]
    groups: dict[str, list[tuple[str, np.ndarray]]] = {}
    for label, rgb in attention:
        groups.setdefault(label.split(" ")[0], []).append((label, rgb))
    for maps in groups.values():
        for start in range(0, len(maps), MAX_PANELS_PER_LINE):
            lines.append((list(maps[start:start + MAX_PANELS_PER_LINE]), "attention"))
    return lines


def prediction_figure(samples: Sequence[Mapping[str, Any]], *, title: str | None = None,
                      panel_inches: float = 2.0, max_inches: float = MAX_FIGURE_INCHES) -> Figure:
    """The figure of :func:`prediction_grids` (not saved), so that callers and tests can inspect it.

    Each sample is a block: its input image on the left, spanning the block (two panels wide when
    the block has several lines), then per task the ground truth and prediction on one line and its
    attention maps on the following lines (SFA maps on one, MSA maps and the winning-scale map on the
    next), and at the end of each line a key: a class legend (the catalogue's class names, the most
    frequent :data:`LEGEND_CLASSES` classes of the sample), a depth colour bar in metres, a
    sphere for normals, a probability colour bar, the attention colour bars and the colours of the
    winning scale. Panels shrink so the figure is at most ``max_inches`` wide.
    """
    if not samples:
        raise ValueError("prediction_grids needs at least one sample")
    blocks = []
    for i, sample in enumerate(samples):
        if not isinstance(sample, Mapping) or "image" not in sample or not sample.get("rows"):
            raise ValueError(f"sample {i}: give a dict with 'image' and a non-empty list of 'rows'")
        image = as_rgb(sample["image"])
        rows = [_row_panels(row, f"sample {i} row {j}") for j, row in enumerate(sample["rows"])]
        tasks = [str(row["task"]) for row in sample["rows"]]
        blocks.append((sample.get("name"), image, tasks, rows))

    def layout(rows) -> tuple[int, int, int]:
        """(lines, input columns, panel columns) of a block."""
        has_gt = any(gt is not None for gt, _, _, _ in rows)
        lines = [_row_lines(gt if not has_gt else (gt if gt is not None else _MISSING), pred, att)
                 for gt, pred, att, _ in rows]
        count = sum(len(task_lines) for task_lines in lines)
        width = max(len(panels) for task_lines in lines for panels, _ in task_lines)
        return count, 2 if count > 1 else 1, width

    shapes = [layout(rows) for *_, rows in blocks]
    keyed = any(keys or attention for *_, rows in blocks for _, _, attention, keys in rows)
    ncols = max(inputs + width for _, inputs, width in shapes) + int(keyed)  # + the key column
    panel_inches = min(panel_inches, max_inches / ncols)
    aspect = max(image.shape[0] / image.shape[1] for _, image, _, _ in blocks)
    line_inches = panel_inches * aspect + 0.35  # room for the panel titles
    heights = [lines * line_inches + (0.3 if name else 0.0) for (name, *_), (lines, _, _) in zip(blocks, shapes)]
    fig = Figure(figsize=(ncols * panel_inches, sum(heights) + (0.4 if title else 0.0)), layout="constrained")
    if title:
        fig.suptitle(title, fontsize=12)
    subfigs = fig.subfigures(len(blocks), 1, squeeze=False, height_ratios=heights)[:, 0]
    for subfig, (name, image, tasks, rows), (lines, inputs, _) in zip(subfigs, blocks, shapes):
        if name:
            subfig.suptitle(str(name), fontsize=10)
        _draw_block(subfig, image, tasks, rows, ncols, lines, inputs)
    return fig


_MISSING = np.zeros((1, 1, 3), dtype=np.uint8)  # placeholder: this task has no ground truth, others do


def prediction_grids(samples: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str | None = None,
                     panel_inches: float = 2.0, dpi: int = _FIGURE_DPI, max_inches: float = MAX_FIGURE_INCHES) -> Path:
    """One PNG figure with a block per sample, like the Medusa poster's qualitative panel, with a key
    for every kind of picture (see :func:`prediction_figure` for the layout).

    Args:
        samples: ``[{"image": image (any :func:`as_rgb` layout), "rows": [row, ...], "name": str
            (optional block title)}, ...]``. A row is ``{"task": str, "pred": array, "gt": array |
            None, "attention": [uint8 (H, W, 3)] | None, "attention_labels": [str] | None}``; ``gt``
            and ``pred`` are colourised uint8 ``(H, W, 3)`` images, or raw maps when the row also
            gives ``"kind"`` (then :func:`colorize` is applied, with ``"dataset"`` / ``"num_classes"``
            / ``"target"`` (the catalogue's task name, default ``task``) for a segmentation palette
            and class names, and depth predictions coloured on the ground truth's range). Only rows
            with a ``kind`` get a colour key. Attention labels starting ``SFA`` / ``MSA`` (and one
            containing ``argmax``) get the attention keys.
        path: the ``.png`` file to write (atomically; parent folders created).
        title: the figure's title.
        panel_inches: width of one panel in inches (height follows the images' aspect ratio), at most.
        dpi: resolution of the PNG.
        max_inches: the figure's largest width in inches.

    Returns:
        ``path``.
    """
    path = _png_path(path)
    fig = prediction_figure(samples, title=title, panel_inches=panel_inches, max_inches=max_inches)
    return _save_figure(fig, path, dpi)


def _draw_block(subfig, image: np.ndarray, tasks: list[str], rows: list, ncols: int, lines: int,
                inputs: int) -> None:
    """One sample: the input spanning the first ``inputs`` columns of all ``lines``, then per task its
    lines of panels, each ended by its key in the last column; the task's name labels its first line."""
    grid = subfig.add_gridspec(lines, ncols)
    _show(subfig.add_subplot(grid[:, :inputs]), image, "input")
    has_gt = any(gt is not None for gt, _, _, _ in rows)
    line = 0
    for task, (gt, pred, attention, keys) in zip(tasks, rows):
        scales = sum(1 for label, _ in attention if label.startswith("MSA") and "argmax" not in label)
        for n, (panels, what) in enumerate(_row_lines(gt if not has_gt or gt is not None else _MISSING,
                                                      pred, attention)):
            for c, (label, rgb) in enumerate(panels, start=inputs):
                ax = subfig.add_subplot(grid[line, c])
                if rgb is _MISSING:
                    _show(ax, None)
                    ax.set_box_aspect(pred.shape[0] / pred.shape[1])  # as tall as the panels beside it
                    ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", fontsize=8,
                            transform=ax.transAxes)
                else:
                    _show(ax, rgb, label)
                if c == inputs and n == 0:
                    ax.set_ylabel(task, fontsize=10, fontweight="bold")
            line_keys = keys if what == "prediction" else _attention_keys([label for label, _ in panels], scales)
            if line_keys:
                key_ax = subfig.add_subplot(grid[line, ncols - 1])
                _draw_keys(key_ax, line_keys)
            line += 1


def _draw_keys(ax, keys: Sequence[Mapping[str, Any]]) -> None:
    """Draw ``keys`` side by side in the key cell ``ax`` (its own frame hidden; the keys' insets are
    left out of the constrained layout, so they never squeeze the panels)."""
    ax.set_axis_off()
    ax.set_label("key")
    shares = [{"colorbar": 0.65, "image": 0.7}.get(key["type"], 1.0) for key in keys]
    scale = 1.0 / max(1.0, sum(shares))
    left = 0.0
    for key, share in zip(keys, shares):
        width = share * scale
        if key["type"] == "colorbar":
            from matplotlib.cm import ScalarMappable
            from matplotlib.colors import Normalize

            lo, hi = key["range"]
            cax = ax.inset_axes([left + 0.02, 0.1, 0.08, 0.8])
            cax.set_in_layout(False)
            bar = ax.figure.colorbar(ScalarMappable(Normalize(lo, hi if hi > lo else lo + 1e-6), key["cmap"]),
                                     cax=cax)
            bar.set_label(key["label"], fontsize=7)
            bar.ax.tick_params(labelsize=6)
            if "ticks" in key:
                bar.set_ticks(list(key["ticks"]), labels=list(key["ticks"].values()))
        elif key["type"] == "legend":
            handles = [Patch(facecolor=np.asarray(colour) / 255 if colour is not None else "none",
                             edgecolor="black" if colour is not None else "none", linewidth=0.3, label=name)
                       for name, colour in key["entries"]]
            slot_ax = ax.inset_axes([left, 0.0, width, 1.0])
            slot_ax.set_in_layout(False)
            slot_ax.set_axis_off()
            slot_ax.legend(handles=handles, title=key["title"], loc="center left", fontsize=6, title_fontsize=7,
                           frameon=False, handlelength=1.0, handleheight=0.8, borderaxespad=0.0, labelspacing=0.2,
                           columnspacing=0.6, ncols=2 if len(handles) > 6 else 1)
        elif key["type"] == "image":
            inset = ax.inset_axes([left + 0.02, 0.15, width - 0.04, 0.7])
            inset.set_in_layout(False)
            inset.imshow(key["image"], interpolation="nearest")
            inset.set_xticks([])
            inset.set_yticks([])
            inset.set_title(key["title"], fontsize=6)
        left += width


def prediction_grid(image: Any, rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, *,
                    title: str | None = None, panel_inches: float = 2.0, dpi: int = _FIGURE_DPI) -> Path:
    """:func:`prediction_grids` for one image: ``image`` and its ``rows`` (same row dicts)."""
    return prediction_grids([{"image": image, "rows": rows}], path, title=title, panel_inches=panel_inches, dpi=dpi)


# ---------------------------------------------------------------------------------------------
# Bar charts
# ---------------------------------------------------------------------------------------------
def _format_value(value: float, like: float | None = None) -> str:
    """3-4 significant figures, as the results tables print them (37.48, 0.545, 123.4); with
    ``like``, as many decimals as ``like`` gets (a std printed as its mean: 52.24±0.30)."""
    if not math.isfinite(value):
        return "n/a"
    scale = abs(value if like is None else like)
    decimals = 1 if scale >= 100 else 2 if scale >= 1 else 3
    return f"{value:.{decimals}f}"


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _direction(higher_is_better: Mapping[str, bool] | None, task: str) -> str:
    """`` (↑)`` / `` (↓)`` after a task name when its direction is known (DejaVu Sans has both)."""
    if not higher_is_better or task not in higher_is_better:
        return ""
    return " (\u2191)" if higher_is_better[task] else " (\u2193)"


def _mean_std(value: Any, where: str) -> tuple[float, float | None]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{where}: expected a value or (mean, std), got {value!r}")
        return _number(value[0], where), _number(value[1], where)
    return _number(value, where), None


def _draw_bars(ax, bars: Mapping[int, tuple[float, float | None]], colours: list) -> None:
    """Bars at x = key with height mean, black error bars where a std is given, and the value (and
    ±std) written above each bar (below a negative one)."""
    x = list(bars)
    means = [m for m, _ in bars.values()]
    ax.bar(x, np.nan_to_num(means), color=colours)
    with_std = [(xi, m, s) for xi, (m, s) in bars.items() if s is not None and math.isfinite(m)]
    if with_std:  # only where a std is given: no zero-height caps on the others
        xs, ms, ss = zip(*with_std)
        ax.errorbar(xs, ms, yerr=ss, fmt="none", ecolor="black", capsize=3, linewidth=1)
    for xi, (m, s) in bars.items():
        finite = math.isfinite(m)
        label = _format_value(m) + (f"\u00b1{_format_value(s, like=m)}" if s is not None and finite else "")
        end = (m + (s or 0.0) * (1 if m >= 0 else -1)) if finite else 0.0  # the error bar's end
        ax.annotate(label, (xi, end), xytext=(0, 2 if end >= 0 else -2), textcoords="offset points",
                    ha="center", va="bottom" if end >= 0 else "top", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.margins(y=0.18)


def bar_chart(values: Mapping[str, float], path: str | os.PathLike, *, ylabel: str = "headline metric",
              title: str | None = None, higher_is_better: Mapping[str, bool] | None = None,
              dpi: int = _FIGURE_DPI) -> Path:
    """One bar per task (e.g. the headline metric of ``ufl evaluate``), its value written on it.

    Args:
        values: ``{task: value}``; NaN is drawn as an empty bar labelled ``n/a``.
        path: the ``.png`` file to write (atomically).
        ylabel, title: axis label and figure title.
        higher_is_better: ``{task: bool}``: an arrow after each task name shows the direction
            (the tasks' metrics differ in unit and direction, e.g. mIoU % up, rmse m down).

    Returns:
        ``path``.
    """
    path = _png_path(path)
    if not values:
        raise ValueError("bar_chart needs at least one task value")
    tasks = [str(t) for t in values]
    heights = [_number(v, f"bar_chart value of {t!r}") for t, v in values.items()]
    fig = Figure(figsize=(max(4.0, 1.2 * len(tasks) + 1.5), 3.6), layout="constrained")
    ax = fig.add_subplot()
    colours = [np.asarray(_TAB10[i % len(_TAB10)]) / 255 for i in range(len(tasks))]
    _draw_bars(ax, {i: (h, None) for i, h in enumerate(heights)}, colours)
    ax.set_xticks(range(len(tasks)), [t + _direction(higher_is_better, t) for t in tasks], fontsize=9)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return _save_figure(fig, path, dpi)


def grouped_bars(table: Mapping[str, Mapping[str, Any]], path: str | os.PathLike, *, title: str | None = None,
                 ylabels: Mapping[str, str] | None = None, higher_is_better: Mapping[str, bool] | None = None,
                 dpi: int = _FIGURE_DPI) -> Path:
    """Bars per task and model (e.g. ``ufl reproduce``: Medusa vs MTI-Net vs single-task), one
    subplot per task since the tasks' metrics have different units.

    Args:
        table: ``{task: {model: value or (mean, std)}}``; a std draws an error bar. A model absent
            from a task leaves its slot empty; each model keeps one colour across subplots.
        path: the ``.png`` file to write (atomically).
        title: the figure's title.
        ylabels: ``{task: axis label}`` (e.g. ``"mIoU (%)"``).
        higher_is_better: ``{task: bool}``: an arrow after each subplot's task name.

    Returns:
        ``path``.
    """
    path = _png_path(path)
    if not table or not any(table.values()):
        raise ValueError("grouped_bars needs at least one task with one model value")
    models: list[str] = []
    for task, row in table.items():
        if not isinstance(row, Mapping):
            raise ValueError(f"grouped_bars: table[{task!r}] must be a dict {{model: value}}, got {row!r}")
        models.extend(str(m) for m in row if str(m) not in models)
    colour = {m: np.asarray(_TAB10[i % len(_TAB10)]) / 255 for i, m in enumerate(models)}

    fig = Figure(figsize=(max(4.0, len(table) * (0.7 * len(models) + 1.2)), 3.8), layout="constrained")
    axes = fig.subplots(1, len(table), squeeze=False)[0]
    for ax, (task, row) in zip(axes, table.items()):
        bars = {models.index(str(m)): _mean_std(v, f"grouped_bars {task}/{m}") for m, v in row.items()}
        _draw_bars(ax, bars, [colour[models[i]] for i in bars])
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{task}{_direction(higher_is_better, str(task))}", fontsize=10)
        if ylabels and task in ylabels:
            ax.set_ylabel(ylabels[task], fontsize=9)
    if title:
        fig.suptitle(title)
    return _save_figure(fig, path, dpi)


def metric_unit(kind: str, metric: str) -> str:
    """The axis a metric is drawn on: ``"score (%)"`` (mIoU, odsF, maxF, normals' within-x° shares),
    ``"metres"`` (depth rmse), ``"log metres"`` (depth log_rmse) or ``"degrees"`` (normals' angles)."""
    if kind == "depth":
        return "log metres" if metric == "log_rmse" else "metres"
    if kind == "normals" and metric in ("mean", "median", "rmse"):
        return "degrees"
    return "score (%)"


def unit_figure(table: Mapping[str, Mapping[str, Mapping[str, Any]]], *, title: str | None = None,
                higher_is_better: Mapping[str, bool] | None = None) -> Figure:
    """Small multiples: one axis per unit, bars per task and series (e.g. ufl against the trivial
    predictor), so mIoU, metres and degrees never share an axis.

    Args:
        table: ``{unit: {task: {series: value}}}`` (see :func:`metric_unit` for the units); NaN or
            a missing series leaves its slot empty. Each series keeps one colour across axes, and
            a legend names them.
        title: the figure's title.
        higher_is_better: ``{task: bool}``: an arrow after each task's name.
    """
    if not table or not any(table.values()):
        raise ValueError("unit_figure needs at least one unit with one task")
    series: list[str] = []
    for unit, tasks in table.items():
        for task, values in tasks.items():
            if not isinstance(values, Mapping):
                raise ValueError(f"unit_figure: table[{unit!r}][{task!r}] must be a dict {{series: value}}")
            series.extend(str(s) for s in values if str(s) not in series)
    colour = {s: np.asarray(_TAB10[i % len(_TAB10)]) / 255 for i, s in enumerate(series)}
    width = 0.8 / max(len(series), 1)
    fig = Figure(figsize=(max(4.0, sum(1.0 + 0.9 * len(t) for t in table.values()) + 0.5), 3.8),
                 layout="constrained")
    axes = fig.subplots(1, len(table), squeeze=False)[0]
    for ax, (unit, tasks) in zip(axes, table.items()):
        for j, name in enumerate(series):
            bars = {}
            for i, values in enumerate(tasks.values()):
                if name in values and values[name] is not None:
                    bars[i + (j - (len(series) - 1) / 2) * width] = (_number(values[name], f"{unit}/{name}"), None)
            if bars:
                xs = list(bars)
                means = [m for m, _ in bars.values()]
                ax.bar(xs, np.nan_to_num(means), width=width, color=[colour[name]] * len(xs), label=name)
                for x, m in zip(xs, means):
                    ax.annotate(_format_value(m), (x, m if math.isfinite(m) else 0.0), xytext=(0, 2),
                                textcoords="offset points", ha="center", va="bottom", fontsize=7)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.margins(y=0.18)
        ax.set_xlim(-0.6, len(tasks) - 0.4)
        ax.set_xticks(range(len(tasks)), [t + _direction(higher_is_better, t) for t in tasks], fontsize=8,
                      rotation=20 if len(tasks) > 2 else 0)
        ax.set_ylabel(unit, fontsize=9)
        ax.set_title(unit, fontsize=10)
    fig.legend(handles=[Patch(color=colour[s], label=s) for s in series],
               loc="outside lower center", ncols=len(series), fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def unit_chart(table: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | os.PathLike, *,
               title: str | None = None, higher_is_better: Mapping[str, bool] | None = None,
               dpi: int = _FIGURE_DPI) -> Path:
    """Write :func:`unit_figure` to ``path`` (a ``.png``, atomically); returns ``path``."""
    path = _png_path(path)
    return _save_figure(unit_figure(table, title=title, higher_is_better=higher_is_better), path, dpi)
