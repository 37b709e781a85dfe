"""Surface normals: a unit vector per pixel.

Target: ``(3, H, W)`` float32 unit vectors in camera coordinates (x to the right, y down the image,
z towards the camera, as NYUD-v2 stores them), zero vector = invalid. Head: 3 channels,
L2-normalised to predict; loss ``normals_l1``; metrics the angular error in degrees (mean as
headline, median, rmse: lower is better; 11.25, 22.5, 30: percent of pixels within, higher is better).
A horizontal flip negates x; a rotation of the image rotates x, y with it.

NOTE: the rotation of the x, y components is MTI-Net's: its ``ScaleNRotate`` rotates them with the
image through ``arctan2(n_x, n_y)``, the same in-plane rotation as :func:`rotate_normals` for y
pointing down. Data with y pointing up would need the opposite angle.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import DataError
from .base import Kind, Modality

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..metrics import Metric

__all__ = ["NormalsModality", "NormalsKind", "rotate_normals", "renormalize", "to_normals_target", "normalize_normals",
           "unit_planes", "rgb_normals_target"]


def renormalize(normals: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Unit-length ``(3, H, W)`` vectors; vectors shorter than ``eps`` become zero (invalid)."""
    import torch

    from ..vectors import vector_norm

    norm = vector_norm(normals, dim=0)
    return torch.where(norm > eps, normals / norm.clamp_min(eps), torch.zeros_like(normals))


