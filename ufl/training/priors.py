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
from ..taskspec import TaskSpec

__all__ = ["start_at_prior"]

log = logging.getLogger(__name__)


@torch.no_grad()
def start_at_prior(model: nn.Module, specs: Mapping[str, TaskSpec], batch: Mapping[str, Any]) -> dict[str, float]:
    """Start the prediction of each task whose kind has an output prior
    (:meth:`ufl.kinds.Kind.output_prior`: depth, the batch's mean valid depth) at that prior (its
    prediction biases at the kind's :meth:`~ufl.kinds.Kind.inverse` of it: ``softplus⁻¹(mean)``);
    return the priors."""
    priors = {}
    for name, spec in specs.items():
        prior = spec.info.output_prior(batch[name]) if name in batch else None
        if prior is None:
            continue
        priors[name] = prior
        layers = init_prediction_bias(model, name, spec.info.inverse(prior))
        log.debug("%s: %d prediction bias(es) start at %.3f", name, layers, priors[name])
    return priors
