"""Continual task addition, compared with avalanche-lib's strategies (``ufl continual``).

Tasks arrive one at a time: a stream in which each *experience* is ONE dense task (its dataset's
train split to learn from, its val split to evaluate on) with its own task label and its own
:class:`~ufl.models.MedusaHead`. Every strategy starts from the same backbone, with the same seed,
and learns the same stream; after each experience it is evaluated on every task seen so far
(``test_stream[:i+1]``), which gives the score matrix and the forgetting of each task.

==========  ==============================================================================
strategy    what is trained on experience i
==========  ==============================================================================
``frozen``  ufl's approach: only head i; the backbone is frozen (``Backbone.freeze()``: no
            gradients, BatchNorm kept in eval mode) and so is every earlier head, so earlier
            tasks keep their exact predictions: their forgetting is exactly 0.0.
``naive``   avalanche ``Naive``: backbone + head i, plain fine-tuning.
``ewc``     avalanche ``EWC`` (Kirkpatrick et al., PNAS 2017): backbone + head i with a
            quadratic penalty towards earlier solutions, weighted by the Fisher information.
``lwf``     avalanche ``Naive`` + :class:`DenseFeatureDistillation` (a subclass of avalanche's
            ``FeatureDistillationPlugin``, mode ``"cosine"``): LwF-style distillation of the
            previous backbone's features, per pixel (stock LwF distils class logits and does not
            fit dense outputs; DESIGN.md section 8).
``si``      avalanche ``Naive`` + its ``SynapticIntelligencePlugin`` (Zenke et al., ICML 2017;
            :class:`CopyingSynapticIntelligence` fixes a snapshot bug): backbone + head i with a
            path-integral importance penalty.
==========  ==============================================================================

In every strategy the heads of earlier tasks are frozen once their experience ends: their data is
gone, and the strategies differ only in how they treat the shared backbone.

The avalanche pieces (DESIGN.md section 8): each task's dataset is wrapped with
``make_avalanche_dataset(..., data_attributes=[TaskLabels(...)])`` and yields ``(image, target,
task label)`` with the image one tensor and the target the task's dense tensor; the stream is
``with_task_labels(benchmark_from_datasets(train=[...], test=[...]))``. The model is a
:class:`ContinualMedusa` (a ``MultiTaskModule`` whose adaptation adds a head per new task label);
the criterion is a :class:`TaskCriterion` (a ``SupervisedPlugin`` that switches to the current
experience's loss). Scores are a ``GenericPluginMetric`` (:class:`HeadlineScorePluginMetric`) and
forgetting subclasses ``GenericExperienceForgetting`` / ``GenericStreamForgetting``, on the task's
headline metric turned higher-is-better (lower-is-better metrics such as depth rmse are negated), so
forgetting is the drop of a task's metric from just after it was learnt to the end, positive =
worse: ``after - end`` for mIoU/maxF/odsF, ``end - after`` for rmse and the normals' mean angle.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from avalanche.benchmarks.scenarios import CLScenario
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.task_aware import with_task_labels
from avalanche.benchmarks.utils import TaskLabels, make_avalanche_dataset
from avalanche.benchmarks.utils.flat_data import ConstantSequence
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metric_definitions import GenericPluginMetric
from avalanche.evaluation.metrics.forgetting_bwt import GenericExperienceForgetting, GenericStreamForgetting
from avalanche.logging import InteractiveLogger, TextLogger
from avalanche.models.dynamic_modules import DynamicModule, MultiTaskModule
from avalanche.training import EWC, Naive
from avalanche.training.plugins import EvaluationPlugin, FeatureDistillationPlugin, SynapticIntelligencePlugin
from avalanche.training.templates import SupervisedTemplate

from .checkpoint import load_checkpoint
from .datasets import DATASETS, build_transforms, dataset_root, get_dataset
from .errors import SpecError, UflError
from .evaluation import EDGE_THRESHOLDS_QUICK, make_metric, postprocess
from .losses import MultiTaskLoss
from .models import DEFAULT_BACKBONE, Backbone, MedusaHead
from .models.heads import resize
from .registry import Registry
from .runtime import cudnn_exact, loader_kwargs, resolve_device, seed_everything
from .taskspec import TaskSpec, builtin_specs

__all__ = [
    "DEFAULT_TASKS", "DEFAULT_STRATEGIES", "STRATEGIES", "ContinualTask", "ContinualConfig", "parse_tasks",
    "parse_strategies", "build_benchmark", "ContinualMedusa", "TaskCriterion", "FrozenLearnedHeads",
    "DenseFeatureDistillation", "CopyingSynapticIntelligence", "dense_representation", "HeadlineScore",
    "HeadlineScorePluginMetric", "HeadlineExperienceForgetting", "HeadlineStreamForgetting", "starting_backbone",
    "run_continual", "format_results", "to_json_safe",
]

log = logging.getLogger(__name__)

#: The default sequence: NYUD's two main tasks, then PASCAL's two new ones (both domains).
DEFAULT_TASKS: tuple[str, ...] = ("nyud:semseg", "nyud:depth", "pascal:human_parts", "pascal:saliency")
DEFAULT_STRATEGIES: tuple[str, ...] = ("frozen", "naive", "ewc", "lwf")


# ------------------------------------------------------------------------------------------------
# Tasks and the stream
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContinualTask:
    """One experience of the stream: task ``name`` on ``dataset``, with avalanche task ``label``.

    ``key`` (``"dataset:name"``) names the task in the results; ``metric`` is the spec's headline
    metric and ``higher_is_better`` its direction.
    """

    dataset: str
    name: str
    spec: TaskSpec
    label: int

    @property
    def key(self) -> str:
        return f"{self.dataset}:{self.name}"

    @property
    def metric(self) -> str:
        return self.spec.metric

    @property
    def higher_is_better(self) -> bool:
        return self.spec.higher_is_better

    @property
    def out_channels(self) -> int:
        return self.spec.out_channels(self.dataset)

    def score(self, value: float) -> float:
        """The headline value turned higher-is-better (negated for rmse, mean angle)."""
        return value if self.higher_is_better else -value


def _standard_datasets() -> list[str]:
    """Datasets that live in a standard folder under the data root (nyud, pascal)."""
    return [name for name in DATASETS.names() if DATASETS.get(name).folder_name is not None]


def parse_tasks(tasks: Sequence[str]) -> list[ContinualTask]:
    """``["nyud:semseg", ...]`` -> tasks with labels 0, 1, ... in stream order.

    Each entry is ``DATASET:TASK`` with a dataset that has a standard folder (``nyud``, ``pascal``) and a
    built-in task it provides. Errors are one-line :class:`~ufl.errors.SpecError` s.
    """
    datasets = _standard_datasets()
    parsed: list[ContinualTask] = []
    if not tasks:
        raise SpecError(f"no task given; list DATASET:TASK entries, e.g. {','.join(DEFAULT_TASKS)}")
    for entry in tasks:
        dataset, sep, name = entry.partition(":")
        if not sep or not dataset or not name:
            raise SpecError(f"task {entry!r} is not of the form DATASET:TASK (e.g. nyud:semseg, pascal:saliency)")
        if dataset not in datasets:
            raise SpecError(f"unknown dataset {dataset!r} in task {entry!r}; known datasets: {', '.join(datasets)}")
        known = builtin_specs()
        if name not in known:
            raise SpecError(f"unknown task {name!r} in {entry!r}; known tasks: {', '.join(sorted(known))}")
        spec = known[name]
        provided = DATASETS.get(dataset).supported_tasks
        if name not in provided:
            raise SpecError(f"task {name!r} is not available on dataset {dataset!r} (it provides: "
                            f"{', '.join(provided)})")
        task = ContinualTask(dataset, name, spec, len(parsed))
        if any(t.key == task.key for t in parsed):
            raise SpecError(f"task {task.key!r} is listed twice; each task is one experience of the stream")
        parsed.append(task)
    return parsed


class _ImageTarget(Dataset):
    """A one-task ``ufl`` dataset as ``(image (3, H, W), target)`` pairs, as avalanche's supervised
    strategies unpack mini-batches (``mb_x = batch[0]``, ``mb_y = batch[1]``, task label last)."""

    def __init__(self, dataset, task: str):
        self.dataset = dataset
        self.task = task

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.dataset[index]
        return sample["image"], sample[self.task]


def _task_dataset(task: ContinualTask, data_root: str | os.PathLike | None, split: str,
                  size: Sequence[int] | None, augment: bool, seed: int):
    """The avalanche dataset of one task's split (train: the reference augmentations, seeded)."""
    root = dataset_root(task.dataset, data_root)
    train = split == "train"
    generator = torch.Generator().manual_seed(seed * 1009 + task.label) if train else None
    transform = build_transforms(task.dataset, train, size, {task.name: task.spec.modality}, augment=augment,
                                 generator=generator)
    kwargs: dict[str, Any] = {}
    if task.dataset == "pascal" and task.name == "human_parts":
        # NOTE: as MTI-Net's single-task parts setting, only images that contain persons (the
        # parts metric is computed on those only; DESIGN.md section 5).
        kwargs["persons_only"] = True
    dataset = get_dataset(task.dataset, root, split, [task.name], transform=transform, **kwargs)
    labels = TaskLabels(ConstantSequence(task.label, len(dataset)))
    return make_avalanche_dataset(_ImageTarget(dataset, task.name), data_attributes=[labels])


