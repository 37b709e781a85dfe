"""PASCAL-Context multi-task (``PASCAL_MT/``, as the public MTI-Net archive unpacks).

Layout (DESIGN.md section 4; reader logic as MTI-Net's ``data/pascal_context.py``)::

    PASCAL_MT/ImageSets/Context/{train,val}.txt  one id per line (4998 / 5105)
    PASCAL_MT/ImageSets/Parts/{train,val}.txt    JSON despite the name: id -> VOC classes present
    PASCAL_MT/JPEGImages/ID.jpg                  RGB
    PASCAL_MT/semseg/VOC12/ID.png                21 classes, 255 ignore (preferred) ...
    PASCAL_MT/semseg/pascal-context/ID.png       ... else this one                      -> semseg
    PASCAL_MT/pascal-context/trainval/ID.mat     LabelMap (459 Context classes)         -> edges
    PASCAL_MT/human_parts/ID.mat                 PASCAL-Part ``anno``                   -> human_parts
    PASCAL_MT/sal_distill/ID.png                 grey, /255 > 0.5 -> salient            -> saliency
    PASCAL_MT/normals_distill/ID.png             RGB, n = 2v/255 - 1                    -> normals

Saliency and normals are distilled pseudo-labels (predictions of stronger models), not human
annotation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from scipy.ndimage import laplace
from skimage.morphology import thin

from ..errors import DataError
from ..images import read_mat, read_png
from ..io import read_json
from ..kinds.binary import to_binary_target
from ..kinds.normals import rgb_normals_target
from ..kinds.segmentation import to_label_target
from .base import DATASETS, IGNORE_INDEX, DenseDataset, TaskLike
from .catalog import PASCAL_NORMALS_VALID_CLASSES

__all__ = ["PASCALContext", "HUMAN_PARTS_6", "PERSON_CLASS", "paint_human_parts", "labelmap_boundaries",
           "labelmap_edges", "thin_points"]

PERSON_CLASS = 15
"""VOC class index of ``person`` (PASCAL-Part objects and ``ImageSets/Parts`` lists)."""

HUMAN_PARTS_6: dict[str, int] = {
    # 1 head
    "head": 1, "hair": 1, "lear": 1, "rear": 1, "leye": 1, "reye": 1, "lebrow": 1, "rebrow": 1,
    "nose": 1, "mouth": 1,
    # 2 torso
    "torso": 2, "neck": 2,
    # 3 upper arms
    "luarm": 3, "ruarm": 3,
    # 4 lower arms and hands
    "llarm": 4, "rlarm": 4, "lhand": 4, "rhand": 4,
    # 5 upper legs
    "luleg": 5, "ruleg": 5,
    # 6 lower legs and feet
    "llleg": 6, "rlleg": 6, "lfoot": 6, "rfoot": 6,
}
"""PASCAL-Part person part names -> the 6 part classes (0 = background); MTI-Net's
``HUMAN_PART[6]`` table in ``data/pascal_context.py``."""

_PARTS_MODES = ("auto", "background", "ignore")

# task -> (how errors call its files, where they are)
_TARGETS = {
    "semseg": ("semseg label", "semseg/VOC12/ID.png, else semseg/pascal-context/ID.png"),
    "human_parts": ("human parts file", "human_parts/ID.mat"),
    "saliency": ("saliency map", "sal_distill/ID.png"),
    "normals": ("normals map", "normals_distill/ID.png"),
    "edges": ("context label map", "pascal-context/trainval/ID.mat"),
}


def paint_human_parts(anno: Any, path: Path | str = "<anno>", table: Mapping[str, int] = HUMAN_PARTS_6) -> np.ndarray | None:
    """Paint the person parts of a PASCAL-Part ``anno`` struct into one ``(H, W)`` int64 label map.

    ``anno`` is ``scipy.io.loadmat(file)["anno"]``: ``anno[0][0][1][0]`` is the object list; per
    object the VOC class is at ``[1][0][0]``, the instance mask at ``[2]``, the parts at ``[3]``,
    where ``[3][0][i]`` is part ``i``: its name at ``[0][0]``, its mask at ``[1]``.
    Persons (class 15) with at least one part are painted in list order (a later person overwrites
    an earlier one where they overlap), each person's parts in list order, through ``table``.

    Returns:
        The label map (0 = background), or ``None`` when no person with parts is present.
    """
    target: np.ndarray | None = None
    try:
        objects = anno[0][0][1][0]
        for obj in objects:
            is_person = int(np.asarray(obj[1]).ravel()[0]) == PERSON_CLASS
            parts = obj[3]
            if not is_person or len(parts) == 0:  # MTI-Net: has_human and has_parts
                continue
            if target is None:
                target = np.zeros(np.asarray(obj[2]).shape, dtype=np.int64)
            for part in parts[0]:
                name = str(np.asarray(part[0]).ravel()[0])
                mask = np.asarray(part[1]).astype(bool)
                if name not in table:
                    raise DataError(f"human parts file {path} names an unknown person part {name!r}; "
                                    f"known: {', '.join(sorted(table))}")
                if mask.shape != target.shape:
                    raise DataError(f"human parts file {path}: part {name!r} mask is {mask.shape}, but the person "
                                    f"mask is {target.shape}")
                np.copyto(target, table[name], where=mask)  # target[mask] = ..., without the gather of indices
    except (IndexError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"human parts file {path} is not in the PASCAL-Part layout (anno[0][0][1][0] = objects "
                        f"with class, mask, parts): {type(e).__name__}: {e}") from None
    return target


def labelmap_boundaries(label_map: np.ndarray) -> np.ndarray:
    """Pixels where the discrete Laplacian of ``label_map`` is non-zero, ``(H, W)`` bool.

    The 5-point Laplacian with mirrored borders, exactly ``cv2.Laplacian(label_map, cv2.CV_64F)``
    (ksize 1, BORDER_REFLECT_101) as MTI-Net computes it, via ``scipy.ndimage.laplace`` (float64);
    integer maps of up to 32 bits in exact integer arithmetic instead (the same zeros, tested).

    NOTE: kept as MTI-Net has it for comparability: both sides of a class boundary are marked, and
    a pixel whose neighbours' labels happen to cancel (e.g. 1 between 0 and 2 along a line) is not.
    """

    labels = np.asarray(label_map)
    if labels.ndim == 2 and min(labels.shape) >= 2 and labels.dtype.kind in "iu" and labels.dtype.itemsize <= 4:
        return _integer_laplacian(labels) != 0
    return laplace(np.asarray(label_map, dtype=np.float64), mode="mirror") != 0


def _integer_laplacian(labels: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.laplace(labels, mode="mirror")`` of an integer map of at most 32 bits, at
    least 2 x 2, in exact integer arithmetic (int64; int32 for 16-bit maps): the float64 Laplacian
    of such integers is exact too, so its zeros are the same (tested)."""
    work = np.int32 if labels.dtype.itemsize <= 2 else np.int64
    height, width = labels.shape
    padded = np.empty((height + 2, width + 2), work)
    padded[1:-1, 1:-1] = labels
    centre = padded[1:-1, 1:-1]
    # mirrored borders (scipy's "mirror", OpenCV's BORDER_REFLECT_101): the row beyond the edge is the
    # one inside it; the corners are not read by the 5-point stencil
    padded[0, 1:-1], padded[-1, 1:-1] = centre[1], centre[-2]
    padded[1:-1, 0], padded[1:-1, -1] = centre[:, 1], centre[:, -2]
    result = padded[:-2, 1:-1] + padded[2:, 1:-1]
    result += padded[1:-1, :-2]
    result += padded[1:-1, 2:]
    result -= 4 * centre
    return result


