"""``ufl evaluate``: every registered task on its own dataset's val split.

Each task is evaluated exactly as it was when it was registered: its head (file checked against
its hash) on the features of the workspace's val cache of its dataset (or, when that cache is gone,
the same features computed online through :func:`ufl.workspace.views.backbone_features`), with the
protocol metrics of :mod:`ufl.metrics`. ``drift`` is the largest absolute difference between the
metrics now and at registration: the backbone and every other head are frozen, so it is 0.0.

How a task is evaluated is part of its registration record (``record["eval"]``), so that its
metrics stay comparable: ``resolution`` (``"original"``: each val image's own size, the benchmark's;
``"working"``: the cache's input size; records without it were made at the working size) and
``metric_options`` (the metric's settings fixed per dataset, e.g. the edge matching distance;
records without it use the metric's defaults). See :func:`eval_protocol`.

Evaluation results are kept in ``WORKSPACE/eval-cache/`` (safe to delete at any time):
``edges/`` holds per-image edge counts (:class:`ufl.evalcache.CountCache`), ``metrics/`` each
task's metrics (:class:`ufl.evalcache.MetricsCache`) under :func:`metrics_key`, so a second
evaluation of an unchanged task runs neither its head nor its metric. ``cache=False`` (``ufl
evaluate --no-cache``) reads and writes neither.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch.utils.data import DataLoader

from ..datasets.catalog import metric_options as dataset_metric_options
from ..errors import CacheError, UflError
from ..evaluation import (ORIGINAL_SIZE, OriginalSizeDataset, check_resolution, collate_original_size,
                          evaluate)
from ..io import json_safe
from ..metrics import delta_m
from ..outputs import recorded_activation
from ..runtime import Precision, cudnn_exact, named_precision, resolve_device, torch_threads
from ..taskspec import TaskSpec
from ..trivial import PriorPredictor
from .cache import (ORIGINAL_SIZE_TARGET, dataset_specs, has_original_targets, open_split, original_targets,
                    resolve_data)
from .targets import open_cache
from .views import ViewDataset, backbone_features  # light: the transforms load when a view is made

__all__ = ["evaluate_tasks", "task_metrics", "trivial_metrics", "Evaluation", "drift", "eval_threads",
           "eval_protocol", "recorded_protocol", "evaluation_table", "plot_evaluation", "format_all_metrics",
           "check_val_cache", "head_precision", "metrics_key", "EDGE_CACHE", "METRICS_CACHE",
           "METRICS_CODE_VERSION"]

log = logging.getLogger(__name__)

#: Per-image edge counts of this workspace's evaluations (ufl.evalcache), relative to its root.
EDGE_CACHE = "eval-cache/edges"
#: Per-task metrics of this workspace's evaluations (ufl.evalcache.MetricsCache), relative to its root.
METRICS_CACHE = "eval-cache/metrics"
#: Part of every :func:`metrics_key`: bump it when a change of the evaluation or metric code changes
#: metrics in a way the source digest of :func:`_evaluation_code` cannot see (e.g. a data file).
METRICS_CODE_VERSION = 1


@dataclass
class Evaluation:
    """Results of ``ufl evaluate``: per task its dataset, metrics now, metrics at registration and
    drift; ``delta_m`` against references when given."""

    tasks: dict[str, dict[str, Any]]
    delta_m: float | None
    #: per task: True when its metrics were read from the eval cache (not part of the JSON contract)
    cached: dict[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of DESIGN.md section 2 (NaN -> null)."""
        return json_safe({"tasks": self.tasks, "delta_m": self.delta_m})


def drift(now: Mapping[str, float], registered: Mapping[str, float]) -> float:
    """Largest absolute difference over the registered metrics (NaN on both sides counts as equal)."""
    worst = 0.0
    for key, before in registered.items():
        after = now.get(key, float("nan"))
        if before is None or (isinstance(before, float) and math.isnan(before)):
            before = float("nan")
        if math.isnan(before) and math.isnan(after):
            continue
        worst = max(worst, abs(after - before)) if not (math.isnan(before) or math.isnan(after)) else float("inf")
    return worst