def rotate_normals(normals: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate the x, y components of ``(3, H, W)`` normals by ``angle`` degrees counter-clockwise
    on screen (x right, y down: ``x' = x cos + y sin``, ``y' = -x sin + y cos``)."""
    import torch

    rad = math.radians(angle)
    c, s = math.cos(rad), math.sin(rad)
    x, y, z = normals[0], normals[1], normals[2]
    return torch.stack([c * x + s * y, -s * x + c * y, z])


class NormalsModality(Modality):
    """Unit vectors: out-of-view pixels are 0 (invalid); x negated by a flip; x, y rotated with the
    image; re-normalised to unit length after every resampling."""

    name = "normals"
    fill = 0.0

    def flipped(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        return x * torch.tensor([-1.0, 1.0, 1.0], dtype=x.dtype).view(3, 1, 1)

    def warped(self, x: torch.Tensor, scale: float, angle: float) -> torch.Tensor:
        return renormalize(rotate_normals(x, angle))

    def resized(self, x: torch.Tensor) -> torch.Tensor:
        return renormalize(x)


class NormalsKind(Kind):
    name = "normals"
    modality = NormalsModality()
    losses = ("normals_l1",)
    metric_keys = ("mean", "median", "rmse", "11.25", "22.5", "30")
    headline = "mean"
    fixed_channels = 3

    @property
    def metric(self) -> type[Metric]:
        from ..metrics import NormalsMetric

        return NormalsMetric

    def target_layout(self, channels: int, size: Sequence[int]) -> tuple[tuple[int, ...], str, str]:
        """``(3, H, W)`` float16 (their sources are 8-bit PNGs or float maps: float16's 1e-3
        precision is below 0.1 degree); decoded float32."""
        return (3, *size), "float16", "float32"

    def decode_file(self, path: Path, fmt: str, channels: int, what: str) -> torch.Tensor:
        from ..images import read_npy, read_png

        if fmt == "npy":
            return to_normals_target(read_npy(path, what), path, what)
        rgb = read_png(path, what, channels=3)
        return rgb_normals_target(rgb, path, what, valid=rgb.any(axis=-1))  # black marks invalid pixels

    def valid(self, target: torch.Tensor) -> torch.Tensor:
        from ..vectors import vector_norm

        return vector_norm(target, dim=1) > 0

    def postprocess(self, logits: torch.Tensor, activation: str | None = None) -> torch.Tensor:
        """Unit vectors ``(B, 3, H, W)``."""
        from ..vectors import unit_vectors

        return unit_vectors(logits.float(), dim=1)

    def resize_prediction(self, pred: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Bilinear, then unit length again."""
        from ..vectors import unit_vectors

        return unit_vectors(super().resize_prediction(pred, size), dim=0)

    def prior_value(self, total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """The mean direction (the summed valid normals, unit length)."""
        from ..vectors import unit_vectors

        return unit_vectors(total, dim=0)

    def prior_logits(self, value: torch.Tensor, batch: int, channels: int, size: Sequence[int]) -> torch.Tensor:
        return value.view(1, 3, 1, 1).expand(batch, 3, *size).float()

    def probe_targets(self, target: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """The 3 components ``(H, W, 3)``; the zero vector invalid."""
        import numpy as np

        target = np.asarray(target, dtype=np.float64)
        return np.linalg.norm(target, axis=0) > 0, np.moveaxis(target, 0, -1)

    def colorize(self, array: Any, *, valid: Any = None, classes: Any = None, value_range: Any = None) -> np.ndarray:
        """RGB = (n + 1) / 2; the zero vector black."""
        from ..colours import colorize_normals

        return colorize_normals(array, valid)

    def colour_key(self, gt: Any, pred: Any, *, classes: Any = None, value_range: Any = None) -> list[dict[str, Any]]:
        """A sphere coloured by its normals."""
        from ..colours import normals_sphere_key

        return normals_sphere_key()

    def metric_unit(self, metric: str) -> str:
        """Degrees for the angle errors, a score (%) for the shares within a threshold."""
        return "degrees" if metric in ("mean", "median", "rmse") else "score (%)"


def normalize_normals(normals: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Scale each ``(..., 3)`` vector to unit length; vectors shorter than ``eps`` become zero (invalid)."""
    import numpy as np

    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    valid = norm > eps
    return np.where(valid, normals / np.where(valid, norm, 1.0), 0.0).astype(np.float32)


def unit_planes(planes: np.ndarray, valid: np.ndarray | None = None, eps: float = 1e-6) -> np.ndarray:
    """:func:`normalize_normals` of channel-first float32 normals ``(3, H, W)``, in place, bit for bit
    (tested): the same float32 operations (the squares summed x, y, z in that order, as NumPy's
    ``linalg.norm`` sums the last axis; one division), on three planes instead of an ``(H, W, 3)``
    array, without its temporaries or a transposing copy. Vectors shorter than ``eps`` and, when
    given, the pixels where ``valid`` (``(H, W)`` bool) is false become +0 (invalid).

    Returns ``planes``, which must be a writable C-contiguous float32 ``(3, H, W)`` array.
    """
    import numpy as np

    x, y, z = planes
    norm = x * x
    norm += y * y
    norm += z * z
    np.sqrt(norm, out=norm)
    keep = norm > eps
    if valid is not None:
        keep &= valid
    np.divide(planes, norm, out=planes, where=keep)
    np.copyto(planes, 0.0, where=~keep)
    return planes


def _check_components(normals: np.ndarray, path: Path | str, what: str, tol: float) -> None:
    """Refuse NaN or infinite values and components beyond ``[-1 - tol, 1 + tol]`` (one reduction)."""
    import numpy as np

    largest = np.abs(normals).max(initial=0.0)  # NaN propagates, an infinity is the largest
    if not np.isfinite(largest):
        raise DataError(f"{what} {path} holds NaN or infinite values; store a zero vector where normals are missing")
    if largest > 1 + tol:
        raise DataError(f"{what} {path} holds components up to {float(largest):g}; unit vectors "
                        f"(components in [-1, 1]) are expected")


def to_normals_target(arr: np.ndarray, path: Path | str, what: str = "normals", tol: float = 1e-3) -> torch.Tensor:
    """Normals ``(H, W, 3)`` -> float32 ``(3, H, W)`` unit vectors (re-normalised), zero vector = invalid.

    Components must lie in ``[-1, 1]`` (within ``tol``): an RGB-encoded map (0..255) stored as
    ``.npy`` by mistake is refused rather than silently normalised. The values are
    :func:`normalize_normals`' (computed by :func:`unit_planes`).
    """
    import numpy as np
    import torch

    normals = np.asarray(arr)
    if normals.ndim != 3 or normals.shape[2] != 3:
        raise DataError(f"{what} {path} has shape {tuple(normals.shape)}; an HxWx3 array of unit vectors is expected")
    if not np.issubdtype(normals.dtype, np.number):
        raise DataError(f"{what} {path} has dtype {normals.dtype}; float unit vectors are expected")
    normals = normals.astype(np.float32, copy=False)
    _check_components(normals, path, what, tol)
    planes = np.array(normals.transpose(2, 0, 1), order="C")  # a new array (never the caller's)
    return torch.from_numpy(unit_planes(planes))


def rgb_normals_target(rgb: np.ndarray, path: Path | str, what: str = "normals map",
                       valid: np.ndarray | None = None) -> torch.Tensor:
    """RGB-encoded normals ``(H, W, 3)`` uint8 (``n = 2 v / 255 - 1``, PASCAL_MT's ``normals_distill/``
    PNGs) -> float32 ``(3, H, W)`` unit vectors, zero vector where ``valid`` (``(H, W)`` bool) is false.

    Exactly ``to_normals_target(decode_normals_rgb(rgb) with the invalid pixels zeroed)`` (tested
    on every RGB value), decoded straight into channel-first planes; the decoded components lie in
    ``[-1, 1]`` and are finite by construction, so that check has nothing to refuse here.
    """
    import numpy as np
    import torch

    from ..images import decode_normals_rgb

    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"{what} {path} is a {rgb.dtype} array of shape {tuple(rgb.shape)}; an 8-bit RGB "
                        f"image (H, W, 3) is expected")
    if valid is not None and valid.shape != rgb.shape[:2]:
        raise ValueError(f"valid mask {valid.shape} does not match the normals map {rgb.shape[:2]}")
    planes = decode_normals_rgb(rgb.transpose(2, 0, 1))  # (3, H, W), decoded straight into channel-first planes
    return torch.from_numpy(unit_planes(planes, valid))
