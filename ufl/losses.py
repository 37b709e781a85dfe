"""Training losses of the reference tables (DESIGN.md section 6).

Each loss follows MTI-Net's losses/loss_functions.py (SimonVandenhende/Multi-Task-Learning-PyTorch)
where it fixes a detail, with two rules applied everywhere:

* pixels whose target is 255 are ignored (plus each task's own invalid pixels: depth 0, normals
  of zero length);
* a loss is the **mean over valid pixels**; a batch without any valid pixel gives exactly 0 that
  still carries a (zero) gradient to the prediction, never NaN.

Shapes (B batch, H x W pixels): predictions are logits or raw outputs (B, C, H, W); targets follow
:mod:`ufl.taskspec`: segmentation (B, H, W) int64, depth (B, 1, H, W) metres, normals (B, 3, H, W),
edges and saliency (B, 1, H, W) in {0, 1} (255 = ignore). (B, H, W) depth/binary targets are
accepted too.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SpecError
from .outputs import activate
from .registry import Registry
from .taskspec import IGNORE_INDEX, TaskSpec
from .tensors import resize
from .vectors import vector_norm

__all__ = [
    "IGNORE_INDEX", "CrossEntropyLoss", "MaskedL1Loss", "NormalsL1Loss", "BalancedBCELoss",
    "LOSSES", "build_loss", "MultiTaskLoss",
]



def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` where ``valid`` over the count of valid entries (0 when there are none).

    ``torch.where`` keeps non-finite values at ignored entries (e.g. a log at a 255 target) out of
    both the sum and the gradient.
    """
    total = torch.where(valid, values, torch.zeros_like(values)).sum()
    return total / valid.sum().clamp(min=1)


def _as_map(target: torch.Tensor) -> torch.Tensor:
    """(B, H, W) -> (B, 1, H, W); (B, C, H, W) unchanged."""
    return target.unsqueeze(1) if target.ndim == 3 else target


def _check_size(pred: torch.Tensor, target: torch.Tensor, what: str) -> None:
    if pred.shape[-2:] != target.shape[-2:] or pred.shape[0] != target.shape[0]:
        raise ValueError(f"{what}: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in "
                         f"batch or spatial size")


class CrossEntropyLoss(nn.Module):
    """Pixel-wise softmax cross-entropy for segmentation (semseg, human parts).

    L = (1 / |V|) · sum_{p in V} -log softmax(z_p)[y_p],  V = {p : y_p != 255}.

    Same as MTI-Net's ``SoftMaxwithLoss`` (``NLLLoss(ignore_index=255)`` on log-softmax), except that
    an all-ignored batch gives 0 instead of NaN.
    Shapes: logits (B, K, H, W), target (B, H, W) or (B, 1, H, W) int class ids.
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == 4:
            target = target[:, 0]
        target = target.long()
        _check_size(logits, target, "cross_entropy")
        per_pixel = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        return _masked_mean(per_pixel, target != self.ignore_index)


class MaskedL1Loss(nn.Module):
    """L1 for depth over pixels with a measurement.

    L = (1 / |V|) · sum_{p in V} |d̂_p - d_p|,  V = {p : d_p > 0 and d_p != 255} (metres).

    NOTE: MTI-Net's ``DepthLoss`` masks only 255 (its padding value); NYUD's missing depth is 0, so
    zeros are masked too, as the evaluation does (DESIGN.md section 5: pixels with gt > 0).
    Shapes: pred (B, 1, H, W), target (B, 1, H, W) or (B, H, W).
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _as_map(target).to(pred.dtype)
        _check_size(pred, target, "l1")
        valid = (target > 0) & (target != IGNORE_INDEX)
        return _masked_mean((pred - target).abs(), valid)


