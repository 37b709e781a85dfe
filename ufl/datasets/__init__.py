"""Datasets in their public on-disk formats, and the transforms over their samples.

- :class:`NYUD` (``"nyud"``, ``NYUD_MT/``): semseg, depth, normals, edges.
- :class:`PASCALContext` (``"pascal"``, ``PASCAL_MT/``): semseg, human_parts, saliency, normals, edges.
- :class:`FolderDataset` (``"folder"``): a user's images with one folder of targets per task spec.

Build one by name with :func:`get_dataset` (``DATASETS`` is the registry) and find its folder
with :func:`dataset_root`; the sample contract is in :mod:`ufl.datasets.base`, the transforms in
:mod:`ufl.datasets.transforms`, class names and palettes in :mod:`ufl.datasets.catalog`.

Generated data in these formats comes from :mod:`ufl.synthetic` (``ufl make-synthetic``), a
package of its own: importing this package does not import it.
"""

from ..kinds.binary import to_binary_target
from ..kinds.depth import to_depth_target
from ..kinds.normals import to_normals_target
from ..kinds.segmentation import to_label_target
from .base import DATASETS, IGNORE_INDEX, DenseDataset, dataset_root, get_dataset, read_split
from .catalog import HUMAN_PART_CLASSES, NYUD_CLASSES, VOC_CLASSES, Metadata, MetadataCatalog, voc_palette
from .folder import FolderDataset
from .nyud import NYUD
from .pascal import HUMAN_PARTS_6, PERSON_CLASS, PASCALContext

# The transforms need torchvision (seconds to import): loaded on first use, so that code reading a
# feature cache (``ufl evaluate``) can use the datasets' registry without it.
_TRANSFORMS = ("RECIPES", "Compose", "RandomHorizontalFlip", "RandomScaleRotate", "Resize", "View", "apply_view",
               "build_transforms")


def __getattr__(name: str):
    if name in _TRANSFORMS:
        from . import transforms

        return getattr(transforms, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "DenseDataset",
    "NYUD",
    "PASCALContext",
    "FolderDataset",
    "get_dataset",
    "dataset_root",
    "read_split",
    "to_label_target",
    "to_depth_target",
    "to_normals_target",
    "to_binary_target",
    "Metadata",
    "MetadataCatalog",
    "voc_palette",
    "NYUD_CLASSES",
    "VOC_CLASSES",
    "HUMAN_PART_CLASSES",
    "HUMAN_PARTS_6",
    "PERSON_CLASS",
    "View",
    "apply_view",
    "build_transforms",
    "RECIPES",
    "Compose",
    "RandomHorizontalFlip",
    "RandomScaleRotate",
    "Resize",
]
