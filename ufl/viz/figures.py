"""Prediction figures: per sample its input image, then per task the ground truth, the prediction
and Medusa's attention maps, each line ended by a key of its colours (the Medusa poster's
qualitative panel). Rows are :class:`~ufl.viz.panels.PanelRow` objects built from the caller's row
dicts; the figures are drawn on an Agg canvas (see :mod:`ufl.viz.files`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .attention import attention_keys
from ..colours import as_rgb
from .files import FIGURE_DPI, png_path, save_figure
from .panels import MISSING_GT, PanelRow

__all__ = ["prediction_figure", "prediction_grids", "prediction_grid", "MAX_FIGURE_INCHES"]

MAX_FIGURE_INCHES = 12.0
"""Widest prediction figure (inches; 1440 px at the default 120 dpi): panels shrink to fit."""


def prediction_figure(samples: Sequence[Mapping[str, Any]], *, title: str | None = None,
                      panel_inches: float = 2.0, max_inches: float = MAX_FIGURE_INCHES) -> Figure:
    """The figure of :func:`prediction_grids` (not saved), so that callers and tests can inspect it.

    Each sample is a block: its input image on the left, spanning the block (two panels wide when
    the block has several lines), then per task the ground truth and prediction on one line and its
    attention maps on the following lines (SFA maps on one, MSA maps and the winning-scale map on the
    next), and at the end of each line a key: a class legend (the catalogue's class names, the most
    frequent :data:`~ufl.colours.LEGEND_CLASSES` classes of the sample), a depth colour bar in metres, a
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
        rows = [PanelRow.from_dict(row, f"sample {i} row {j}") for j, row in enumerate(sample["rows"])]
        has_gt = any(row.gt is not None for row in rows)
        blocks.append((sample.get("name"), image, [(row, row.lines(gt_column=has_gt)) for row in rows]))

    def layout(rows: list[tuple[PanelRow, list]]) -> tuple[int, int, int]:
        """(lines, input columns, panel columns) of a block."""
        count = sum(len(lines) for _, lines in rows)
        width = max(len(panels) for _, lines in rows for panels, _ in lines)
        return count, 2 if count > 1 else 1, width

    shapes = [layout(rows) for *_, rows in blocks]
    keyed = any(row.keys or row.attention for *_, rows in blocks for row, _ in rows)
    ncols = max(inputs + width for _, inputs, width in shapes) + int(keyed)  # + the key column
    panel_inches = min(panel_inches, max_inches / ncols)
    aspect = max(image.shape[0] / image.shape[1] for _, image, _ in blocks)
    line_inches = panel_inches * aspect + 0.35  # room for the panel titles
    heights = [lines * line_inches + (0.3 if name else 0.0) for (name, *_), (lines, _, _) in zip(blocks, shapes)]
    fig = Figure(figsize=(ncols * panel_inches, sum(heights) + (0.4 if title else 0.0)), layout="constrained")
    if title:
        fig.suptitle(title, fontsize=12)
    subfigs = fig.subfigures(len(blocks), 1, squeeze=False, height_ratios=heights)[:, 0]
    for subfig, (name, image, rows), (lines, inputs, _) in zip(subfigs, blocks, shapes):
        if name:
            subfig.suptitle(str(name), fontsize=10)
        _draw_block(subfig, image, rows, ncols, lines, inputs)
    return fig


def prediction_grids(samples: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str | None = None,
                     panel_inches: float = 2.0, dpi: int = FIGURE_DPI, max_inches: float = MAX_FIGURE_INCHES) -> Path:
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
    path = png_path(path)
    fig = prediction_figure(samples, title=title, panel_inches=panel_inches, max_inches=max_inches)
    return save_figure(fig, path, dpi)


def _draw_block(subfig, image: np.ndarray, rows: list[tuple[PanelRow, list]], ncols: int, lines: int,
                inputs: int) -> None:
    """One sample: the input spanning the first ``inputs`` columns of all ``lines``, then per task
    (each row with its :meth:`PanelRow.lines`) its lines of panels, each ended by its key in the last
    column; the task's name labels its first line."""
    grid = subfig.add_gridspec(lines, ncols)
    _show(subfig.add_subplot(grid[:, :inputs]), image, "input")
    line = 0
    for row, row_lines in rows:
        for n, (panels, what) in enumerate(row_lines):
            for c, (label, rgb) in enumerate(panels, start=inputs):
                ax = subfig.add_subplot(grid[line, c])
                if rgb is MISSING_GT:
                    _show(ax, None)
                    ax.set_box_aspect(row.pred.shape[0] / row.pred.shape[1])  # as tall as the panels beside it
                    ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", fontsize=8,
                            transform=ax.transAxes)
                else:
                    _show(ax, rgb, label)
                if c == inputs and n == 0:
                    ax.set_ylabel(row.task, fontsize=10, fontweight="bold")
            line_keys = row.keys if what == "prediction" else attention_keys([label for label, _ in panels], row.scales)
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
                    title: str | None = None, panel_inches: float = 2.0, dpi: int = FIGURE_DPI) -> Path:
    """:func:`prediction_grids` for one image: ``image`` and its ``rows`` (same row dicts)."""
    return prediction_grids([{"image": image, "rows": rows}], path, title=title, panel_inches=panel_inches, dpi=dpi)

def _show(ax, rgb: np.ndarray | None, title: str | None = None) -> None:
    """An image panel without ticks (the frame stays, so a row label can sit beside it)."""
    if rgb is not None:
        ax.imshow(rgb, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)