class NormalsL1Loss(nn.Module):
    """L1 between the L2-normalised prediction and the target normal.

    n̂_p = n_p / (||n_p|| + 1e-12) (MTI-Net's ``Normalize``), then
    L = (1 / (3·|V|)) · sum_{p in V} sum_c |n̂_pc - g_pc|,  V = {p : ||g_p|| > 0, no component 255}.

    NOTE: the mean runs over the 3 components of each valid pixel, as MTI-Net's ``NormalsLoss``
    divides by its count of valid *elements*; the NYUD weight 10 was tuned with that scale.
    Shapes: pred (B, 3, H, W), target (B, 3, H, W).
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(pred.dtype)
        _check_size(pred, target, "normals_l1")
        # eps: a zero vector gets a zero gradient instead of NaN (as torch.linalg.vector_norm)
        unit = pred / (vector_norm(pred, dim=1, eps=1e-12) + 1e-12)
        valid = ((target.abs().sum(dim=1, keepdim=True) > 0)
                 & (target != IGNORE_INDEX).all(dim=1, keepdim=True)).expand_as(target)
        return _masked_mean((unit - target).abs(), valid)


class BalancedBCELoss(nn.Module):
    """Class-balanced binary cross-entropy on logits (edges, saliency), as MTI-Net's
    ``BalancedCrossEntropyLoss`` (from HED, Xie and Tu 2015).

    With y_p = [t_p >= 0.5] and b_p = BCE(z_p, y_p) = softplus(z_p) - y_p·z_p over valid pixels V
    (t_p != 255):

        L = (w · sum_{p in V, y=1} b_p + (1 - w) · sum_{p in V, y=0} b_p) / |V|

    w = ``pos_weight`` (edges: 0.95), or, when ``pos_weight`` is None ("batch", saliency), the
    fraction of negative pixels among the valid pixels of the whole batch.

    NOTE: MTI-Net divides by all pixels of the batch, ignored ones included; here the mean is over
    valid pixels (identical when nothing is ignored).
    Shapes: logits (B, 1, H, W), target (B, 1, H, W) or (B, H, W).
    """

    def __init__(self, pos_weight: float | None = None):
        super().__init__()
        if pos_weight is not None and not 0 < pos_weight < 1:
            raise ValueError(f"pos_weight must be in (0, 1) or None (from the batch), got {pos_weight}")
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _as_map(target).to(logits.dtype)
        _check_size(logits, target, "balanced_bce")
        valid = target != IGNORE_INDEX
        positive = (target >= 0.5) & valid
        labels = positive.to(logits.dtype)
        per_pixel = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        if self.pos_weight is None:
            w = (valid & ~positive).sum() / valid.sum().clamp(min=1)
        else:
            w = torch.tensor(self.pos_weight, dtype=logits.dtype, device=logits.device)
        weights = torch.where(positive, w, 1 - w).to(logits.dtype)
        return _masked_mean(weights * per_pixel, valid)


#: Loss factories by spec loss name: ``factory(spec) -> nn.Module``.
LOSSES: Registry[Callable[[TaskSpec], nn.Module]] = Registry("loss")
LOSSES.register("cross_entropy", lambda spec: CrossEntropyLoss())
LOSSES.register("l1", lambda spec: MaskedL1Loss())
LOSSES.register("normals_l1", lambda spec: NormalsL1Loss())
LOSSES.register("balanced_bce",
                lambda spec: BalancedBCELoss(None if spec.pos_weight in (None, "batch") else float(spec.pos_weight)))


def build_loss(spec: TaskSpec) -> nn.Module:
    """The loss module a task spec names (``spec.loss``, with ``spec.pos_weight`` for balanced_bce)."""
    if spec.loss not in LOSSES:
        raise SpecError(f"task {spec.name!r}: no loss named {spec.loss!r}; known: {', '.join(LOSSES)}")
    return LOSSES.get(spec.loss)(spec)


class MultiTaskLoss(nn.Module):
    """Weighted sum of the task losses, with deep supervision.

        total = sum_t w_t · (L_t(out_t) + sum_s L_t(up(initial_{t,s})))

    w_t = ``spec.weight(dataset)`` (NYUD: semseg 1, depth 1, normals 10, edges 50; PASCAL: semseg 1,
    parts 2, saliency 5, normals 10, edges 50); ``up`` is a bilinear resize to the target's size,
    as MTI-Net's ``MTINetLoss`` does for its per-scale initial predictions (same weights, summed
    over scales). A final output whose size differs from the target's is resized the same way.
    Each raw output goes through its kind's activation first (:func:`ufl.outputs.activate`:
    softplus for depth), as :func:`ufl.evaluation.postprocess` does for predictions.

    ``forward(outputs, batch)``: ``outputs`` is a model's ``{task: {"out": ..., "initial": [...]}}``
    (``"initial"`` optional), ``batch`` maps each task to its target. Returns ``(total, {task:
    L_t(out_t)})``, the per-task values unweighted and without deep supervision (for logging).

    An auxiliary-only task (PAD-Net's and MTI-Net's ``--aux``; its output has ``"initial"`` but no
    ``"out"``) contributes w_t · sum_s L_t(up(initial_{t,s})) only, as the reference's
    ``PADNetLoss`` / ``MTINetLoss`` (losses/loss_schemes.py); its logged value is that sum.
    """

    def __init__(self, specs: Mapping[str, TaskSpec], dataset: str, deep_supervision: bool = True):
        super().__init__()
        self.dataset = dataset
        self.kinds = {task: spec.kind for task, spec in specs.items()}
        self.deep_supervision = deep_supervision
        self.weights = {task: spec.weight(dataset) for task, spec in specs.items()}
        self.losses = nn.ModuleDict({task: build_loss(spec) for task, spec in specs.items()})

    @property
    def tasks(self) -> list[str]:
        return list(self.losses)

    def forward(self, outputs: Mapping[str, Mapping[str, Any]], batch: Mapping[str, torch.Tensor]
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total = None
        values: dict[str, torch.Tensor] = {}
        for task, loss_fn in self.losses.items():
            if task not in outputs or task not in batch:
                where = "model outputs" if task not in outputs else "batch"
                raise KeyError(f"task {task!r} of the loss is missing from the {where}")
            target = batch[task]
            size = target.shape[-2:]
            kind = self.kinds[task]
            initials = outputs[task].get("initial", None) or []
            if "out" not in outputs[task]:  # auxiliary only (PAD-Net, MTI-Net): deep supervision only
                if not (self.deep_supervision and initials):
                    raise KeyError(f"task {task!r} has no final output and no initial predictions to supervise")
                values[task] = sum(loss_fn(activate(kind, resize(initial, size)), target) for initial in initials)
                task_total = values[task]
            else:
                values[task] = loss_fn(activate(kind, resize(outputs[task]["out"], size)), target)
                task_total = values[task]
                if self.deep_supervision:
                    for initial in initials:
                        task_total = task_total + loss_fn(activate(kind, resize(initial, size)), target)
            weighted = self.weights[task] * task_total
            total = weighted if total is None else total + weighted
        if total is None:
            raise ValueError("MultiTaskLoss has no tasks")
        return total, values
