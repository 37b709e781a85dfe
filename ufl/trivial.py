"""Trivial predictors: the floor every trained head must clear.

:class:`PriorPredictor` learns one number per task from the training split and predicts it at
every pixel: the majority class (segmentation), the mean depth, the mean normal direction, and the
positive rate (edges, saliency). Evaluated with the same metrics as the models, it tells whether a
head learnt anything beyond the label statistics.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch

from .outputs import inverse
from .taskspec import TaskSpec
from .vectors import unit_vectors, vector_norm

__all__ = ["PriorPredictor"]


class PriorPredictor:
    """Per-task constant predictions fitted on a training loader.

    ``fit(loader)`` accumulates the label statistics of each task (255 and invalid pixels skipped);
    calling the predictor on a batch gives ``{task: logits}`` shaped like the batch's targets, in
    the form :func:`ufl.evaluation.postprocess` expects.
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
                s, n = _statistics(spec, spec.out_channels(self.dataset), batch[name])
                sums[name] = sums.get(name, 0) + s
                counts[name] = counts.get(name, 0) + n
        for name, spec in self.specs.items():
            s, n = sums[name], counts[name]
            if spec.kind == "segmentation":
                self.value[name] = s.argmax()  # class histogram -> majority class
            elif spec.kind == "normals":
                self.value[name] = unit_vectors(s, dim=0)
            else:
                self.value[name] = s / n.clamp(min=1)
        return self

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        out = {}
        for name, spec in self.specs.items():
            target = batch[name]
            b, (h, w) = target.shape[0], target.shape[-2:]
            value = self.value[name].to(target.device)
            if spec.kind == "segmentation":
                logits = torch.zeros(b, spec.out_channels(self.dataset), h, w, device=target.device)
                logits[:, int(value)] = 1.0
            elif spec.kind == "normals":
                logits = value.view(1, 3, 1, 1).expand(b, 3, h, w)
            elif spec.kind == "depth":  # the raw output whose activation is the mean depth
                raw = inverse(spec.kind, float(value)) if float(value) > 0 else -30.0
                logits = torch.full((b, 1, h, w), raw, device=target.device)
            else:  # edges, saliency: the positive rate as a probability
                logits = torch.logit(value.clamp(1e-4, 1 - 1e-4)).view(1, 1, 1, 1).expand(b, 1, h, w)
            out[name] = logits.float()
        return out


def _statistics(spec: TaskSpec, channels: int, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum, count) of the valid target values of one batch."""
    if spec.kind == "segmentation":
        labels = target[target != 255].long()
        return torch.bincount(labels, minlength=channels).double(), torch.tensor(labels.numel())
    if spec.kind == "depth":
        valid = target > 0
        return target[valid].double().sum(), valid.sum()
    if spec.kind == "normals":
        valid = vector_norm(target, dim=1) > 0
        return (target * valid).double().sum(dim=(0, 2, 3)), valid.sum()
    valid = target != 255
    return target[valid].double().sum(), valid.sum()
