"""Surface normals: angular error in degrees, pooled over the valid pixels of the split
(:class:`NormalsMetric`)."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np

from ..tensors import to_numpy
from .base import Metric
from .inputs import MetricInputError, check_finite, same_shape

__all__ = ["NormalsMetric", "ANGLE_THRESHOLDS"]

ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)  # degrees; the "% under" columns of the tables


class NormalsMetric(Metric):
    """Angular error of surface normals in degrees, pooled over all valid pixels of the split.

    Args:
        bin_width: width in degrees of the histogram bins used for the median (default 0.001:
            180,000 bins over [0, 180], 1.4 MB of counts).

    ``update(pred, target)``: ``pred`` and ``target`` (B, 3, H, W). Both are L2-normalised
    (``v / (|v| + 1e-12)``, so a zero prediction is 90 degrees from anything); valid pixels have
    a finite target of norm > 0. Angle = degrees(arccos(clip(<p, t>, -1, 1))), in float64.

    ``compute()`` -> ``mean``, ``median``, ``rmse`` (degrees) and ``11.25``, ``22.5``, ``30``
    (% of valid pixels with an angle strictly below). Source: MTI-Net
    ``evaluation/eval_normals.py``; DESIGN.md section 5.

    ``mean``, ``rmse`` and the percentages are exact (sums and counts). The median is read from
    a histogram so that a whole split never has to be held in memory: it is the middle of the
    bin that holds the middle angle (for an even count, the mean of the two middle bins), at
    most ``bin_width / 2`` (0.0005 degrees by default) from ``np.median`` of all angles.

    NOTE: MTI-Net's online ``NormalsMeter`` reports ``rmse`` equal to the mean (a bug) and no
    median; the formulas here are those of its offline ``eval_normals.py``.

    State: ``sum_angle``, ``sum_sq_angle`` (float64, 0-d), ``num_pixels`` (int64, 0-d),
    ``num_below`` (3,) int64, ``histogram`` (180 / bin_width,) int64.
    """

    keys = ("mean", "median", "rmse", "11.25", "22.5", "30")

    def __init__(self, bin_width: float = 0.001):
        if not (isinstance(bin_width, Real) and 1e-6 <= bin_width <= 180):
            raise MetricInputError(
                f"NormalsMetric: bin_width must be in [1e-6, 180] degrees, got {bin_width!r}")
        self.bin_width = float(bin_width)
        self.num_bins = int(math.ceil(180.0 / self.bin_width - 1e-9))
        super().__init__()

    def _empty_state(self) -> dict[str, np.ndarray]:
        return {"sum_angle": np.zeros((), np.float64), "sum_sq_angle": np.zeros((), np.float64),
                "num_pixels": np.zeros((), np.int64),
                "num_below": np.zeros(len(ANGLE_THRESHOLDS), np.int64),
                "histogram": np.zeros(self.num_bins, np.int64)}

    def _config(self) -> tuple:
        return (self.bin_width,)

    @staticmethod
    def _vectors(x: Any, name: str, metric: str) -> np.ndarray:
        x = to_numpy(x)
        if x.ndim != 4 or x.shape[1] != 3:
            raise MetricInputError(f"{metric}: {name} has shape {tuple(x.shape)}; expected (B, 3, H, W)")
        return x.astype(np.float64, copy=False)

    def update(self, pred: Any, target: Any) -> None:
        name = type(self).__name__
        pred = self._vectors(pred, "pred", name)
        target = self._vectors(target, "target", name)
        same_shape(pred, target, name)
        check_finite(pred, name)
        target_norm = np.linalg.norm(target, axis=1)
        valid = np.isfinite(target_norm) & (target_norm > 0)
        pred_unit = pred / (np.linalg.norm(pred, axis=1, keepdims=True) + 1e-12)
        target_unit = target / (target_norm[:, None] + 1e-12)
        cosine = np.sum(pred_unit * target_unit, axis=1)[valid]
        angle = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
        self._add_angles(angle)

    def _add_angles(self, angle: np.ndarray) -> None:
        """Add a flat array of angles in degrees to the counts."""
        self._state["sum_angle"] += angle.sum()
        self._state["sum_sq_angle"] += np.sum(angle ** 2)
        self._state["num_pixels"] += angle.size
        self._state["num_below"] += (angle[:, None] < np.asarray(ANGLE_THRESHOLDS)).sum(0)
        bins = np.minimum((angle / self.bin_width).astype(np.int64), self.num_bins - 1)
        self._state["histogram"] += np.bincount(bins, minlength=self.num_bins)

    def _median(self) -> float:
        n = int(self._state["num_pixels"])
        cumulative = np.cumsum(self._state["histogram"])
        # bins holding the order statistics of rank (n-1)//2 and n//2 (0-based): np.median's pair
        low = np.searchsorted(cumulative, (n - 1) // 2 + 1)
        high = np.searchsorted(cumulative, n // 2 + 1)
        centre = (low + high + 1) / 2 * self.bin_width  # mean of the two bin centres
        return float(min(centre, 180.0))  # the last bin is narrower when bin_width does not divide 180

    def compute(self) -> dict[str, float]:
        n = int(self._state["num_pixels"])
        if n == 0:
            return {key: math.nan for key in self.keys}
        below = 100.0 * self._state["num_below"] / n
        return {"mean": float(self._state["sum_angle"] / n),
                "median": self._median(),
                "rmse": float(np.sqrt(self._state["sum_sq_angle"] / n)),
                "11.25": float(below[0]), "22.5": float(below[1]), "30": float(below[2])}
