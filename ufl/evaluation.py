"""Evaluation: logits -> predictions per task kind, and one pass over a split with the metrics of
:mod:`ufl.metrics` (pooled over the split, summed over torchrun processes)."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping

import torch
from tqdm.auto import tqdm

from . import distributed
from .metrics import Metric, build_metric
from .outputs import activate
from .runtime import Precision, progress_disable, usable_cpus
from .taskspec import TaskSpec
from .training.trainer import move_to_device
from .vectors import unit_vectors

__all__ = ["postprocess", "make_metric", "edge_workers", "evaluate", "EDGE_THRESHOLDS_QUICK"]

#: Thresholds for edge evaluation during training (the protocol's 99 are kept for registration
#: and ``ufl evaluate``); odsF over 19 thresholds is within a fraction of a point of 99.
EDGE_THRESHOLDS_QUICK = 19


def postprocess(kind: str, logits: torch.Tensor) -> torch.Tensor:
    """Turn a head's logits (B, C, H, W) into what the kind's metric takes.

    segmentation -> labels (B, H, W); depth -> metres > 0 (B, 1, H, W), through the kind's
    activation (:func:`ufl.outputs.activate`: softplus); normals -> unit vectors (B, 3, H, W);
    edges and saliency -> probabilities (B, 1, H, W).
    """
    logits = logits.float()
    if kind == "segmentation":
        return logits.argmax(1)
    if kind == "depth":
        return activate(kind, logits)
    if kind == "normals":
        return unit_vectors(logits, dim=1)
    if kind in ("edges", "saliency"):
        return torch.sigmoid(logits)
    raise ValueError(f"unknown task kind {kind!r}")


def edge_workers() -> int:
    """Processes for edge matching: this process's CPUs shared among the torchrun processes of
    this machine (0, i.e. in this process, when that leaves fewer than 2)."""
    share = usable_cpus() // int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return share if share >= 2 else 0


def make_metric(spec: TaskSpec, dataset: str, edge_thresholds: int | None = None,
                edge_cache: str | os.PathLike | None = None) -> Metric:
    """The metric accumulator of ``spec`` on ``dataset`` (edges matched in :func:`edge_workers`
    processes; with ``edge_cache`` a folder, per-image edge counts are reused from there, see
    :mod:`ufl.evalcache`)."""
    kwargs: dict[str, Any] = {}
    if spec.kind == "edges":
        kwargs["workers"] = edge_workers()
        if edge_cache is not None:
            kwargs["cache"] = edge_cache
        if edge_thresholds is not None:
            kwargs["num_thresholds"] = edge_thresholds
    return build_metric(spec.kind, num_classes=spec.out_channels(dataset), **kwargs)


@torch.no_grad()
def evaluate(predict: Callable[[Any], Mapping[str, torch.Tensor]], loader: Iterable,
             specs: Mapping[str, TaskSpec], dataset: str, device: torch.device,
             precision: Precision | None = None, edge_thresholds: int | None = None,
             desc: str = "evaluate", progress: bool = True,
             with_details: bool = False,
             edge_cache: str | os.PathLike | None = None) -> dict[str, dict[str, float]]:
    """Run ``predict(batch) -> {task: logits at the target size}`` over ``loader``.

    ``edge_cache``: a folder of per-image edge counts (:mod:`ufl.evalcache`) to reuse and fill.

    Returns ``{task: {metric: value}}`` for every task of ``specs``, pooled over the whole split
    (and over all processes under torchrun); with ``with_details`` each task's dict also holds
    ``"details"``: :meth:`ufl.metrics.Metric.details` (e.g. per-class IoU).
    """
    metrics = {name: make_metric(spec, dataset, edge_thresholds, edge_cache) for name, spec in specs.items()}
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, unit="batch",
               disable=progress_disable(progress and distributed.is_main()))
    for batch in bar:
        batch = move_to_device(batch, device, non_blocking=device.type == "cuda")
        if precision is not None:
            with precision.autocast():
                outputs = predict(batch)
        else:
            outputs = predict(batch)
        for name, metric in metrics.items():
            metric.update(postprocess(specs[name].kind, outputs[name]), batch[name])
    results = {}
    for name, metric in metrics.items():
        if distributed.is_distributed():
            metric.load_state({k: distributed.all_reduce_sum(v) for k, v in metric.state().items()})
        results[name] = metric.compute()
        if with_details:
            results[name]["details"] = metric.details()
    return results
