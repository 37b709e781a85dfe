"""Edge detection: the boundary F-measure at the optimal dataset scale, odsF (:class:`EdgeMetric`);
the matching itself is in :mod:`ufl.metrics.edge_matching`."""

from __future__ import annotations

import math
import os
from concurrent.futures import Future
from numbers import Real
from typing import Any, Mapping

import numpy as np
from pyEdgeEval.common.metrics import compute_rec_prec_f1, interpolated_max_scores

from ..evalcache import CountCache, image_key
from ..labels import IGNORE_INDEX
from .base import Metric
from .edge_matching import counting_code, match_image
from .inputs import MetricInputError, check_binary_target, check_probabilities, is_positive_int, maps, same_shape

__all__ = ["EdgeMetric"]


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
        if not is_positive_int(num_thresholds):
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
        pred = check_probabilities(maps(pred, "pred", name), name)
        target = check_binary_target(maps(target, "target", name), name)
        same_shape(pred, target, name)
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
            groups, parts = match_image(self.thresholds, self.max_dist, image, edges, valid, self.thin, self.workers)
            if groups is None:
                self._finish(key, None, parts)
            else:
                self._pending.append((key, groups, parts))
                if len(self._pending) > 4 * self.workers:  # bound the images held in flight
                    self._finish(*self._pending.pop(0))

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
            self._settings = (type(self).__name__, counting_code(), *(x for item in public for x in item))
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
