"""The metrics of ``ufl continual``: each task's headline score and its forgetting, as avalanche metrics.

Scores are a ``GenericPluginMetric`` (:class:`HeadlineScorePluginMetric`) and forgetting subclasses
``GenericExperienceForgetting`` / ``GenericStreamForgetting``, on the task's headline metric turned
higher-is-better (lower-is-better metrics such as depth rmse are negated), so forgetting is the drop
of a task's metric from just after it was learnt to the end, positive = worse: ``after - end`` for
mIoU/maxF/odsF, ``end - after`` for rmse and the normals' mean angle.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import torch

from avalanche.evaluation.metric_definitions import GenericPluginMetric
from avalanche.evaluation.metrics.forgetting_bwt import GenericExperienceForgetting, GenericStreamForgetting

from ..evaluation import EDGE_THRESHOLDS_QUICK, make_metric, postprocess
from .stream import ContinualTask

__all__ = ["HeadlineScore", "HeadlineScorePluginMetric", "HeadlineExperienceForgetting",
           "HeadlineStreamForgetting", "per_experience"]


class HeadlineScore:
    """An avalanche standalone metric (``result()`` / ``reset()``) over one evaluation experience:
    the task's ``ufl.metrics`` accumulator, pooled over the whole split (DESIGN.md section 5).

    ``update(logits (B, C, H, W), target, task_label)``; ``result()`` is the task's headline value
    as the protocol reports it (mIoU in %, depth rmse in metres, ...), ``score()`` the same turned
    higher-is-better (:meth:`ContinualTask.score`). Both are ``None`` before any update.

    NOTE: edges' odsF is computed over ``edge_thresholds`` thresholds (default 19, as during
    training; ``None``: the protocol's 99), since every task is evaluated after every experience.
    """

    def __init__(self, tasks: Sequence[ContinualTask], edge_thresholds: int | None = EDGE_THRESHOLDS_QUICK):
        self.tasks = {t.label: t for t in tasks}
        self.edge_thresholds = edge_thresholds
        self.task: ContinualTask | None = None
        self._metric = None
        self._value: float | None = None

    def update(self, logits: torch.Tensor, target: torch.Tensor, task_label: int) -> None:
        task = self.tasks[int(task_label)]
        if self.task is None:
            self.task = task
            self._metric = make_metric(task.spec, task.dataset, self.edge_thresholds)
        elif task is not self.task:
            raise ValueError(f"HeadlineScore holds task {self.task.key}; reset it before {task.key}")
        self._metric.update(postprocess(task.spec.kind, logits), target)
        self._value = None

    def result(self) -> float | None:
        if self._metric is None:
            return None
        if self._value is None:
            self._value = float(self._metric.compute()[self.task.metric])
        return self._value

    def score(self) -> float | None:
        value = self.result()
        return None if value is None else self.task.score(value)

    def reset(self) -> None:
        self.task = None
        self._metric = None
        self._value = None


def _update_from_strategy(metric: HeadlineScore, strategy) -> None:
    metric.update(strategy.mb_output["out"], strategy.mb_y, strategy.experience.task_label)


class HeadlineScorePluginMetric(GenericPluginMetric):
    """The task's headline value on each evaluation experience, logged as
    ``Headline/eval_phase/test_stream/TaskTTT/ExpEEE`` (the metric's own units and direction)."""

    def __init__(self, tasks: Sequence[ContinualTask]):
        super().__init__(HeadlineScore(tasks), reset_at="experience", emit_at="experience", mode="eval")

    def update(self, strategy) -> None:
        _update_from_strategy(self._metric, strategy)

    def __str__(self) -> str:
        return "Headline"


class _HeadlineForgettingUpdates:
    """What avalanche's generic forgetting metrics need from a subclass: how the current score
    is updated from the strategy and read."""

    _current_metric: HeadlineScore

    def metric_update(self, strategy) -> None:
        _update_from_strategy(self._current_metric, strategy)

    def metric_result(self, strategy) -> float | None:
        return self._current_metric.score()


class HeadlineExperienceForgetting(_HeadlineForgettingUpdates, GenericExperienceForgetting):
    """Per task: score just after its experience minus score now, on the higher-is-better score, so
    positive = worse in every unit (``after - end`` for mIoU, ``end - after`` for rmse). Logged as
    ``HeadlineForgetting/eval_phase/test_stream/TaskTTT/ExpEEE`` for every task learnt before the last
    training experience."""

    def __init__(self, tasks: Sequence[ContinualTask]):
        super().__init__(HeadlineScore(tasks))

    def result_key(self, k: int) -> float | None:
        return self.forgetting.result_key(k=k)

    def result(self) -> dict[int, float]:
        return self.forgetting.result()

    def __str__(self) -> str:
        return "HeadlineForgetting"


class HeadlineStreamForgetting(_HeadlineForgettingUpdates, GenericStreamForgetting):
    """The mean of :class:`HeadlineExperienceForgetting` over the earlier tasks, logged as
    ``StreamHeadlineForgetting/eval_phase/test_stream``.

    NOTE: tasks' units differ (mIoU points, metres); the mean is a log-only summary, not reported.
    """

    def __init__(self, tasks: Sequence[ContinualTask]):
        super().__init__(HeadlineScore(tasks))

    def __str__(self) -> str:
        return "StreamHeadlineForgetting"


_EXP_NAME = re.compile(r"^(?P<metric>[^/]+)/eval_phase/[^/]+/Task\d+/Exp(?P<exp>\d+)$")


def per_experience(results: Mapping[str, Any], metric: str) -> dict[int, float]:
    """``{experience id: value}`` of ``metric`` in a ``strategy.eval()`` result dict."""
    out = {}
    for name, value in results.items():
        match = _EXP_NAME.match(name)
        if match and match["metric"] == metric:
            out[int(match["exp"])] = float(value)
    return out