def eval_threads(device: str | torch.device) -> int | None:
    """The CPU threads a registration computes its metrics with (recorded in the task's ``eval``
    record, so that every later evaluation on the CPU uses as many); None on a GPU."""
    return torch.get_num_threads() if resolve_device(device).type == "cpu" else None


def eval_protocol(ws, spec: TaskSpec, dataset: str, resolution: str = "original") -> dict[str, Any]:
    """How a task registered now is evaluated: ``{"resolution", "metric_options"}`` for its
    ``record["eval"]`` and for :func:`task_metrics`.

    ``resolution="original"`` falls back to ``"working"`` (with a warning) when the workspace's val
    cache of ``dataset`` was written before val caches kept the original-size targets; re-cache it
    (``ufl cache-features --dataset D --split val --overwrite --force``) to evaluate at the original size.
    """
    check_resolution(resolution)
    cache = ws.find_cache(dataset, "val", 1)
    if resolution == "original" and cache is not None and not has_original_targets(ws.cache_path(cache), [spec.name]):
        log.warning("the %s/val cache has no original-size targets (written by an older ufl): %s is evaluated "
                    "at the working size; re-cache it with `ufl cache-features --dataset %s --split val "
                    "--overwrite --force` (its working-size targets stay the same) to evaluate at the original size",
                    dataset, spec.name, dataset)
        resolution = "working"
    return {"resolution": resolution, "metric_options": dataset_metric_options(dataset, spec.kind)}


