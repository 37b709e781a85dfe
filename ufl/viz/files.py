"""Writing pictures: a uint8 array or a matplotlib figure as a PNG, atomically.

Figures are drawn with :class:`matplotlib.figure.Figure` on an Agg canvas, never through
``pyplot``: no GUI backend is touched, no global figure list grows, and nothing is left open. Every
file is written atomically (:func:`ufl.io.atomic_path`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..errors import UflError
from ..io import atomic_path
from ..tensors import to_numpy

__all__ = ["save_png", "save_figure", "png_path", "FIGURE_DPI"]

FIGURE_DPI = 120
"""Default resolution of the figures (dots per inch)."""


def png_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path when it ends in ``.png`` (any case), else a :class:`UflError` saying so."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UflError(f"cannot write {path}: images are written as PNG, give a path ending in .png")
    return path


def save_png(array: Any, path: str | os.PathLike) -> Path:
    """Write a uint8 image ``(H, W)`` grey, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA as a PNG,
    atomically (parent folders created); returns the path."""
    path = png_path(path)
    arr = to_numpy(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"save_png takes uint8 images, got dtype {arr.dtype}; colour maps with colorize() first")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))) or arr.size == 0:
        raise ValueError(f"save_png takes (H, W), (H, W, 3) or (H, W, 4) images, got shape {tuple(arr.shape)}")
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG")
    return path


def save_figure(fig: Figure, path: Path, dpi: int) -> Path:
    """Render ``fig`` on an Agg canvas into ``path`` atomically, then release it."""
    try:
        FigureCanvasAgg(fig)
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        fig.clear()
    return path

