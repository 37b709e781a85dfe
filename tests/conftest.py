"""Shared pytest fixtures (generic: add yours below, one section per area).

- ``rng``: a seeded numpy Generator (tests stay reproducible bit for bit).
- ``write``: a :class:`FileWriter` that writes small files in the public dataset formats (JPEG/PNG
  images, label PNGs incl. palette and 16-bit, ``.npy``, split files, JSON, PASCAL-Context
  ``LabelMap`` and PASCAL-Part ``anno`` ``.mat`` files), creating parent folders.
"""

from __future__ import annotations

import os

# One intra-op thread: the tests' tensors are tiny, and two OpenMP threads sharing a busy core with
# another process slow every op down by an order of magnitude. Subprocesses inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


class FileWriter:
    """Tiny files in the official on-disk formats, for hand-computed dataset tests."""

    @staticmethod
    def _parent(path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def image(self, path, rgb: np.ndarray, quality: int = 95) -> Path:
        """An RGB image: JPEG (``.jpg``) or lossless PNG (``.png``) by the suffix."""
        path = self._parent(path)
        img = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
        if path.suffix.lower() in (".jpg", ".jpeg"):
            img.save(path, quality=quality)
        else:
            img.save(path)
        return path

    def png(self, path, values: np.ndarray, palette: bool = False) -> Path:
        """A PNG holding ``values`` exactly: uint8 HxW (grey, or palette indices with ``palette``),
        uint16 HxW (16-bit grey), uint8 HxWx3 (RGB)."""
        path = self._parent(path)
        values = np.asarray(values)
        if palette:
            img = Image.frombytes("P", (values.shape[1], values.shape[0]), values.astype(np.uint8).tobytes())
            img.putpalette([c for i in range(256) for c in (i, 255 - i, (7 * i) % 256)])
        elif values.dtype == np.uint16:
            img = Image.frombytes("I;16", (values.shape[1], values.shape[0]), values.astype("<u2").tobytes())
        else:
            img = Image.fromarray(values.astype(np.uint8))
        img.save(path)
        return path

    def npy(self, path, array: np.ndarray) -> Path:
        path = self._parent(path)
        np.save(path, np.asarray(array))
        return path

    def text(self, path, lines: Iterable[str]) -> Path:
        path = self._parent(path)
        path.write_text("".join(f"{line}\n" for line in lines))
        return path

    def json(self, path, obj) -> Path:
        path = self._parent(path)
        path.write_text(json.dumps(obj))
        return path

    def labelmap_mat(self, path, label_map: np.ndarray) -> Path:
        """A PASCAL-Context ``trainval/ID.mat``: variable ``LabelMap`` (uint16 HxW)."""
        from scipy.io import savemat

        path = self._parent(path)
        savemat(path, {"LabelMap": np.asarray(label_map, dtype=np.uint16)})
        return path

    def parts_mat(self, path, objects: Sequence[tuple[int, np.ndarray, Sequence[tuple[str, np.ndarray]]]],
                  imname: str = "image") -> Path:
        """A PASCAL-Part ``human_parts/ID.mat``: struct ``anno`` with fields ``imname`` and ``objects``;
        each object ``(class index, instance mask, [(part name, part mask), ...])`` becomes a struct
        with fields ``class``, ``class_ind``, ``mask``, ``parts`` (so ``anno[0][0][1][0][j]`` is object j,
        its class at ``[1][0][0]``, mask at ``[2]``, part i at ``[3][0][i]`` = (name, mask))."""
        from scipy.io import savemat

        path = self._parent(path)
        obj_dtype = [("class", object), ("class_ind", object), ("mask", object), ("parts", object)]
        part_dtype = [("part_name", object), ("mask", object)]
        objs = np.zeros((1, len(objects)), dtype=obj_dtype)
        for j, (cls, mask, parts) in enumerate(objects):
            if parts:
                part_arr = np.zeros((1, len(parts)), dtype=part_dtype)
                for i, (name, part_mask) in enumerate(parts):
                    part_arr[0, i] = (name, np.asarray(part_mask, dtype=np.uint8))
            else:
                part_arr = np.zeros((0, 0))
            objs[0, j] = ("person" if cls == 15 else f"class{cls}", np.array([[cls]], dtype=np.uint8),
                          np.asarray(mask, dtype=np.uint8), part_arr)
        savemat(path, {"anno": {"imname": imname, "objects": objs}})
        return path


@pytest.fixture
def write() -> FileWriter:
    return FileWriter()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def workspace_copy(tmp_path):
    """``workspace_copy(root)``: a :class:`ufl.workspace.Workspace` on a fresh copy of the workspace
    folder ``root`` (a module-scoped, costly one), so a test may change it freely."""
    import shutil

    from ufl.workspace import Workspace

    def copy(root):
        target = tmp_path / "ws"
        shutil.copytree(root, target)
        return Workspace(target)

    return copy


@pytest.fixture
def torch_seed() -> int:
    """Seeds torch's global RNG with 0 for the test (and returns the seed)."""
    torch.manual_seed(0)
    return 0


# -- generated data sets (ufl make-synthetic), shared by the pipeline tests ------------------------
@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small NYUD_MT/ + PASCAL_MT/ pair from ``make_synthetic`` (64 px, 8 train / 4 val images)."""
    from ufl.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, size=64, n_train=8, n_val=4, seed=0)
    return root