def recorded_protocol(record: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation protocol a registration ``record`` was measured with (see :func:`eval_protocol`);
    records older than these settings: working resolution, the metric's default options."""
    evaluation = record.get("eval", {})
    return {"resolution": evaluation.get("resolution", "working"),
            "metric_options": dict(evaluation.get("metric_options", {}))}


class _OriginalFromCache(torch.utils.data.Dataset):
    """Val-cache rows of ``target`` at the original size: its original-size ground truth under its
    own name, and ``orig_size``; a CacheError when the cache keeps no original sizes."""

    def __init__(self, ws, cache: Mapping[str, Any], target: str):
        path = ws.cache_path(cache)
        found = original_targets(path, [target])
        if found is None:
            raise CacheError(f"the val cache {path} holds no original-size targets of {target}; re-cache it with "
                             f"`ufl cache-features --split val --overwrite --force`, or evaluate online")
        self.key, self.target = found[target], target
        self.rows = open_cache(ws, cache, [self.key, ORIGINAL_SIZE_TARGET])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.rows[index]
        item[self.target] = item.pop(self.key)
        item[ORIGINAL_SIZE] = item.pop(ORIGINAL_SIZE_TARGET)
        return item
def head_precision(name: str | None, device: torch.device) -> Precision:
    """How a registered head runs: its record's ``precision`` (absent, as in records written before
    the key existed: ``fp32``). A float16 head (trained on a GPU) runs in float32 on the CPU, which
    has no float16 autocast worth using; its metrics then differ by float rounding, as any head's
    do between a GPU and the CPU."""
    name = name or "fp32"
    if name == "fp16" and device.type != "cuda":
        log.info("a float16 (GPU) head runs in float32 on the CPU: its metrics differ by float rounding")
        name = "fp32"
    return named_precision(name, device)


@torch.no_grad()
def task_metrics(ws, name: str, spec: TaskSpec, dataset: str, head, *, device: str | torch.device = "auto",
                 batch_size: int = 16, edge_thresholds: int | None = None, progress: bool = True,
                 online: bool | None = None, threads: int | None = None, resolution: str = "working",
                 metric_options: Mapping[str, Any] | None = None, with_details: bool = False,
                 size: Sequence[int] | None = None, precision: str | None = None,
                 reuse_edges: bool = True, activation: str | None = None) -> dict[str, float]:
    """Metrics of one head on ``dataset``'s val split: from the val cache when there is one (or
    ``online=False``), else through the backbone (``online=True`` forces that); on the CPU with
    ``threads`` intra-op threads when given (see :func:`eval_threads`); online at ``size`` (the
    size the task was registered at) when given, else at the workspace's size for the dataset.
    With ``with_details`` the dict also holds ``"details"`` (see :func:`ufl.evaluation.evaluate`).
    The head runs under autocast of ``precision`` (``fp32`` | ``bf16`` | ``fp16``, see
    :func:`head_precision`; the backbone's features are the cache's either way). With
    ``reuse_edges`` per-image edge counts are kept in ``WORKSPACE/eval-cache/edges``
    (:data:`EDGE_CACHE`) and reused for unchanged predictions. ``activation``: the output activation
    the head was trained with (a registered task's :func:`ufl.outputs.recorded_activation`;
    ``None``: the kind's current one, for a head just trained).

    ``resolution``: ``"original"`` (each image's own size, from the val cache's original-size
    targets or the dataset's files online) or ``"working"`` (the cache's input size; the default,
    as records without a resolution were measured). ``metric_options``: the metric's settings
    (``None``: the dataset's, see :func:`ufl.evaluation.make_metric`). Pass a registered task's
    :func:`recorded_protocol` to measure it as it was registered.
    """
    device = resolve_device(device)
    original = check_resolution(resolution) == "original"
    target = spec.name  # the cache's target of the task (``name`` may be a registration alias)
    # A copy in the default memory format: registration (right after training, channels_last) and
    # every later evaluation (a head loaded from disk) then run the very same kernels.
    head = copy.deepcopy(head).to(device, memory_format=torch.contiguous_format).eval()
    autocast = head_precision(precision, device)
    cache = ws.find_cache(dataset, "val", 1)
    specs = {target: spec}
    # same numbers at registration and at every evaluation
    with cudnn_exact(), torch_threads(threads if device.type == "cpu" else None):
        if cache is not None and not online:
            working = tuple(cache["size"])
            data = _OriginalFromCache(ws, cache, target) if original else open_cache(ws, cache, [target])
            loader = DataLoader(data, batch_size=batch_size, shuffle=False)

            def predict(batch):
                with autocast.autocast():
                    return {target: head(batch["features"], out_size=working)["out"]}
        else:
            if online is False:
                raise ValueError(f"no {dataset}/val cache in {ws.root}")
            folder, size = resolve_data(ws, dataset, None, None, size)
            # the cache's task set, so dataset rules that depend on it (PASCAL parts' ignore rule) match
            base = open_split(ws, dataset, "val", folder, dataset_specs(ws, dataset, None))
            if original:
                loader = DataLoader(OriginalSizeDataset(base, size), batch_size=batch_size, shuffle=False,
                                    collate_fn=collate_original_size)
            else:
                loader = DataLoader(ViewDataset(base, 1, size), batch_size=batch_size, shuffle=False)
            backbone = ws.backbone(device)
            storage = (cache or {}).get("storage", "float16")

            def predict(batch):
                features = [f.float() for f in backbone_features(backbone, batch["image"], None, storage)]
                with autocast.autocast():
                    return {target: head(features, out_size=batch["image"].shape[-2:])["out"]}

        options = None if metric_options is None else {target: metric_options}
        return evaluate(predict, loader, specs, dataset, device, None, edge_thresholds, desc=f"evaluate {name}",
                        progress=progress, metric_options=options, with_details=with_details,
                        edge_cache=ws.root / EDGE_CACHE if reuse_edges else None,
                        activations=None if activation is None else {target: activation})[target]


def evaluate_tasks(ws, tasks: Sequence[str] | None = None, *, device: str = "auto",
                   references: Mapping[str, Any] | None = None, online: bool | None = None,
                   progress: bool = True, all_metrics: bool = False, cache: bool = True) -> Evaluation:
    """Evaluate ``tasks`` (default: every registered task); ``references`` ({task: value or
    {metric: value}}, e.g. single-task results) give Delta_m over the tasks they cover.

    ``cache``: a task evaluated on its val cache whose :func:`metrics_key` has an entry in
    ``WORKSPACE/eval-cache/metrics`` (:data:`METRICS_CACHE`) gets the stored metrics (its head file
    still checked against its hash) without running the head; otherwise it is evaluated (edge
    counts reused from :data:`EDGE_CACHE`) and the entry written. ``cache=False`` recomputes
    everything (edge counts too) and writes nothing to either cache. Online evaluation
    (``online=True``) is never cached. :attr:`Evaluation.cached` says which tasks were read.

    With ``all_metrics`` each task's result also holds ``"per_class"``: ``{figure: {class name:
    value}}`` (segmentation: ``{"IoU": {class: IoU %}}``, names from
    :data:`ufl.datasets.catalog.MetadataCatalog`; ``{}`` for kinds without per-class figures).
    """
    registered = ws.tasks
    names = list(registered) if tasks is None else list(tasks)
    for name in names:
        ws.task(name)  # one clear error for an unknown name
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        if not online:
            check_val_cache(ws, name, registered[name])
    from ..evalcache import MetricsCache

    memo = MetricsCache(ws.root / METRICS_CACHE) if cache and not online else None
    cached: dict[str, bool] = {}
    for name in names:
        record = registered[name]
        spec = ws.spec(name)
        evaluation = record.get("eval", {})
        key = metrics_key(ws, name, record, device) if memo is not None else None
        entry = memo.get(key) if key is not None else None
        if entry is not None:
            ws.checked_head_file(name, record)  # the key trusts the recorded hash: the file must match it
            metrics, details = dict(entry["metrics"]), entry["details"]
            log.info("%s: metrics read from the eval cache (%s)", name, memo.root)
        else:
            metrics = task_metrics(ws, name, spec, record["dataset"], ws.head(name, "cpu"), device=device,
                                   batch_size=evaluation.get("batch_size", 16), progress=progress, online=online,
                                   threads=evaluation.get("threads"), with_details=all_metrics or key is not None,
                                   size=evaluation.get("size"), precision=record.get("precision"),
                                   activation=recorded_activation(record), reuse_edges=cache,
                                   **recorded_protocol(record))
            details = metrics.pop("details", None)
            if key is not None:
                memo.put(key, metrics, details)
        cached[name] = entry is not None
        results[name] = {"dataset": record["dataset"], "metrics": metrics, "registered": record["registered"],
                         "drift": drift(metrics, record["registered"])}
        if all_metrics:
            results[name]["per_class"] = _per_class(details or {}, spec, record["dataset"], name)
    score = None
    if references:
        covered = {n: {ws.spec(n).metric: r["metrics"][ws.spec(n).metric]} for n, r in results.items() if n in references}
        if covered:
            score = delta_m(covered, {n: references[n] for n in covered},
                            higher_is_better={n: ws.spec(n).higher_is_better for n in covered})
    if memo is not None:
        memo.prune()
    return Evaluation(results, score, cached)


@functools.lru_cache(maxsize=None)
def _evaluation_code() -> str:
    """Digest of what turns a head and a val cache into metrics besides the data: :data:`METRICS_CODE_VERSION`,
    ``ufl.__version__``, the versions of the numeric libraries (torch, numpy, scipy, scikit-image,
    pyEdgeEval, h5py) and the source of the evaluation, metric, output and model code."""
    from importlib import metadata

    import ufl

    h = hashlib.sha256(f"{METRICS_CODE_VERSION}|{ufl.__version__}|".encode())
    for package in ("torch", "numpy", "scipy", "scikit-image", "pyEdgeEval", "h5py"):
        try:
            h.update(f"{package}={metadata.version(package)}|".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{package}=?|".encode())
    here = Path(ufl.__file__).parent
    sources = [*sorted((here / "metrics").glob("*.py")), here / "evaluation.py", here / "outputs.py", here / "runtime.py",
               Path(__file__), *sorted((here / "models").glob("*.py"))]
    for path in sources:
        h.update(f"{path.relative_to(here)}|".encode())
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"?")
    return h.hexdigest()


def metrics_key(ws, name: str, record: Mapping[str, Any], device: str | torch.device = "auto") -> str | None:
    """The key of task ``name``'s metrics in the eval cache (:data:`METRICS_CACHE`), a SHA-256 hex
    digest of everything they depend on: the head file's recorded sha256 (the file is checked against
    it before an entry is used), the task's spec and dataset, its whole ``eval`` record (size, batch
    size, threads, ``resolution``, ``metric_options``), its precision and output activation, the
    device kind (and the GPU's name), the CPU threads used when none are recorded, the backbone
    fingerprint, the content id of each val-cache file it reads (:func:`ufl.evalcache.cache_content_id`)
    and the code (:func:`_evaluation_code`). None (not cached) when the task has no val cache or a
    file of it has no checksums (format version 1).

    NOTE: what the key trusts: the recorded head hash (checked against the file on every use), and
    the val cache's stored per-row checksums and attributes rather than its bytes (hashing gigabytes
    on every call would cost what the cache saves); every row read checks its checksum, ``ufl
    doctor`` checks them all.
    """
    from ..evalcache import cache_content_id
    from .targets import target_path

    cache = ws.find_cache(record["dataset"], "val", 1)
    if cache is None:
        return None
    target = record["spec"]["name"]
    files = [ws.cache_path(cache)]
    if target not in cache["tasks"] and target in cache.get("targets", {}):
        files.append(target_path(ws, cache, target))  # as open_cache reads it
    contents = [cache_content_id(path) for path in files]
    if any(c is None for c in contents):
        return None
    device = resolve_device(device)
    evaluation = dict(record.get("eval", {}))
    threads = evaluation.get("threads")
    parts = {
        "code": _evaluation_code(), "head_sha256": record["head_sha256"], "spec": record["spec"],
        "dataset": record["dataset"], "eval": evaluation, "protocol": recorded_protocol(record),
        "precision": record.get("precision"), "activation": recorded_activation(record),
        "device": device.type, "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": (threads if threads is not None else torch.get_num_threads()) if device.type == "cpu" else None,
        "fingerprint": ws.fingerprint, "val_cache": contents,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()


def check_val_cache(ws, name: str, record: Mapping[str, Any]) -> None:
    """Refuse (:class:`CacheError`) to evaluate task ``name`` on a val cache of another input size or
    backbone fingerprint than it was registered with: its metrics would not be comparable."""
    dataset = record["dataset"]
    cache = ws.find_cache(dataset, "val", 1)
    if cache is None:
        return  # evaluated online, at the registered size
    registered_size = [int(v) for v in record["eval"]["size"]]
    fix = (f"re-cache it as registered (`ufl cache-features --dataset {dataset} --split val --size "
           f"{registered_size[0]}x{registered_size[1]} --overwrite --force`), or re-register the task "
           f"(`ufl add-task {name} --replace`)")
    if [int(v) for v in cache["size"]] != registered_size:
        raise CacheError(f"the {dataset}/val cache ({ws.cache_path(cache)}) is at {cache['size'][0]}x{cache['size'][1]} "
                         f"but task {name!r} was registered at {registered_size[0]}x{registered_size[1]}; {fix}")
    for fingerprint in (cache.get("fingerprint"), record.get("fingerprint")):
        if fingerprint is not None and fingerprint != ws.fingerprint:
            raise CacheError(f"the {dataset}/val cache ({ws.cache_path(cache)}) or task {name!r} comes from another "
                             f"backbone (fingerprint {str(fingerprint)[:12]}) than workspace {ws.root} "
                             f"({ws.fingerprint[:12]}); {fix}")


def _per_class(details: Mapping[str, list[float]], spec: TaskSpec, dataset: str, name: str) -> dict[str, dict]:
    """``{figure: [value per class]}`` -> ``{figure: {class name: value}}`` with the catalogue's names."""
    if not details:
        return {}
    from ..datasets.catalog import MetadataCatalog

    classes = spec.out_channels(dataset)
    key = (dataset, spec.name) if (dataset, spec.name) in MetadataCatalog else (dataset, name)
    names = MetadataCatalog.get(*key, num_classes=classes).class_names
    if len(names) != classes:
        names = tuple(f"class_{i}" for i in range(classes))
    return {figure: dict(zip(names, values)) for figure, values in details.items()}


@torch.no_grad()
def trivial_metrics(ws, name: str, batch_size: int = 16) -> dict[str, float]:
    """Val metrics of the prior predictor (majority class, mean depth, mean normal, positive rate)
    for a registered task, fitted on its dataset's train split: the floor a head must clear."""
    record = ws.task(name)
    spec, dataset = ws.spec(name), record["dataset"]
    target = spec.name
    train = ws.find_cache(dataset, "train")
    if train is not None:
        fit_on = open_cache(ws, train, [target])
    else:
        folder, size = resolve_data(ws, dataset, None, None, record["eval"]["size"])
        fit_on = ViewDataset(open_split(ws, dataset, "train", folder, dataset_specs(ws, dataset, None)), 1, size)
    prior = PriorPredictor({target: spec}, dataset).fit(DataLoader(fit_on, batch_size=batch_size))
    val = ws.find_cache(dataset, "val", 1)
    protocol = recorded_protocol(record)  # measured as the task's head is
    data = _OriginalFromCache(ws, val, target) if protocol["resolution"] == "original" else open_cache(ws, val, [target])
    return evaluate(prior, DataLoader(data, batch_size=batch_size), {target: spec}, dataset, torch.device("cpu"),
                    progress=False, metric_options={target: protocol["metric_options"]})[target]


def evaluation_table(ws, data: Mapping[str, Any], trivial: bool = True) -> tuple[dict, dict[str, bool]]:
    """``ufl evaluate``'s result (``Evaluation.to_dict()``) as :func:`ufl.viz.unit_figure`'s table:
    ``{unit: {task: {"ufl": headline, "trivial": the prior predictor's}}}`` and ``{task: higher is
    better}``. A task whose trivial predictor cannot be fitted (no train cache and no data) has
    no trivial bar (said in the log). A result that already holds ``"trivial"`` (the demo's) is used."""
    from ..viz import metric_unit

    table: dict[str, dict[str, dict[str, float]]] = {}
    directions: dict[str, bool] = {}
    for name, result in data["tasks"].items():
        spec = ws.spec(name)
        values = {"ufl": result["metrics"].get(spec.metric, float("nan"))}
        if trivial:
            prior = result.get("trivial")
            if prior is None:
                try:
                    prior = trivial_metrics(ws, name)
                except (UflError, OSError, KeyError, TypeError) as e:
                    log.info("no trivial baseline for %s (%s)", name, str(e).splitlines()[0] if str(e) else e)
            if prior is not None:
                values["trivial"] = prior.get(spec.metric, float("nan"))
        table.setdefault(metric_unit(spec.kind, spec.metric), {})[f"{name} {spec.metric}"] = values
        directions[f"{name} {spec.metric}"] = spec.higher_is_better
    return table, directions


def plot_evaluation(ws, data: Mapping[str, Any], path, *, title: str | None = None, trivial: bool = True):
    """``ufl evaluate --plot``: each task's headline metric beside the trivial predictor's, one axis
    per unit (:func:`ufl.viz.unit_chart`); returns the path."""
    from ..viz import unit_chart

    table, directions = evaluation_table(ws, data, trivial)
    return unit_chart(table, path, title=title, higher_is_better=directions)


def format_all_metrics(data: Mapping[str, Any]) -> str:
    """``ufl evaluate --all-metrics`` as text: per task every metric, then per-class figures."""
    lines = []
    for name, result in data["tasks"].items():
        metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, (int, float)) else f"{k} n/a"
                            for k, v in result["metrics"].items())
        lines.append(f"{name} ({result['dataset']}): {metrics}")
        for figure, values in (result.get("per_class") or {}).items():
            lines.append(f"  per-class {figure}: " + ", ".join(
                f"{cls} {v:.4g}" if isinstance(v, (int, float)) else f"{cls} n/a" for cls, v in values.items()))
    return "\n".join(lines)
