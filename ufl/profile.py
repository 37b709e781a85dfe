"""Model cost against the number of tasks: parameters and inference GFLOPs.

Medusa's heads are independent, so its cost grows linearly with the number of tasks; MTI-Net's
multi-modal distillation has a block for every ordered pair of tasks and its feature propagation
modules widen with the number of tasks, so its cost grows quadratically (DESIGN.md section 3).

Models are built on PyTorch's ``meta`` device: shapes only, no memory for weights and no arithmetic,
so even an 8-task MTI-Net at 480x640 is profiled in seconds on a CPU.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from .errors import UflError
from .models import DEFAULT_BACKBONE, MODELS, Backbone, build_model

__all__ = ["profile_models", "task_set", "count_parameters", "count_gflops", "format_table",
           "NYUD_TASKS", "PROFILED_MODELS", "POSTER_MODELS"]

#: The first tasks of a profile: NYUD's four, in the order of the reference tables.
NYUD_TASKS: tuple[tuple[str, int], ...] = (("semseg", 40), ("depth", 1), ("normals", 3), ("edges", 1))
#: Output channels of the generic tasks added beyond NYUD's four (an 8-class segmentation each).
EXTRA_TASK_CHANNELS = 8
PROFILED_MODELS = ("medusa", "mt-baseline", "mti-net")
#: Every multi-task model of the poster's tables.
POSTER_MODELS = ("medusa", "mt-baseline", "mtan", "pad-net", "mti-net")


def task_set(n: int, channels: Sequence[int] | None = None) -> dict[str, int]:
    """The first ``n`` profiling tasks {name: output channels}.

    Default: NYUD semseg (40), depth (1), normals (3), edges (1), then ``extra5``, ``extra6``, ...
    with 8 classes each. ``channels`` replaces that list (tasks ``task1``..``taskN``), e.g. ``[1] * 8``
    to see the cost of identical tasks.
    """
    if n < 1:
        raise UflError(f"the number of tasks must be at least 1, got {n}")
    if channels is not None:
        if len(channels) < n:
            raise UflError(f"{n} tasks asked for but only {len(channels)} output channel counts given")
        return {f"task{i + 1}": int(channels[i]) for i in range(n)}
    tasks = dict(NYUD_TASKS[:n])
    for i in range(len(tasks), n):
        tasks[f"extra{i + 1}"] = EXTRA_TASK_CHANNELS
    return tasks


def count_parameters(model: torch.nn.Module) -> int:
    """All parameters, trainable or not."""
    return int(sum(p.numel() for p in model.parameters()))


def count_gflops(model: torch.nn.Module, size: tuple[int, int], device: str | torch.device = "meta") -> float:
    """Inference GFLOPs of ``model`` on one (1, 3, H, W) image, in eval mode.

    Counted by ``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products only
    (not BatchNorm, activations, interpolation or softmax), and **a multiply-add counts as 2 FLOPs**.
    GFLOPs = FLOPs / 1e9.
    """
    model.eval()
    images = torch.zeros(1, 3, *size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)
    return counter.get_total_flops() / 1e9


def profile_models(task_counts: Sequence[int] = (1, 2, 4, 8), backbone: str = DEFAULT_BACKBONE,
                   size: tuple[int, int] = (480, 640), models: Sequence[str] = PROFILED_MODELS,
                   task_channels: Sequence[int] | None = None, aux: Sequence[str] = ()) -> dict[str, Any]:
    """Parameters and inference GFLOPs (batch 1, eval mode) of each model for each task count.

    Each model is counted as built: with ``aux`` (e.g. ``("normals", "edges")``, the "+N,E"
    setting), those tasks of the task set are auxiliary, which PAD-Net and MTI-Net build without a
    final head and the other models with their own head (:func:`ufl.models.build_model`).

    Args:
        task_counts: numbers of tasks n; the tasks are :func:`task_set` (n).
        backbone: timm backbone name (randomly initialised: weights do not change the cost).
        size: input (H, W).
        models: registered model names (``ufl.models.MODELS``).
        task_channels: output channels per task, replacing the default task set.
        aux: task names that are auxiliary wherever they are in a task set (a set made only of
            auxiliary tasks is an error).

    Returns:
        ``{"backbone": str, "size": [H, W], "aux": [names], "rows": [{"model": str, "tasks": n,
        "params": int, "gflops": float}], "pyramid": None | {...}}`` with rows ordered by model, then
        task count; ``tasks`` counts auxiliary tasks too; ``pyramid`` is the cost of a plain ViT's
        feature pyramid against its trunk (:func:`ufl.models.pyramid.pyramid_cost`). GFLOPs count a
        multiply-add as 2 FLOPs (see :func:`count_gflops`).
    """
    for name in models:
        MODELS.get(name)  # an unknown name fails before any work
    if len(size) != 2 or min(size) < 32:
        raise UflError(f"profile size must be H x W with both at least 32 pixels, got {tuple(size)}")
    known = {t for n in task_counts for t in task_set(int(n), task_channels)}
    stray = [t for t in aux if t not in known]
    if stray:
        raise UflError(f"auxiliary task(s) {stray} are in none of the profiled task sets "
                       f"(tasks: {', '.join(sorted(known))})")
    rows = []
    for name in models:
        for n in task_counts:
            tasks = task_set(int(n), task_channels)
            if name == "single-task" and len(tasks) != 1:
                raise UflError("the single-task model takes exactly one task; profile it with --tasks 1")
            model, device = _build_shapes_only(name, backbone, tasks, [t for t in aux if t in tasks])
            rows.append({"model": name, "tasks": int(n), "params": count_parameters(model),
                         "gflops": count_gflops(model, tuple(size), device)})
    return {"backbone": backbone, "size": [int(size[0]), int(size[1])], "aux": list(aux), "rows": rows,
            "pyramid": _pyramid_cost(backbone, tuple(size))}


def _pyramid_cost(backbone: str, size: tuple[int, int]) -> dict[str, Any] | None:
    from .models.pyramid import is_plain_vit, pyramid_cost

    if not is_plain_vit(backbone):
        return None
    with torch.device("meta"):
        return pyramid_cost(Backbone(backbone, warn_random_init=False), size)


def _build_shapes_only(name: str, backbone: str, tasks: dict[str, int],
                       aux: Sequence[str] = ()) -> tuple[torch.nn.Module, str]:
    """Build on the meta device; a backbone whose construction needs real tensors falls back to CPU."""
    try:
        with torch.device("meta"):
            return build_model(name, Backbone(backbone, warn_random_init=False), tasks, aux=aux), "meta"
    except (NotImplementedError, RuntimeError):
        return build_model(name, Backbone(backbone, warn_random_init=False), tasks, aux=aux), "cpu"


def format_table(result: dict[str, Any]) -> str:
    """A readable table of :func:`profile_models`' result."""
    h, w = result["size"]
    aux = f", auxiliary: {', '.join(result['aux'])}" if result.get("aux") else ""
    lines = [f"backbone {result['backbone']}, input {h}x{w}, batch 1, inference (GFLOPs: multiply-add = 2){aux}",
             f"{'model':<14}{'tasks':>6}{'params (M)':>12}{'GFLOPs':>10}"]
    for row in result["rows"]:
        lines.append(f"{row['model']:<14}{row['tasks']:>6}{row['params'] / 1e6:>12.2f}{row['gflops']:>10.2f}")
    pyramid = result.get("pyramid")
    if pyramid:
        lines.append(f"feature pyramid (blocks {pyramid['blocks']}, channels {pyramid['channels']}): "
                     f"{pyramid['pyramid_params'] / 1e6:.2f} M params, {pyramid['pyramid_gflops']:.2f} GFLOPs "
                     f"on a trunk of {pyramid['trunk_params'] / 1e6:.2f} M params, {pyramid['trunk_gflops']:.2f} GFLOPs")
    return "\n".join(lines)
