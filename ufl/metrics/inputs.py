"""What every metric checks of its inputs (shapes, value ranges; arrays from
:func:`ufl.tensors.to_numpy`), and the one error type for inputs a metric cannot evaluate
(:class:`MetricInputError`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UflError
from ..labels import IGNORE_INDEX
from ..tensors import to_numpy

__all__ = ["MetricInputError", "maps", "is_positive_int", "check_finite", "same_shape",
           "check_probabilities", "check_binary_target"]


class MetricInputError(UflError, ValueError):
    """Inputs a metric cannot evaluate (wrong shape, out-of-range values, incompatible state).

    A :class:`ValueError` for Python callers and a :class:`~ufl.errors.UflError` for the CLI,
    which prints the one-line message.
    """


def maps(x: Any, name: str, metric: str) -> np.ndarray:
    """(B, H, W) or (B, 1, H, W) -> (B, H, W)."""
    x = to_numpy(x)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise MetricInputError(
            f"{metric}: {name} has shape {tuple(x.shape)}; expected (B, H, W) or (B, 1, H, W)")
    return x


def is_positive_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 1


def check_finite(pred: np.ndarray, metric: str) -> None:
    if not np.isfinite(pred).all():
        raise MetricInputError(f"{metric}: pred contains NaN or infinite values (check the model's output)")


def same_shape(pred: np.ndarray, target: np.ndarray, metric: str) -> None:
    if pred.shape != target.shape:
        raise MetricInputError(
            f"{metric}: pred has shape {tuple(pred.shape)} but target has shape {tuple(target.shape)}; "
            f"they must match (resize the prediction to the target's size first)")


def check_probabilities(pred: np.ndarray, metric: str) -> np.ndarray:
    pred = pred.astype(np.float64, copy=False)
    if pred.size and not (np.isfinite(pred).all() and pred.min() >= 0.0 and pred.max() <= 1.0):
        raise MetricInputError(
            f"{metric}: pred must hold probabilities in [0, 1], got values in "
            f"[{pred.min():.4g}, {pred.max():.4g}] (apply a sigmoid to the logits)")
    return pred


def check_binary_target(target: np.ndarray, metric: str) -> np.ndarray:
    """Targets in [0, 1] with 255 = ignore (taskspec's ``binary`` modality)."""
    target = target.astype(np.float64, copy=False)
    labelled = target[target != IGNORE_INDEX]
    if labelled.size and not (labelled.min() >= 0.0 and labelled.max() <= 1.0):
        raise MetricInputError(
            f"{metric}: target values must be in [0, 1] with {IGNORE_INDEX} = ignore, got values in "
            f"[{labelled.min():.4g}, {labelled.max():.4g}] (divide grey-level maps by 255)")
    return target
