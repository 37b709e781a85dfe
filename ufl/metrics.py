"""Evaluation metrics of the multi-task protocol (DESIGN.md section 5).

Every metric is an accumulator in the torchmetrics shape: ``update(pred, target)`` adds counts
for a batch, ``compute()`` turns the counts of the whole split into a ``dict[str, float]``,
``reset()`` starts again. The counts are plain NumPy arrays, so evaluation can be split over
processes and summed::

    metric = SegmentationMetric(num_classes=21)
    for images, labels in loader:
        metric.update(model(images).argmax(1), labels)
    # torchrun: sum the raw counts over ranks, then compute on every rank
    metric.load_state({k: all_reduce_sum(v) for k, v in metric.state().items()})
    metric.compute()                                  # {"mIoU": 63.2}

``merge(other)`` does the same sum in one process (two halves of a split give the numbers of the
whole split). Inputs are batched NumPy arrays or torch tensors on any device (moved to CPU).

=====================  ======================================  =========================================
metric                 inputs                                   ``compute()`` keys (units)
=====================  ======================================  =========================================
SegmentationMetric     labels (B,H,W) int, target 255 = ignore  mIoU (%)
DepthMetric            (B,H,W) or (B,1,H,W) metres, gt 0 = n/a  rmse, log_rmse (metres, natural log)
NormalsMetric          (B,3,H,W), gt zero vector = n/a          mean, median, rmse (degrees);
                                                                11.25, 22.5, 30 (% of pixels under)
SaliencyMetric         prob. in [0,1] (B,H,W) or (B,1,H,W),     maxF, maxF_b03, mIoU (%)
                       target > 0.5 salient, 255 = ignore
EdgeMetric             prob. in [0,1] (B,H,W) or (B,1,H,W),     odsF (%)
                       target {0,1}, 255 = ignore
=====================  ======================================  =========================================

A metric that has seen no valid pixel (or no valid image) returns NaN for every key: there is
nothing to measure, and a number would be made up.

``delta_m`` is the multi-task performance of Maninis et al. (CVPR 2019, "Attentive
single-tasking of multiple tasks"), as used by MTI-Net (Vandenhende et al., ECCV 2020).

Sources: the evaluation code of MTI-Net, github.com/SimonVandenhende/Multi-Task-Learning-PyTorch
(``evaluation/eval_semseg.py``, ``eval_depth.py``, ``eval_normals.py``, ``eval_sal.py``,
``jaccard.py``); its edges go through SEISM (github.com/jponttuset/seism, ``edgesEvalImg.m``,
``gather_measure.m``, ``general_ods.m``). Where DESIGN.md and that code differ, DESIGN.md wins and
the docstring says so in a ``NOTE:``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import inspect
import math
import multiprocessing
import os
import sys
import threading
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from numbers import Real
from typing import Any, Mapping

import numpy as np
import torch
from pyEdgeEval._lib import correspond_pixels
from pyEdgeEval.common.metrics import compute_rec_prec_f1, interpolated_max_scores
from skimage.morphology import thin

from .errors import UflError
from .evalcache import CountCache, image_key
from .registry import Registry
from .labels import IGNORE_INDEX

__all__ = [
    "Metric",
    "SegmentationMetric",
    "DepthMetric",
    "NormalsMetric",
    "SaliencyMetric",
    "EdgeMetric",
    "MetricInputError",
    "METRIC_DIRECTIONS",
    "HEADLINE_METRICS",
    "METRICS",
    "build_metric",
    "delta_m",
]


#: Whether a larger value is better, per metric key (used for Delta_m and for forgetting).
METRIC_DIRECTIONS: dict[str, bool] = {
    "mIoU": True,
    "maxF": True,
    "maxF_b03": True,
    "odsF": True,
    "rmse": False,
    "log_rmse": False,
    "mean": False,
    "median": False,
    "11.25": True,
    "22.5": True,
    "30": True,
}

#: The headline metric of a task, in the order ``delta_m`` looks for it in a metrics dict.
HEADLINE_METRICS: tuple[str, ...] = ("mIoU", "maxF", "odsF", "rmse", "mean")


class MetricInputError(UflError, ValueError):
    """Inputs a metric cannot evaluate (wrong shape, out-of-range values, incompatible state).

    A :class:`ValueError` for Python callers and a :class:`~ufl.errors.UflError` for the CLI,
    which prints the one-line message.
    """


# ------------------------------------------------------------------------------------------------
# Input conversion and checks
# ------------------------------------------------------------------------------------------------
def _to_numpy(x: Any) -> np.ndarray:
    """A tensor on any device (detached, half precision widened to float32) or array -> ndarray."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.float()  # bfloat16 / float16 have no NumPy equivalent worth keeping
        return x.cpu().numpy()
    return np.asarray(x)