def labelmap_edges(label_map: np.ndarray) -> np.ndarray:
    """PASCAL edge ground truth: the thinned :func:`labelmap_boundaries`, ``(H, W)`` float32 {0, 1}.

    Thinning as ``skimage.morphology.thin`` (MTI-Net ``_load_edge``), by :func:`thin_points`.
    """

    return thin_points(labelmap_boundaries(label_map)).astype(np.float32)


# skimage's lookup tables of Guo and Hall's two subiterations (None: an skimage without them)
try:
    from skimage.morphology._skeletonize import G123_LUT, G123P_LUT
    _THIN_LUTS: tuple[np.ndarray, np.ndarray] | None = (np.asarray(G123_LUT, bool), np.asarray(G123P_LUT, bool))
except ImportError:  # pragma: no cover - only with a future skimage that moved them
    _THIN_LUTS = None


def thin_points(mask: np.ndarray) -> np.ndarray:
    """``skimage.morphology.thin(mask)``, bit for bit (tested), visiting only the set pixels.

    The same algorithm (Guo and Hall's two subiterations with skimage's lookup tables, each
    subiteration deciding from the neighbourhoods before any of its deletions, repeated until an
    iteration deletes nothing, the image zero-padded), but each subiteration computes the
    neighbourhood code of the pixels still set only, by 8 gathers, instead of correlating the
    whole image. A boundary map sets about a tenth of its pixels: 0.3 ms instead of 2.2 ms at
    128 x 170 (most of the edge target's decoding). Returns a bool ``(H, W)`` array.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"thin_points needs a 2-D mask, got shape {mask.shape}")
    if _THIN_LUTS is None:
        return thin(mask)
    height, width = mask.shape
    padded = np.zeros((height + 2, width + 2), np.uint8)
    padded[1:-1, 1:-1] = mask
    flat = padded.reshape(-1)
    row = width + 2
    # flat offset of each neighbour and its bit: skimage's mask [[8, 4, 2], [16, 0, 1], [32, 64, 128]]
    neighbours = [(1, 1), (1 - row, 2), (-row, 4), (-row - 1, 8), (-1, 16), (row - 1, 32), (row, 64), (row + 1, 128)]
    points = np.flatnonzero(flat)
    while True:
        before = len(points)
        for lut in _THIN_LUTS:
            code = np.zeros(len(points), np.uint8)
            for offset, bit in neighbours:
                code |= flat[points + offset] * np.uint8(bit)
            delete = lut[code]
            flat[points[delete]] = 0
            points = points[~delete]
        if len(points) == before:
            return padded[1:-1, 1:-1].astype(bool)


@DATASETS.register("pascal")
class PASCALContext(DenseDataset):
    """PASCAL-Context with semantic segmentation (21 classes), human parts (7 classes), saliency,
    surface normals and edges.

    Args:
        root: the ``PASCAL_MT`` folder.
        split: ``"train"`` or ``"val"``.
        tasks: any of ``semseg``, ``human_parts``, ``saliency``, ``normals``, ``edges``; ``None`` = all.
        transform: applied to each sample dict.
        parts_without_persons: the human-parts target of an image without any person part:
            ``"background"`` (all 0), ``"ignore"`` (all 255), or ``"auto"`` (default): background when
            ``human_parts`` is the only task, ignore when it is one task among several (DESIGN.md
            section 4), so multi-task batches do not learn "no person" from those images.
        persons_only: keep only the images that contain persons (``ImageSets/Parts``): the images
            the human-parts metric is computed on.
        normals_valid_classes: Context classes (``LabelMap`` values) on which the distilled normals
            count as valid (elsewhere the normal is the zero vector, i.e. invalid): a sequence of
            ints or a JSON file holding a list of ints. Default: the 170 classes of
            :data:`~ufl.datasets.catalog.PASCAL_NORMALS_VALID_CLASSES`, the Context classes shared
            with NYUD, as MTI-Net's loader and evaluation use. ``None``: every pixel is valid.

    NOTE: MTI-Net drops the images without persons from the dataset when human parts is the only
    task, and sets every all-background parts map to 255 (``AddIgnoreRegions``); here the rule is
    the explicit ``parts_without_persons`` flag and ``persons_only`` selects the person images.

    The distilled normals are masked, by default, to the Context classes shared with NYUD, as
    MTI-Net's ``data/pascal_context.py`` does (``_load_normals_distilled``); the loader then reads the
    Context ``LabelMap`` of every image for its normals as well.
    """

    name = "pascal"
    folder_name = "PASCAL_MT"
    supported_tasks = ("semseg", "human_parts", "saliency", "normals", "edges")
    layout = "PASCAL_MT/ with ImageSets/, JPEGImages/, semseg/, pascal-context/, human_parts/, sal_distill/, normals_distill/"

    def __init__(self, root: str | os.PathLike, split: str = "train", tasks: Sequence[TaskLike] | TaskLike | None = None,
                 transform=None, *, parts_without_persons: str = "auto", persons_only: bool = False,
                 normals_valid_classes: Sequence[int] | str | os.PathLike | None = tuple(PASCAL_NORMALS_VALID_CLASSES)):
        if parts_without_persons not in _PARTS_MODES:
            raise DataError(f"parts_without_persons must be one of {', '.join(_PARTS_MODES)}, "
                            f"got {parts_without_persons!r}")
        self.parts_without_persons = parts_without_persons
        self.persons_only = persons_only
        self.normals_valid_classes = _valid_classes(normals_valid_classes)
        self._parts_index: dict[str, list[int]] | None = None
        self._valid_table: np.ndarray | None = None  # valid_normals' lookup table, made on first use
        super().__init__(root, split=split, tasks=tasks, transform=transform)

    # -- files -------------------------------------------------------------------------------
    def split_file(self) -> Path:
        return self.root / "ImageSets" / "Context" / f"{self.split}.txt"

    def parts_file(self) -> Path:
        """The JSON file listing, per id, the VOC classes present (``ImageSets/Parts/SPLIT.txt``)."""
        return self.root / "ImageSets" / "Parts" / f"{self.split}.txt"

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def labelmap_path(self, image_id: str) -> Path:
        return self.root / "pascal-context" / "trainval" / f"{image_id}.mat"

    def target_path(self, task: str, image_id: str) -> Path:
        if task == "semseg":
            voc = self.root / "semseg" / "VOC12" / f"{image_id}.png"
            return voc if voc.is_file() else self.root / "semseg" / "pascal-context" / f"{image_id}.png"
        if task == "human_parts":
            return self.root / "human_parts" / f"{image_id}.mat"
        if task == "saliency":
            return self.root / "sal_distill" / f"{image_id}.png"
        if task == "normals":
            return self.root / "normals_distill" / f"{image_id}.png"
        return self.labelmap_path(image_id)  # edges

    def required_files(self, task: str, image_id: str) -> list[Path]:
        if task == "human_parts":  # only person images are read (as MTI-Net)
            return [self.target_path(task, image_id)] if self.has_persons(image_id) else []
        if task == "normals" and self.normals_valid_classes is not None:
            return [self.target_path(task, image_id), self.labelmap_path(image_id)]
        return [self.target_path(task, image_id)]

    def describe_image(self) -> str:
        return "image (JPEGImages/ID.jpg)"

    def describe_target(self, task: str) -> str:
        what, pattern = _TARGETS[task]
        return f"{what} ({pattern})"

    # -- persons -----------------------------------------------------------------------------
    def _read_ids(self) -> list[str]:
        ids = super()._read_ids()
        if self.persons_only:
            ids = [i for i in ids if self.has_persons(i)]
            if not ids:
                raise DataError(f"no image of split {self.split!r} contains persons according to {self.parts_file()}")
        return ids

    def _persons_index(self) -> dict[str, list[int]]:
        if self._parts_index is None:
            path = self.parts_file()
            index = read_json(path, "human parts index", DataError,
                              hint="PASCAL_MT ships it as JSON (id -> list of VOC classes present)")
            if not isinstance(index, dict) or not all(isinstance(v, list) for v in index.values()):
                raise DataError(f"human parts index {path} must map each id to a list of VOC classes")
            self._parts_index = {str(k): [int(c) for c in v] for k, v in index.items()}
        return self._parts_index

    def has_persons(self, image_id: str) -> bool:
        """Whether ``image_id`` contains a person (VOC class 15 listed in ``ImageSets/Parts``)."""
        index = self._persons_index()
        if image_id not in index:
            raise DataError(f"human parts index {self.parts_file()} has no entry for id {image_id!r}; it should "
                            f"list every id of {self.split_file()}")
        return PERSON_CLASS in index[image_id]

    @property
    def person_ids(self) -> list[str]:
        """The ids of this split whose images contain persons (where the parts metric is computed)."""
        return [i for i in self.ids if self.has_persons(i)]

    @property
    def empty_parts_value(self) -> int:
        """The value of a human-parts map without any person part: 0 (background) or 255 (ignore)."""
        mode = self.parts_without_persons
        if mode == "auto":
            mode = "background" if self.tasks == ["human_parts"] else "ignore"
        return 0 if mode == "background" else IGNORE_INDEX

    # -- targets -----------------------------------------------------------------------------
    def load_target(self, task: str, image_id: str, size: tuple[int, int],
                    labels: np.ndarray | None = None) -> torch.Tensor:
        """See :meth:`DenseDataset.load_target`; ``labels``: the sample's Context label map when the
        caller has read it already (the normals' valid-class mask and the edges use it)."""
        path = self.target_path(task, image_id)
        what = _TARGETS[task][0]
        if task == "semseg":
            return to_label_target(read_png(path, what), self.num_classes(task), path, what)
        if task == "human_parts":
            return to_label_target(self._human_parts(image_id, size), self.num_classes(task), path, what)
        if task == "saliency":
            grey = read_png(path, what, channels=1, allow_16bit=False)
            return to_binary_target(grey.astype(np.float32) / 255.0 > 0.5, path, what)
        if task == "normals":
            rgb = read_png(path, what, channels=3)
            valid = None
            if self.normals_valid_classes is not None:
                labels = self._read_labelmap(image_id) if labels is None else labels
                if labels.shape != rgb.shape[:2]:
                    raise DataError(f"{what} {path} is {rgb.shape[0]}x{rgb.shape[1]} but its context label "
                                    f"map {self.labelmap_path(image_id)} is {labels.shape[0]}x{labels.shape[1]}")
                valid = self.valid_normals(labels)
            return rgb_normals_target(rgb, path, what, valid)
        labels = self._read_labelmap(image_id) if labels is None else labels
        return to_binary_target(labelmap_edges(labels), path, what)  # edges

    def load_targets(self, image_id: str, size: tuple[int, int]) -> Iterator[tuple[str, torch.Tensor]]:
        """Every task's target; the Context label map, which the normals' valid-class mask and the
        edges both use, is read once per sample (when the first task that needs it comes)."""
        uses_labels = {"edges"} | ({"normals"} if self.normals_valid_classes is not None else set())
        labels = None
        for task in self.specs:
            if labels is None and task in uses_labels:
                labels = self._read_labelmap(image_id)
            yield task, self.load_target(task, image_id, size, labels)

    def valid_normals(self, labels: np.ndarray) -> np.ndarray:
        """Where the normals are valid: ``np.isin(labels, normals_valid_classes)``, ``(H, W)`` bool.

        8- and 16-bit label maps (PASCAL-Context stores uint16) look it up in a table indexed by
        the label (one gather instead of a sort); other dtypes use ``np.isin``.
        """
        if labels.dtype not in (np.uint8, np.uint16):
            return np.isin(labels, self.normals_valid_classes)
        if self._valid_table is None:
            table = np.zeros(1 << 16, dtype=bool)
            classes = self.normals_valid_classes
            table[classes[(classes >= 0) & (classes < len(table))]] = True
            self._valid_table = table
        return self._valid_table[labels]

    def _read_labelmap(self, image_id: str) -> np.ndarray:
        path = self.labelmap_path(image_id)
        labels = np.asarray(read_mat(path, "context label map", "LabelMap"))
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.number):
            raise DataError(f"context label map {path} holds a {labels.dtype} array of shape {labels.shape}; "
                            f"an HxW map of class ids is expected")
        return labels

    def _human_parts(self, image_id: str, size: tuple[int, int]) -> np.ndarray:
        target = None
        if self.has_persons(image_id):
            path = self.target_path("human_parts", image_id)
            target = paint_human_parts(read_mat(path, "human parts file", "anno"), path)
        if target is None or not target.any():
            return np.full(size, self.empty_parts_value, dtype=np.int64)
        return target


def _valid_classes(value: Sequence[int] | str | os.PathLike | None) -> np.ndarray | None:
    """The ``normals_valid_classes`` argument as an int array (read from a JSON file if a path)."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        value = read_json(path, "normals valid-classes file", DataError,
                          hint="it should hold a JSON list of Context class ids")
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise DataError(f"normals valid-classes file {path} must hold a JSON list of integer class ids")
    return np.asarray(list(value), dtype=np.int64)
