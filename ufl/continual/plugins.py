"""The avalanche plugins of ``ufl continual``: frozen heads, the dense-task criterion, LwF-style
feature distillation and a Synaptic Intelligence whose weight snapshots are copies."""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import FeatureDistillationPlugin, SynapticIntelligencePlugin

from ..errors import UflError
from ..losses import MultiTaskLoss
from ..tensors import resize
from .stream import ContinualTask

__all__ = ["FrozenLearnedHeads", "TaskCriterion", "dense_representation", "DenseFeatureDistillation",
           "CopyingSynapticIntelligence"]


class FrozenLearnedHeads(SupervisedPlugin):
    """Freeze each task's head once its experience ends (all strategies), and for ``frozen`` check
    before each experience that the backbone is still frozen and in eval mode.

    An earlier task has no data any more; freezing its head keeps optimizer side effects (Adam's
    weight decay on a gradient that a regulariser creates) from moving it.
    """

    def __init__(self, frozen_backbone: bool = False):
        super().__init__()
        self.frozen_backbone = frozen_backbone

    def before_training_exp(self, strategy, **kwargs):
        backbone = strategy.model.backbone
        if self.frozen_backbone and (backbone.training or any(p.requires_grad for p in backbone.parameters())):
            raise RuntimeError("the frozen backbone was switched back to training; Backbone.freeze() must hold")

    def after_training_exp(self, strategy, **kwargs):
        strategy.model.head(strategy.experience.task_label).requires_grad_(False)


class TaskCriterion(SupervisedPlugin):
    """avalanche's criterion for a stream of dense tasks: the loss of the current experience's task.

    It learns the task in ``before_training_exp`` / ``before_eval_exp`` (from the experience's task
    label) and is then called as ``criterion(mb_output, mb_y)`` with the head output and the dense
    target. The loss is the reference one (DESIGN.md section 6): the task's loss with its dataset
    weight, plus the same loss on every upsampled per-scale initial prediction (deep supervision);
    see :class:`~ufl.losses.MultiTaskLoss`.
    """

    def __init__(self, tasks: Sequence[ContinualTask]):
        super().__init__()
        self.tasks = {t.label: t for t in tasks}
        self.losses = {t.label: MultiTaskLoss({t.name: t.spec}, t.dataset, deep_supervision=True) for t in tasks}
        self.current: ContinualTask | None = None

    def learn(self, task_label: int) -> None:
        if task_label not in self.tasks:
            raise UflError(f"no task with label {task_label} (labels: {sorted(self.tasks)})")
        self.current = self.tasks[task_label]

    def before_training_exp(self, strategy, **kwargs):
        self.learn(strategy.experience.task_label)

    def before_eval_exp(self, strategy, **kwargs):
        self.learn(strategy.experience.task_label)

    def __call__(self, output: Mapping[str, Any], target: torch.Tensor) -> torch.Tensor:
        if self.current is None:
            raise RuntimeError("TaskCriterion was called before an experience set its task")
        name = self.current.name
        total, _ = self.losses[self.current.label]({name: output}, {name: target})
        return total


def dense_representation(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Multi-scale features -> one map: every scale upsampled (bilinear) to the finest and concatenated
    (B, sum C_s, H_0, W_0), HRNetV2's representation (Sun et al., 2019) and the input of
    :class:`~ufl.models.HRNetHead`."""
    size = features[0].shape[-2:]
    return torch.cat([resize(f, size) for f in features], dim=1)


class DenseFeatureDistillation(FeatureDistillationPlugin):
    """LwF-style distillation for dense tasks: avalanche's ``FeatureDistillationPlugin`` on the
    backbone's per-pixel features.

    loss += alpha · (1 - mean_{b, p} cos(f_new(b, p), f_old(b, p))), with f the
    :func:`dense_representation` of the current and of the previous experience's backbone (in
    eval mode), the cosine over channels at each pixel p (``mode="cosine"``).

    NOTE: the stock hooks keep a deep copy of the whole model and run it with the current task
    label, which the previous model has no head for yet, and expect ``model.features`` to be one
    (B, D) tensor; here the teacher is a copy of the backbone alone and the features are multi-scale.
    """

    def __init__(self, alpha: float = 1.0, mode: str = "cosine"):
        if mode != "cosine":
            raise UflError(f"dense feature distillation supports mode 'cosine' only, got {mode!r}")
        super().__init__(alpha=alpha, mode=mode)

    def before_backward(self, strategy, **kwargs):
        if self.prev_model is None:
            return
        with torch.no_grad():
            old = dense_representation(self.prev_model(strategy.mb_x))
        new = dense_representation(strategy.model.features)
        strategy.loss += self.alpha * (1 - F.cosine_similarity(new, old, dim=1).mean())

    def after_training_exp(self, strategy, **kwargs):
        self.prev_model = copy.deepcopy(strategy.model.backbone).eval().requires_grad_(False)


class CopyingSynapticIntelligence(SynapticIntelligencePlugin):
    """avalanche's ``SynapticIntelligencePlugin`` (Zenke et al., ICML 2017) with weight snapshots that
    are copies.

    NOTE: avalanche 0.6.0 snapshots the weights with ``param.detach().cpu().flatten()``, which on
    the CPU is a *view* of the live parameter: the start-of-experience and before-step snapshots
    move with every optimizer step, every path integral is 0 and SI silently becomes Naive. Here the
    two snapshots the importance is computed from are retaken as copies right after the stock
    hooks take them; everything else is avalanche's (importances clipped at 1e-3 from above, as
    there).
    """

    def before_training_exp(self, strategy, **kwargs):
        super().before_training_exp(strategy, **kwargs)
        self._copy_weights(strategy.model, self.ewc_data[0])

    def before_training_iteration(self, strategy, **kwargs):
        super().before_training_iteration(strategy, **kwargs)
        self._copy_weights(strategy.model, self.syn_data["old_theta"])

    def _copy_weights(self, model: nn.Module, target) -> None:
        with torch.no_grad():
            for name, param in self.allowed_parameters(model, self.excluded_parameters):
                target[name].data = param.detach().flatten().to("cpu", copy=True)