def build_benchmark(tasks: Sequence[ContinualTask], data_root: str | os.PathLike | None = None,
                    size: Sequence[int] | None = None, augment: bool = True, seed: int = 0) -> CLScenario:
    """The avalanche benchmark: ``train_stream[i]`` / ``test_stream[i]`` hold task i's train / val
    split, each experience with ``task_label == i`` (DESIGN.md section 8).

    ``size`` (H, W) resizes every image (default: each dataset's reference size); ``seed`` seeds
    the training augmentations, so two benchmarks built with the same seed yield the same samples.
    Missing data is a :class:`~ufl.errors.DataError` naming the file or folder.
    """
    train = [_task_dataset(t, data_root, "train", size, augment, seed) for t in tasks]
    test = [_task_dataset(t, data_root, "val", size, augment, seed) for t in tasks]
    return with_task_labels(benchmark_from_datasets(train=train, test=test))


# ------------------------------------------------------------------------------------------------
# The model: a shared backbone and one Medusa head per task label
# ------------------------------------------------------------------------------------------------
class ContinualMedusa(MultiTaskModule):
    """Medusa as an avalanche ``MultiTaskModule``: a backbone shared by all tasks and one
    :class:`~ufl.models.MedusaHead` per task label, added by :meth:`adaptation` when a training
    experience brings a new label.

    Args:
        backbone: the shared :class:`~ufl.models.Backbone` (frozen or not).
        out_channels: ``{task label: output channels}`` of every task the stream may bring.
        seed: heads are initialised from ``seed`` and their label only, so every strategy starts
            each task from the same head whatever it consumed from the global RNG before.
        head_options: :class:`~ufl.models.MedusaHead` options (``width``, ``attention_reduction``).

    ``forward(images (B, 3, H, W), task_labels (B,) or int)`` returns the current task's head output
    ``{"out": logits (B, C_t, H, W) at the images' size, "initial": [per-scale logits] (training
    mode)}``; a mini-batch holds one task (every experience is one task). After each forward,
    :attr:`features` holds the backbone's multi-scale features, for :class:`DenseFeatureDistillation`.
    """

    def __init__(self, backbone: Backbone, out_channels: Mapping[int, int], seed: int = 0,
                 head_options: Mapping[str, Any] | None = None):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict()
        self.out_channels = {int(k): int(v) for k, v in out_channels.items()}
        self.seed = int(seed)
        self.head_options = dict(head_options or {})
        self.features: list[torch.Tensor] | None = None

    def adaptation(self, experience) -> None:
        # NOTE: MultiTaskModule.adaptation reads experience.classes_in_this_experience, which dense
        # datasets do not have: only the task-label bookkeeping is kept.
        DynamicModule.adaptation(self, experience)
        if not self.training:
            return  # eval never adds heads: only tasks seen in training are evaluated
        for label in experience.task_labels:
            self.known_train_tasks_labels.add(int(label))
            if str(label) not in self.heads:
                self.heads[str(label)] = self._new_head(int(label)).to(self._adaptation_device)

    def _new_head(self, label: int) -> MedusaHead:
        if label not in self.out_channels:
            raise UflError(f"task label {label} has no declared output channels (known: {sorted(self.out_channels)})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + label)
            return MedusaHead(self.backbone.channels, self.out_channels[label], **self.head_options)

    def head(self, label: int) -> MedusaHead:
        key = str(int(label))
        if key not in self.heads:
            raise UflError(f"no head for task label {label} yet (heads: {sorted(self.heads, key=int)}); "
                           f"a task is evaluated only after its training experience")
        return self.heads[key]

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | int) -> dict[str, Any]:
        if isinstance(task_labels, int):
            return self.forward_single_task(x, task_labels)
        labels = torch.unique(task_labels)
        if labels.numel() != 1:
            raise ValueError(f"a mini-batch must hold one task, got task labels {labels.tolist()}")
        return self.forward_single_task(x, int(labels.item()))

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> dict[str, Any]:
        features = self.backbone(x)
        self.features = features
        return self.head(task_label)(features, out_size=x.shape[-2:])

    def forward_all_tasks(self, x: torch.Tensor) -> dict[int, dict[str, Any]]:
        features = self.backbone(x)
        self.features = features
        return {label: self.head(label)(features, out_size=x.shape[-2:])
                for label in sorted(self.known_train_tasks_labels)}


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


