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

Modules: :mod:`~ufl.metrics.base` (the :class:`Metric` base class,
:data:`METRIC_DIRECTIONS`), :mod:`~ufl.metrics.inputs` (input checks, :class:`MetricInputError`),
one module per metric (:mod:`~ufl.metrics.segmentation`, :mod:`~ufl.metrics.depth`,
:mod:`~ufl.metrics.normals`, :mod:`~ufl.metrics.saliency`, :mod:`~ufl.metrics.edges`),
:mod:`~ufl.metrics.edge_matching` (the seeded matcher and its process pool) and
:mod:`~ufl.metrics.delta` (Delta_m). Every public name is importable from ``ufl.metrics``.
"""

from __future__ import annotations

from .base import METRIC_DIRECTIONS, Metric
from .delta import HEADLINE_METRICS, delta_m
from .depth import MIN_DEPTH, DepthMetric
from .edge_matching import edge_pool_context
from .edges import EdgeMetric
from .inputs import MetricInputError
from .normals import ANGLE_THRESHOLDS, NormalsMetric
from .saliency import SaliencyMetric
from .segmentation import SegmentationMetric

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
    "delta_m",
    "MIN_DEPTH",
    "ANGLE_THRESHOLDS",
    "edge_pool_context",
]
