"""``ufl add-task``: train one Medusa head on cached features and register it.

The head (:class:`ufl.models.MedusaHead`: per-scale shared feature attention, deep-supervised
initial predictions, multi-scale attention head) trains on the workspace's cached features of the
dataset's train split (cached first when missing) with the reference schedule, is evaluated on the
val cache with the protocol metrics, and is saved on its own and registered with its spec, dataset,
backbone fingerprint, training settings and val metrics. Nothing else in the workspace changes, so
every earlier task keeps its exact predictions.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch.utils.data import DataLoader

from feature_cache import available_memory_bytes

from ..cfg import DEFAULTS
from ..datasets import DATASETS
from ..errors import CacheError, SpecError, WorkspaceError
from ..evaluation import EDGE_THRESHOLDS_QUICK
from ..io import json_safe
from ..losses import MultiTaskLoss
from ..models import build_head
from ..outputs import default_activation
from ..runtime import loader_kwargs, named_precision, precision_for, precision_name, resolve_device
from ..taskspec import TaskSpec, builtin_specs, check_task_name, resolve_spec
from ..training import Callback, Trainer, poly_lr
from ..training.callbacks import ProgressBar, Validation
from ..training.priors import start_at_prior
from .evaluate import eval_protocol, eval_threads, task_metrics
from .folders import is_folder, merge_specs, resolve_dataset
from .targets import cached_tasks, open_cache

__all__ = ["add_task", "AddTaskResult", "default_dataset", "HeadTrainingConfig"]

log = logging.getLogger(__name__)


@dataclass
class HeadTrainingConfig:
    """How a head is trained; the defaults are the reference schedule (DESIGN.md section 6,
    :data:`ufl.cfg.DEFAULTS`: ``head_epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``poly_power``,
    ``seed``). Adam; the learning rate at epoch e is ``lr * (1 - e / epochs) ** poly_power``."""

    epochs: int = DEFAULTS.head_epochs
    batch_size: int = DEFAULTS.batch_size
    lr: float = DEFAULTS.lr
    weight_decay: float = DEFAULTS.weight_decay
    seed: int = DEFAULTS.seed
    val_every: int | None = None
    head_options: dict[str, Any] = field(default_factory=dict)
    precision: str | None = None
    """``fp32`` | ``bf16`` | ``fp16`` (CUDA only, with a gradient scaler): the head's autocast in
    training and in every evaluation of it (registration, ``ufl evaluate``, ``predict``), recorded
    as the task's ``precision``. ``None``: training as the device does by default (AMP on CUDA,
    float32 on the CPU) and evaluation in float32 (``fp32``)."""
    poly_power: float = DEFAULTS.poly_power

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "weight_decay": self.weight_decay, "seed": self.seed, "head_options": dict(self.head_options),
                "schedule": f"poly {self.poly_power:g} per epoch", "optimizer": "Adam"}


@dataclass
class AddTaskResult:
    """A registered task: where it trained, its val metrics at registration, what it cost."""

    name: str
    dataset: str
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    seconds: float


def default_dataset(spec: TaskSpec) -> str:
    """The dataset a task trains on when none is named: PASCAL (the new domain) when the spec
    covers it, else the first dataset it lists, else a folder dataset."""
    listed = [d for d in spec.datasets() if d != "*"]
    if "pascal" in listed:
        return "pascal"
    return listed[0] if listed else "folder"


def add_task(ws, name: str | None = None, *, spec_file: str | Path | None = None, dataset: str | None = None,
             config: HeadTrainingConfig | None = None, views: int | None = None, replace: bool = False,
             device: str = "auto", workers: int | None = None, data_root=None, root=None,
             size: Sequence[int] | None = None, in_memory: bool | None = None, progress: bool = True,
             register_as: str | None = None, callbacks: Sequence[Callback] = (),
             dataset_name: str | None = None, eval_resolution: str = "original") -> AddTaskResult:
    """Train and register the head of task ``name`` (a built-in task, or ``spec_file``'s task).

    A folder dataset is picked by ``root`` and/or ``dataset_name`` (see
    :func:`ufl.workspace.folders.resolve_dataset`); when it is cached for other tasks, this
    task's targets are added beside its caches (features untouched, nothing to re-cache).

    It is registered under ``register_as`` when given, else under the task's name, or under
    ``DATASET_TASK`` when that name is taken by the task's head for another dataset (``normals``
    on PASCAL becomes ``pascal_normals`` beside NYUD's ``normals``).

    Validation and the registered metrics are measured at ``eval_resolution`` (``"original"``: each
    val image's own size, the benchmark's; ``"working"``: the cache's input size), recorded with
    the task (see :func:`ufl.workspace.evaluate.eval_protocol`)."""
    config = config or HeadTrainingConfig()
    spec = resolve_spec(name, spec_file)
    name = spec.name
    dataset = resolve_dataset(ws, dataset or default_dataset(spec), root, dataset_name)
    registered = ws.tasks
    key = _registration_name(registered, register_as, name, dataset)
    if key in registered and not replace:
        raise WorkspaceError(f"task {key!r} is already registered in {ws.root}; pass --replace to train it "
                             f"again (other tasks are not affected), or --as NAME to register another head "
                             f"for it (e.g. --as {key}_2)")
    if key in registered:
        ws.head_file(key, registered[key])  # a record pointing outside heads/ is refused before training
    if not spec.supports(dataset):
        raise SpecError(f"task {name!r} is not defined on dataset {dataset!r} (it is defined on: "
                        f"{', '.join(spec.datasets())}); pick one of those or give a --spec")
    provided = None if is_folder(dataset) else DATASETS.get(dataset).supported_tasks
    if provided is not None and name not in provided:
        raise SpecError(f"dataset {dataset!r} has no task {name!r}; it provides: {', '.join(provided)} "
                        f"(for your own targets use a folder dataset and --spec)")
    device = resolve_device(device)
    if config.precision is None:
        training_precision, precision = precision_for(device), "fp32"
    else:
        training_precision = named_precision(config.precision, device)  # refuses fp16 off CUDA, before any work
        precision = config.precision
    train_record, val_record = _ensure_caches(ws, spec, dataset, views, data_root, root, size, device)
    protocol = eval_protocol(ws, spec, dataset, eval_resolution)

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    head = build_head(ws.read()["backbone"]["channels"], spec.out_channels(dataset), **config.head_options)
    head.to(device, memory_format=torch.channels_last)  # faster convolutions while training
    # dtype=None: float16 features stay float16 until the device, where forward() casts them
    train_set = open_cache(ws, train_record, [name], dtype=None,
                           in_memory=_fits_in_memory(ws, train_record) if in_memory is None else in_memory)
    if workers is None and train_set.in_memory:
        workers = 0  # rows already in RAM: worker processes would only add copies
    generator = torch.Generator().manual_seed(config.seed)
    loader = _train_loader(train_set, config.batch_size, generator, loader_kwargs(device, workers))
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    specs = {name: spec}
    start_at_prior(head, specs, next(iter(loader)))

    def forward(model, batch):
        # float16 -> float32 on the device: the values the CPU cast gave before, half the bytes moved
        features = [f.to(torch.float32, memory_format=torch.channels_last) for f in batch["features"]]
        return {name: model(features, out_size=batch[name].shape[-2:])}

    def validate() -> dict[str, dict[str, float]]:
        return {name: task_metrics(ws, name, spec, dataset, head, device=device, progress=False,
                                   edge_thresholds=EDGE_THRESHOLDS_QUICK, precision=precision, reuse_edges=False,
                                   **protocol)}

    val_every = config.val_every or max(1, config.epochs // 5)
    trainer = Trainer(head, optimizer, forward, MultiTaskLoss(specs, dataset).to(device), epochs=config.epochs,
                      base_lr=config.lr, device=device, precision=training_precision, seed=config.seed,
                      lr_schedule=functools.partial(poly_lr, power=config.poly_power),
                      callbacks=[Validation(validate, val_every), ProgressBar(f"add-task {name}", progress),
                                 *callbacks])
    log.info("training a %s head for %s on %s (%d cached rows, %d epochs)", spec.kind, name, dataset,
             len(train_set), config.epochs)
    state = trainer.fit(loader)
    train_set.close()
    seconds = time.perf_counter() - started

    metrics = task_metrics(ws, name, spec, dataset, head, device=device, progress=progress, precision=precision,
                           **protocol)
    record = {"spec": spec.to_dict(), "dataset": dataset, "source": "add-task", "precision": precision,
              "output_activation": default_activation(spec.kind),  # what the head was trained with (ufl.outputs)
              "training": {**config.to_dict(), "train_cache": ws.cache_key(dataset, "train", train_record["views"]),
                           "rows": len(train_set), "seconds": round(seconds, 2), "device": str(device),
                           "precision": precision_name(training_precision)},
              "eval": {"cache": ws.cache_key(dataset, "val", 1), "split": "val", "size": val_record["size"],
                       "batch_size": 16, "threads": eval_threads(device), **protocol},
              "registered": metrics,
              # per epoch: the optimised loss, each task's final-output loss, lr, and val metrics when validated
              "history": json_safe(state.history)}
    ws.register(key, head.cpu(), record, replace=replace)
    # debug: the result is the return value (the CLI prints it once)
    log.debug("registered %s: %s", key, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    return AddTaskResult(key, dataset, metrics, state.history, seconds)


def _train_loader(train_set, batch_size: int, generator: torch.Generator, kwargs: dict[str, Any]) -> DataLoader:
    """The training batches: shuffled by ``generator``, the last partial batch dropped unless it is
    the only one. The cache reads each batch in one go (:meth:`feature_cache.FeatureCacheDataset.loader`):
    the same batches, in the same order for the same seed, as ``DataLoader(train_set, batch_size,
    shuffle=True, generator=generator)`` with the default collate, without per-row tensors stacked
    again."""
    return train_set.loader(batch_size, shuffle=True, drop_last=len(train_set) > batch_size, generator=generator,
                            **kwargs)


def _registration_name(registered: Mapping[str, Any], register_as: str | None, task: str, dataset: str) -> str:
    """The name a head is registered under (see :func:`add_task`) among the ``registered`` tasks'
    records; an alias is checked."""
    if register_as is None:
        record = registered.get(task)
        if record is None or record["dataset"] == dataset:
            return task
        log.info("%s is registered for %s; this head for %s is registered as %s_%s (--as NAME to choose)",
                 task, record["dataset"], dataset, dataset, task)
        return check_task_name(f"{dataset}_{task}", "registration name (choose one with --as NAME)")
    if register_as == task:
        return task
    check_task_name(register_as, "--as")
    if register_as in builtin_specs():
        raise SpecError(f"--as {register_as!r} is the name of the built-in task {register_as!r}; choose another "
                        f"(e.g. {dataset}_{task})")
    return register_as


def _ensure_caches(ws, spec: TaskSpec, dataset: str, views, data_root, root, size, device):
    """The train and val caches of ``dataset`` holding ``spec``'s targets: cached first when
    missing; a folder dataset's caches made for other tasks get this task's targets added."""
    specs = None
    if is_folder(dataset):
        merge_specs(ws, dataset, [spec])  # refuses a spec other than the one its targets were cached with
        specs = [spec]
    for split in ("train", "val"):
        record = ws.find_cache(dataset, split, views if split == "train" else 1)
        if record is not None and spec.name in cached_tasks(record):
            continue
        if record is None:
            log.info("no %s/%s feature cache yet: caching it first", dataset, split)
        ws.cache_features(dataset, [split], views=record["views"] if record else (views or 1), data_root=data_root,
                          root=root, size=size, specs=specs, device=str(device))
    train = ws.find_cache(dataset, "train", views)
    val = ws.find_cache(dataset, "val", 1)
    for record in (train, val):
        if spec.name not in cached_tasks(record):
            raise CacheError(f"the {dataset}/{record['split']} cache ({ws.cache_path(record)}) holds no targets "
                             f"for {spec.name!r}; add them with `ufl cache-features --dataset folder --dataset-name "
                             f"{dataset} --spec FILE.yaml`")
    if tuple(train["size"]) != tuple(val["size"]):
        raise CacheError(f"the {dataset} train and val caches differ in size ({train['size']} vs {val['size']}); "
                         f"re-cache both with the same --size")
    return train, val


def _fits_in_memory(ws, record) -> bool:
    """Hold a training cache in RAM when it takes under a quarter of the free memory."""
    path = ws.cache_path(record)
    try:
        return path.stat().st_size < available_memory_bytes() // 4
    except OSError:
        return False
