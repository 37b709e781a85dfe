"""Edge detection: a binary map of object boundaries.

Target ``(1, H, W)`` float32 {0, 1}, 255 = ignore (:mod:`ufl.kinds.binary`). Metric odsF in percent
(higher is better): :class:`ufl.metrics.EdgeMetric`, one-to-one matching of thinned predictions
within a tolerance that the benchmark fixes per dataset (:data:`EDGE_PROTOCOL`); matching runs in
worker processes and may reuse per-image counts from a cache folder (:mod:`ufl.evalcache`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from .binary import BinaryMapKind

if TYPE_CHECKING:
    from ..metrics import Metric

__all__ = ["EdgesKind", "EDGE_PROTOCOL"]

EDGE_PROTOCOL: dict[str, dict[str, float | bool]] = {
    # SEISM, src/scripts/eval_method.m (github.com/jponttuset/seism): maxDist = 0.0075 for every
    # database but 'Pascal' (0.01) and 'SBD' (0.02); MTI-Net's evaluation/eval_edge.py runs it on
    # 'PASCALContext'. Thinning: SEISM's eval_cont.m calls edgesEvalImg(contours, gt, params) with
    # params.maxDist only, so edgesEvalImg's default thin = 1 applies (bwmorph(E1, 'thin', inf)).
    "pascal": {"max_dist": 0.0075, "thin": True},
    # Dollar's structured-edge benchmark on NYUD (github.com/pdollar/edges, edgesDemoRgbd.m:
    # edgesEval(model, ..., 'maxDist', .011)), the setting the multi-task NYUD edge numbers use;
    # edgesEvalImg thins (thin = 1 by default).
    "nyud": {"max_dist": 0.011, "thin": True},
}
"""Edge matching settings per dataset (keyword arguments of :class:`ufl.metrics.EdgeMetric`).

A dataset not listed (a user's folder) gets EdgeMetric's defaults (maxDist 0.0075, thinned), the
BSDS / SEISM default.
"""


class EdgesKind(BinaryMapKind):
    name = "edges"
    metric_keys = ("odsF",)
    headline = "odsF"
    matches_per_image = True

    @property
    def metric(self) -> type[Metric]:
        from ..metrics import EdgeMetric

        return EdgeMetric

    def metric_options(self, dataset: str) -> dict[str, Any]:
        """The edge matching of :data:`EDGE_PROTOCOL` for ``dataset`` (``{}``: the metric's defaults)."""
        return dict(EDGE_PROTOCOL.get(dataset, {}))

    def build_metric(self, channels: int, options: Mapping[str, Any] | None = None, *, workers: int = 0,
                     cache: Any = None, thresholds: int | None = None) -> Metric:
        """:class:`~ufl.metrics.EdgeMetric` with ``options``, matching in ``workers`` processes,
        reusing the counts in ``cache`` (a folder) and over ``thresholds`` thresholds when given."""
        kwargs = dict(options or {})
        kwargs["workers"] = workers
        if cache is not None:
            kwargs["cache"] = cache
        if thresholds is not None:
            kwargs["num_thresholds"] = thresholds
        return self.metric.build(channels, **kwargs)
