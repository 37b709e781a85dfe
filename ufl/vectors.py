"""Unit vectors over a tensor's channel dimension (normals), fast on CPU.

NOTE: ``torch.linalg.vector_norm`` / ``Tensor.norm`` / ``F.normalize`` over a non-innermost
dimension take a slow reduction path on CPU (about 40x slower than the sum of squares for a
(8, 3, 96, 128) batch in torch 2.14), and normals are normalised in the data pipeline, the loss
and the evaluation, so this module spells the norm out.
"""

from __future__ import annotations

import torch

__all__ = ["vector_norm", "unit_vectors"]


def vector_norm(x: torch.Tensor, dim: int = 1, eps: float = 0.0) -> torch.Tensor:
    """L2 norm over ``dim`` (kept); with ``eps > 0`` at least ``eps``, with a zero gradient there
    (no NaN for zero vectors)."""
    squares = (x * x).sum(dim=dim, keepdim=True)
    return squares.clamp_min(eps * eps).sqrt() if eps > 0 else squares.sqrt()


def unit_vectors(x: torch.Tensor, dim: int = 1, eps: float = 1e-12) -> torch.Tensor:
    """``x / max(|x|, eps)`` over ``dim`` (what ``F.normalize`` computes)."""
    return x / vector_norm(x, dim, eps)
