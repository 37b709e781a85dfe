"""Depth: RMSE and log-RMSE in metres, pooled over the valid pixels of the split
(:class:`DepthMetric`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import Metric
from .inputs import check_finite, maps, same_shape

__all__ = ["DepthMetric", "MIN_DEPTH"]

MIN_DEPTH = 1e-9  # predictions are clamped here before the log (MTI-Net eval_depth.py)


class DepthMetric(Metric):
    """Depth RMSE and log-RMSE in metres, pooled over all valid pixels of the split.

    ``update(pred, target)``: ``pred`` and ``target`` (B, H, W) or (B, 1, H, W) in metres.
    Valid pixels: finite ``target > 0`` (0 = missing measurement). Predictions are clamped to
    >= 1e-9 before both errors (so the log is defined).

    ``compute()`` -> ``rmse = sqrt(sum (d - d*)^2 / N)`` (metres) and
    ``log_rmse = sqrt(sum (ln d - ln d*)^2 / N)`` (natural log), N = valid pixels of the split.
    Source: MTI-Net ``evaluation/eval_depth.py``; DESIGN.md section 5.

    NOTE: pooled over the pixels of the whole split (sums of squared errors and a pixel count),
    not a mean of per-image RMSEs, as DESIGN.md fixes. MTI-Net's ``eval_depth.py`` pools the same
    way (``total_rmses / n_valid``); a per-image mean, which some multi-task code reports, gives
    images with few valid pixels as much weight as full ones. MTI-Net's online ``DepthMeter``
    masks ``gt != 255`` (a left-over); the offline evaluator's ``label != 0`` is kept here.

    State: ``sum_sq_error``, ``sum_sq_log_error`` (float64), ``num_pixels`` (int64), all 0-d.
    """

    keys = ("rmse", "log_rmse")

    def _empty_state(self) -> dict[str, np.ndarray]:
        return {"sum_sq_error": np.zeros((), np.float64), "sum_sq_log_error": np.zeros((), np.float64),
                "num_pixels": np.zeros((), np.int64)}

    def update(self, pred: Any, target: Any) -> None:
        name = type(self).__name__
        pred = maps(pred, "pred", name)
        target = maps(target, "target", name)
        same_shape(pred, target, name)
        check_finite(pred, name)
        target = target.astype(np.float64, copy=False)
        valid = np.isfinite(target) & (target > 0)
        truth = target[valid]
        guess = np.maximum(pred[valid].astype(np.float64), MIN_DEPTH)
        self._state["sum_sq_error"] += np.sum((guess - truth) ** 2)
        self._state["sum_sq_log_error"] += np.sum((np.log(guess) - np.log(truth)) ** 2)
        self._state["num_pixels"] += truth.size

    def compute(self) -> dict[str, float]:
        n = int(self._state["num_pixels"])
        if n == 0:
            return {"rmse": math.nan, "log_rmse": math.nan}
        return {"rmse": float(np.sqrt(self._state["sum_sq_error"] / n)),
                "log_rmse": float(np.sqrt(self._state["sum_sq_log_error"] / n))}
