"""Trivial predictors: the floor every trained head must clear.

:class:`PriorPredictor` learns one number per task from the training split and predicts it at
every pixel: the majority class (segmentation), the mean depth, the mean normal direction, and the
positive rate (edges, saliency). Evaluated with the same metrics as the models, it tells whether a
head learnt anything beyond the label statistics.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch

from .taskspec import TaskSpec

__all__ = ["PriorPredictor"]


class PriorPredictor:
    """Per-task constant predictions fitted on a training loader.

    ``fit(loader)`` accumulates the label statistics of each task (255 and invalid pixels skipped;
    :meth:`ufl.kinds.Kind.prior_statistics`); calling the predictor on a batch gives ``{task: logits}``
    shaped like the batch's targets, in the form :func:`ufl.evaluation.postprocess` expects
    (:meth:`ufl.kinds.Kind.prior_logits`).
    """

    def __init__(self, specs: Mapping[str, TaskSpec], dataset: str):
        self.specs = dict(specs)
        self.dataset = dataset
        self.value: dict[str, torch.Tensor] = {}

    def fit(self, loader: Iterable[Mapping[str, Any]]) -> "PriorPredictor":
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, torch.Tensor] = {}
        for batch in loader:
            for name, spec in self.specs.items():
                s, n = spec.info.prior_statistics(batch[name], spec.out_channels(self.dataset))
                sums[name] = sums.get(name, 0) + s
                counts[name] = counts.get(name, 0) + n
        for name, spec in self.specs.items():
            self.value[name] = spec.info.prior_value(sums[name], counts[name])
        return self

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        out = {}
        for name, spec in self.specs.items():
            target = batch[name]
            value = self.value[name].to(target.device)
            out[name] = spec.info.prior_logits(value, target.shape[0], spec.out_channels(self.dataset),
                                               tuple(target.shape[-2:]))
        return out
