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

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..datasets import RECIPES, apply_view
from ..datasets.transforms import draw_value
from ..runtime import Precision

__all__ = ["ViewDataset", "VIEW_PARAMS", "view_parameters", "backbone_features", "STORAGE_DTYPES"]

#: Names of the per-row view parameters stored in a cache (ufl.datasets.transforms' meta keys).
VIEW_PARAMS = ("flip", "scale", "angle")

STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32}


def view_parameters(dataset: str, image: int, view: int, seed: int) -> tuple[bool, float, float]:
    """(flip, scale, angle) of ``view`` of ``image``: 0 original, 1 flipped, else a seeded random
    draw of ``dataset``'s reference augmentation."""
    if view == 0:
        return False, 1.0, 0.0
    if view == 1:
        return True, 1.0, 0.0
    recipe = RECIPES.get(dataset, RECIPES["folder"])
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, image, view]).generate_state(1)[0]))
    flip = bool(torch.rand((), generator=generator) < 0.5) if recipe.flip else False
    return flip, draw_value(recipe.scales, generator), draw_value(recipe.angles, generator)


class ViewDataset(Dataset):
    """Rows ``image x view`` of a dataset, each resized to ``size``.

    Items: the dataset's sample after the view (``image``, targets, ``id``), plus ``row`` (int) and
    ``view_params`` (float32 ``[flip, scale, angle]``).
    """

    def __init__(self, base, views: int, size: Sequence[int], seed: int = 0):
        if views < 1:
            raise ValueError(f"views must be at least 1, got {views}")
        self.base = base
        self.views = int(views)
        self.size = tuple(int(s) for s in size)
        self.seed = int(seed)
        self.dataset = type(base).name

    def __len__(self) -> int:
        return len(self.base) * self.views

    def row_ids(self) -> list[str]:
        return [image_id for image_id in self.base.ids for _ in range(self.views)]

    def row_views(self) -> list[int]:
        return list(range(self.views)) * len(self.base)

    def __getitem__(self, row: int) -> dict[str, Any]:
        image, view = divmod(int(row), self.views)
        flip, scale, angle = view_parameters(self.dataset, image, view, self.seed)
        sample = apply_view(self.base[image], flip=flip, scale=scale, angle=angle, size=self.size,
                            modalities=self.base.modalities)
        sample.pop("meta", None)
        sample["row"] = int(row)
        sample["view_params"] = torch.tensor([float(flip), scale, angle], dtype=torch.float32)
        return sample


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