# ------------------------------------------------------------------------------------------------
# Criterion and distillation
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Metrics: the task's headline score and its forgetting
# ------------------------------------------------------------------------------------------------
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


def _per_experience(results: Mapping[str, Any], metric: str) -> dict[int, float]:
    """``{experience id: value}`` of ``metric`` in a ``strategy.eval()`` result dict."""
    out = {}
    for name, value in results.items():
        match = _EXP_NAME.match(name)
        if match and match["metric"] == metric:
            out[int(match["exp"])] = float(value)
    return out


# ------------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------------
@dataclass
class ContinualConfig:
    """Everything ``ufl continual`` needs.

    Args:
        data_root: folder holding ``NYUD_MT/`` and ``PASCAL_MT/``.
        strategies: names from :data:`STRATEGIES`, run in this order.
        tasks: the stream, ``DATASET:TASK`` entries (:data:`DEFAULT_TASKS`).
        checkpoint: a ``ufl pretrain`` run folder whose backbone starts every strategy; else
        backbone, pretrained: a timm backbone (``pretrained`` as :class:`~ufl.models.Backbone`'s).
        epochs, batch_size, lr, weight_decay: per experience; Adam at a constant learning rate
            (lr 1e-4 and weight decay 1e-4 as the reference protocol, DESIGN.md section 6).
        size: (H, W) of every image (default: each dataset's reference size); HRNet needs sides
            divisible by 32.
        augment: the reference training augmentations.
        ewc_lambda: EWC's penalty weight. The mean Fisher importance of an HRNet-18 backbone
            parameter under these losses is about 1e-7, so small lambdas change nothing: on the
            synthetic stream (96 px, random init, 3 epochs) a sweep over 1e3..1e9 found 1e5 to
            halve the forgetting of semseg while the new tasks still learn (1e7 and more stop
            saliency from learning). Tune it on real data.
        si_lambda: Synaptic Intelligence's penalty weight (avalanche clips SI's importances at 1e-3).
            The same sweep (10..1e5) kept 1e3: 1e5 again stops saliency from learning.
        distill_alpha: weight of lwf's cosine feature distillation (LwF's lambda_o = 1).
        head_options: :class:`~ufl.models.MedusaHead` options.
        device: ``auto`` | ``cpu`` | ``cuda``. workers: DataLoader workers (default: by device).
        seed: one seed for everything; every strategy runs with it.
        log_dir: write avalanche's TextLogger to ``log_dir/STRATEGY.log`` (and, with
            ``tensorboard``, TensorBoard events to ``log_dir/tensorboard/STRATEGY``).
        progress: avalanche's InteractiveLogger (progress bars and metrics) on stderr.
    """

    data_root: str | os.PathLike | None = None
    strategies: Sequence[str] = DEFAULT_STRATEGIES
    tasks: Sequence[str] = DEFAULT_TASKS
    checkpoint: str | os.PathLike | None = None
    backbone: str = DEFAULT_BACKBONE
    pretrained: bool | str | os.PathLike | None = None
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 1e-4
    size: Sequence[int] | None = None
    augment: bool = True
    ewc_lambda: float = 1e5
    si_lambda: float = 1e3
    distill_alpha: float = 1.0
    head_options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    workers: int | None = None
    seed: int = 0
    log_dir: str | os.PathLike | None = None
    tensorboard: bool = False
    progress: bool = True

    def __post_init__(self):
        self.strategies = list(self.strategies)
        self.tasks = list(self.tasks)
        self.size = tuple(int(s) for s in self.size) if self.size is not None else None
        if self.epochs < 1 or self.batch_size < 1:
            raise UflError(f"--epochs and --batch-size must be at least 1, got {self.epochs} and {self.batch_size}")
        if not self.lr > 0:
            raise UflError(f"--lr must be positive, got {self.lr}")
        for name in ("ewc_lambda", "si_lambda", "distill_alpha", "weight_decay"):
            if getattr(self, name) < 0:
                raise UflError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.tensorboard and self.log_dir is None:
            raise UflError("TensorBoard logging needs a --log-dir to write to")


