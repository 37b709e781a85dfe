"""``ufl export``: the frozen backbone and chosen heads as one ONNX graph, checked against PyTorch.

The graph takes ``images`` (B, 3, H, W) float32 RGB in [0, 1] (the backbone normalises them itself,
as in PyTorch) and has one output per task, named after the task: the head's logits resized
(bilinear) to (H, W), exactly ``MedusaHead(features, out_size=(H, W))["out"]`` in eval mode: class
logits for segmentation (argmax them), unnormalised normals (L2-normalise them), logits for saliency
and edges (sigmoid them); depth in metres: that raw output through the activation the head's record
names (:func:`ufl.outputs.recorded_activation`: softplus, identity for a head registered before it);
see :func:`ufl.evaluation.postprocess`. The backbone
runs once and feeds every head.

NOTE: every head is exported (and checked) in float32, whatever precision its record names: a head
registered with ``--precision bf16`` (or fp16) gives float32 outputs here, which differ from ``ufl
predict``'s and ``ufl serve``'s by that precision's rounding.

Exported with PyTorch's ``torch.export``-based exporter (``torch.onnx.export(dynamo=True)``, which
needs ``onnxscript``; the TorchScript exporter fixes resize sizes to the traced example). Without
``dynamic`` the batch and size are those of the check images (the tasks' training size); with it the
batch and the image sides (multiples of 32) are symbolic.

After writing, the graph is run with onnxruntime on the first images of the tasks' dataset's val
split (with ``dynamic``, also on one of them at another size and batch) and compared with PyTorch: the export passes when, for every output, ``max |onnx - torch| <=
1e-4 * max(1, max |torch|)`` (a relative bound for large outputs: a randomly initialised HRNet
produces features around 1e4, where float32 itself resolves only ~1e-3).
"""

from __future__ import annotations

import copy
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .errors import UflError, WorkspaceError
from .io import atomic_path
from .outputs import activate, recorded_activation

__all__ = ["ExportGraph", "export_onnx", "ExportResult", "TOLERANCE", "check_onnx", "build_graph"]

log = logging.getLogger(__name__)

#: Bound of the PyTorch/onnxruntime comparison, relative to max(1, the output's largest magnitude).
TOLERANCE = 1e-4
#: ONNX opset of the exported graph.
OPSET = 18


class ExportGraph(nn.Module):
    """Backbone once, then every head: ``forward(images) -> tuple`` of (B, C_t, H, W), in ``tasks`` order."""

    def __init__(self, backbone: nn.Module, heads: dict[str, nn.Module],
                 activations: dict[str, tuple[str, str]] | None = None):
        super().__init__()
        self.backbone = backbone
        self.tasks = list(heads)
        self.heads = nn.ModuleDict(heads)
        #: per task ``(kind, recorded output activation)`` (depth: softplus or identity, ufl.outputs)
        self.activations = dict(activations or {})

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.backbone(images)
        size = images.shape[-2:]
        outs = []
        for t in self.tasks:
            out = self.heads[t](features, out_size=size)["out"]
            if t in self.activations:
                out = activate(self.activations[t][0], out, self.activations[t][1])
            outs.append(out)
        return tuple(outs)


@dataclass
class ExportResult:
    """What ``ufl export`` wrote and how well onnxruntime agrees with PyTorch."""

    path: Path
    tasks: list[str]
    size: list[int]
    dynamic: bool
    check_images: int
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    max_rel_diff: dict[str, float] = field(default_factory=dict)
    passed: bool = True
    seconds: float = 0.0
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def build_graph(ws, tasks: Sequence[str] | None = None) -> tuple[ExportGraph, tuple[int, int]]:
    """The workspace's backbone and heads of ``tasks`` (default: all) as one float32 CPU module in
    eval mode, and the input size the tasks were trained at."""
    names = list(ws.tasks) if not tasks else list(tasks)
    if not names:
        raise WorkspaceError(f"no tasks registered in {ws.root}; add one with `ufl add-task NAME` before exporting")
    sizes = {name: tuple(ws.task(name)["eval"]["size"]) for name in names}  # also checks the names
    if len(set(sizes.values())) > 1:
        raise UflError(f"the tasks were trained at different input sizes ({sizes}); export each size with "
                       f"--tasks, or use --dynamic")
    backbone = copy.deepcopy(ws.backbone("cpu")).to(memory_format=torch.contiguous_format).float().eval()
    heads = {name: ws.head(name, "cpu").float().eval() for name in names}
    activations = {name: (ws.spec(name).kind, recorded_activation(ws.task(name))) for name in names}
    return ExportGraph(backbone, heads, activations).eval(), next(iter(sizes.values()))