def _maps(x: Any, name: str, metric: str) -> np.ndarray:
    """(B, H, W) or (B, 1, H, W) -> (B, H, W)."""
    x = _to_numpy(x)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise MetricInputError(
            f"{metric}: {name} has shape {tuple(x.shape)}; expected (B, H, W) or (B, 1, H, W)")
    return x


def _is_positive_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 1


def _check_finite(pred: np.ndarray, metric: str) -> None:
    if not np.isfinite(pred).all():
        raise MetricInputError(f"{metric}: pred contains NaN or infinite values (check the model's output)")


def _same_shape(pred: np.ndarray, target: np.ndarray, metric: str) -> None:
    if pred.shape != target.shape:
        raise MetricInputError(
            f"{metric}: pred has shape {tuple(pred.shape)} but target has shape {tuple(target.shape)}; "
            f"they must match (resize the prediction to the target's size first)")


def _check_probabilities(pred: np.ndarray, metric: str) -> np.ndarray:
    pred = pred.astype(np.float64, copy=False)
    if pred.size and not (np.isfinite(pred).all() and pred.min() >= 0.0 and pred.max() <= 1.0):
        raise MetricInputError(
            f"{metric}: pred must hold probabilities in [0, 1], got values in "
            f"[{pred.min():.4g}, {pred.max():.4g}] (apply a sigmoid to the logits)")
    return pred


def _check_binary_target(target: np.ndarray, metric: str) -> np.ndarray:
    """Targets in [0, 1] with 255 = ignore (taskspec's ``binary`` modality)."""
    target = target.astype(np.float64, copy=False)
    labelled = target[target != IGNORE_INDEX]
    if labelled.size and not (labelled.min() >= 0.0 and labelled.max() <= 1.0):
        raise MetricInputError(
            f"{metric}: target values must be in [0, 1] with {IGNORE_INDEX} = ignore, got values in "
            f"[{labelled.min():.4g}, {labelled.max():.4g}] (divide grey-level maps by 255)")
    return target


