"""Start regression outputs at the training prior.

A depth head whose last layer starts at 0 spends its first hundreds of Adam steps (each bounded by
the learning rate) just reaching the scale of metres; starting the bias of every prediction conv of
a depth task where the prediction is the mean valid depth of the first training batch removes that
phase, for every model alike (cf. the prior-probability bias of RetinaNet's classifier). The bias
is the raw output whose activation is that mean (:func:`ufl.outputs.inverse`: ``softplus⁻¹``).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import torch
from torch import nn

from ..models import init_prediction_bias
from ..outputs import inverse
from ..taskspec import TaskSpec

__all__ = ["start_at_prior"]

log = logging.getLogger(__name__)


@torch.no_grad()
def start_at_prior(model: nn.Module, specs: Mapping[str, TaskSpec], batch: Mapping[str, Any]) -> dict[str, float]:
    """Start the prediction of each depth task at the batch's mean valid depth (its prediction
    biases at ``softplus⁻¹(mean)``); return the means."""
    priors = {}
    for name, spec in specs.items():
        if spec.kind != "depth" or name not in batch:
            continue
        target = batch[name]
        valid = target > 0
        if not valid.any():
            continue
        priors[name] = float(target[valid].double().mean())
        layers = init_prediction_bias(model, name, inverse(spec.kind, priors[name]))
        log.debug("%s: %d prediction bias(es) start at %.3f", name, layers, priors[name])
    return priors
