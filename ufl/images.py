"""Reading image and label files, with one clear :class:`~ufl.errors.DataError` per bad file.

Every reader forces a full decode (``PIL.Image.load()``, ``numpy.load``, ``scipy.io.loadmat``), so a
truncated or corrupt file fails here, naming the file, rather than deep inside a training loop.

Formats read (as the public NYUD_MT / PASCAL_MT archives and a user's folder dataset store them):

- RGB images (``.jpg`` / ``.png``): :func:`read_image` -> ``(H, W, 3)`` uint8.
- Label PNGs: :func:`read_png` -> the stored values, unchanged (palette PNGs give their indices,
  16-bit PNGs give uint16), with the channel count and bit depth checked.
- ``.npy`` arrays: :func:`read_npy` (``allow_pickle=False``: no pickled code is executed).
- MATLAB ``.mat`` files: :func:`read_mat` (PASCAL-Context ``LabelMap``, PASCAL-Part ``anno``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.io import loadmat  # imported here, not per call: DataLoader workers fork with it

from .errors import DataError

__all__ = ["require_file", "read_image", "read_png", "read_npy", "read_mat", "decode_normals_rgb"]

# PIL modes by what they hold. "P" (palette) PNGs store class indices, as PASCAL VOC's do.
_SINGLE_CHANNEL_8BIT = ("L", "P", "1")
_SINGLE_CHANNEL_16BIT = ("I;16", "I;16B", "I;16L", "I")


def require_file(path: str | os.PathLike, what: str) -> Path:
    """Return ``path`` as a :class:`Path`, or raise a :class:`DataError` naming it when missing."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def _open_decoded(path: Path, what: str) -> Image.Image:
    """Open and fully decode an image file (a truncated file fails here, not later)."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()  # the copy stays valid after the file is closed
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot decode {what} {path} ({reason}); the file is truncated or not an image: "
                        f"re-extract or replace it") from None


def read_image(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """Read an RGB image file as ``(H, W, 3)`` uint8 (grey, palette and RGBA images converted).

    NOTE: 16-bit images are not converted to RGB (PIL would clip them): they raise, as an RGB
    input image is expected to be 8-bit.
    """
    path = require_file(path, what)
    img = _open_decoded(path, what)
    if img.mode in _SINGLE_CHANNEL_16BIT or img.mode == "F":
        raise DataError(f"{what} {path} is a {img.mode} (16-bit or float) image; an 8-bit RGB image is expected")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def read_png(path: str | os.PathLike, what: str, channels: int = 1, allow_16bit: bool = True) -> np.ndarray:
    """Read a label PNG without changing its values.

    Args:
        path: the file.
        what: how the error messages call it (e.g. ``"semseg label"``).
        channels: 1 (class indices, grey maps: ``(H, W)``) or 3 (RGB-encoded maps: ``(H, W, 3)``).
        allow_16bit: accept 16-bit single-channel PNGs (values returned as int32 / uint16).

    Returns:
        ``(H, W)`` or ``(H, W, 3)`` array; uint8 for 8-bit files.
    """
    path = require_file(path, what)
    img = _open_decoded(path, what)
    if channels == 1:
        if img.mode in _SINGLE_CHANNEL_8BIT or (allow_16bit and img.mode in _SINGLE_CHANNEL_16BIT):
            arr = np.asarray(img)
            return arr.astype(np.uint8) if img.mode == "1" else arr.copy()
        expected = "an 8-bit or 16-bit" if allow_16bit else "an 8-bit"
        raise DataError(f"{what} {path} has image mode {img.mode}; {expected} single-channel PNG is expected")
    if channels == 3:
        if img.mode == "RGB":
            return np.asarray(img).copy()
        raise DataError(f"{what} {path} has image mode {img.mode}; an 8-bit RGB PNG is expected")
    raise ValueError(f"channels must be 1 or 3, got {channels}")


def read_npy(path: str | os.PathLike, what: str) -> np.ndarray:
    """Read a ``.npy`` array (no pickled objects are loaded)."""
    path = require_file(path, what)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot read {what} {path} ({reason}); re-extract or replace it") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive opened by mistake
        raise DataError(f"{what} {path} is not a single .npy array")
    return arr


def read_mat(path: str | os.PathLike, what: str, key: str) -> Any:
    """Read a MATLAB ``.mat`` file and return its variable ``key``."""

    path = require_file(path, what)
    try:
        data = loadmat(path)
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError, ... for corrupt files
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot read {what} {path} ({reason}); re-extract or replace it") from None
    if key not in data:
        keys = ", ".join(k for k in data if not k.startswith("__")) or "none"
        raise DataError(f"{what} {path} has no variable {key!r} (it holds: {keys})")
    return data[key]


def decode_normals_rgb(rgb: np.ndarray) -> np.ndarray:
    """RGB-encoded normals ``(H, W, 3)`` uint8 -> float32 ``n = 2 v / 255 - 1`` (not yet unit length).

    The encoding of PASCAL_MT's ``normals_distill/`` PNGs (MTI-Net ``data/pascal_context.py``).
    """
    return (2.0 * np.asarray(rgb, dtype=np.float32) / 255.0 - 1.0).astype(np.float32)
