"""Tensor conventions shared by every layer: the ignore value of targets, and moving batches.

A leaf module (it imports torch only), so that data, metrics, evaluation and training can all use
it without importing one another.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

__all__ = ["IGNORE_INDEX", "move_to_device"]

IGNORE_INDEX = 255
"""Target value that losses and metrics skip (segmentation labels, edge and saliency maps)."""


def move_to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor of a (nested) batch to ``device``; strings and numbers stay as they are."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and torch.is_tensor(batch[0]):
        return type(batch)(move_to_device(v, device, non_blocking) for v in batch)
    return batch
