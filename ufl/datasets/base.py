"""The contract every ``ufl`` dataset follows, the ``DATASETS`` registry, and target checks by kind.

A dataset item is a flat dict that torch's ``default_collate`` batches::

    {"image": float32 (3, H, W) RGB in [0, 1]   (not normalised: the backbone normalises),
     "id": str,
     <task name>: the target in the convention of its kind (ufl.taskspec):
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

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..images import read_image
from ..registry import Registry
from ..taskspec import IGNORE_INDEX, KINDS, TaskSpec, get_spec

__all__ = [
    "DATASETS",
    "DenseDataset",
    "get_dataset",
    "dataset_root",
    "read_split",
    "to_label_target",
    "to_depth_target",
    "to_normals_target",
    "to_binary_target",
    "normalize_normals",
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
        return {name: KINDS[spec.kind].modality for name, spec in self.specs.items()}

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


# -- targets by kind ---------------------------------------------------------------------------
def _spatial(arr: np.ndarray, path: Path | str, what: str) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1)`` or ``(1, H, W)`` -> ``(H, W)``; anything else is a DataError."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise DataError(f"{what} {path} has shape {tuple(arr.shape)}; a single-channel HxW map is expected")
    return arr


def _integral(arr: np.ndarray, path: Path | str, what: str) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all() and (arr == np.round(arr)).all():
        return arr.astype(np.int64)
    raise DataError(f"{what} {path} holds non-integer values ({arr.dtype}); class indices are expected")


def to_label_target(arr: np.ndarray, num_classes: int, path: Path | str, what: str = "label") -> torch.Tensor:
    """Class indices ``(H, W)`` -> int64 tensor ``(H, W)``; values must be in ``0..num_classes-1`` or 255."""
    labels = _integral(_spatial(np.asarray(arr), path, what), path, what)
    bad = (labels < 0) | ((labels >= num_classes) & (labels != IGNORE_INDEX))
    if bad.any():
        value = int(labels[bad][0])
        raise DataError(f"{what} {path} holds class {value}, outside 0..{num_classes - 1} "
                        f"({IGNORE_INDEX} = ignore); the task has {num_classes} classes")
    return torch.from_numpy(labels)


def to_depth_target(arr: np.ndarray, path: Path | str, what: str = "depth") -> torch.Tensor:
    """Depth in metres ``(H, W)`` -> float32 ``(1, H, W)``; 0 = invalid, negative or non-finite is an error."""
    depth = _spatial(np.asarray(arr), path, what)
    if not np.issubdtype(depth.dtype, np.number):
        raise DataError(f"{what} {path} has dtype {depth.dtype}; depth in metres is expected")
    depth = depth.astype(np.float32)
    if not np.isfinite(depth).all():
        raise DataError(f"{what} {path} holds NaN or infinite values; store 0 for missing depth")
    if (depth < 0).any():
        raise DataError(f"{what} {path} holds negative depth ({float(depth.min()):g}); depth is in metres, 0 = missing")
    return torch.from_numpy(depth)[None]


def to_normals_target(arr: np.ndarray, path: Path | str, what: str = "normals", tol: float = 1e-3) -> torch.Tensor:
    """Normals ``(H, W, 3)`` -> float32 ``(3, H, W)`` unit vectors (re-normalised), zero vector = invalid.

    Components must lie in ``[-1, 1]`` (within ``tol``): an RGB-encoded map (0..255) stored as
    ``.npy`` by mistake is refused rather than silently normalised.
    """
    normals = np.asarray(arr)
    if normals.ndim != 3 or normals.shape[2] != 3:
        raise DataError(f"{what} {path} has shape {tuple(normals.shape)}; an HxWx3 array of unit vectors is expected")
    if not np.issubdtype(normals.dtype, np.number):
        raise DataError(f"{what} {path} has dtype {normals.dtype}; float unit vectors are expected")
    normals = normals.astype(np.float32)
    if not np.isfinite(normals).all():
        raise DataError(f"{what} {path} holds NaN or infinite values; store a zero vector where normals are missing")
    if np.abs(normals).max(initial=0.0) > 1 + tol:
        raise DataError(f"{what} {path} holds components up to {float(np.abs(normals).max()):g}; unit vectors "
                        f"(components in [-1, 1]) are expected")
    return torch.from_numpy(normalize_normals(normals)).permute(2, 0, 1).contiguous()


def normalize_normals(normals: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Scale each ``(..., 3)`` vector to unit length; vectors shorter than ``eps`` become zero (invalid)."""
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    valid = norm > eps
    return np.where(valid, normals / np.where(valid, norm, 1.0), 0.0).astype(np.float32)


def to_binary_target(arr: np.ndarray, path: Path | str, what: str = "binary map") -> torch.Tensor:
    """A binary map ``(H, W)`` with values {0, 1, 255 = ignore} -> float32 ``(1, H, W)``."""
    values = _spatial(np.asarray(arr), path, what)
    if values.dtype == np.bool_:
        values = values.astype(np.uint8)
    if not np.issubdtype(values.dtype, np.number) or not np.isfinite(values).all():
        raise DataError(f"{what} {path} holds non-numeric or non-finite values; 0, 1 or {IGNORE_INDEX} expected")
    bad = (values != 0) & (values != 1) & (values != IGNORE_INDEX)
    if bad.any():
        raise DataError(f"{what} {path} holds value {values[bad][0].item():g}; a binary map holds 0, 1 or "
                        f"{IGNORE_INDEX} (ignore)")
    return torch.from_numpy(values.astype(np.float32))[None]


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
