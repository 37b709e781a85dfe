"""The contract every ``ufl`` dataset follows and the ``DATASETS`` registry (target checks by kind: :mod:`ufl.kinds`).

A dataset item is a flat dict that torch's ``default_collate`` batches::

    {"image": float32 (3, H, W) RGB in [0, 1]   (not normalised: the backbone normalises),
     "id": str,
     <task name>: the target in the convention of its kind (ufl.kinds):
         segmentation (H, W) int64, 255 = ignore;   depth (1, H, W) float32 metres, 0 = invalid;
         normals (3, H, W) float32 unit vectors, zero vector = invalid;
         edges / saliency (1, H, W) float32 {0, 1}, 255 = ignore,
     "meta": {"orig_size": int64 [H0, W0], plus float entries the transforms record
              ("flip", "scale", "angle": see ufl.datasets.transforms)}}

A dataset is built from its own folder (``root``), a split name and the tasks to load (built-in task
names and/or :class:`~ufl.taskspec.TaskSpec` objects). Construction checks the folder, the split
file and that every file the split needs exists, so a broken download fails at once with one
:class:`~ufl.errors.DataError` line naming the file; a file that is unreadable, of the wrong shape or
holds out-of-range values fails when its item is read, naming the file as well.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence

import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..images import read_image
from ..registry import Registry
from ..taskspec import IGNORE_INDEX, TaskSpec, get_spec

__all__ = [
    "DATASETS",
    "DenseDataset",
    "get_dataset",
    "dataset_root",
    "read_split",
    "IGNORE_INDEX",
]


DATASETS: Registry[type["DenseDataset"]] = Registry("dataset")
"""Dataset classes by name (``"nyud"``, ``"pascal"``, ``"folder"``)."""

TaskLike = str | TaskSpec


class DenseDataset(Dataset):
    """Base class: a folder of images with dense targets for several tasks.

    Subclasses set the class attributes and implement :meth:`split_file`, :meth:`image_path`,
    :meth:`target_path` and :meth:`load_target`.

    Args:
        root: the dataset's own folder (e.g. ``data/NYUD_MT``; see :func:`dataset_root`).
        split: split name (``"train"``, ``"val"``, ...), read from the split file.
        tasks: task names and/or :class:`TaskSpec` objects; ``None`` = every supported task.
        transform: callable applied to each sample dict (see :mod:`ufl.datasets.transforms`).

    Attributes:
        tasks: the task names, in the order given.
        specs: ``{name: TaskSpec}``.
        modalities: ``{name: modality}`` (``label`` | ``depth`` | ``normals`` | ``binary``), what the
            transforms need to treat each target.
        ids: the image ids of the split, in file order.
    """

    name: ClassVar[str] = ""
    """Registry name; also the dataset key for per-dataset spec values (channels, loss weight)."""
    folder_name: ClassVar[str | None] = None
    """Folder of this dataset under a data root (``None``: no standard folder)."""
    supported_tasks: ClassVar[tuple[str, ...]] = ()
    """Built-in tasks this dataset provides targets for."""
    layout: ClassVar[str] = ""
    """One line describing the expected folder layout, quoted in error messages."""

    def __init__(self, root: str | os.PathLike, split: str = "train", tasks: Sequence[TaskLike] | TaskLike | None = None,
                 transform: Callable[[dict], dict] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.name} data folder not found: {self.root}; expected {self.layout} "
                            f"(point --data-root at the folder holding it, or --root at the folder itself)")
        self.split = split
        self.transform = transform
        self.specs: dict[str, TaskSpec] = self._resolve_specs(tasks)
        self.ids: list[str] = self._read_ids()
        self._check_files()

    # -- what subclasses provide -------------------------------------------------------------
    def split_file(self) -> Path:
        """The file listing the ids of ``self.split``."""
        raise NotImplementedError

    def image_path(self, image_id: str) -> Path:
        raise NotImplementedError

    def target_path(self, task: str, image_id: str) -> Path:
        """The file holding ``task``'s target for ``image_id`` (named in error messages)."""
        raise NotImplementedError

    def required_files(self, task: str, image_id: str) -> list[Path]:
        """Files that must exist to load ``task`` for ``image_id`` (checked at construction)."""
        return [self.target_path(task, image_id)]

    def describe_image(self) -> str:
        """How error messages call the image files, e.g. ``"image (images/ID.jpg)"``."""
        return "image"

    def describe_target(self, task: str) -> str:
        """How error messages call ``task``'s files, e.g. ``"semseg label (segmentation/ID.png)"``."""
        return f"{task} target"

    def load_target(self, task: str, image_id: str, size: tuple[int, int]) -> torch.Tensor:
        """``task``'s target for ``image_id`` as a tensor in its kind's convention.

        ``size`` is the image's ``(H, W)``, for targets made without a file (e.g. ignored maps).
        """
        raise NotImplementedError

    def load_targets(self, image_id: str, size: tuple[int, int]) -> Iterator[tuple[str, torch.Tensor]]:
        """``(task, target)`` for every task of the dataset, in order, each loaded when asked for
        (:meth:`load_target`); a dataset whose tasks share a decoded file overrides this to read
        it once per sample."""
        for task in self.specs:
            yield task, self.load_target(task, image_id, size)

    def check_task(self, spec: TaskSpec) -> None:
        """Raise a :class:`DataError` when this dataset cannot provide targets for ``spec``."""
        if spec.name not in self.supported_tasks:
            raise DataError(f"dataset {self.name!r} has no task {spec.name!r}; it provides: "
                            f"{', '.join(self.supported_tasks)}")
        builtin = get_spec(spec.name)
        if spec.kind != builtin.kind:
            raise DataError(f"task {spec.name!r} on dataset {self.name!r} is a {builtin.kind} task, but the spec "
                            f"given ({spec.source or 'a TaskSpec'}) says {spec.kind}")

    # -- the Dataset API ---------------------------------------------------------------------
    @property
    def tasks(self) -> list[str]:
        return list(self.specs)

    @property
    def modalities(self) -> dict[str, str]:
        return {name: spec.modality for name, spec in self.specs.items()}

    def num_classes(self, task: str) -> int:
        """Output channels of ``task`` on this dataset (classes for segmentation tasks)."""
        return self.specs[task].out_channels(self.name)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.ids[index]
        image_file = self.image_path(image_id)
        image = read_image(image_file)
        height, width = image.shape[:2]
        # one pass from (H, W, 3) uint8 to contiguous (3, H, W) float32 in [0, 1]: the values of
        # .to(float32).div_(255.0) (the same float32 division), without two more copies
        rgb = torch.empty((3, height, width), dtype=torch.float32)
        torch.div(torch.from_numpy(image).permute(2, 0, 1), 255.0, out=rgb)
        sample: dict[str, Any] = {"image": rgb, "id": image_id}
        for task, target in self.load_targets(image_id, (height, width)):
            if tuple(target.shape[-2:]) != (height, width):
                th, tw = target.shape[-2:]
                raise DataError(f"{self.describe_target(task)} {self.target_path(task, image_id)} is {th}x{tw} "
                                f"but its image {image_file} is {height}x{width}; targets must match their image")
            sample[task] = target
        sample["meta"] = {"orig_size": torch.tensor([height, width], dtype=torch.int64)}
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, tasks={self.tasks}, "
                f"n={len(self)})")

    # -- construction helpers ----------------------------------------------------------------
    def _resolve_specs(self, tasks: Sequence[TaskLike] | TaskLike | None) -> dict[str, TaskSpec]:
        if tasks is None:
            tasks = self.supported_tasks
        if isinstance(tasks, (str, TaskSpec)):
            tasks = [tasks]
        specs: dict[str, TaskSpec] = {}
        for task in tasks:
            if isinstance(task, str):
                if self.supported_tasks and task not in self.supported_tasks:
                    raise DataError(f"dataset {self.name!r} has no task {task!r}; it provides: "
                                    f"{', '.join(self.supported_tasks)}")
                spec = get_spec(task)
            elif isinstance(task, TaskSpec):
                spec = task
            else:
                raise TypeError(f"tasks must be task names or TaskSpec objects, got {type(task).__name__}")
            self.check_task(spec)
            if spec.name in specs:
                raise DataError(f"task {spec.name!r} is requested twice for dataset {self.name!r}")
            specs[spec.name] = spec
        if not specs:
            raise DataError(f"no task requested for dataset {self.name!r}; give at least one of: "
                            f"{', '.join(self.supported_tasks) or 'your task specs'}")
        return specs

    def _read_ids(self) -> list[str]:
        return read_split(self.split_file(), self.split)

    def _check_files(self) -> None:
        """Check that the image and every target file of the split exist (one listing per folder)."""
        listings: dict[Path, set[str] | None] = {}
        checks: list[tuple[str, Callable[[str], Iterable[Path]]]] = [(self.describe_image(), lambda i: [self.image_path(i)])]
        checks += [(self.describe_target(t), lambda i, t=t: self.required_files(t, i)) for t in self.specs]
        for what, files_of in checks:
            missing = [p for i in self.ids for p in files_of(i) if not _listed(p, listings)]
            if missing:
                folder = missing[0].parent
                if listings.get(folder) is None:
                    raise DataError(f"folder not found: {folder}; the {what} files of {self.name} are expected there")
                raise DataError(f"{what} not found: {missing[0]} ({len(missing)} file(s) of split {self.split!r} "
                                f"missing in {folder})")