# ------------------------------------------------------------------------------------------------
# Base class: the state is a dict of NumPy arrays that sum across splits and processes
# ------------------------------------------------------------------------------------------------
class Metric:
    """Accumulate counts with :meth:`update`, turn them into numbers with :meth:`compute`.

    The whole state is :meth:`state`: a dict of NumPy arrays of raw counts and sums. The state of
    two disjoint parts of a split adds up to the state of the whole split (:meth:`merge`); a
    caller can all-reduce each array and :meth:`load_state` the sums.
    """

    #: keys of :meth:`compute`, in order
    keys: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._state: dict[str, np.ndarray] = self._empty_state()

    # -- to implement ------------------------------------------------------------------------
    def _empty_state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _config(self) -> tuple:
        """What must be equal for two metrics' counts to be summable."""
        return ()

    def update(self, pred: Any, target: Any) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def details(self) -> dict[str, list[float]]:
        """Figures beyond :meth:`compute` that are lists (e.g. segmentation's per-class IoU), for
        ``ufl evaluate --all-metrics``: ``{name: [one value per class]}``; none by default."""
        return {}

    def _settle(self) -> None:
        """Finish accumulating work still in flight (e.g. in worker processes); the shared methods
        below call it before they read or replace the state. Nothing to do by default."""

    # -- shared ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything accumulated."""
        self._settle()
        self._state = self._empty_state()

    def state(self) -> dict[str, np.ndarray]:
        """The raw counts (copies), by name; sum them over processes to pool a split."""
        self._settle()
        return {name: value.copy() for name, value in self._state.items()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Replace the counts with ``state`` (e.g. all-reduced :meth:`state` arrays or tensors)."""
        self._settle()
        empty = self._empty_state()
        if set(state) != set(empty):
            raise MetricInputError(
                f"{type(self).__name__}.load_state: got keys {sorted(state)}, expected {sorted(empty)}")
        loaded = {}
        for name, reference in empty.items():
            value = _to_numpy(state[name])
            if value.shape != reference.shape:
                raise MetricInputError(
                    f"{type(self).__name__}.load_state: {name!r} has shape {tuple(value.shape)}, "
                    f"expected {tuple(reference.shape)} (was it saved with other settings?)")
            try:
                loaded[name] = value.astype(reference.dtype, casting="same_kind", copy=True)
            except TypeError:
                raise MetricInputError(
                    f"{type(self).__name__}.load_state: {name!r} has dtype {value.dtype}, "
                    f"expected {reference.dtype}") from None
        self._state = loaded

    def merge(self, other: "Metric") -> "Metric":
        """Add the counts of ``other`` (same class and settings) to this metric; return self."""
        if type(other) is not type(self) or other._config() != self._config():
            raise MetricInputError(
                f"cannot merge {other!r} into {self!r}: the class and settings must be the same")
        self._settle()
        other._settle()
        self._state = {name: value + other._state[name] for name, value in self._state.items()}
        return self

    def __repr__(self) -> str:
        settings = ", ".join(f"{v}" for v in self._config())
        return f"{type(self).__name__}({settings})"


METRICS: Registry[type[Metric]] = Registry("metric kind")


# ------------------------------------------------------------------------------------------------
# Segmentation
# ------------------------------------------------------------------------------------------------
def _labels(x: Any, name: str, metric: str) -> np.ndarray:
    """Integer label maps (B, H, W) (a singleton channel is dropped)."""
    x = _to_numpy(x)
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


@METRICS.register("segmentation")
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
        if not _is_positive_int(num_classes):
            raise MetricInputError(
                f"SegmentationMetric: num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        super().__init__()

    def _empty_state(self) -> dict[str, np.ndarray]:
        return {"confusion": np.zeros((self.num_classes, self.num_classes), dtype=np.int64)}

    def _config(self) -> tuple:
        return (self.num_classes, self.ignore_index)

    def update(self, pred: Any, target: Any) -> None:
        name = type(self).__name__
        pred = _labels(pred, "pred", name)
        target = _labels(target, "target", name)
        _same_shape(pred, target, name)
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


# ------------------------------------------------------------------------------------------------
# Depth
# ------------------------------------------------------------------------------------------------
MIN_DEPTH = 1e-9  # predictions are clamped here before the log (MTI-Net eval_depth.py)


@METRICS.register("depth")
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
        pred = _maps(pred, "pred", name)
        target = _maps(target, "target", name)
        _same_shape(pred, target, name)
        _check_finite(pred, name)
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


# ------------------------------------------------------------------------------------------------
# Surface normals
# ------------------------------------------------------------------------------------------------
ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)  # degrees; the "% under" columns of the tables


@METRICS.register("normals")
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
        x = _to_numpy(x)
        if x.ndim != 4 or x.shape[1] != 3:
            raise MetricInputError(f"{metric}: {name} has shape {tuple(x.shape)}; expected (B, 3, H, W)")
        return x.astype(np.float64, copy=False)

    def update(self, pred: Any, target: Any) -> None:
        name = type(self).__name__
        pred = self._vectors(pred, "pred", name)
        target = self._vectors(target, "target", name)
        _same_shape(pred, target, name)
        _check_finite(pred, name)
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


# ------------------------------------------------------------------------------------------------
# Saliency
# ------------------------------------------------------------------------------------------------
def _f_measure(precision: np.ndarray, recall: np.ndarray, beta2: float) -> np.ndarray:
    """F_beta = (1 + b2) P R / (b2 P + R), 0 where P + R = 0."""
    numerator = (1.0 + beta2) * precision * recall
    denominator = beta2 * precision + recall
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


@METRICS.register("saliency")
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
        pred = _check_probabilities(_maps(pred, "pred", name), name)
        target = _check_binary_target(_maps(target, "target", name), name)
        _same_shape(pred, target, name)
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


# ------------------------------------------------------------------------------------------------
# Edges
# ------------------------------------------------------------------------------------------------
class _SeededMatcher:
    """pyEdgeEval's ``correspond_pixels`` made reproducible.

    The BSDS matcher (``match.cc``) joins the edge pixels to random "outlier" nodes (6 per node,
    drawn from a global generator that the C++ library seeds from the clock when loaded), so the
    same maps can match one pixel more or less from run to run. Before each call the generator
    (the exported ``Random::rand``) is reseeded with a constant through ``Random::reseed``, so the
    result depends on the two maps only. If a build lacks these symbols, matching still works
    and a warning says that results may vary by a pixel between runs.
    """

    SEED = 1  # any non-zero value (0 means "seed from the clock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reseed = None
        try:
            library = ctypes.CDLL(sys.modules["pyEdgeEval._lib.correspond_pixels"].__file__)
            generator = ctypes.addressof(ctypes.c_char.in_dll(library, "_ZN6Random4randE"))
            reseed = library._ZN6Random6reseedEm  # Random::reseed(unsigned long), `this` first
            reseed.argtypes, reseed.restype = [ctypes.c_void_p, ctypes.c_uint64], None
            self._reseed = lambda: reseed(generator, self.SEED)
        except (KeyError, AttributeError, OSError, ValueError):
            warnings.warn("pyEdgeEval's matcher cannot be seeded in this build: edge counts may differ "
                          "by a pixel between runs", RuntimeWarning, stacklevel=2)

    def __call__(self, predicted: np.ndarray, edges: np.ndarray, max_dist: float):
        with self._lock:  # the generator is global to the process
            if self._reseed is not None:
                self._reseed()
            return correspond_pixels(predicted, edges, max_dist=max_dist)


_MATCHER: _SeededMatcher | None = None


def _match_pixels(predicted: np.ndarray, edges: np.ndarray, max_dist: float):
    """(match of each predicted pixel, match of each edge pixel, cost, outlier cost)."""
    global _MATCHER
    if _MATCHER is None:
        _MATCHER = _SeededMatcher()
    return _MATCHER(predicted, edges, max_dist)


def _edge_image_counts(thresholds: np.ndarray, max_dist: float, pred: np.ndarray, edges: np.ndarray,
                       valid: np.ndarray, thin_predictions: bool = True) -> dict[str, np.ndarray]:
    """Per-threshold (count_r, sum_r, count_p, sum_p) of one (H, W) image (see :class:`EdgeMetric`);
    a module-level function so that worker processes can run it."""
    k = thresholds.size
    counts = {name: np.zeros(k, np.int64) for name in ("count_r", "sum_r", "count_p", "sum_p")}
    counts["sum_r"][:] = edges.sum()
    previous, previous_counts = None, (0, 0, 0)
    for i, t in enumerate(thresholds):
        binary = pred >= max(np.finfo(np.float64).eps, t)  # edgesEvalImg: E >= max(eps, thrs(k))
        if previous is not None and np.array_equal(binary, previous):
            matched_r, matched_p, total_p = previous_counts  # same map, same counts
        else:
            matched_r, matched_p, total_p = _edge_match(binary, edges, valid, max_dist, thin_predictions)
        counts["count_r"][i], counts["count_p"][i], counts["sum_p"][i] = matched_r, matched_p, total_p
        previous, previous_counts = binary, (matched_r, matched_p, total_p)
    return counts


def _edge_match(binary: np.ndarray, edges: np.ndarray, valid: np.ndarray, max_dist: float,
                thin_predictions: bool = True) -> tuple[int, int, int]:
    """(matched ground truth, matched prediction, predicted pixels) for one binary map."""
    if not binary.any():
        return 0, 0, 0
    predicted = (thin(binary) if thin_predictions else binary) & valid
    if not edges.any() or not predicted.any():
        return 0, 0, int(predicted.sum())  # nothing to match: every prediction is a false positive
    match_pred, match_gt, _, _ = _match_pixels(predicted, edges, max_dist)
    return int((match_gt > 0).sum()), int((match_pred > 0).sum()), int(predicted.sum())


@functools.lru_cache(maxsize=None)
def _counting_code(functions=(_edge_image_counts, _edge_match)) -> str:
    """Digest of the per-image edge counting code and of the libraries it calls (matcher,
    thinning): a cached count is only reused by the code that made it."""
    import pyEdgeEval
    import skimage

    h = hashlib.sha256(f"{getattr(pyEdgeEval, '__version__', '?')}|{skimage.__version__}|".encode())
    for function in functions:
        try:
            h.update(inspect.getsource(function).encode())
        except (OSError, TypeError):  # no source (e.g. a frozen build): the byte code instead
            h.update(function.__code__.co_code)
    return h.hexdigest()


_EDGE_POOLS: dict[int, ProcessPoolExecutor] = {}


def _forget_matcher() -> None:
    global _MATCHER
    _MATCHER = None  # a forked child makes its own (the parent's lock may have been held at the fork)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_matcher)


def edge_pool_context() -> multiprocessing.context.BaseContext:
    """How the edge-matching workers start: ``fork`` on Linux, else ``spawn``.

    NOTE: not spawn (nor forkserver) where fork is safe: both start each worker by importing the
    user's ``__main__`` again, so a plain script (no ``if __name__ == "__main__":`` guard, as the
    README's Python API snippet) re-runs itself in every worker and the pool breaks
    (``BrokenProcessPool``). A forked worker runs only :func:`_edge_image_counts`: numpy,
    scikit-image's thinning and pyEdgeEval's C++ matcher (no OpenMP, no torch, no CUDA), so the
    parent's OpenMP or CUDA state and threads are never used in it (pyEdgeEval's own pools fork
    too). macOS and Windows spawn: there a script that evaluates edges with workers needs the
    ``__main__`` guard, or ``workers=0``.
    """
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _edge_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool shared by every EdgeMetric of this process with this many workers (started
    as :func:`edge_pool_context` says)."""
    if workers not in _EDGE_POOLS:
        _EDGE_POOLS[workers] = ProcessPoolExecutor(workers, mp_context=edge_pool_context())
    return _EDGE_POOLS[workers]


