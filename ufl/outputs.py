"""Output activations per task kind: what turns a head's raw output into the kind's quantity.

Every model returns raw outputs ("logits": ``{"out": ..., "initial": [...]}``) and nothing in a
model depends on the task kind, so a new model (MTAN, PAD-Net, ...) needs nothing of its own: the
loss (:class:`ufl.losses.MultiTaskLoss`, every output and every deep-supervision output) and the
predictions (:func:`ufl.evaluation.postprocess`) both go through :func:`activate`, here, once,
which asks the task's kind (:meth:`ufl.kinds.Kind.activate`; its ``activation`` attribute names
the one a head is trained with now).

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
So the activation is part of what a head was trained with and is recorded: a task record
(``output_activation`` in the manifest, written by ``add-task`` and ``init --checkpoint``) and a
pretraining checkpoint (``output_activation``: ``{task: name}`` in its metadata) name it, and every
prediction of a registered head (evaluate, predict, visualize, serve, export) passes the recorded
name (:func:`recorded_activation`) to :func:`activate`. A record without it was written before the
activation existed and is read as ``"identity"``: old heads keep their exact predictions (drift 0).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .kinds import KINDS, get_kind

__all__ = ["activate", "inverse", "default_activation", "recorded_activation", "known_activations", "RECORD_KEY"]

#: The key naming the activation in a task record (a name) and in a checkpoint's metadata ({task: name}).
RECORD_KEY = "output_activation"


def default_activation(kind: str) -> str:
    """The activation a head of ``kind`` is trained with now: ``"softplus"`` for depth, else ``"identity"``."""
    return get_kind(kind).activation


def known_activations() -> tuple[str, ...]:
    """The named output activations a task record / checkpoint may store: those of the registered
    kinds (:attr:`ufl.kinds.Kind.activations`; built-in: ``identity``, ``softplus``)."""
    return tuple(dict.fromkeys(name for kind in KINDS.values() for name in kind.activations))


def recorded_activation(record: Mapping[str, Any] | None, task: str | None = None) -> str:
    """The activation a head was trained with, from its task record (``record["output_activation"]``)
    or, with ``task``, a checkpoint's metadata (``meta["output_activation"][task]``). Absent (written
    before the activation existed): ``"identity"``, the old linear output."""
    value = (record or {}).get(RECORD_KEY)
    if task is not None:
        value = (value or {}).get(task) if isinstance(value, Mapping) else None
    if value is None:
        return "identity"
    if value not in known_activations():
        raise ValueError(f"unknown output activation {value!r} (known: {', '.join(known_activations())}); "
                         f"the record was written by a newer ufl, upgrade it")
    return value


def activate(kind: str, x: torch.Tensor, activation: str | None = None) -> torch.Tensor:
    """The kind's quantity from a raw output ``x`` (any shape) through ``activation`` (a name of
    the kind's ``activations``; ``None``: :func:`default_activation` of ``kind``, what a head trained
    now uses): depth -> ``softplus(x)`` metres (> 0), or ``x`` for a head recorded with
    ``"identity"``; every other built-in kind -> ``x`` unchanged."""
    return get_kind(kind).activate(x, activation)


def inverse(kind: str, value: float) -> float:
    """The raw output whose :func:`activate` is ``value`` (depth: ``softplus⁻¹(value)``, value >
    0); used to start a prediction bias at a prior (the training mean)."""
    return get_kind(kind).inverse(value)
