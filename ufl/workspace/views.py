"""What goes into a feature cache: the samples of a split under fixed *views*, and the backbone
features of a batch exactly as the cache stores them.

A cached feature cannot be augmented later, so ``--views N`` caches each image N times: view 0 is
the original, view 1 its horizontal flip, views 2.. random draws of the dataset's reference
augmentation (flip, zoom/scale, rotation), each seeded by (seed, image, view) so a resumed or
sharded run computes the very same rows. The geometric parameters are stored per row, and the
targets go through the same view, so features and targets stay aligned.

Rows are ordered image-major: row ``r`` is image ``r // views``, view ``r % views``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from ..kinds import get_modality
from ..runtime import Precision, torch_threads

# NOTE: ufl.datasets.transforms (torchvision) is imported where a view is made, not here: reading a
# cache (ufl evaluate) imports this module for its names without needing torchvision.

__all__ = ["ViewDataset", "ImageRows", "VIEW_PARAMS", "view_parameters", "backbone_features", "STORAGE_DTYPES"]

#: Names of the per-row view parameters stored in a cache (ufl.datasets.transforms' meta keys).
VIEW_PARAMS = ("flip", "scale", "angle")

STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32}


def view_parameters(dataset: str, image: int, view: int, seed: int) -> tuple[bool, float, float]:
    """(flip, scale, angle) of ``view`` of ``image``: 0 original, 1 flipped, else a seeded random
    draw of ``dataset``'s reference augmentation."""
    from ..datasets.transforms import RECIPES, draw_value

    if view == 0:
        return False, 1.0, 0.0
    if view == 1:
        return True, 1.0, 0.0
    recipe = RECIPES.get(dataset, RECIPES["folder"])
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, image, view]).generate_state(1)[0]))
    flip = bool(torch.rand((), generator=generator) < 0.5) if recipe.flip else False
    return flip, draw_value(recipe.scales, generator), draw_value(recipe.angles, generator)


#: torch dtypes of the stored target dtypes a worker can produce itself (others: the writer casts).
_TORCH_DTYPES = {"uint8": torch.uint8, "int64": torch.int64, "float16": torch.float16, "float32": torch.float32}


class ViewDataset(Dataset):
    """Rows ``image x view`` of a dataset, each resized to ``size``.

    Items: the dataset's sample after the view (``image``, targets, ``id``), plus ``row`` (int) and
    ``view_params`` (float32 ``[flip, scale, angle]``).

    ``storage`` (``{task: stored dtype name}``, e.g. a cache's ``"uint8"`` labels and ``"float16"``
    normals) makes the targets come out in the dtypes a cache stores, so that a caching run moves
    and writes 2-8x fewer target bytes: labels and binary maps stored as uint8 are cast right after
    decoding (their values are integers 0..255, which nearest-neighbour warps and resizes keep
    exactly, so the views are the same as from int64/float32), every other target after its view
    (normals are re-normalised in float32 first, then rounded once, as the writer would). The
    values equal the old path's cast to the stored dtype, bit for bit (tested).
    """

    def __init__(self, base, views: int, size: Sequence[int], seed: int = 0,
                 storage: Mapping[str, str] | None = None):
        if views < 1:
            raise ValueError(f"views must be at least 1, got {views}")
        self.base = base
        self.views = int(views)
        self.size = tuple(int(s) for s in size)
        self.seed = int(seed)
        self.dataset = type(base).name
        modalities = base.modalities
        self._early: dict[str, torch.dtype] = {}  # cast right after decoding
        self._late: dict[str, torch.dtype] = {}  # cast after the view
        for task, name in (storage or {}).items():
            dtype = _TORCH_DTYPES.get(name)
            if dtype is None:
                continue
            if dtype == torch.uint8 and task in modalities and get_modality(modalities[task]).exact_integers:
                self._early[task] = dtype
            else:
                self._late[task] = dtype

    def __len__(self) -> int:
        return len(self.base) * self.views

    def row_ids(self) -> list[str]:
        return [image_id for image_id in self.base.ids for _ in range(self.views)]

    def row_views(self) -> list[int]:
        return list(range(self.views)) * len(self.base)

    def decode(self, image: int) -> dict[str, Any]:
        """The dataset's sample ``image`` as decoded (targets of uint8 storage already uint8)."""
        sample = self.base[image]
        for task, dtype in self._early.items():
            sample[task] = sample[task].to(dtype)
        return sample

    def view(self, decoded: Mapping[str, Any], image: int, view: int) -> dict[str, Any]:
        """Row ``image * views + view`` from the decoded sample of ``image`` (:meth:`decode`)."""
        from ..datasets.transforms import apply_view

        flip, scale, angle = view_parameters(self.dataset, image, view, self.seed)
        sample = apply_view(decoded, flip=flip, scale=scale, angle=angle, size=self.size,
                            modalities=self.base.modalities)
        sample.pop("meta", None)
        for task, dtype in self._late.items():
            sample[task] = sample[task].to(dtype)
        sample["row"] = image * self.views + view
        sample["view_params"] = torch.tensor([float(flip), scale, angle], dtype=torch.float32)
        return sample

    def __getitem__(self, row: int) -> dict[str, Any]:
        image, view = divmod(int(row), self.views)
        return self.view(self.decode(image), image, view)


