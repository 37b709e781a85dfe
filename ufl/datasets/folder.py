"""A user's own data: a folder of images with one folder of targets per task.

Layout::

    ROOT/images/ID.jpg (or .jpeg, .png)    RGB images
    ROOT/splits/{train,val}.txt            one id (file name without extension) per line
    ROOT/<folder>/ID.png or ID.npy         one folder per task: the spec's ``target.folder``
                                           (default: the task name) and ``target.format``

Targets are decoded by the task's kind (:meth:`ufl.kinds.Kind.decode_file`):

============  ==========================================  ===================================
kind          ``format: png``                             ``format: npy``
============  ==========================================  ===================================
segmentation  8- or 16-bit single channel class indices   integer HxW class indices
              (palette PNGs give their indices), 255 =
              ignore
depth         16-bit single channel, millimetres          float HxW, metres
              (0 = missing)                               (0 = missing)
normals       8-bit RGB, n = 2v/255 - 1, black (0, 0, 0)  float HxWx3 unit vectors
              = invalid                                   (zero vector = invalid)
edges,        8-bit grey, > 127 -> 1 (no ignore value)    HxW with values 0, 1, 255 (ignore)
saliency
============  ==========================================  ===================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from ..errors import DataError
from ..taskspec import TaskSpec
from .base import DATASETS, DenseDataset, TaskLike

__all__ = ["FolderDataset", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
"""Image file extensions looked for, in this order of preference."""


@DATASETS.register("folder")
class FolderDataset(DenseDataset):
    """A user's folder dataset (see the module docstring for the layout and the target formats).

    Args:
        root: the dataset folder.
        split: a split listed in ``ROOT/splits/SPLIT.txt``.
        tasks: the user's :class:`TaskSpec` objects (built-in task names work too, with their
            default folder and format).
        transform: applied to each sample dict.
        dataset_name: the key for per-dataset spec values (``channels``, loss weight): a spec with
            ``channels: 3`` fits any name; one with ``channels: {roads: 3}`` needs ``"roads"``.
    """

    name = "folder"
    folder_name = None
    supported_tasks = ()
    layout = "a folder with images/, splits/SPLIT.txt and one folder of targets per task"

    def __init__(self, root: str | os.PathLike, split: str = "train", tasks: Sequence[TaskLike] | TaskLike | None = None,
                 transform=None, *, dataset_name: str = "folder"):
        self.name = dataset_name
        self._images: dict[str, Path] | None = None
        super().__init__(root, split=split, tasks=tasks, transform=transform)

    def check_task(self, spec: TaskSpec) -> None:
        if spec.info.fixed_channels is None:
            spec.out_channels(self.name)  # e.g. the class count: a SpecError when the spec lacks it for this dataset

    def num_classes(self, task: str) -> int:
        spec = self.specs[task]
        fixed = spec.info.fixed_channels  # depth, normals, edges, saliency: any dataset
        return fixed if fixed is not None and not spec.supports(self.name) else spec.out_channels(self.name)

    def split_file(self) -> Path:
        return self.root / "splits" / f"{self.split}.txt"

    def _read_ids(self) -> list[str]:
        path = self.split_file()
        if not path.is_file():
            raise DataError(f"split file not found: {path}; create it with one image id (file name without "
                            f"extension) per line, e.g. ls {self.root / 'images'} | sed 's/\\.[^.]*$//' > {path}")
        return super()._read_ids()

    def image_path(self, image_id: str) -> Path:
        if self._images is None:
            folder = self.root / "images"
            if not folder.is_dir():
                raise DataError(f"folder not found: {folder}; put the images there as ID.jpg or ID.png")
            found: dict[str, Path] = {}
            for ext in reversed(IMAGE_EXTENSIONS):  # the preferred extension is written last
                found.update({n[: -len(ext)]: folder / n for n in os.listdir(folder) if n.lower().endswith(ext)})
            self._images = found
        return self._images.get(image_id, self.root / "images" / f"{image_id}.jpg")

    def describe_image(self) -> str:
        return "image (images/ID.jpg or .png)"

    def target_path(self, task: str, image_id: str) -> Path:
        spec = self.specs[task]
        return self.root / (spec.target_folder or spec.name) / f"{image_id}.{spec.target_format}"

    def describe_target(self, task: str) -> str:
        spec = self.specs[task]
        return f"{task} target ({spec.target_folder or spec.name}/ID.{spec.target_format})"

    def load_target(self, task: str, image_id: str, size: tuple[int, int]) -> torch.Tensor:
        spec = self.specs[task]
        return spec.info.decode_file(self.target_path(task, image_id), spec.target_format, self.num_classes(task),
                                     f"{task} target")
