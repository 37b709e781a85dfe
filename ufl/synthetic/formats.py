"""Writing generated samples in the official NYUD_MT / PASCAL_MT on-disk formats.

The layout is the one the public MTI-Net archives unpack to (DESIGN.md section 4), so that ufl's
loaders, and any other reader of those formats, read the generated data. Files written (ID = image
id, :func:`image_ids`):

NYUD_MT/
  gt_sets/{train,val}.txt        one id per line
  images/ID.jpg                  RGB, size x round(size * 4 / 3), JPEG quality 95
  segmentation/ID.png            uint8 'L': 0 unlabeled, k = NYUD-40 class k (1..40)
  depth/ID.npy                   float32 (H, W) metres, 0 = missing
  normals/ID.npy                 float32 (H, W, 3) unit camera-frame normals, 0 where depth is missing
  edge/ID.npy                    float32 (H, W) {0, 1}: thinned instance and depth boundaries
PASCAL_MT/
  ImageSets/Context/{train,val}.txt    ids like 2008_000123
  ImageSets/Parts/{train,val}.txt      JSON {id: [VOC class of each object of human_parts/ID.mat]}
  JPEGImages/ID.jpg                    RGB, height x width in size x [size, 4/3 size], either orientation
  semseg/VOC12/ID.png                  'P' with the VOC palette: 0..20, 255 = void band on object outlines
  pascal-context/trainval/ID.mat       'LabelMap' uint16 (H, W), PASCAL-Context ids 1..459, no 0
  human_parts/ID.mat                   'anno' struct (imname, objects(class, class_ind, mask, parts(part_name, mask)))
  sal_distill/ID.png                   'L': 255 salient (the largest visible VOC object), 0 not
  normals_distill/ID.png               RGB v = round((n + 1) * 255 / 2), camera-frame normals everywhere
                                       (the loader keeps them on the Context classes shared with NYUD
                                       only, as MTI-Net's: persons, chairs, tables, vehicles, screens,
                                       bottles, ...; sky, ground, grass, trees and buildings are
                                       invalid: about 12 % of the pixels are valid at 96 px)
  UFL_SYNTHETIC.json (both)            the marker of generated data (:func:`write_marker`)

Files are byte-identical for the same samples: JPEG quality 95, PNG without timestamps, and the
.mat header text fixed (:func:`_write_mat`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.io
from PIL import Image

from ..datasets.catalog import voc_palette
from .contract import SYNTHETIC_MARKER

__all__ = ["image_ids", "make_folders", "write_nyud_sample", "write_pascal_sample", "write_splits", "write_marker"]

_MAT_DESCRIPTION = b"MATLAB 5.0 MAT-file, written by ufl make-synthetic"
_PNG_PALETTE = [value for rgb in voc_palette(256) for value in rgb]  # PIL's flat 768-entry form; 255 -> (224, 224, 192)


def _write_mat(path: Path, variables: dict) -> None:
    """scipy.io.savemat with a fixed header text.

    NOTE: savemat stamps the creation time into the 116-byte header text; it is replaced by a
    fixed text (space padded, as MATLAB pads) so the same seed gives byte-identical files.
    """
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, do_compression=True)
    raw = bytearray(buffer.getvalue())
    raw[:116] = _MAT_DESCRIPTION.ljust(116, b" ")
    path.write_bytes(bytes(raw))


def _parts_struct(image_id: str, objects: Sequence[dict]) -> np.ndarray:
    """The PASCAL-Part 'anno' struct: anno.imname, anno.objects(i).{class, class_ind, mask, parts},
    parts(j).{part_name, mask}; loadmat indexes it as anno[0][0][1][0][i][1|2|3]."""
    part_dtype = [("part_name", "O"), ("mask", "O")]
    objects_arr = np.empty((1, len(objects)), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")])
    for i, obj in enumerate(objects):
        if obj["parts"]:
            parts = np.empty((1, len(obj["parts"])), dtype=part_dtype)
            for j, (name, mask) in enumerate(obj["parts"]):
                parts[0, j] = (name, mask)
        else:
            parts = np.empty((0, 0), dtype=part_dtype)  # MATLAB's 0x0 struct: len() == 0
        objects_arr[0, i] = (obj["name"], np.array([[obj["class_ind"]]], dtype=np.uint8), obj["mask"], parts)
    anno = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (image_id, objects_arr)
    return anno


def _save_png(path: Path, array: np.ndarray, palette: list[int] | None = None) -> None:
    """Save uint8 (H, W) as 'L' (or 'P' with ``palette``) or (H, W, 3) as 'RGB' PNG."""
    if palette is not None:
        image = Image.frombytes("P", (array.shape[1], array.shape[0]), np.ascontiguousarray(array).tobytes())
        image.putpalette(palette)
    else:
        image = Image.fromarray(np.ascontiguousarray(array))
    image.save(path, format="PNG")


def _save_jpeg(path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb).save(path, format="JPEG", quality=95)


_NYUD_DIRS = ("gt_sets", "images", "segmentation", "depth", "normals", "edge")
_PASCAL_DIRS = ("ImageSets/Context", "ImageSets/Parts", "JPEGImages", "semseg/VOC12", "pascal-context/trainval",
                "human_parts", "sal_distill", "normals_distill")


def image_ids(dataset: str, n: int) -> list[str]:
    """The ids of ``n`` images of ``dataset`` (``"NYUD_MT"``: 000001, ...; ``"PASCAL_MT"``: 2008_000001, ...)."""
    if dataset == "NYUD_MT":
        return [f"{i + 1:06d}" for i in range(n)]
    return [f"{2008 + i % 4}_{i + 1:06d}" for i in range(n)]  # PASCAL VOC style: year_number


def make_folders(root: Path, dataset: str) -> None:
    """Create the sub-folders of ``dataset`` (``"NYUD_MT"`` or ``"PASCAL_MT"``) in ``root``."""
    for sub in _NYUD_DIRS if dataset == "NYUD_MT" else _PASCAL_DIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)


def write_nyud_sample(root: Path, image_id: str, sample: dict) -> None:
    """Write one sample of :func:`ufl.synthetic.indoor.render_nyud_sample` into the NYUD_MT folder ``root``."""
    _save_jpeg(root / "images" / f"{image_id}.jpg", sample["image"])
    _save_png(root / "segmentation" / f"{image_id}.png", sample["segmentation"])
    np.save(root / "depth" / f"{image_id}.npy", sample["depth"])
    np.save(root / "normals" / f"{image_id}.npy", sample["normals"])
    np.save(root / "edge" / f"{image_id}.npy", sample["edge"])


def write_pascal_sample(root: Path, image_id: str, sample: dict) -> list[int]:
    """Write one sample of :func:`ufl.synthetic.outdoor.render_pascal_sample` into the PASCAL_MT folder
    ``root``; returns the VOC class of each object of its ``human_parts`` file (for ImageSets/Parts)."""
    _save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", sample["image"])
    _save_png(root / "semseg" / "VOC12" / f"{image_id}.png", sample["semseg"], _PNG_PALETTE)
    _write_mat(root / "pascal-context" / "trainval" / f"{image_id}.mat", {"LabelMap": sample["context"]})
    _write_mat(root / "human_parts" / f"{image_id}.mat", {"anno": _parts_struct(image_id, sample["objects"])})
    _save_png(root / "sal_distill" / f"{image_id}.png", sample["saliency"])
    encoded = np.clip(np.round((sample["normals"] + 1.0) * 255.0 / 2.0), 0, 255).astype(np.uint8)
    _save_png(root / "normals_distill" / f"{image_id}.png", encoded)
    return [o["class_ind"] for o in sample["objects"]]


def _parts_json(ids: Sequence[str], classes: dict[str, list[int]]) -> str:
    """``ImageSets/Parts/SPLIT.txt``: a JSON object, one ``"id": [classes]`` entry per line (the
    layout MTI-Net's preprocessing writes)."""
    return "{\n" + ",\n".join(f"\t{json.dumps(i)}: {json.dumps(classes[i])}" for i in ids) + "\n}\n"


def write_splits(root: Path, dataset: str, splits: dict[str, list[str]],
                 classes: dict[str, list[int]] | None = None) -> None:
    """The split files of ``splits`` (split name -> ids): NYUD_MT's ``gt_sets/SPLIT.txt``; PASCAL_MT's
    ``ImageSets/Context/SPLIT.txt`` and ``ImageSets/Parts/SPLIT.txt`` (``classes``: id -> the VOC
    class of each object, as :func:`write_pascal_sample` returns them)."""
    if dataset == "NYUD_MT":
        for split, split_ids in splits.items():
            (root / "gt_sets" / f"{split}.txt").write_text("".join(f"{i}\n" for i in split_ids))
        return
    for split, split_ids in splits.items():
        (root / "ImageSets" / "Context" / f"{split}.txt").write_text("".join(f"{i}\n" for i in split_ids))
        (root / "ImageSets" / "Parts" / f"{split}.txt").write_text(_parts_json(split_ids, classes))


def write_marker(root: Path, dataset: str, size: int, n_train: int, n_val: int, seed: int,
                 nyud_persons: float | None = None) -> None:
    """The marker that tells ufl (pretrain's provenance record, ``ufl list-tasks``) the data is generated:
    ``root/SYNTHETIC_MARKER``, JSON of the generator's arguments (``nyud_persons`` only in NYUD_MT's,
    and only when given)."""
    marker = {"generator": "ufl make-synthetic", "dataset": dataset, "size": size, "train": n_train,
              "val": n_val, "seed": seed}
    if dataset == "NYUD_MT" and nyud_persons is not None:  # absent = the default rooms (files as before)
        marker["nyud_persons"] = nyud_persons
    (root / SYNTHETIC_MARKER).write_text(json.dumps(marker, sort_keys=True) + "\n")