class ImageRows(Dataset):
    """Chunks of a :class:`ViewDataset`'s rows, each item decoding every image once for all its views.

    ``rows`` (sorted, e.g. a cache's missing rows) are grouped by image and packed, whole images at
    a time, into chunks of at most ``batch_size`` rows (an image with more wanted views than
    ``batch_size`` is a chunk of its own). Item ``i`` is the list of chunk ``i``'s row samples:
    with ``batch_size`` a multiple of the views the chunks are the plain consecutive batches of
    ``rows``. Use with ``DataLoader(batch_size=None, collate_fn=...)``.
    """

    def __init__(self, rows: ViewDataset, wanted: Sequence[int], batch_size: int):
        self.rows = rows
        per_image: dict[int, list[int]] = {}
        for row in sorted(int(r) for r in wanted):
            image, view = divmod(row, rows.views)
            per_image.setdefault(image, []).append(view)
        self.chunks: list[list[tuple[int, list[int]]]] = []
        chunk: list[tuple[int, list[int]]] = []
        size = 0
        for image, views in per_image.items():
            if chunk and size + len(views) > batch_size:
                self.chunks.append(chunk)
                chunk, size = [], 0
            chunk.append((image, views))
            size += len(views)
        if chunk:
            self.chunks.append(chunk)

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        # in the caching process itself (no DataLoader worker) on one torch thread, as in a worker:
        # the decoding's tensor ops are small, and a second thread only waits for a core (on a busy
        # machine 3-10x slower). Their results do not depend on the thread count (no sum is split).
        with torch_threads(1 if get_worker_info() is None else None):
            out = []
            for image, views in self.chunks[index]:
                decoded = self.rows.decode(image)
                out.extend(self.rows.view(decoded, image, view) for view in views)
        return out


@torch.no_grad()
def backbone_features(backbone, images: torch.Tensor, precision: Precision | None = None,
                      storage: str = "float16") -> list[torch.Tensor]:
    """The backbone's features of ``images`` rounded to the cache's storage dtype.

    This one function feeds both the cache writer and online evaluation, so a head evaluated
    online sees bit for bit the features it would read from a cache made on the same device.
    """
    # channels_last: faster convolutions on CUDA and on CPU (oneDNN: about 20% for HRNet-18 here)
    images = images.contiguous(memory_format=torch.channels_last)
    if precision is not None:
        with precision.autocast():
            features = backbone(images)
    else:
        features = backbone(images)
    from feature_cache.writer import round_to_storage

    # NOTE: not a plain cast to float16: rows beyond float16's range (a random-init backbone at
    # 256 px) keep float32 holding what the cache stores for them (a per-row power-of-two scale)
    return [round_to_storage(f, storage).contiguous() for f in features]
