"""Semantic segmentation: one class index per pixel.

Target: ``(H, W)`` int64 class indices in ``0..C-1``, 255 = ignore (:data:`ufl.labels.IGNORE_INDEX`).
Head: ``C`` logits (C >= 2 classes, given per dataset by the spec); loss ``cross_entropy``;
metric mIoU in percent (higher is better); prediction the argmax ``(B, H, W)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import DataError
from ..labels import IGNORE_INDEX
from .base import Kind, Modality, single_channel_map

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..metrics import Metric

__all__ = ["LabelModality", "SegmentationKind", "to_label_target", "integral_labels"]


class LabelModality(Modality):
    """Class indices: nearest resampling keeps them, out-of-view pixels are 255 (ignored)."""

    name = "label"
    fill = float(IGNORE_INDEX)
    exact_integers = True


class SegmentationKind(Kind):
    name = "segmentation"
    modality = LabelModality()
    losses = ("cross_entropy",)
    metric_keys = ("mIoU",)
    headline = "mIoU"

    @property
    def metric(self) -> type[Metric]:
        from ..metrics import SegmentationMetric

        return SegmentationMetric

    def check_channels(self, channels: int) -> str | None:
        return None if channels >= 2 else f"a segmentation task needs at least 2 classes, got {channels}"

    def target_layout(self, channels: int, size: Sequence[int]) -> tuple[tuple[int, ...], str, str]:
        """``(H, W)`` as the smallest unsigned integer holding the classes and 255; decoded int64."""
        from feature_cache import label_storage_dtype

        return tuple(size), label_storage_dtype(max(IGNORE_INDEX, channels - 1)), "int64"

    def decode_file(self, path: Path, fmt: str, channels: int, what: str) -> torch.Tensor:
        from ..images import read_npy, read_png

        labels = read_npy(path, what) if fmt == "npy" else read_png(path, what)
        return to_label_target(labels, channels, path, what)

    def valid(self, target: torch.Tensor) -> torch.Tensor:
        return (target != IGNORE_INDEX)[:, None]

    def postprocess(self, logits: torch.Tensor, activation: str | None = None) -> torch.Tensor:
        """Logits ``(B, C, H, W)`` -> labels ``(B, H, W)`` int64 (the argmax)."""
        return logits.float().argmax(1)

    def resize_prediction(self, pred: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Labels ``(h, w)`` -> ``(H, W)`` int64 by nearest neighbour."""
        import torch.nn.functional as F

        return F.interpolate(pred[None, None].float(), size=tuple(size), mode="nearest")[0, 0].long()

    def prior_statistics(self, target: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The class histogram ``(C,)`` of the valid pixels and their count."""
        import torch

        labels = target[target != IGNORE_INDEX].long()
        return torch.bincount(labels, minlength=channels).double(), torch.tensor(labels.numel())

    def prior_value(self, total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """The majority class."""
        return total.argmax()

    def prior_logits(self, value: torch.Tensor, batch: int, channels: int, size: Sequence[int]) -> torch.Tensor:
        """One-hot logits of the majority class."""
        import torch

        logits = torch.zeros(batch, channels, *size, device=value.device)
        logits[:, int(value)] = 1.0
        return logits

    def probe_targets(self, target: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """One-hot ``(H, W, C)`` over the classes; 255 and out-of-range labels invalid."""
        import numpy as np

        labels = np.asarray(target).astype(np.int64)
        valid = (labels != IGNORE_INDEX) & (labels >= 0) & (labels < channels)
        return valid, np.eye(channels)[np.where(valid, labels, 0)]

    def probe_columns(self, values: np.ndarray) -> np.ndarray:
        """Only the classes present in the sample (LogME averages over them)."""
        return values[:, values.sum(0) > 0]

    def colorize(self, array: Any, *, valid: Any = None, classes: Any = None, value_range: Any = None) -> np.ndarray:
        """Each class in its palette colour (``classes``); 255 (ignore) black."""
        from ..colours import colorize_labels

        return colorize_labels(array, classes, valid)

    def colour_key(self, gt: Any, pred: Any, *, classes: Any = None, value_range: Any = None) -> list[dict[str, Any]]:
        """A legend of the most frequent classes, by name."""
        from ..colours import class_legend

        return class_legend(gt, pred, classes)


def integral_labels(arr: np.ndarray, path: Path | str, what: str) -> np.ndarray:
    """Integer (or integral float, or bool) values -> int64; fractional values are a :class:`DataError`."""
    import numpy as np

    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all() and (arr == np.round(arr)).all():
        return arr.astype(np.int64)
    raise DataError(f"{what} {path} holds non-integer values ({arr.dtype}); class indices are expected")


def to_label_target(arr: np.ndarray, num_classes: int, path: Path | str, what: str = "label") -> torch.Tensor:
    """Class indices ``(H, W)`` -> int64 tensor ``(H, W)``; values must be in ``0..num_classes-1`` or 255."""
    import numpy as np
    import torch

    labels = integral_labels(single_channel_map(np.asarray(arr), path, what), path, what)
    bad = (labels < 0) | ((labels >= num_classes) & (labels != IGNORE_INDEX))
    if bad.any():
        value = int(labels[bad][0])
        raise DataError(f"{what} {path} holds class {value}, outside 0..{num_classes - 1} "
                        f"({IGNORE_INDEX} = ignore); the task has {num_classes} classes")
    return torch.from_numpy(labels)
