"""Salient object detection: a binary map of the salient objects.

Target ``(1, H, W)`` float32 {0, 1}, 255 = ignore (:mod:`ufl.kinds.binary`). Metrics in percent,
higher is better (:class:`ufl.metrics.SaliencyMetric`, MTI-Net's ``eval_sal.py``): maxF (F with
beta² = 1 at the best of 15 thresholds, headline), maxF_b03 (beta² = 0.3) and mIoU (image-mean IoU
at the best threshold).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .binary import BinaryMapKind

if TYPE_CHECKING:
    from ..metrics import Metric

__all__ = ["SaliencyKind"]


class SaliencyKind(BinaryMapKind):
    name = "saliency"
    metric_keys = ("maxF", "maxF_b03", "mIoU")
    headline = "maxF"

    @property
    def metric(self) -> type[Metric]:
        from ..metrics import SaliencyMetric

        return SaliencyMetric