#: ``factory(model, optimizer, criterion, evaluator, config, common) -> avalanche strategy``;
#: ``common`` holds the keyword arguments every strategy takes (mini-batch sizes, epochs, device).
STRATEGIES: Registry[Callable[..., SupervisedTemplate]] = Registry("strategy")


@STRATEGIES.register("frozen")
def _frozen(model, optimizer, criterion, evaluator, config, common):
    model.backbone.freeze()
    return Naive(model=model, optimizer=optimizer, criterion=criterion, evaluator=evaluator,
                 plugins=[FrozenLearnedHeads(frozen_backbone=True)], **common)


@STRATEGIES.register("naive")
def _naive(model, optimizer, criterion, evaluator, config, common):
    return Naive(model=model, optimizer=optimizer, criterion=criterion, evaluator=evaluator,
                 plugins=[FrozenLearnedHeads()], **common)


@STRATEGIES.register("ewc")
def _ewc(model, optimizer, criterion, evaluator, config, common):
    return EWC(model=model, optimizer=optimizer, criterion=criterion, evaluator=evaluator,
               ewc_lambda=config.ewc_lambda, mode="separate", plugins=[FrozenLearnedHeads()], **common)


@STRATEGIES.register("lwf")
def _lwf(model, optimizer, criterion, evaluator, config, common):
    return Naive(model=model, optimizer=optimizer, criterion=criterion, evaluator=evaluator,
                 plugins=[FrozenLearnedHeads(), DenseFeatureDistillation(alpha=config.distill_alpha)], **common)


