"""The task stream of ``ufl continual``: one avalanche experience per dense task.

Each task's dataset is wrapped with ``make_avalanche_dataset(..., data_attributes=[TaskLabels(...)])``
and yields ``(image, target, task label)`` with the image one tensor and the target the task's
dense tensor; the stream is ``with_task_labels(benchmark_from_datasets(train=[...], test=[...]))``
(DESIGN.md section 8).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from avalanche.benchmarks.scenarios import CLScenario
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.task_aware import with_task_labels
from avalanche.benchmarks.utils import TaskLabels, make_avalanche_dataset
from avalanche.benchmarks.utils.flat_data import ConstantSequence

from ..datasets import DATASETS, build_transforms, dataset_root, get_dataset
from ..errors import SpecError
from ..taskspec import TaskSpec, builtin_specs

__all__ = ["DEFAULT_TASKS", "ContinualTask", "parse_tasks", "build_benchmark"]

#: The default sequence: NYUD's two main tasks, then PASCAL's two new ones (both domains).
DEFAULT_TASKS: tuple[str, ...] = ("nyud:semseg", "nyud:depth", "pascal:human_parts", "pascal:saliency")


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
