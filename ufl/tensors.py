"""Leaf tensor helpers shared across ``ufl`` (imports only torch and numpy), so
that data, kinds, metrics, models, evaluation and training can all use them without importing one
another.

- :func:`move_to_device`: every tensor of a (nested) batch to a device.
- :func:`to_numpy`: a tensor on any device, or an array-like, as a NumPy array (metrics, figures).
- :func:`resize`: the bilinear resize every model head and the multi-task loss use.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["move_to_device", "to_numpy", "resize"]

def move_to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor of a (nested) batch to ``device``; strings and numbers stay as they are."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and torch.is_tensor(batch[0]):
        return type(batch)(move_to_device(v, device, non_blocking) for v in batch)
    return batch


def to_numpy(x: Any) -> np.ndarray:
    """A tensor (any device, detached; float16 and bfloat16 widened to float32, which NumPy lacks
    or computes slowly) or an array-like -> ``np.ndarray`` (no copy for a CPU tensor or an array)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) to ``size`` = (H, W) (``align_corners=False``); no-op if equal.

    Symbolic sizes (``torch.export``, as ``ufl export --dynamic`` traces) stay symbolic: ``int()``
    would fix the traced graph to the example's size."""
    size = tuple(s if isinstance(s, torch.SymInt) else int(s) for s in size[:2])
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