@STRATEGIES.register("si")
def _si(model, optimizer, criterion, evaluator, config, common):
    return Naive(model=model, optimizer=optimizer, criterion=criterion, evaluator=evaluator,
                 plugins=[FrozenLearnedHeads(), CopyingSynapticIntelligence(si_lambda=config.si_lambda)], **common)


def parse_strategies(names: Sequence[str]) -> list[str]:
    """Check strategy names (an unknown one lists the known ones; no duplicates, at least one)."""
    if not names:
        raise UflError(f"no strategy given; choose from: {', '.join(STRATEGIES.names())}")
    for name in names:
        STRATEGIES.get(name)
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if duplicates:
        raise UflError(f"strategy {duplicates[0]!r} is listed twice")
    return list(names)


# ------------------------------------------------------------------------------------------------
# Loggers
# ------------------------------------------------------------------------------------------------
class _StderrInteractiveLogger(InteractiveLogger):
    """avalanche's InteractiveLogger (progress bars, metrics) on stderr, so stdout keeps the results."""

    def __init__(self):
        super().__init__()
        self.file = sys.stderr

    @property
    def _progress(self):
        if self._pbar is None:
            from tqdm import tqdm

            self._pbar = tqdm(leave=False, position=0, file=sys.stderr, dynamic_ncols=True,
                              disable=None)  # None: drawn only on a terminal, not into a redirected log
        return self._pbar


