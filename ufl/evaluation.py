"""Evaluation: logits -> predictions per task kind, and one pass over a split with the metrics of
:mod:`ufl.metrics` (pooled over the split, summed over torchrun processes).

Resolution (DESIGN.md section 5). ``"original"`` (the default everywhere): the network sees the
image at the working size, and each image's logits are resized bilinearly (``align_corners=False``,
OpenCV's ``INTER_LINEAR`` grid) to that image's own original size, before the argmax / sigmoid /
softplus (depth) / normalisation, and compared with the untouched ground truth, as MTI-Net evaluates
(``evaluation/evaluate_utils.py::save_model_predictions`` resizes every prediction to
``meta['im_size']`` and the ``eval_*.py`` scripts compare it with the ground truth as loaded).
A batch carries this as ``batch["orig_size"]`` (B, 2) int ``[H0, W0]`` and targets padded at the
bottom and right to the largest size of the batch (:func:`collate_original_size`); each image is
cropped back to ``[:H0, :W0]``. ``"working"``: predictions and targets both at the working size
(targets resized by nearest neighbour); cheaper (no per-image resize, and a feature cache needs no
second copy of its val targets) but not the benchmark's numbers.

NOTE: MTI-Net resizes its *post-processed* predictions: segmentation labels after the argmax by
nearest neighbour, saliency and edge probabilities (x 255) and normals (as 8-bit RGB) bilinearly,
and saves them as 8-bit PNGs. Here the logits are resized and post-processed at full precision,
as DESIGN.md fixes; a label map resized after the argmax has blockier class boundaries.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate
from tqdm.auto import tqdm

from . import distributed
from .errors import UflError
from .kinds import get_kind
from .metrics import Metric
from .metrics import delta_m as metrics_delta_m
from .runtime import Precision, progress_disable, usable_cpus
from .taskspec import TaskSpec, builtin_specs
from .tensors import move_to_device, resize

__all__ = ["postprocess", "make_metric", "delta_m", "edge_workers", "evaluate", "EDGE_THRESHOLDS_QUICK", "RESOLUTIONS",
           "ORIGINAL_SIZE", "check_resolution", "resize_logits", "OriginalSizeDataset", "collate_original_size"]

#: Evaluation resolutions: each image's own size (the benchmark's), or the working (input) size.
RESOLUTIONS = ("original", "working")

#: Batch key of each image's original ``[H0, W0]`` (int64 (B, 2)); its presence selects
#: evaluation at the original size in :func:`evaluate`.
ORIGINAL_SIZE = "orig_size"

#: Thresholds for edge evaluation during training (the protocol's 99 are kept for registration
#: and ``ufl evaluate``); odsF over 19 thresholds is within a fraction of a point of 99.
EDGE_THRESHOLDS_QUICK = 19


def postprocess(kind: str, logits: torch.Tensor, activation: str | None = None) -> torch.Tensor:
    """Turn a head's logits (B, C, H, W) into what the kind's metric takes
    (:meth:`ufl.kinds.Kind.postprocess`).

    segmentation -> labels (B, H, W); depth -> metres > 0 (B, 1, H, W), through the kind's
    activation (:func:`ufl.outputs.activate`: softplus); normals -> unit vectors (B, 3, H, W);
    edges and saliency -> probabilities (B, 1, H, W). ``activation``: the head's recorded output
    activation (:func:`ufl.outputs.recorded_activation`; ``None``: the kind's current one).
    An unknown kind is a :class:`~ufl.errors.SpecError`.
    """
    return get_kind(kind).postprocess(logits, activation)


def edge_workers() -> int:
    """Processes for edge matching: this process's CPUs shared among the torchrun processes of
    this machine (0, i.e. in this process, when that leaves fewer than 2)."""
    text = os.environ.get("LOCAL_WORLD_SIZE", "1")
    local = int(text) if text.strip().isdigit() else 0
    if local < 1:
        raise UflError(f"LOCAL_WORLD_SIZE={text!r} is not a positive integer (torchrun sets it to the number of "
                       f"processes on this machine); unset it or set it to that number")
    share = usable_cpus() // local
    return share if share >= 2 else 0


def check_resolution(resolution: str) -> str:
    """``resolution`` if it is one of :data:`RESOLUTIONS`, else a ValueError naming them."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"evaluation resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
    return resolution


def make_metric(spec: TaskSpec, dataset: str, edge_thresholds: int | None = None,
                edge_cache: str | os.PathLike | None = None, options: Mapping[str, Any] | None = None) -> Metric:
    """The metric accumulator of ``spec`` on ``dataset`` (edges matched in :func:`edge_workers`
    processes; with ``edge_cache`` a folder, per-image edge counts are reused from there, see
    :mod:`ufl.evalcache`).

    ``options``: keyword arguments of the metric; ``None`` (default) takes the benchmark's settings
    of ``dataset`` from :meth:`ufl.kinds.Kind.metric_options` (edges: maxDist 0.011 on NYUD,
    0.0075 on PASCAL, thinned). A registered task passes the options it was registered with
    (``{}`` for records older than these settings: the metric's defaults), so its numbers stay
    comparable.
    """
    kind = spec.info
    kwargs: dict[str, Any] = dict(kind.metric_options(dataset) if options is None else options)
    workers = edge_workers() if kind.matches_per_image else 0  # only then is LOCAL_WORLD_SIZE read
    return kind.build_metric(spec.out_channels(dataset), kwargs, workers=workers, cache=edge_cache,
                             thresholds=edge_thresholds)


def delta_m(results: Mapping[str, Any], references: Mapping[str, Any],
            higher_is_better: Mapping[str, bool] | None = None) -> float:
    """Delta_m in percent (:func:`ufl.metrics.delta_m`, same arguments) knowing the built-in tasks:
    a built-in task given as floats (``{"semseg": 40.0}``) takes the direction of its spec
    (``ufl.taskspec.builtin_specs``) unless ``higher_is_better`` gives one."""
    specs = builtin_specs()
    directions = {task: specs[task].higher_is_better for task, value in results.items()
                  if task in specs and not isinstance(value, Mapping)}
    return metrics_delta_m(results, references, {**directions, **(higher_is_better or {})})


def resize_logits(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Logits or regression maps (B, C, h, w) -> (B, C, H, W) float32, bilinear with
    ``align_corners=False`` (pixel centres, as OpenCV's ``INTER_LINEAR``); unchanged when already
    that size."""
    return resize(logits.float(), size)


class OriginalSizeDataset(Dataset):
    """Items of ``dataset`` (built without a transform) for evaluation at the original size: the
    image resized to ``size`` = ``(H, W)`` (bilinear, antialiased, as every other pipeline of
    ``ufl``), every target untouched at the image's own size, and ``"orig_size"`` ``[H0, W0]``.
    Batch it with :func:`collate_original_size`."""

    def __init__(self, dataset, size: Sequence[int]):
        self.dataset = dataset
        self.size = (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        meta = sample.pop("meta", {})
        original = meta.get("orig_size", torch.tensor(sample["image"].shape[-2:]))
        from .datasets.transforms import resize  # torchvision: loaded on first use

        sample["image"] = resize({"image": sample["image"]}, {}, self.size)["image"]  # the image alone
        sample[ORIGINAL_SIZE] = torch.as_tensor(original, dtype=torch.int64)
        return sample


def collate_original_size(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``default_collate``, except that tensors whose last two dimensions differ between items
    (targets at each image's own size) are zero-padded at the bottom and right to the largest
    ``(H, W)`` of the batch; :func:`evaluate` crops each back with ``batch["orig_size"]``."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if (all(isinstance(v, torch.Tensor) and v.dim() >= 2 for v in values)
                and len({tuple(v.shape) for v in values}) > 1
                and len({tuple(v.shape[:-2]) for v in values}) == 1):
            height = max(v.shape[-2] for v in values)
            width = max(v.shape[-1] for v in values)
            out[key] = torch.stack([F.pad(v, (0, width - v.shape[-1], 0, height - v.shape[-2])) for v in values])
        else:
            out[key] = default_collate(values)
    return out


def _update(metric: Metric, kind: str, logits: torch.Tensor, target: torch.Tensor,
            sizes: torch.Tensor | None, activation: str | None = None) -> None:
    """Add one batch to ``metric``: at the working size, or image by image at the original size."""
    if sizes is None:
        metric.update(postprocess(kind, logits, activation), target)
        return
    for i, (height, width) in enumerate(sizes.tolist()):
        if height > target.shape[-2] or width > target.shape[-1]:
            raise ValueError(f"original size {height}x{width} of image {i} exceeds its target "
                             f"({target.shape[-2]}x{target.shape[-1]})")
        prediction = postprocess(kind, resize_logits(logits[i:i + 1], (height, width)), activation)
        metric.update(prediction, target[i:i + 1, ..., :height, :width])


@torch.no_grad()
def evaluate(predict: Callable[[Any], Mapping[str, torch.Tensor]], loader: Iterable,
             specs: Mapping[str, TaskSpec], dataset: str, device: torch.device,
             precision: Precision | None = None, edge_thresholds: int | None = None,
             desc: str = "evaluate", progress: bool = True,
             metric_options: Mapping[str, Mapping[str, Any]] | None = None,
             with_details: bool = False,
             edge_cache: str | os.PathLike | None = None,
             activations: Mapping[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Run ``predict(batch) -> {task: logits}`` over ``loader``.

    Without ``batch["orig_size"]`` the logits must be at the targets' size (working resolution).
    With it (see :class:`OriginalSizeDataset`), each image's logits are resized to its original
    size and compared with its target cropped to that size (the module docstring).
    ``metric_options``: per task, the metric's keyword arguments (see :func:`make_metric`).

    ``edge_cache``: a folder of per-image edge counts (:mod:`ufl.evalcache`) to reuse and fill.
    ``activations``: per task, the output activation its head was trained with
    (:func:`ufl.outputs.recorded_activation`); a task not in it gets its kind's current one.

    Returns ``{task: {metric: value}}`` for every task of ``specs``, pooled over the whole split
    (and over all processes under torchrun); with ``with_details`` each task's dict also holds
    ``"details"``: :meth:`ufl.metrics.Metric.details` (e.g. per-class IoU).
    """
    options = metric_options or {}
    metrics = {name: make_metric(spec, dataset, edge_thresholds, edge_cache, options=options.get(name))
               for name, spec in specs.items()}
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, unit="batch",
               disable=progress_disable(progress and distributed.is_main()))
    for batch in bar:
        batch = move_to_device(batch, device, non_blocking=device.type == "cuda")
        if precision is not None:
            with precision.autocast():
                outputs = predict(batch)
        else:
            outputs = predict(batch)
        sizes = batch.get(ORIGINAL_SIZE) if isinstance(batch, Mapping) else None
        for name, metric in metrics.items():
            _update(metric, specs[name].kind, outputs[name], batch[name], sizes, (activations or {}).get(name))
    results = {}
    for name, metric in metrics.items():
        if distributed.is_distributed():
            metric.load_state({k: distributed.all_reduce_sum(v) for k, v in metric.state().items()})
        results[name] = metric.compute()
        if with_details:
            results[name]["details"] = metric.details()
    return results
