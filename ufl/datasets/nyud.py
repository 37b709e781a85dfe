"""NYUD-v2 multi-task (``NYUD_MT/``, as the public MTI-Net archive unpacks).

Layout (DESIGN.md section 4; reader logic as MTI-Net's ``data/nyud.py``)::

    NYUD_MT/gt_sets/{train,val}.txt    one id per line (795 / 654; val is the test set)
    NYUD_MT/images/ID.jpg              480x640 RGB
    NYUD_MT/segmentation/ID.png        0 = unlabeled, k = class k of 40   -> semseg
    NYUD_MT/depth/ID.npy               metres, HxW, 0 = missing           -> depth
    NYUD_MT/normals/ID.npy             HxWx3 unit vectors, 0 = invalid    -> normals
    NYUD_MT/edge/ID.npy                HxW binary                         -> edges
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..images import read_npy, read_png
from ..kinds.binary import to_binary_target
from ..kinds.depth import to_depth_target
from ..kinds.normals import to_normals_target
from ..kinds.segmentation import to_label_target
from .base import DATASETS, IGNORE_INDEX, DenseDataset

__all__ = ["NYUD", "nyud_semseg_labels"]

# task -> (folder, file extension, how errors call the file)
_TARGETS = {
    "semseg": ("segmentation", ".png", "semseg label"),
    "depth": ("depth", ".npy", "depth map"),
    "normals": ("normals", ".npy", "normals map"),
    "edges": ("edge", ".npy", "edge map"),
}


def nyud_semseg_labels(raw: np.ndarray, num_classes: int = 40, path: Path | str = "<array>") -> np.ndarray:
    """NYUD's stored labels -> training labels: 0 (unlabeled) -> 255 (ignore), k -> k - 1.

    ``raw`` holds 0..``num_classes``; any other value is a :class:`DataError` naming ``path``.

    NOTE: as MTI-Net (and the works it compares to), the unlabeled class is ignored, not learnt.
    """
    raw = np.asarray(raw).astype(np.int64)
    bad = (raw < 0) | (raw > num_classes)
    if bad.any():
        raise DataError(f"semseg label {path} holds value {int(raw[bad][0])}; NYUD labels are 0 (unlabeled) to "
                        f"{num_classes}")
    return np.where(raw == 0, IGNORE_INDEX, raw - 1)


@DATASETS.register("nyud")
class NYUD(DenseDataset):
    """NYUD-v2 with semantic segmentation (40 classes), depth, surface normals and edges.

    Args:
        root: the ``NYUD_MT`` folder.
        split: ``"train"`` or ``"val"`` (any ``gt_sets/SPLIT.txt``).
        tasks: any of ``semseg``, ``depth``, ``normals``, ``edges`` (names or TaskSpecs); ``None`` = all.
        transform: applied to each sample dict.
    """

    name = "nyud"
    folder_name = "NYUD_MT"
    supported_tasks = ("semseg", "depth", "normals", "edges")
    layout = "NYUD_MT/ with gt_sets/, images/, segmentation/, depth/, normals/, edge/"

    def split_file(self) -> Path:
        return self.root / "gt_sets" / f"{self.split}.txt"

    def image_path(self, image_id: str) -> Path:
        return self.root / "images" / f"{image_id}.jpg"

    def target_path(self, task: str, image_id: str) -> Path:
        folder, ext, _ = _TARGETS[task]
        return self.root / folder / f"{image_id}{ext}"

    def describe_image(self) -> str:
        return "image (images/ID.jpg)"

    def describe_target(self, task: str) -> str:
        folder, ext, what = _TARGETS[task]
        return f"{what} ({folder}/ID{ext})"

    def load_target(self, task: str, image_id: str, size: tuple[int, int]) -> torch.Tensor:
        path = self.target_path(task, image_id)
        what = _TARGETS[task][2]
        if task == "semseg":
            n = self.num_classes(task)
            return to_label_target(nyud_semseg_labels(read_png(path, what), n, path), n, path, what)
        if task == "depth":
            return to_depth_target(read_npy(path, what), path, what)
        if task == "normals":
            return to_normals_target(read_npy(path, what), path, what)
        return to_binary_target(read_npy(path, what), path, what)