def _loggers(config: ContinualConfig, strategy: str, stack: contextlib.ExitStack) -> list:
    loggers: list = []
    if config.progress:
        loggers.append(_StderrInteractiveLogger())
    if config.log_dir is not None:
        log_dir = Path(config.log_dir)
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            log_file = stack.enter_context(open(log_dir / f"{strategy}.log", "w"))
        except OSError as e:
            raise UflError(f"cannot write the log in {log_dir} ({e.strerror or e}); "
                           f"choose another --log-dir") from None
        loggers.append(TextLogger(log_file))
        if config.tensorboard:
            from avalanche.logging import TensorboardLogger

            tensorboard = TensorboardLogger(log_dir / "tensorboard" / strategy)
            stack.callback(tensorboard.writer.close)
            loggers.append(tensorboard)
    return loggers


# ------------------------------------------------------------------------------------------------
# Running the comparison
# ------------------------------------------------------------------------------------------------
def starting_backbone(config: ContinualConfig) -> Backbone:
    """The backbone every strategy starts from: a ``ufl pretrain`` checkpoint's (its ``backbone.*``
    weights and its backbone config) when ``config.checkpoint`` is set, else ``config.backbone``."""
    if config.checkpoint is None:
        return Backbone(config.backbone, pretrained=config.pretrained)
    checkpoint = load_checkpoint(config.checkpoint)
    if "backbone" not in checkpoint.meta:
        raise UflError(f"checkpoint {checkpoint.path} records no backbone config; use a `ufl pretrain` run folder")
    backbone = Backbone.from_config(checkpoint.meta["backbone"])
    prefix = "backbone."
    state = {k[len(prefix):]: v for k, v in checkpoint.model_state.items() if k.startswith(prefix)}
    if not state:
        raise UflError(f"checkpoint {checkpoint.path} holds no backbone weights (no 'backbone.*' keys); "
                       f"use a `ufl pretrain` run folder")
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UflError(f"checkpoint {checkpoint.path}: its backbone weights do not match its backbone config "
                       f"({str(e).splitlines()[0]})") from None
    return backbone


