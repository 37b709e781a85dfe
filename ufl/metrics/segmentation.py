"""Semantic segmentation: mean intersection-over-union from a confusion matrix pooled over the
split (:class:`SegmentationMetric`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..labels import IGNORE_INDEX
from ..tensors import to_numpy
from .base import Metric
from .inputs import MetricInputError, is_positive_int, same_shape

__all__ = ["SegmentationMetric"]


def _labels(x: Any, name: str, metric: str) -> np.ndarray:
    """Integer label maps (B, H, W) (a singleton channel is dropped)."""
    x = to_numpy(x)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 4:
        raise MetricInputError(
            f"{metric}: {name} has shape {tuple(x.shape)}, which looks like per-class scores; "
            f"pass label maps (B, H, W), e.g. logits.argmax(1)")
    if x.ndim != 3:
        raise MetricInputError(f"{metric}: {name} has shape {tuple(x.shape)}; expected labels (B, H, W)")
    if x.dtype == bool:
        return x.astype(np.int64)
    if not np.issubdtype(x.dtype, np.integer):
        if not (np.isfinite(x).all() and np.array_equal(x, np.round(x))):
            raise MetricInputError(f"{metric}: {name} must hold integer class labels, got non-integer values")
    return x.astype(np.int64, copy=False)


class SegmentationMetric(Metric):
    """Mean intersection-over-union from a confusion matrix pooled over the split.

    Args:
        num_classes: number of classes C (background included when the dataset has one).
        ignore_index: target label skipped everywhere (default 255).

    ``update(pred, target)``: ``pred`` (B, H, W) predicted labels in [0, C) (an error
    otherwise); ``target`` (B, H, W) labels in [0, C) or ``ignore_index``. A singleton channel
    (B, 1, H, W) is accepted for either.

    ``compute()`` -> ``{"mIoU": %}``: IoU_c = TP_c / (TP_c + FP_c + FN_c) over all labelled
    pixels of the split (``np.bincount`` confusion counts), mIoU = mean over **all** C classes.
    Source: MTI-Net ``evaluation/eval_semseg.py``; DESIGN.md section 5.

    NOTE: a class with TP + FP + FN = 0 (absent from the targets and never predicted) counts as
    IoU 0, as in MTI-Net's ``tp / max(tp + fp + fn, 1e-8)``; it lowers mIoU on small splits where
    a class never occurs. Kept for comparability with the published tables.

    State: ``confusion`` (C, C) int64, rows = target class, columns = predicted class.
    """

    keys = ("mIoU",)

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        if not is_positive_int(num_classes):
            raise MetricInputError(
                f"SegmentationMetric: num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        super().__init__()

    @classmethod
    def build(cls, num_classes: int | None = None, **kwargs: Any) -> "SegmentationMetric":
        """A segmentation metric needs ``num_classes`` (a :class:`MetricInputError` without it)."""
        if num_classes is None:
            raise MetricInputError(f"{cls.__name__}.build: a segmentation metric needs num_classes")
        return cls(num_classes, **kwargs)

    def _empty_state(self) -> dict[str, np.ndarray]:
        return {"confusion": np.zeros((self.num_classes, self.num_classes), dtype=np.int64)}

    def _config(self) -> tuple:
        return (self.num_classes, self.ignore_index)

    def update(self, pred: Any, target: Any) -> None:
        name = type(self).__name__
        pred = _labels(pred, "pred", name)
        target = _labels(target, "target", name)
        same_shape(pred, target, name)
        c = self.num_classes
        if pred.size and (pred.min() < 0 or pred.max() >= c):
            raise MetricInputError(
                f"{name}: predicted labels must be in [0, {c}), got values in [{pred.min()}, {pred.max()}]")
        labelled = target != self.ignore_index
        truth, guess = target[labelled], pred[labelled]
        if truth.size and (truth.min() < 0 or truth.max() >= c):
            raise MetricInputError(
                f"{name}: target labels must be in [0, {c}) or {self.ignore_index} (ignore), "
                f"got values in [{truth.min()}, {truth.max()}]")
        counts = np.bincount(truth * c + guess, minlength=c * c)
        self._state["confusion"] += counts.reshape(c, c)

    def per_class_iou(self) -> np.ndarray:
        """IoU of each class in percent, shape (C,); 0 for a class with TP + FP + FN = 0."""
        confusion = self._state["confusion"].astype(np.float64)
        tp = np.diag(confusion)
        union = confusion.sum(0) + confusion.sum(1) - tp  # TP + FP + FN
        return 100.0 * np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)

    def details(self) -> dict[str, list[float]]:
        """``{"IoU": per-class IoU in percent}`` (empty before any update)."""
        if self._state["confusion"].sum() == 0:
            return {}
        return {"IoU": [float(v) for v in self.per_class_iou()]}

    def compute(self) -> dict[str, float]:
        if self._state["confusion"].sum() == 0:
            return {"mIoU": math.nan}
        return {"mIoU": float(self.per_class_iou().mean())}
