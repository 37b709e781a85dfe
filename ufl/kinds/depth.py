"""Monocular depth: metres per pixel.

Target: ``(1, H, W)`` float32 metres, 0 = invalid. Head: 1 channel through ``softplus`` (metres > 0,
:mod:`ufl.outputs`); loss ``l1`` over valid pixels; metrics rmse (headline) and log_rmse (lower is
better). A zoom by ``s`` divides depth by ``s`` (as if the camera moved closer).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import DataError
from .base import Kind, Modality, single_channel_map

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..metrics import Metric

__all__ = ["DepthModality", "DepthKind", "to_depth_target"]

#: The raw output of the trivial predictor when no valid depth was seen (softplus(-30) ~ 1e-13 m).
NO_DEPTH_RAW = -30.0


class DepthModality(Modality):
    """Metres: out-of-view pixels are 0 (invalid); a zoom by ``scale`` divides the depth by it."""

    name = "depth"
    fill = 0.0

    def warped(self, x: torch.Tensor, scale: float, angle: float) -> torch.Tensor:
        return x / scale


class DepthKind(Kind):
    name = "depth"
    modality = DepthModality()
    losses = ("l1",)
    metric_keys = ("rmse", "log_rmse")
    headline = "rmse"
    fixed_channels = 1
    activation = "softplus"
    activations = ("identity", "softplus")

    @property
    def metric(self) -> type[Metric]:
        from ..metrics import DepthMetric

        return DepthMetric

    def target_layout(self, channels: int, size: Sequence[int]) -> tuple[tuple[int, ...], str, str]:
        """``(1, H, W)`` float32 metres."""
        return (1, *size), "float32", "float32"

    def decode_file(self, path: Path, fmt: str, channels: int, what: str) -> torch.Tensor:
        import numpy as np

        from ..images import read_npy, read_png

        if fmt == "npy":
            return to_depth_target(read_npy(path, what), path, what)
        millimetres = read_png(path, what)
        if millimetres.dtype == np.uint8:
            raise DataError(f"{what} {path} is an 8-bit PNG; depth PNGs are 16-bit millimetres (or use "
                            f"target format npy, in metres)")
        return to_depth_target(millimetres.astype(np.float32) / 1000.0, path, what)

    def valid(self, target: torch.Tensor) -> torch.Tensor:
        return target > 0

    def activate(self, x: torch.Tensor, activation: str | None = None) -> torch.Tensor:
        """``softplus(x) = log(1 + exp(x))`` metres (> 0), or ``x`` for a head recorded with ``"identity"``."""
        activation = self.activation if activation is None else activation
        if activation == "softplus":
            import torch.nn.functional as F

            return F.softplus(x)
        if activation == "identity":
            return x
        raise ValueError(f"unknown output activation {activation!r} (known: {', '.join(self.activations)})")

    def inverse(self, value: float) -> float:
        """``softplus⁻¹(value) = log(exp(value) - 1)`` for ``value`` > 0 metres."""
        if not value > 0:
            raise ValueError(f"depth must be positive to invert softplus, got {value}")
        return float(value + math.log(-math.expm1(-value)))  # log(exp(v) - 1), stable for large v

    def prior_statistics(self, target: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        valid = self.valid(target)
        return target[valid].double().sum(), valid.sum()

    def prior_logits(self, value: torch.Tensor, batch: int, channels: int, size: Sequence[int]) -> torch.Tensor:
        """The raw output whose activation is the mean depth (softplus⁻¹), -30 when no depth was seen."""
        import torch

        raw = self.inverse(float(value)) if float(value) > 0 else NO_DEPTH_RAW
        return torch.full((batch, 1, *size), raw, device=value.device).float()

    def output_prior(self, target: torch.Tensor) -> float | None:
        """The batch's mean valid depth (metres), ``None`` without valid depth."""
        valid = self.valid(target)
        return float(target[valid].double().mean()) if valid.any() else None

    def probe_targets(self, target: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """Metres ``(H, W, 1)``; 0 invalid."""
        import numpy as np

        target = np.asarray(target, dtype=np.float64)
        return target[0] > 0, target[0][..., None]

    def colorize(self, array: Any, *, valid: Any = None, classes: Any = None, value_range: Any = None) -> np.ndarray:
        """Near bright, far dark (``viridis_r``) between ``value_range`` (near, far) metres; 0 black."""
        from ..colours import colorize_depth

        return colorize_depth(array, valid, value_range)

    def colour_range(self, gt: Any, pred: Any) -> tuple[float, float] | None:
        """The ground truth's robust depth range (else the prediction's)."""
        from ..colours import shared_depth_range

        return shared_depth_range(gt, pred)

    def colour_key(self, gt: Any, pred: Any, *, classes: Any = None, value_range: Any = None) -> list[dict[str, Any]]:
        """A colour bar in metres."""
        from ..colours import depth_key

        return depth_key(value_range)

    def metric_unit(self, metric: str) -> str:
        return "log metres" if metric == "log_rmse" else "metres"


def to_depth_target(arr: np.ndarray, path: Path | str, what: str = "depth") -> torch.Tensor:
    """Depth in metres ``(H, W)`` -> float32 ``(1, H, W)``; 0 = invalid, negative or non-finite is an error."""
    import numpy as np
    import torch

    depth = single_channel_map(np.asarray(arr), path, what)
    if not np.issubdtype(depth.dtype, np.number):
        raise DataError(f"{what} {path} has dtype {depth.dtype}; depth in metres is expected")
    depth = depth.astype(np.float32)
    if not np.isfinite(depth).all():
        raise DataError(f"{what} {path} holds NaN or infinite values; store 0 for missing depth")
    if (depth < 0).any():
        raise DataError(f"{what} {path} holds negative depth ({float(depth.min()):g}); depth is in metres, 0 = missing")
    return torch.from_numpy(depth)[None]