def _run_strategy(name: str, start: Backbone, tasks: Sequence[ContinualTask], config: ContinualConfig,
                  device: torch.device, workers: int) -> dict[str, Any]:
    """Train strategy ``name`` over the stream; return its final metrics, forgetting and matrix."""
    seed_everything(config.seed)
    benchmark = build_benchmark(tasks, config.data_root, config.size, config.augment, config.seed)
    model = ContinualMedusa(copy.deepcopy(start), {t.label: t.out_channels for t in tasks}, seed=config.seed,
                            head_options=config.head_options)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    criterion = TaskCriterion(tasks)
    common = dict(train_mb_size=config.batch_size, eval_mb_size=config.batch_size, train_epochs=config.epochs,
                  device=device, eval_every=-1)
    matrix: list[list[float | None]] = []
    with contextlib.ExitStack() as stack:
        loggers = _loggers(config, name, stack)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "No loggers specified")  # quiet, and no --log-dir: on purpose
            evaluator = EvaluationPlugin(HeadlineScorePluginMetric(tasks), HeadlineExperienceForgetting(tasks),
                                         HeadlineStreamForgetting(tasks), loggers=loggers)
        strategy = STRATEGIES.get(name)(model, optimizer, criterion, evaluator, config, common)
        log.info("strategy %s: %d experience(s), %d epoch(s) each, device %s", name, len(tasks), config.epochs,
                 device)
        for i, experience in enumerate(benchmark.train_stream):
            # The same global RNG state (shuffling) at each experience, whatever earlier ones consumed.
            seed_everything(config.seed + i)
            strategy.train(experience, num_workers=workers)
            results = strategy.eval(benchmark.test_stream[: i + 1], num_workers=workers)
            scores = _per_experience(results, "Headline")
            matrix.append([scores.get(j) if j <= i else None for j in range(len(tasks))])
    forgotten = _per_experience(results, "HeadlineForgetting")
    final = {t.key: matrix[-1][t.label] for t in tasks}
    # The last task was learnt by the last experience: nothing can have been forgotten yet.
    forgetting = {t.key: forgotten.get(t.label, math.nan) if t.label < len(tasks) - 1 else 0.0 for t in tasks}
    model.to("cpu")
    return {"final": final, "forgetting": forgetting, "matrix": matrix, "model": model}


def run_continual(config: ContinualConfig, keep_models: bool = False) -> dict[str, Any]:
    """Run every strategy of ``config`` over the task stream; return the comparison.

    Returns ``{"strategies": {NAME: {"final": {task: headline metric at the end}, "forgetting": {task:
    drop of its headline metric from just after it was learnt to the end, positive = worse},
    "matrix": [[headline of task j after experience i, None before task j is learnt]]}}, "tasks":
    [task keys in stream order], "metric": {task: headline metric name}}``. Values that the metric
    cannot compute (no valid pixel) are NaN. With ``keep_models`` each strategy's entry also holds
    its trained :class:`ContinualMedusa` under ``"model"`` (on the CPU).
    """
    strategies = parse_strategies(config.strategies)
    tasks = parse_tasks(config.tasks)
    # Check the data of every task before any training (missing folders and files fail here).
    build_benchmark(tasks, config.data_root, config.size, augment=False, seed=config.seed)
    device = resolve_device(config.device)
    seed_everything(config.seed)  # a randomly initialised backbone is the same for a seed
    start = starting_backbone(config)
    if config.size is not None and any(s % start.size_divisor for s in config.size):
        raise UflError(f"--size {config.size[0]}x{config.size[1]}: backbone {start.name} needs sides divisible by "
                       f"{start.size_divisor}")
    workers = config.workers if config.workers is not None else loader_kwargs(device)["num_workers"]
    out: dict[str, Any] = {"strategies": {}, "tasks": [t.key for t in tasks],
                           "metric": {t.key: t.metric for t in tasks}}
    with cudnn_exact():
        for name in strategies:
            result = _run_strategy(name, start, tasks, config, device, workers)
            if not keep_models:
                del result["model"]
            out["strategies"][name] = result
    return out


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------
def to_json_safe(obj: Any) -> Any:
    """NaN and infinities -> ``None`` (JSON has no NaN); models are dropped."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: to_json_safe(v) for k, v in obj.items() if not isinstance(v, nn.Module)}
    if isinstance(obj, (list, tuple)):
        return [to_json_safe(v) for v in obj]
    return obj


def format_results(results: Mapping[str, Any]) -> str:
    """A readable table per strategy: each task's metric at the end and its forgetting."""
    width = max(len(t) for t in results["tasks"]) + 2
    lines = []
    for name, result in results["strategies"].items():
        lines.append(f"strategy {name}")
        lines.append(f"  {'task':<{width}}{'metric':<10}{'final':>10}{'forgetting':>12}")
        for task in results["tasks"]:
            lines.append(f"  {task:<{width}}{results['metric'][task]:<10}{_number(result['final'][task]):>10}"
                         f"{_number(result['forgetting'][task]):>12}")
        lines.append("")
    lines.append("forgetting: drop of a task's metric from just after it was learnt to the end (positive = worse)")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
