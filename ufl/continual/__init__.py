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

The package, by concern (DESIGN.md section 8): :mod:`.stream` (the tasks and the avalanche
benchmark), :mod:`.model` (:class:`ContinualMedusa`), :mod:`.plugins` (frozen heads, the criterion,
distillation, SI), :mod:`.metrics` (headline score and forgetting), :mod:`.strategies` (the
registry of strategies), :mod:`.config` (:class:`ContinualConfig`) and :mod:`.run`
(:func:`run_continual`, the entry of ``ufl continual``). Each task's dataset is wrapped with
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

from .config import ContinualConfig
from .metrics import HeadlineExperienceForgetting, HeadlineScore, HeadlineScorePluginMetric, HeadlineStreamForgetting
from .model import ContinualMedusa
from .plugins import (CopyingSynapticIntelligence, DenseFeatureDistillation, FrozenLearnedHeads, TaskCriterion,
                      dense_representation)
from .run import format_results, run_continual, starting_backbone
from .strategies import DEFAULT_STRATEGIES, STRATEGIES, parse_strategies
from .stream import DEFAULT_TASKS, ContinualTask, build_benchmark, parse_tasks

__all__ = [
    "DEFAULT_TASKS", "DEFAULT_STRATEGIES", "STRATEGIES", "ContinualTask", "ContinualConfig", "parse_tasks",
    "parse_strategies", "build_benchmark", "ContinualMedusa", "TaskCriterion", "FrozenLearnedHeads",
    "DenseFeatureDistillation", "CopyingSynapticIntelligence", "dense_representation", "HeadlineScore",
    "HeadlineScorePluginMetric", "HeadlineExperienceForgetting", "HeadlineStreamForgetting", "starting_backbone",
    "run_continual", "format_results",
]
