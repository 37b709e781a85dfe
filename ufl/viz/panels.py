"""A typed panel row: one task's pictures in a prediction figure (ground truth, prediction,
attention maps and the keys of their colours), built from the row dicts of
:func:`ufl.viz.prediction_grids` and split into the lines the figure draws."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Mapping

import numpy as np

from ..tensors import to_numpy
from .maps import class_colours, drawn_kind

__all__ = ["PanelRow", "ROW_KEYS", "MAX_PANELS_PER_LINE", "MISSING_GT"]

ROW_KEYS = frozenset({"task", "gt", "pred", "attention", "attention_labels", "kind", "dataset", "num_classes",
                      "target"})
"""The keys a row dict of :func:`ufl.viz.prediction_grids` may hold."""

MAX_PANELS_PER_LINE = 5
"""Attention maps per line of a task's row before it wraps (SFA and MSA each start a line)."""

MISSING_GT = np.zeros((1, 1, 3), dtype=np.uint8)
"""Placeholder panel (compared by identity): this task has no ground truth, other tasks of the sample do."""

Panel = tuple[str, np.ndarray]
"""A labelled picture: ``(label, (H, W, 3) uint8 RGB)``."""


@dataclass(frozen=True)
class PanelRow:
    """One task's row of colourised panels.

    Attributes:
        task: the row's label (the task name).
        pred: the prediction, ``(H, W, 3)`` uint8 RGB.
        gt: the ground truth, ``(H, W, 3)`` uint8 RGB, or None.
        attention: the attention maps as ``(label, (H, W, 3) uint8)``, in the caller's order.
        keys: the keys of the prediction line's colours (``[{"type": ..., ...}]``, see
            :meth:`ufl.kinds.Kind.colour_key`); empty for a row given without a ``kind``.
    """

    task: str
    pred: np.ndarray
    gt: np.ndarray | None = None
    attention: tuple[Panel, ...] = ()
    keys: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, row: Mapping[str, Any], where: str) -> PanelRow:
        """A row dict of :func:`ufl.viz.prediction_grids` -> its panels, colourised by the kind
        (:meth:`ufl.kinds.Kind.colorize`) when the row gives a ``kind``, ground truth and prediction
        on one scale (:meth:`~ufl.kinds.Kind.colour_range`); ``where`` names the row in errors."""
        if not isinstance(row, Mapping):
            raise ValueError(f"{where}: each row must be a dict with keys 'task' and 'pred', got {type(row).__name__}")
        unknown = set(row) - ROW_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown row key(s) {sorted(unknown)}; allowed: {sorted(ROW_KEYS)}")
        if "task" not in row or row.get("pred") is None:
            raise ValueError(f"{where}: a row needs 'task' and 'pred'")
        task, kind, gt, pred = str(row["task"]), row.get("kind"), row.get("gt"), row["pred"]
        keys: list[dict[str, Any]] = []
        if kind is not None:
            drawn = drawn_kind(kind)
            dataset = row.get("dataset")
            target = str(row.get("target") or task) if dataset is not None else None
            options = {"classes": partial(class_colours, dataset, target, row.get("num_classes")),
                       "value_range": drawn.colour_range(gt, pred)}
            raw_gt, raw_pred = gt, pred
            gt = drawn.colorize(gt, **options) if gt is not None else None
            pred = drawn.colorize(pred, **options)
            keys = drawn.colour_key(raw_gt, raw_pred, **options)  # after colorize: bad labels fail there, clearly
        gt = _panel(gt, f"{where} ({task}) 'gt'") if gt is not None else None
        pred = _panel(pred, f"{where} ({task}) 'pred'")
        maps = list(row.get("attention") or [])
        labels = list(row.get("attention_labels") or [f"attention {i + 1}" for i in range(len(maps))])
        if len(labels) != len(maps):
            raise ValueError(f"{where} ({task}): {len(labels)} attention_labels for {len(maps)} attention maps")
        attention = tuple((str(label), _panel(m, f"{where} ({task}) attention {i}"))
                          for i, (label, m) in enumerate(zip(labels, maps)))
        return cls(task=task, pred=pred, gt=gt, attention=attention, keys=tuple(keys))

    @property
    def scales(self) -> int:
        """How many MSA scale maps the row holds (labels starting ``MSA``, the argmax map excepted)."""
        return sum(1 for label, _ in self.attention if label.startswith("MSA") and "argmax" not in label)

    def lines(self, gt_column: bool = False) -> list[tuple[list[tuple[str, np.ndarray | None]], str]]:
        """The row's panels split into lines: ``[(panels, what)]``; the first holds the ground truth
        and the prediction, then each attention group (its labels' first word: SFA, MSA) starts a
        line, wrapped after :data:`MAX_PANELS_PER_LINE` maps. ``what`` is "prediction" or
        "attention". With ``gt_column`` (another row of the sample has a ground truth), a row
        without one gets :data:`MISSING_GT` in its place, so the predictions line up."""
        gt = MISSING_GT if gt_column and self.gt is None else self.gt
        lines: list[tuple[list[tuple[str, np.ndarray | None]], str]] = [
            (([("ground truth", gt)] if gt is not None else []) + [("prediction", self.pred)], "prediction")]
        groups: dict[str, list[Panel]] = {}
        for label, rgb in self.attention:
            groups.setdefault(label.split(" ")[0], []).append((label, rgb))
        for maps in groups.values():
            for start in range(0, len(maps), MAX_PANELS_PER_LINE):
                lines.append((list(maps[start:start + MAX_PANELS_PER_LINE]), "attention"))
        return lines


def _panel(x: Any, what: str) -> np.ndarray:
    arr = to_numpy(x)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{what} is not a colourised uint8 (H, W, 3) image (got {arr.dtype} {tuple(arr.shape)}); "
                         f"give the row's 'kind' to colourise raw values")
    return arr
