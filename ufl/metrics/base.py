"""The running-metric base class (:class:`Metric`) and the
table of metric directions (:data:`METRIC_DIRECTIONS`), the one place that says whether a larger
value of a metric key is better. Which metric a task kind reports is the kind's business
(:meth:`ufl.kinds.Kind.build_metric`); the metrics know no task kinds."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..tensors import to_numpy
from .inputs import MetricInputError

__all__ = ["Metric", "METRIC_DIRECTIONS"]


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

    # -- construction from a task's options ----------------------------------------------------
    @classmethod
    def build(cls, num_classes: int | None = None, **kwargs: Any) -> "Metric":
        """This metric from a task's options: ``num_classes`` (a spec's output channels) is used by
        metrics that need it (segmentation) and ignored by the others, so a caller may pass it for
        any task; ``kwargs`` go to the constructor."""
        return cls(**kwargs)

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
            value = to_numpy(state[name])
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