def _listed(path: Path, listings: dict[Path, set[str] | None]) -> bool:
    """Whether ``path`` exists, listing each folder once (fast on large splits)."""
    folder = path.parent
    if folder not in listings:
        listings[folder] = set(os.listdir(folder)) if folder.is_dir() else None
    names = listings[folder]
    return names is not None and path.name in names


def read_split(path: str | os.PathLike, split: str = "") -> list[str]:
    """Read a split file: one image id per line (blank lines and surrounding spaces ignored)."""
    path = Path(path)
    if not path.is_file():
        folder = path.parent
        found = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
        known = f" (splits found there: {', '.join(found)})" if found else ""
        raise DataError(f"split file not found: {path}; it should list one image id per line{known}")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read split file {path} ({e})") from None
    ids = [line.strip() for line in lines if line.strip()]
    if not ids:
        raise DataError(f"split file {path} lists no image ids; write one id per line")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"split file {path} lists id {dup!r} more than once")
    return ids


# -- construction by name ----------------------------------------------------------------------
def get_dataset(name: str, root: str | os.PathLike, split: str, tasks: Sequence[TaskLike] | TaskLike | None,
                transform: Callable[[dict], dict] | None = None, **kwargs: Any) -> DenseDataset:
    """Build the dataset registered as ``name`` from its folder ``root`` (see :func:`dataset_root`).

    Extra keyword arguments go to the class (e.g. ``parts_without_persons`` for ``"pascal"``).
    """
    cls = DATASETS.get(name)
    return cls(root, split=split, tasks=tasks, transform=transform, **kwargs)


def dataset_root(name: str, data_root: str | os.PathLike | None = None, root: str | os.PathLike | None = None) -> Path:
    """The folder of dataset ``name``: ``root`` when given (``--root``), else ``data_root/FOLDER``.

    ``data_root`` defaults to ``$UFL_DATA_ROOT`` or ``./data``, as the CLI's ``--data-root``.
    """
    if root is not None:
        return Path(root)
    cls = DATASETS.get(name)
    if cls.folder_name is None:
        raise DataError(f"the {name!r} dataset has no standard folder under the data root; give its folder "
                        f"with --root")
    if data_root is None:
        data_root = os.environ.get("UFL_DATA_ROOT") or "data"
    return Path(data_root) / cls.folder_name
