"""Class names and colour palettes per (dataset, task), in the spirit of detectron2's MetadataCatalog.

Evaluators print per-class IoU with these names and visualisers colour label maps with these
palettes, without being told twice::

    >>> meta = MetadataCatalog.get("pascal", "human_parts")
    >>> meta.class_names[1], meta.num_classes
    ('head', 7)
    >>> rgb = meta.colorize(label_map)          # (H, W) labels -> (H, W, 3) uint8

A user's task registers its own entry with :meth:`MetadataCatalog.register`; an unregistered
segmentation task gets generic names (``class_0``, ...) when its class count is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UflError
from ..kinds import get_kind
from ..kinds.edges import EDGE_PROTOCOL

__all__ = ["Metadata", "MetadataCatalog", "voc_palette", "NYUD_CLASSES", "VOC_CLASSES", "HUMAN_PART_CLASSES",
           "PASCAL_NORMALS_VALID_CLASSES", "EDGE_PROTOCOL", "metric_options"]

NYUD_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
"""The 40 NYUD-v2 classes of Gupta et al. (CVPR 2013), in label order (stored label k+1 -> class k)."""

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
"""The 21 PASCAL VOC classes (PASCAL_MT ``semseg``; MTI-Net ``VOC_CATEGORY_NAMES``)."""

HUMAN_PART_CLASSES = (
    "background", "head", "torso", "upper arms", "lower arms and hands", "upper legs", "lower legs and feet",
)
"""The 7 human-part classes (MTI-Net's 6-part grouping of PASCAL-Part, plus background)."""


PASCAL_NORMALS_VALID_CLASSES: dict[int, str] = {
    int(k): name for k, name in json.loads((Path(__file__).parent / "pascal_normals_classes.json").read_text()).items()
}
"""PASCAL-Context classes (``LabelMap`` id -> name) on which the distilled PASCAL normals are valid.

Facts from MTI-Net's ``data/pascal_context.py`` (``PASCALContext.__init__``, ``do_normals``): every
class name of ``data/db_info/nyu_classes.json`` (the 894 NYUD-v2 raw classes) that is also a key of
``data/db_info/context_classes.json`` (the 459 Context classes, 1-based ids), except ``unknown``, plus
``tvmonitor`` ("custom additions due to incompatibilities"): 170 classes. Its
``_load_normals_distilled`` zeroes the normals of every other class, so they count as invalid in
training and in ``eval_normals.py`` (which skips zero vectors). Sky, grass, ground, road, tree and
building are not among them: the distilled normals are kept only where NYUD-like indoor classes are.
Repository: github.com/SimonVandenhende/Multi-Task-Learning-PyTorch (the class ids are data, not
code; the list is derived from the two JSON files as that loader derives it).
"""

def metric_options(dataset: str, kind: str) -> dict[str, float | bool]:
    """Keyword arguments of the metric of a task of ``kind`` on ``dataset`` that the benchmark fixes
    per dataset (:meth:`ufl.kinds.Kind.metric_options`: the edge matching of :data:`EDGE_PROTOCOL`
    for ``edges``, nothing for the other built-in kinds)."""
    return get_kind(kind).metric_options(dataset)


def voc_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map: class ``i``'s bits spread over the high bits of R, G and B.

    Class 0 is black, 1 dark red (128, 0, 0), 2 dark green (0, 128, 0), ... as in the VOC
    development kit's ``VOClabelcolormap.m``; used for every label map here.
    """
    colours = []
    for i in range(num_classes):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


@dataclass(frozen=True)
class Metadata:
    """What a (dataset, task) pair's labels mean.

    Attributes:
        dataset: dataset name (``"nyud"``, ``"pascal"``, a folder dataset's name).
        task: task name.
        class_names: one name per class index (empty for non-segmentation tasks).
        palette: one RGB colour per class index.
        ignore_index: the label value that means "not annotated".
        ignore_colour: the colour of ignored pixels in :meth:`colorize`.
    """

    dataset: str
    task: str
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    ignore_index: int = 255
    ignore_colour: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self):
        if self.palette and len(self.palette) != len(self.class_names):
            raise ValueError(f"{self.dataset}/{self.task}: {len(self.palette)} colours for "
                             f"{len(self.class_names)} classes")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def colorize(self, labels) -> np.ndarray:
        """Colour a label map ``(H, W)`` (array or tensor) -> ``(H, W, 3)`` uint8 RGB.

        Ignored pixels get :attr:`ignore_colour`; a label outside the classes is an error.
        """
        labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).astype(np.int64)
        lut = np.array(self.palette or voc_palette(self.num_classes), dtype=np.uint8).reshape(-1, 3)
        ignored = labels == self.ignore_index
        bad = ~ignored & ((labels < 0) | (labels >= len(lut)))
        if bad.any():
            raise ValueError(f"label {int(labels[bad][0])} is outside the {len(lut)} classes of "
                             f"{self.dataset}/{self.task}")
        out = lut[np.where(ignored, 0, labels)]
        out[ignored] = self.ignore_colour
        return out


class _MetadataCatalog:
    """Metadata by ``(dataset, task)``; see the module docstring."""

    def __init__(self):
        self._entries: dict[tuple[str, str], Metadata] = {}

    def register(self, metadata: Metadata, overwrite: bool = False) -> Metadata:
        key = (metadata.dataset, metadata.task)
        if key in self._entries and not overwrite:
            raise ValueError(f"metadata for {key[0]}/{key[1]} is already registered")
        self._entries[key] = metadata
        return metadata

    def get(self, dataset: str, task: str, num_classes: int | None = None) -> Metadata:
        """The metadata of ``task`` on ``dataset``.

        An unregistered pair gets generic class names ``class_0 .. class_{n-1}`` and the VOC palette
        when ``num_classes`` is given; otherwise it is a :class:`UflError` listing the known pairs.
        """
        key = (dataset, task)
        if key in self._entries:
            return self._entries[key]
        if num_classes is not None:
            return Metadata(dataset, task, tuple(f"class_{i}" for i in range(num_classes)), voc_palette(num_classes))
        known = ", ".join(f"{d}/{t}" for d, t in sorted(self._entries))
        raise UflError(f"no class names registered for task {task!r} on dataset {dataset!r} (known: {known}); "
                       f"register them with MetadataCatalog.register(Metadata(...))")

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(sorted(self._entries))


MetadataCatalog = _MetadataCatalog()
"""The catalogue (a module-level singleton, as detectron2's)."""

MetadataCatalog.register(Metadata("nyud", "semseg", NYUD_CLASSES, voc_palette(len(NYUD_CLASSES))))
MetadataCatalog.register(Metadata("pascal", "semseg", VOC_CLASSES, voc_palette(len(VOC_CLASSES))))
MetadataCatalog.register(Metadata("pascal", "human_parts", HUMAN_PART_CLASSES, voc_palette(len(HUMAN_PART_CLASSES))))
for _dataset, _task in (("nyud", "edges"), ("pascal", "edges"), ("pascal", "saliency")):
    MetadataCatalog.register(Metadata(_dataset, _task, ("background", _task), ((0, 0, 0), (255, 255, 255))))
for _dataset, _task in (("nyud", "depth"), ("nyud", "normals"), ("pascal", "normals")):
    MetadataCatalog.register(Metadata(_dataset, _task))
