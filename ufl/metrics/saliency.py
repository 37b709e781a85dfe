"""Salient object detection: maxF and mIoU over a fixed set of thresholds (:class:`SaliencyMetric`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..labels import IGNORE_INDEX
from .base import Metric
from .inputs import MetricInputError, check_binary_target, check_probabilities, maps, same_shape

__all__ = ["SaliencyMetric"]


def _f_measure(precision: np.ndarray, recall: np.ndarray, beta2: float) -> np.ndarray:
    """F_beta = (1 + b2) P R / (b2 P + R), 0 where P + R = 0."""
    numerator = (1.0 + beta2) * precision * recall
    denominator = beta2 * precision + recall
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


class SaliencyMetric(Metric):
    """maxF and mIoU of salient object detection over a fixed set of thresholds.

    Args:
        thresholds: probabilities at which the prediction is binarised (default
            ``np.linspace(0.2, 0.9, 15)``: 0.20, 0.25, ..., 0.90, as MTI-Net's ``SaliencyMeter``).

    ``update(pred, target)``: ``pred`` probabilities in [0, 1], ``target`` in [0, 1] with 255 =
    ignore (void); both (B, H, W) or (B, 1, H, W). Salient = target > 0.5. Per image and
    threshold t, over the non-void pixels: predicted = pred > t,
    P = TP / (TP + FP + 1e-12), R = TP / (TP + FN + 1e-12), IoU = TP / (TP + FP + FN) with IoU = 1
    when the ground truth and the prediction are both empty (MTI-Net's ``jaccard`` convention).
    Images without a non-void pixel are skipped.

    ``compute()``: per threshold the mean over images of P and of R give
    F = (1 + b2) P R / (b2 P + R) (0 when P + R = 0); ``maxF`` (b2 = 1, MTI-Net's code),
    ``maxF_b03`` (b2 = 0.3, the saliency literature's, Achanta et al. CVPR 2009) and ``mIoU``
    (best over thresholds of the image-mean IoU), all in percent. Source: MTI-Net
    ``evaluation/eval_sal.py`` and ``evaluation/jaccard.py``; DESIGN.md section 5.

    NOTE: MTI-Net computes F = 2 P R / (P + R + 1e-12); the exact form used here differs by less
    than 1e-10. MTI-Net's saliency targets have no void label; 255 is ignored here because the
    augmentations of ``ufl`` fill new pixels with it.

    State: ``sum_precision``, ``sum_recall``, ``sum_iou`` (T,) float64 (sums over images),
    ``num_images`` int64 0-d.
    """

    keys = ("maxF", "maxF_b03", "mIoU")

    def __init__(self, thresholds: Any = None):
        thresholds = np.linspace(0.2, 0.9, 15) if thresholds is None else np.asarray(thresholds, np.float64)
        if thresholds.ndim != 1 or thresholds.size == 0:
            raise MetricInputError("SaliencyMetric: thresholds must be a non-empty 1-D sequence")
        self.thresholds = thresholds
        super().__init__()

    def _empty_state(self) -> dict[str, np.ndarray]:
        t = self.thresholds.size
        return {"sum_precision": np.zeros(t, np.float64), "sum_recall": np.zeros(t, np.float64),
                "sum_iou": np.zeros(t, np.float64), "num_images": np.zeros((), np.int64)}

    def _config(self) -> tuple:
        return tuple(self.thresholds.tolist())

    def update(self, pred: Any, target: Any) -> None:
        name = type(self).__name__
        pred = check_probabilities(maps(pred, "pred", name), name)
        target = check_binary_target(maps(target, "target", name), name)
        same_shape(pred, target, name)
        valid = target != IGNORE_INDEX                                    # (B, H, W)
        salient = (target > 0.5) & valid
        shape = (pred.shape[0], self.thresholds.size)
        tp, fp, fn = np.zeros(shape), np.zeros(shape), np.zeros(shape)   # (B, T) pixel counts
        for j, t in enumerate(self.thresholds):  # one threshold at a time: (B, H, W) temporaries only
            predicted = (pred > t) & valid
            tp[:, j] = np.sum(predicted & salient, axis=(1, 2))
            fp[:, j] = np.sum(predicted & ~salient, axis=(1, 2))
            fn[:, j] = np.sum(~predicted & salient, axis=(1, 2))
        precision = tp / (tp + fp + 1e-12)
        recall = tp / (tp + fn + 1e-12)
        union = tp + fp + fn
        iou = np.divide(tp, union, out=np.ones_like(tp), where=union > 0)  # both empty -> 1
        counted = valid.any(axis=(1, 2))                                  # images with a labelled pixel
        self._state["sum_precision"] += precision[counted].sum(0)
        self._state["sum_recall"] += recall[counted].sum(0)
        self._state["sum_iou"] += iou[counted].sum(0)
        self._state["num_images"] += int(counted.sum())

    def curves(self) -> dict[str, np.ndarray]:
        """Per threshold: image-mean ``precision``, ``recall``, ``iou`` (fractions) and ``thresholds``."""
        n = max(int(self._state["num_images"]), 1)
        return {"thresholds": self.thresholds.copy(), "precision": self._state["sum_precision"] / n,
                "recall": self._state["sum_recall"] / n, "iou": self._state["sum_iou"] / n}

    def compute(self) -> dict[str, float]:
        if int(self._state["num_images"]) == 0:
            return {key: math.nan for key in self.keys}
        c = self.curves()
        return {"maxF": float(100.0 * _f_measure(c["precision"], c["recall"], 1.0).max()),
                "maxF_b03": float(100.0 * _f_measure(c["precision"], c["recall"], 0.3).max()),
                "mIoU": float(100.0 * c["iou"].max())}