def _submit_edge_image(workers: int, *args) -> Future:
    """Queue one image's matching in the pool (which may fork a worker now)."""
    with warnings.catch_warnings():
        # Python >= 3.12 warns at every fork of a process with threads (torch's, a DataLoader's);
        # the forked worker never uses them (see edge_pool_context).
        warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks",
                                category=DeprecationWarning)
        return _edge_pool(workers).submit(_edge_image_counts, *args)


@METRICS.register("edges")
class EdgeMetric(Metric):
    """Boundary F-measure at the optimal dataset scale (odsF), with one-to-one pixel matching.

    Args:
        num_thresholds: K thresholds ``linspace(1/(K+1), 1 - 1/(K+1), K)``; the default 99 gives
            0.01, 0.02, ..., 0.99 (SEISM / BSDS / Piotr's ``edgesEvalImg``). Fewer is faster.
        max_dist: matching tolerance as a fraction of the image diagonal (default 0.0075: 1.2
            pixels on a 96 x 128 image, 6 on 480 x 640). The benchmark fixes it per dataset
            (``ufl.datasets.catalog.EDGE_PROTOCOL``: 0.0075 on PASCAL-Context, 0.011 on NYUD), and
            :func:`ufl.evaluation.make_metric` passes it.
        thin: thin each thresholded prediction to one-pixel-wide lines before matching (default
            True, as SEISM runs ``edgesEvalImg``); False matches the thick maps.
        interpolated: False (default): odsF is the largest F over the thresholds, as SEISM's
            ``general_ods.m``, which made MTI-Net's numbers. True: the BSDS / pyEdgeEval
            interpolated maximum between neighbouring thresholds (never smaller).
        workers: 0 (default) matches in this process; N > 0 matches in N worker processes, each
            image's thresholds split in N groups (the same counts: integer sums). Matching is the
            slow part of the protocol: about 0.4 s per threshold on a 480 x 640 image, 40 s per
            image for 99 thresholds.
        cache: a :class:`ufl.evalcache.CountCache` (or its folder): each image's counts are looked
            up under a hash of (prediction, ground truth, :meth:`_count_settings`) and matched only
            when missing, then stored; identical counts either way. ``ufl evaluate`` keeps one in
            ``WORKSPACE/eval-cache/edges``, so an unchanged head re-evaluates without matching.

    ``update(pred, target)``: ``pred`` edge probabilities in [0, 1], ``target`` {0, 1} (values
    > 0.5 are edges) with 255 = ignore; both (B, H, W) or (B, 1, H, W). Per image and threshold
    t (as ``edgesEvalImg``): the prediction ``pred >= max(eps, t)`` is thinned to one-pixel-wide
    lines, predicted pixels on ignored target pixels are dropped, and the rest are matched one
    to one with the ground-truth edge pixels within ``max_dist`` by ``correspondPixels`` (the
    BSDS min-cost assignment; pyEdgeEval's C++ port). Counts pooled over the split per threshold:
    matched ground truth / all ground truth (recall), matched prediction / all prediction
    (precision); F = 2 P R / (P + R) (pyEdgeEval ``compute_rec_prec_f1``: 0/0 counts as 0).

    ``compute()`` -> ``{"odsF": %}``. DESIGN.md section 5.

    Thinning: SEISM's ``src/measures/eval_cont.m`` (github.com/jponttuset/seism, the version with
    the ``PASCALContext`` database that MTI-Net's ``evaluation/eval_edge.py`` drives) calls
    ``edgesEvalImg(contours, ground_truth, params)`` with ``params.maxDist`` only, so
    ``edgesEvalImg``'s default ``thin = 1`` applies (``bwmorph(E1, 'thin', inf)``); only one
    intermediate SEISM commit (Feb 2016, before PASCALContext was added) passed ``'thin', 0``.
    maxDist: SEISM's ``src/scripts/eval_method.m`` uses 0.0075 for PASCALContext; NYUD's 0.011 is
    Dollar's structured-edge benchmark (github.com/pdollar/edges, ``edgesDemoRgbd.m``).
    NOTE: SEISM builds its PASCAL ground truth as ``bwmorph(seg2bmap(LabelMap), 'thin', Inf)`` (the
    boundary pixels of the Context map); ``ufl`` matches against the dataset's edge target (on
    PASCAL, MTI-Net's thinned Laplacian of the same map, the map its models are trained on).
    NOTE: thinning is ``skimage.morphology.thin`` (Guo & Hall's two-subiteration algorithm, the
    one of MATLAB's ``bwmorph(.., 'thin', Inf)``, run until nothing changes). pyEdgeEval's
    ``binary_thin`` is the same algorithm but (0.2.8) cannot be imported without OpenCV (its
    ``preprocess`` package imports cv2 for NMS) and stops as soon as the first sub-iteration
    changes nothing, leaving a few unthinned pixels on about one mask in ten.
    NOTE: SEISM and BSDS have no void label; here ignored target pixels take no part at all.
    NOTE: ``correspondPixels`` solves the assignment on a sparse graph whose outlier links are
    random (BSDS ``match.cc``, 6 per node), so it can leave about one pixel in a few hundred
    unmatched even when the prediction equals the ground truth (a perfect 350-pixel map scores
    349/350 matches, odsF 99.7). Kept: BSDS and SEISM numbers are made this way. The generator is
    reseeded before every call, so the counts are reproducible bit for bit.

    State: ``count_r``, ``sum_r``, ``count_p``, ``sum_p`` (K,) int64, ``num_images`` int64 0-d.
    """

    keys = ("odsF",)

    def __init__(self, num_thresholds: int = 99, max_dist: float = 0.0075, interpolated: bool = False,
                 workers: int = 0, cache: CountCache | str | os.PathLike | None = None, thin: bool = True):
        if not _is_positive_int(num_thresholds):
            raise MetricInputError(
                f"EdgeMetric: num_thresholds must be a positive integer, got {num_thresholds!r}")
        if not (isinstance(max_dist, Real) and max_dist > 0):
            raise MetricInputError(
                f"EdgeMetric: max_dist must be a positive fraction of the diagonal, got {max_dist!r}")
        k = int(num_thresholds)
        self.thresholds = np.linspace(1.0 / (k + 1), 1.0 - 1.0 / (k + 1), k)
        self.max_dist = float(max_dist)
        self.interpolated = bool(interpolated)
        self.thin = bool(thin)
        if not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 0):
            raise MetricInputError(f"EdgeMetric: workers must be a non-negative integer, got {workers!r}")
        self.workers = workers
        self.cache = CountCache(cache) if isinstance(cache, (str, os.PathLike)) else cache
        self._settings: tuple | None = None
        self._pending: list[tuple] = []
        super().__init__()

    def _empty_state(self) -> dict[str, np.ndarray]:
        k = self.thresholds.size
        state = {name: np.zeros(k, np.int64) for name in ("count_r", "sum_r", "count_p", "sum_p")}
        state["num_images"] = np.zeros((), np.int64)
        return state

    def _config(self) -> tuple:
        return (self.thresholds.size, self.max_dist, self.thin)

    def update(self, pred: Any, target: Any) -> None:
        name = type(self).__name__
        pred = _check_probabilities(_maps(pred, "pred", name), name)
        target = _check_binary_target(_maps(target, "target", name), name)
        _same_shape(pred, target, name)
        for image, labels in zip(pred, target):
            valid = labels != IGNORE_INDEX
            if not valid.any():
                continue
            edges = (labels > 0.5) & valid
            key = None
            if self.cache is not None:
                key = image_key(self._count_settings(), image, edges, valid)
                counts = self.cache.get(key, self._count_layout())
                if counts is not None:
                    self._add(counts)
                    continue
            if self.workers:
                # (image, threshold) work items: the thresholds of an image in `workers` interleaved
                # groups (low thresholds, dense maps, cost most), so a few images fill the pool too
                groups = [np.arange(j, self.thresholds.size, self.workers)
                          for j in range(min(self.workers, self.thresholds.size))]
                futures = [_submit_edge_image(self.workers, self.thresholds[g], self.max_dist, image, edges, valid,
                                              self.thin) for g in groups]
                self._pending.append((key, groups, futures))
                if len(self._pending) > 4 * self.workers:  # bound the images held in flight
                    self._finish(*self._pending.pop(0))
            else:
                self._finish(key, None, [_edge_image_counts(self.thresholds, self.max_dist, image, edges, valid,
                                                            self.thin)])

    def _finish(self, key: str | None, groups: list[np.ndarray] | None, parts: list) -> None:
        """Assemble one image's counts from its threshold groups (futures or dicts), store them in
        the cache under ``key``, add them."""
        parts = [p.result() if isinstance(p, Future) else p for p in parts]
        if groups is None:
            counts = parts[0]
        else:
            counts = {name: np.zeros(self.thresholds.size, np.int64) for name in parts[0]}
            for group, part in zip(groups, parts):
                for name, value in part.items():
                    counts[name][group] = value
        if key is not None:
            self.cache.put(key, counts)
        self._add(counts)

    def _count_settings(self) -> tuple:
        """What one image's counts depend on besides its maps: every public setting of this metric
        (thresholds, max_dist, and whatever protocol setting is added later, e.g. thinning) but
        the worker count and the cache, plus the counting code and the matcher's and thinning's
        library versions. The key of :attr:`cache` entries."""
        if self._settings is None:
            public = sorted((k, v) for k, v in vars(self).items()
                            if not k.startswith("_") and k not in ("workers", "cache"))
            self._settings = (type(self).__name__, _counting_code(), *(x for item in public for x in item))
        return self._settings

    def _count_layout(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return {name: ((self.thresholds.size,), "int64") for name in ("count_r", "sum_r", "count_p", "sum_p")}

    def _add(self, counts: Mapping[str, np.ndarray]) -> None:
        for key, value in counts.items():
            self._state[key] += value
        self._state["num_images"] += 1

    def _settle(self) -> None:
        """Add the counts of the images still being matched in worker processes."""
        pending, self._pending = self._pending, []
        for entry in pending:
            self._finish(*entry)
        if self.cache is not None and self.cache.written:
            self.cache.prune()
            self.cache.written = 0

    def curves(self) -> dict[str, np.ndarray]:
        """Per threshold: pooled ``precision``, ``recall``, ``f1`` (fractions) and ``thresholds``."""
        self._settle()
        s = {key: self._state[key].astype(np.float64) for key in ("count_r", "sum_r", "count_p", "sum_p")}
        recall, precision, f1 = compute_rec_prec_f1(s["count_r"], s["sum_r"], s["count_p"], s["sum_p"])
        return {"thresholds": self.thresholds.copy(), "precision": precision, "recall": recall, "f1": f1}

    def compute(self) -> dict[str, float]:
        self._settle()
        if int(self._state["num_images"]) == 0:
            return {"odsF": math.nan}
        c = self.curves()
        if self.interpolated:
            best = interpolated_max_scores(c["thresholds"], c["recall"], c["precision"])[3]
        else:
            best = c["f1"].max()
        return {"odsF": float(100.0 * best)}


# ------------------------------------------------------------------------------------------------
# Factory and Delta_m
# ------------------------------------------------------------------------------------------------
def build_metric(kind: str, num_classes: int | None = None, **kwargs: Any) -> Metric:
    """The metric of a task kind (``ufl.taskspec.KINDS``): segmentation, depth, normals, edges,
    saliency. ``num_classes`` is required for segmentation and ignored otherwise (so a caller may
    pass a spec's output channels for any task); ``kwargs`` go to the metric's constructor."""
    cls = METRICS.get(kind)  # an unknown kind is a UflError listing the known ones
    if cls is SegmentationMetric:
        if num_classes is None:
            raise MetricInputError("build_metric: a segmentation metric needs num_classes")
        return cls(num_classes, **kwargs)
    return cls(**kwargs)


def _is_number(x: Any) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def _headline(task: str, result: Any, reference: Any, higher_is_better: Mapping[str, bool]):
    """(M_t, S_t, higher is better) of one task, from floats or from metric dicts."""
    if _is_number(result) and _is_number(reference):
        if task in higher_is_better:
            return float(result), float(reference), bool(higher_is_better[task])
        from .taskspec import builtin_specs  # the built-in task's headline direction

        specs = builtin_specs()
        if task not in specs:
            raise MetricInputError(
                f"delta_m: cannot tell whether higher is better for task {task!r}; "
                f"pass higher_is_better={{{task!r}: True or False}} or metric dicts")
        return float(result), float(reference), specs[task].higher_is_better
    if isinstance(result, Mapping) and isinstance(reference, Mapping):
        for metric in HEADLINE_METRICS:
            if metric in result and metric in reference:
                higher = higher_is_better.get(task, METRIC_DIRECTIONS[metric])
                return float(result[metric]), float(reference[metric]), bool(higher)
        raise MetricInputError(
            f"delta_m: task {task!r} has no headline metric ({', '.join(HEADLINE_METRICS)}) in both "
            f"results ({sorted(result)}) and references ({sorted(reference)})")
    raise MetricInputError(
        f"delta_m: task {task!r} must be a number in both results and references, or a "
        f"metric dict in both; got {type(result).__name__} and {type(reference).__name__}")


def delta_m(results: Mapping[str, Any], references: Mapping[str, Any],
            higher_is_better: Mapping[str, bool] | None = None) -> float:
    """Multi-task performance Delta_m in percent (Maninis et al., CVPR 2019; MTI-Net Eq. 7).

    Delta_m = 1/T sum_t s_t (M_t - S_t) / S_t x 100, with s_t = +1 when higher is better (mIoU,
    maxF, odsF) and -1 when lower is better (depth rmse, normals mean angle); M_t the model's
    headline metric, S_t the single-task reference's.

    Args:
        results, references: task -> headline value (float), or task -> {metric: value}; then
            the headline is the first of ``HEADLINE_METRICS`` (mIoU, maxF, odsF, rmse, mean)
            present in both, with its direction from ``METRIC_DIRECTIONS``. For floats the
            direction comes from the built-in task spec of that name.
        higher_is_better: task -> bool, overriding the direction of a task.

    Only tasks present in both count; none in common is a :class:`MetricInputError`
    (a ValueError), and so is a reference of 0.
    """
    overrides = dict(higher_is_better or {})
    terms = []
    for task in results:
        if task not in references:
            continue
        m, s, higher = _headline(task, results[task], references[task], overrides)
        if s == 0 or not math.isfinite(s):
            raise MetricInputError(
                f"delta_m: the reference of task {task!r} is {s}; it must be a finite non-zero number")
        terms.append((1.0 if higher else -1.0) * (m - s) / s * 100.0)
    if not terms:
        raise MetricInputError(
            f"delta_m: no task in common between results ({sorted(results)}) and "
            f"references ({sorted(references)})")
    return float(np.mean(terms))
