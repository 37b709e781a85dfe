"""Multi-task performance Delta_m (:func:`delta_m`) of Maninis et al. (CVPR 2019, "Attentive
single-tasking of multiple tasks"), as used by MTI-Net (Vandenhende et al., ECCV 2020)."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Mapping

import numpy as np

from .base import METRIC_DIRECTIONS
from .inputs import MetricInputError

__all__ = ["HEADLINE_METRICS", "delta_m"]

#: The headline metric of a task, in the order ``delta_m`` looks for it in a metrics dict.
HEADLINE_METRICS: tuple[str, ...] = ("mIoU", "maxF", "odsF", "rmse", "mean")


def _is_number(x: Any) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def _headline(task: str, result: Any, reference: Any, higher_is_better: Mapping[str, bool]):
    """(M_t, S_t, higher is better) of one task, from floats or from metric dicts."""
    if _is_number(result) and _is_number(reference):
        if task not in higher_is_better:
            raise MetricInputError(
                f"delta_m: cannot tell whether higher is better for task {task!r}; "
                f"pass higher_is_better={{{task!r}: True or False}} or metric dicts")
        return float(result), float(reference), bool(higher_is_better[task])
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
            present in both, with its direction from ``METRIC_DIRECTIONS``. A task given as
            floats needs its direction in ``higher_is_better`` (:func:`ufl.evaluation.delta_m`
            fills in those of the built-in tasks).
        higher_is_better: task -> bool, the direction of a task given as floats, and overriding
            the direction of a task given as metric dicts.

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
