"""Output activations per task kind: what turns a head's raw output into the kind's quantity.

Every model returns raw outputs ("logits": ``{"out": ..., "initial": [...]}``) and nothing in a
model depends on the task kind, so a new model (MTAN, PAD-Net, ...) needs nothing of its own: the
loss (:class:`ufl.losses.MultiTaskLoss`, every output and every deep-supervision output) and the
predictions (:func:`ufl.evaluation.postprocess`) both go through :func:`activate`, here, once.

============  ====================================================================
kind          activation of the raw output ``x``
============  ====================================================================
depth         ``softplus(x) = log(1 + exp(x))``: metres, always > 0
others        none here (segmentation: softmax inside the cross-entropy, argmax to
              predict; normals: L2-normalised; edges and saliency: sigmoid inside
              the balanced BCE, ``sigmoid`` to predict)
============  ====================================================================

NOTE: softplus rather than exp: above a few metres softplus is the identity up to ``exp(-x)``, so a
depth head trains as the former linear output did (L1 on metres, the same gradient scale), and its
prediction-conv bias starts at ``softplus⁻¹(mean depth)`` (:func:`inverse`; 2.42 for 2.5 m) instead
of the mean itself (``ufl.training.priors``). exp would regress log-depth, with gradients growing
with the depth. Heads trained before this activation existed predict ``softplus(x)`` instead of
``x`` now (the same above ~3 m).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["activate", "inverse", "ACTIVATED_KINDS"]

#: Task kinds whose raw output goes through an activation here.
ACTIVATED_KINDS = ("depth",)


def activate(kind: str, x: torch.Tensor) -> torch.Tensor:
    """The kind's quantity from a raw output ``x`` (any shape): depth -> ``softplus(x)`` metres
    (> 0); every other kind -> ``x`` unchanged."""
    if kind == "depth":
        return F.softplus(x)
    return x


def inverse(kind: str, value: float) -> float:
    """The raw output whose :func:`activate` is ``value`` (depth: ``softplus⁻¹(value)``, value >
    0); used to start a prediction bias at a prior (the training mean)."""
    if kind == "depth":
        if not value > 0:
            raise ValueError(f"depth must be positive to invert softplus, got {value}")
        return float(value + math.log(-math.expm1(-value)))  # log(exp(v) - 1), stable for large v
    return float(value)