def _check_images(ws, tasks: Sequence[str], size: tuple[int, int], count: int) -> torch.Tensor:
    """The first ``count`` val images of the first task's dataset at ``size`` (B, 3, H, W) in [0, 1]."""
    from .workspace.cache import dataset_specs, open_split, resolve_data
    from .workspace.views import ViewDataset

    dataset = ws.task(tasks[0])["dataset"]
    folder, size = resolve_data(ws, dataset, None, None, size)
    rows = ViewDataset(open_split(ws, dataset, "val", folder, dataset_specs(ws, dataset, None)), 1, size)
    if len(rows) == 0:
        raise UflError(f"the {dataset} val split in {folder} has no images to check the export on")
    return torch.stack([rows[i]["image"] for i in range(min(count, len(rows)))])


def check_onnx(path: str | os.PathLike, graph: ExportGraph, images: torch.Tensor) -> tuple[dict, dict]:
    """Run ``path`` with onnxruntime and ``graph`` with PyTorch on ``images``: per task the largest
    absolute difference and that difference over max(1, max |torch|)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        torch_out = graph(images)
    abs_diff, rel_diff = {}, {}
    for name, got, ref in zip(graph.tasks, onnx_out, torch_out):
        ref = ref.numpy()
        if got.shape != ref.shape:
            raise UflError(f"ONNX output {name!r} has shape {got.shape}, PyTorch {ref.shape}; the export is wrong")
        diff = float(np.abs(got - ref).max())
        abs_diff[name] = diff
        rel_diff[name] = diff / max(1.0, float(np.abs(ref).max()))
    return abs_diff, rel_diff


def export_onnx(ws, out: str | os.PathLike, *, tasks: Sequence[str] | None = None, dynamic: bool = False,
                check: int = 4) -> ExportResult:
    """Write ``ws``'s backbone and the heads of ``tasks`` (default: all) to ``out`` as one ONNX graph.

    ``check`` val images (0: no check) are run through onnxruntime and PyTorch; a difference above
    :data:`TOLERANCE` (relative, see the module docstring) is a :class:`UflError` and the file is not
    kept. The file is written atomically (temp name, then rename). Heads are exported in float32
    whatever their recorded ``precision`` (see the module docstring).
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise UflError(f"ufl export needs onnx, onnxscript and onnxruntime ({e.name} is missing); "
                       f"pip install 'ufl[export]'") from None
    started = time.perf_counter()
    graph, size = build_graph(ws, tasks)
    out = Path(out)
    if out.suffix != ".onnx":
        raise UflError(f"--out {out}: give a file name ending in .onnx")
    images = _check_images(ws, graph.tasks, size, check) if check > 0 else torch.rand(1, 3, *size)
    example = images[:2] if dynamic and len(images) >= 2 else images
    if dynamic and len(example) < 2:  # a batch of 1 would be specialised by torch.export
        example = torch.cat([example, example])
    dynamic_shapes = None
    if dynamic:
        batch = torch.export.Dim("batch", min=1, max=1024)
        rows = torch.export.Dim("rows32", min=1, max=256)
        cols = torch.export.Dim("cols32", min=1, max=256)
        dynamic_shapes = ({0: batch, 2: 32 * rows, 3: 32 * cols},)
    with atomic_path(out, suffix=".onnx") as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, (example,), dynamo=True, input_names=["images"],
                                        output_names=list(graph.tasks), dynamic_shapes=dynamic_shapes,
                                        opset_version=OPSET, external_data=False, verbose=False)
            program.save(str(tmp), external_data=False)
        result = ExportResult(path=out, tasks=list(graph.tasks), size=list(size), dynamic=dynamic,
                              check_images=len(images) if check > 0 else 0)
        if check > 0:
            result.max_abs_diff, result.max_rel_diff = check_onnx(tmp, graph, images)
            if dynamic:  # the symbolic size must hold at another batch and size than the example's
                other = torch.nn.functional.interpolate(images[:1], size=(size[0] + 32, size[1] + 64),
                                                        mode="bilinear", align_corners=False)
                more_abs, more_rel = check_onnx(tmp, graph, other)
                result.max_abs_diff = {t: max(v, more_abs[t]) for t, v in result.max_abs_diff.items()}
                result.max_rel_diff = {t: max(v, more_rel[t]) for t, v in result.max_rel_diff.items()}
            result.passed = all(v <= TOLERANCE for v in result.max_rel_diff.values())
            if not result.passed:
                worst = max(result.max_rel_diff, key=result.max_rel_diff.get)
                raise UflError(f"the ONNX graph disagrees with PyTorch on {worst!r} (max difference "
                               f"{result.max_abs_diff[worst]:.3g}, {result.max_rel_diff[worst]:.3g} relative > "
                               f"{TOLERANCE}); {out} was not written (run with --debug and report it)")
        result.bytes = tmp.stat().st_size
    result.seconds = round(time.perf_counter() - started, 2)
    log.info("exported %s (%d task(s)) to %s", ", ".join(result.tasks), len(result.tasks), out)
    return result
