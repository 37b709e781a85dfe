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
from PIL import Image

from .datasets.catalog import MetadataCatalog, voc_palette
from .errors import UflError
from .io import atomic_path
from .taskspec import KINDS

__all__ = [
    "colorize", "depth_range", "as_rgb", "blend", "attention_images", "save_png",
    "prediction_grid", "prediction_grids", "bar_chart", "grouped_bars",
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
_ROW_KEYS = {"task", "gt", "pred", "attention", "attention_labels", "kind", "dataset", "num_classes"}


def _row_panels(row: Mapping[str, Any],
                where: str) -> tuple[np.ndarray | None, np.ndarray, list[tuple[str, np.ndarray]]]:
    """A row dict -> (gt RGB or None, prediction RGB, [(label, attention RGB)])."""
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: each row must be a dict with keys 'task' and 'pred', got {type(row).__name__}")
    unknown = set(row) - _ROW_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown row key(s) {sorted(unknown)}; allowed: {sorted(_ROW_KEYS)}")
    if "task" not in row or row.get("pred") is None:
        raise ValueError(f"{where}: a row needs 'task' and 'pred'")
    task, kind, gt, pred = str(row["task"]), row.get("kind"), row.get("gt"), row["pred"]
    if kind is not None:
        options: dict[str, Any] = {}
        if kind == "segmentation":
            options = {"num_classes": row.get("num_classes")}
            if row.get("dataset") is not None:
                options.update(dataset=row["dataset"], task=task)
        if kind == "depth":
            # Prediction and ground truth on one scale (the ground truth's), so colours compare.
            ranges = [r for r in (depth_range(gt) if gt is not None else None, depth_range(pred)) if r]
            options = {"depth_range": ranges[0] if ranges else None}
        gt = colorize(kind, gt, **options) if gt is not None else None
        pred = colorize(kind, pred, **options)
    gt = _panel(gt, f"{where} ({task}) 'gt'") if gt is not None else None
    pred = _panel(pred, f"{where} ({task}) 'pred'")
    maps = list(row.get("attention") or [])
    labels = list(row.get("attention_labels") or [f"attention {i + 1}" for i in range(len(maps))])
    if len(labels) != len(maps):
        raise ValueError(f"{where} ({task}): {len(labels)} attention_labels for {len(maps)} attention maps")
    attention = [(str(label), _panel(m, f"{where} ({task}) attention {i}"))
                 for i, (label, m) in enumerate(zip(labels, maps))]
    return gt, pred, attention


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


def prediction_grids(samples: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str | None = None,
                     panel_inches: float = 2.0, dpi: int = _FIGURE_DPI) -> Path:
    """One PNG figure with a block per sample, like the Medusa poster's qualitative panel.

    Each block: the input image on the left (spanning the block), then one row per task with the
    ground truth (when any row of the block has one), the prediction and the task's attention maps.

    Args:
        samples: ``[{"image": image (any :func:`as_rgb` layout), "rows": [row, ...], "name": str
            (optional block title)}, ...]``. A row is ``{"task": str, "pred": array, "gt": array |
            None, "attention": [uint8 (H, W, 3)] | None, "attention_labels": [str] | None}``; ``gt``
            and ``pred`` are colourised uint8 ``(H, W, 3)`` images, or raw maps when the row also
            gives ``"kind"`` (then :func:`colorize` is applied, with ``"dataset"`` / ``"num_classes"``
            for a segmentation palette, and depth predictions coloured on the ground truth's range).
        path: the ``.png`` file to write (atomically; parent folders created).
        title: the figure's title.
        panel_inches: width of one panel in inches (height follows the images' aspect ratio).
        dpi: resolution of the PNG.

    Returns:
        ``path``.
    """
    path = _png_path(path)
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

    def columns(rows) -> int:
        has_gt = any(gt is not None for gt, _, _ in rows)
        return 1 + int(has_gt) + 1 + max(len(att) for _, _, att in rows)

    ncols = max(columns(rows) for *_, rows in blocks)
    aspect = max(image.shape[0] / image.shape[1] for _, image, _, _ in blocks)
    row_inches = panel_inches * aspect + 0.35  # room for the panel titles
    heights = [len(rows) * row_inches + (0.3 if name else 0.0) for name, _, _, rows in blocks]
    fig = Figure(figsize=(ncols * panel_inches, sum(heights) + (0.4 if title else 0.0)), layout="constrained")
    if title:
        fig.suptitle(title, fontsize=12)
    subfigs = fig.subfigures(len(blocks), 1, squeeze=False, height_ratios=heights)[:, 0]
    for subfig, (name, image, tasks, rows) in zip(subfigs, blocks):
        if name:
            subfig.suptitle(str(name), fontsize=10)
        _draw_block(subfig, image, tasks, rows, ncols)
    return _save_figure(fig, path, dpi)


def _draw_block(subfig, image: np.ndarray, tasks: list[str], rows: list, ncols: int) -> None:
    """One sample: the input spanning column 0, then per task row [ground truth], prediction,
    attention maps; the task's name labels the row."""
    grid = subfig.add_gridspec(len(rows), ncols)
    _show(subfig.add_subplot(grid[:, 0]), image, "input")
    has_gt = any(gt is not None for gt, _, _ in rows)
    for r, (task, (gt, pred, attention)) in enumerate(zip(tasks, rows)):
        panels = ([("ground truth", gt)] if has_gt else []) + [("prediction", pred)] + attention
        for c, (label, rgb) in enumerate(panels, start=1):
            ax = subfig.add_subplot(grid[r, c])
            if rgb is None:  # this task has no ground truth while others of the sample do
                _show(ax, None)
                ax.set_box_aspect(pred.shape[0] / pred.shape[1])  # as tall as the panels beside it
                ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", fontsize=8, transform=ax.transAxes)
            else:
                _show(ax, rgb, label)
            if c == 1:
                ax.set_ylabel(task, fontsize=10, fontweight="bold")


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
