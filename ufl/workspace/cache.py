"""``ufl cache-features``: run the frozen backbone over every sample of a split, once, into HDF5.

One cache file per (dataset, split, views) in ``WORKSPACE/caches/``, written with
:mod:`feature_cache`: features in float16 (float32 on request), and the decoded, resized targets of
every task of the dataset beside them, so head training never decodes a .mat or .png again.
A folder dataset's task given later gets its targets in a target file beside the cache, the
features untouched (:mod:`ufl.workspace.targets`); each folder dataset has its own name, caches and
specs (:mod:`ufl.workspace.folders`).

The ``val`` cache also keeps every target untouched at its image's own size, so that ``ufl
evaluate`` compares predictions with the original ground truth (:mod:`ufl.evaluation`) from the
cache alone, without the dataset's files: target ``original_size`` holds each row's ``[H0, W0]``
and target ``TASK@original`` the task's ground truth zero-padded at the bottom and right to the
largest image of the split. When every image of the split already has the working size (NYUD at
its 480 x 640), the working-size targets are the originals and no second copy is stored. Cost on
PASCAL-Context (images up to 500 x 500): 2.5 MB more per val row uncompressed (normals 1.5 MB of
it), beside 1.1 MB of features and 2.6 MB of 512 x 512 targets: 12.8 GB more for its 5,105 rows.

- Resumable: a run killed at any point (even SIGKILL) continues from the completion mask, and the
  result equals an uninterrupted run (views are seeded per image and view, batches are independent).
- ``overwrite=True`` builds the new cache beside the old one and replaces it only when complete.
- On CUDA: float16 autocast, channels_last, pinned memory with non-blocking copies, and a
  background writer thread, so the GPU never waits on the disk.
- Under ``torchrun`` each process caches its contiguous share of rows into its own shard file and
  rank 0 joins the shards with HDF5 virtual datasets into a cache that reads like a single file.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, default_collate, get_worker_info
from tqdm.auto import tqdm

from feature_cache import (BackgroundWriter, FeatureCacheReader, FeatureCacheWriter, atomic_cache,
                           create_shard_writer, join_shards, partial_path, shard_path)
from feature_cache.errors import CacheBusyError, FeatureCacheError

from .. import distributed
from ..datasets import DATASETS, dataset_root, get_dataset
from ..errors import CacheError, WorkspaceError
from ..runtime import (Precision, forward_lanes, loader_kwargs, progress_disable, resolve_device, run_lanes,
                       torch_threads)
from ..taskspec import TaskSpec
from .doctor import remove_stale
from .folders import dataset_kind, is_folder, merge_specs, resolve_dataset
from .manifest import now
from .targets import add_targets, cached_tasks, remove_target_files
from .views import VIEW_PARAMS, ImageRows, ViewDataset, backbone_features

__all__ = ["cache_features", "CacheResult", "ImageBuffer", "target_layout", "open_split", "resolve_data",
           "ORIGINAL_SIZE_TARGET", "original_target", "original_targets", "has_original_targets"]

#: Target of a val cache holding each row's original image size ``[H0, W0]``.
ORIGINAL_SIZE_TARGET = "original_size"


def original_target(task: str) -> str:
    """The val-cache target holding ``task``'s untouched ground truth (padded to the split's largest size)."""
    return f"{task}@original"


def original_targets(path: str | os.PathLike, tasks: Sequence[str]) -> dict[str, str] | None:
    """``{task: the cache target holding its original-size ground truth}`` (``TASK@original``, or
    ``TASK`` itself when the split's images all have the working size), or None when the cache at
    ``path`` keeps no original sizes (val caches written before they were added: re-cache the
    split with ``--overwrite --force``)."""
    with FeatureCacheReader(path, require_complete=False) as reader:
        held = set(reader.layout.targets)
    if ORIGINAL_SIZE_TARGET not in held:
        return None
    found = {t: original_target(t) if original_target(t) in held else t for t in tasks}
    return found if all(key in held for key in found.values()) else None


def has_original_targets(path: str | os.PathLike, tasks: Sequence[str]) -> bool:
    """Whether the cache at ``path`` can give the original-size targets of ``tasks``."""
    return original_targets(path, tasks) is not None

log = logging.getLogger(__name__)


@dataclass
class CacheResult:
    """One split's cache: where it is and what writing it cost."""

    key: str
    path: Path
    rows: int
    written: int
    seconds: float
    skipped: bool = False
    #: tasks whose targets were added beside an existing cache (its features untouched)
    added: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else float("nan")


def target_layout(spec: TaskSpec, dataset: str, size: Sequence[int]) -> tuple[tuple[int, ...], str, str]:
    """How a task's target is stored: ``(shape, stored dtype, decoded dtype)``, by its kind
    (:meth:`ufl.kinds.Kind.target_layout`).

    Labels as the smallest unsigned integer (ignore 255 included), binary maps as uint8 (0, 1,
    255), depth as float32 metres, normals as float16 (their sources are 8-bit PNGs or float
    maps: float16's 1e-3 precision is below 0.1 degree).
    """
    return spec.info.target_layout(spec.out_channels(dataset), size)


class RowBatch(dict):
    """A collated batch of cache rows whose :meth:`pin_memory` pins only the image.

    The DataLoader's pinning thread calls it (``pin_memory=True`` on CUDA): the image is the only
    tensor that goes to the GPU; pinning the targets too (the larger part of a row at 512 px) would
    cost page-locked copies that nothing reads, before they go to the writer on the CPU.
    """

    pinned = False

    @classmethod
    def collate(cls, samples: list[dict[str, Any]], targets: Sequence[str] = (),
                images: "ImageBuffer | None" = None) -> "RowBatch":
        """``default_collate`` of ``samples``, except in the caching process itself (no DataLoader
        worker): there the image batch is made channels_last at once (the layout the backbone
        runs in: :func:`~ufl.workspace.views.backbone_features` then has no copy to make), into
        the memory of ``images`` when given (see :class:`ImageBuffer`), and the
        ``targets`` stay lists of per-row tensors, which the writer writes row by row (stacking
        them would copy every target byte once more, only for the writer to take them apart).
        In a worker everything is stacked as usual: the stacked batch is what goes to shared
        memory, one block per key."""
        if get_worker_info() is not None or not samples:
            return cls(default_collate(samples))
        kept = {key: [sample[key] for sample in samples] for key in targets}
        rest = default_collate([{key: value for key, value in sample.items() if key not in kept and key != "image"}
                                for sample in samples])
        first = samples[0]["image"]
        shape = (len(samples), *first.shape)
        images = (images or ImageBuffer()).take(shape, first.dtype)
        with torch_threads(1):  # as in a worker (see ImageRows): a copy per image, no second thread to wait for
            for j, sample in enumerate(samples):
                images[j].copy_(sample["image"])
        return cls(image=images, **rest, **kept)

    def pin_memory(self, device: str | None = None) -> "RowBatch":
        out = RowBatch(self)
        out["image"] = self["image"].pin_memory()
        out.pinned = True
        return out


class ImageBuffer:
    """The memory the caching process collates its image batches into, reused from batch to batch.

    A fresh batch is a new allocation (50 MB for 16 images at 512 px), which the C allocator maps
    anew for every batch and the kernel fills with zeros page by page as the collate first writes
    it: collating a 512 px row took 1.9 ms of thread CPU time into fresh memory against 0.55 ms
    into memory used before (16 rows, best of 7, shared machine). :meth:`take` hands out a kept
    buffer that is free and fits (else a new one, kept while fewer than ``capacity`` are: one per
    forward lane, each lane holding one batch at a time); the caching loop gives it back with
    :meth:`release` once the forward has read the batch. Thread-safe (lanes take and release).
    """

    def __init__(self, capacity: int = 1) -> None:
        self.capacity = max(1, int(capacity))
        self._kept: list[torch.Tensor] = []
        self._free: list[torch.Tensor] = []  # the kept ones not in use
        self._lock = threading.Lock()

    def take(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """A ``shape`` (B, C, H, W) channels_last tensor of ``dtype`` (contents undefined)."""
        with self._lock:
            for i, buffer in enumerate(self._free):
                if buffer.dtype == dtype and tuple(buffer.shape[1:]) == tuple(shape[1:]) and len(buffer) >= shape[0]:
                    del self._free[i]
                    return buffer[:shape[0]]  # a smaller last batch: its first rows (still channels_last)
            buffer = torch.empty(tuple(shape), dtype=dtype, memory_format=torch.channels_last)
            if len(self._kept) >= self.capacity:
                if not self._free:  # every kept one is in use: this one is the caller's alone
                    return buffer
                unfit = self._free.pop()  # a free one of another shape or dtype: this one replaces it
                self._kept = [b for b in self._kept if b is not unfit]
            self._kept.append(buffer)
            return buffer

    def release(self, images: torch.Tensor) -> None:
        """``images`` (a batch from :meth:`take`) is no longer read: a later :meth:`take` may reuse
        its memory (a tensor not from this buffer is ignored)."""
        with self._lock:
            for buffer in self._kept:
                if images.data_ptr() == buffer.data_ptr() and all(b is not buffer for b in self._free):
                    self._free.append(buffer)


def resolve_data(ws, dataset: str, data_root: str | os.PathLike | None, root: str | os.PathLike | None,
                 size: Sequence[int] | None) -> tuple[Path, tuple[int, int]]:
    """The dataset's folder and input size: given > remembered by the workspace > defaults."""
    known = ws.data_settings(dataset)
    if root is None and data_root is None and known.get("root"):
        folder = Path(known["root"])
    else:
        folder = dataset_root(dataset_kind(dataset), data_root, root)
    if size is None:
        from ..datasets.transforms import RECIPES

        size = known.get("size") or RECIPES.get(dataset, RECIPES["folder"]).size
        if size is None:
            raise WorkspaceError(f"give --size HxW for the {dataset} dataset (its images have no fixed size)")
    size = (int(size[0]), int(size[1]))
    divisor = ws.read()["backbone"].get("size_divisor", 1)
    if size[0] % divisor or size[1] % divisor:
        raise WorkspaceError(f"input size {size[0]}x{size[1]} is not divisible by {divisor}, which the "
                             f"workspace's backbone needs; choose e.g. {size[0] // divisor * divisor or divisor}x"
                             f"{size[1] // divisor * divisor or divisor}")
    return folder, size


def dataset_specs(ws, dataset: str, specs: Sequence[TaskSpec] | None, overwrite: bool = False) -> list[TaskSpec]:
    """Tasks whose targets a cache of ``dataset`` stores: every built-in task of nyud/pascal; for
    a folder dataset the specs the workspace remembers for it and the given new ones (see
    :func:`ufl.workspace.folders.merge_specs`)."""
    if not is_folder(dataset):
        from ..taskspec import get_spec

        return [get_spec(name) for name in DATASETS.get(dataset).supported_tasks]
    return merge_specs(ws, dataset, specs, overwrite)


def open_split(ws, dataset: str, split: str, folder: Path, specs: Sequence[TaskSpec]):
    """The dataset object of one split, with the targets of ``specs`` (a folder dataset keyed by
    its workspace name for per-dataset spec values)."""
    if is_folder(dataset):
        return get_dataset("folder", folder, split, list(specs), dataset_name=dataset)
    return get_dataset(dataset, folder, split, list(specs))


def cache_features(ws, dataset: str, splits: Sequence[str] = ("train", "val"), *,
                   data_root: str | os.PathLike | None = None, root: str | os.PathLike | None = None,
                   size: Sequence[int] | None = None, views: int = 1, specs: Sequence[TaskSpec] | None = None,
                   device: str = "auto", batch_size: int = 16, workers: int | None = None,
                   overwrite: bool = False, storage: str = "float16", compression: str | None = None,
                   seed: int = 0, progress: bool = True, force: bool = False,
                   dataset_name: str | None = None, lanes: int | None = None) -> list[CacheResult]:
    """Cache ``dataset``'s ``splits`` (training splits with ``views`` views, ``val`` with one).

    ``dataset`` is ``nyud``, ``pascal``, or ``folder`` with ``root`` and/or ``dataset_name``
    (or a folder dataset's name): see :func:`ufl.workspace.folders.resolve_dataset`. A split
    already cached gets the targets of the tasks it lacks in target files beside it.
    ``overwrite`` of a cache that registered tasks were evaluated on (their ``eval.cache``) needs
    ``force``: their metrics at registration were measured on it. ``lanes``: batches decoded and
    run through the backbone side by side on the CPU, each lane on an equal share of torch's
    threads (:func:`ufl.runtime.forward_lanes`; default 2 on a CPU, 1 on CUDA). A run is
    reproducible bit for bit for given lanes; against ``lanes=1`` the features are the same where
    the backbone's kernels do not depend on the thread count (oneDNN picks them by shape and
    threads: ResNet-18 tested equal; HRNet-18's last, smaller batch at 64 px differed by one
    float16 step in 0.1 % of its values), as with another ``--threads``."""
    device = resolve_device(device)
    distributed.init_distributed(device)
    dataset = resolve_dataset(ws, dataset, root, dataset_name)
    folder, size = resolve_data(ws, dataset, data_root, root, size)
    specs = dataset_specs(ws, dataset, specs, overwrite)
    known = ws.data_settings(dataset)
    if known.get("size") and tuple(known["size"]) != size and not overwrite:
        raise WorkspaceError(f"the workspace caches {dataset} at {known['size'][0]}x{known['size'][1]}; use that "
                             f"--size, or --overwrite to re-cache at {size[0]}x{size[1]} (then re-cache every split)")
    if overwrite and not force:
        _refuse_overwriting_eval_caches(ws, dataset, splits, views)
    backbone = ws.backbone(device)
    precision = Precision("cuda", torch.float16) if device.type == "cuda" else None
    results = []
    for split in splits:
        n_views = 1 if split == "val" else views
        results.append(_cache_split(ws, dataset, split, folder, size, n_views, specs, backbone, device, precision,
                                    batch_size, workers, overwrite, storage, compression, seed, progress, lanes))
    if distributed.is_main():
        with ws.manifest.update() as manifest:
            settings = manifest["data"].setdefault(dataset, {})
            settings.update({"root": str(folder.resolve()), "size": list(size)})
            if is_folder(dataset):
                settings.update({"kind": "folder", "specs": [s.to_dict() for s in specs]})
    distributed.barrier()
    return results


def _cache_split(ws, dataset, split, folder, size, views, specs, backbone, device, precision, batch_size, workers,
                 overwrite, storage, compression, seed, progress, lanes) -> CacheResult:
    key = ws.cache_key(dataset, split, views)
    path = ws.cache_file(dataset, split, views)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, f".{path.name}.*.creating")  # skeletons of runs killed while creating them
    record = ws.read()["caches"].get(key)
    if path.exists() and record is not None and not overwrite:
        _refuse_other_settings(key, path, size, storage)
        try:
            FeatureCacheReader(path, ws.fingerprint).close()
            complete = True
        except Exception as e:  # incomplete or damaged: resume below, or say how to rebuild
            complete = False
            if distributed.is_main():
                log.info("%s: %s; resuming", key, str(e).splitlines()[0])
        if complete:
            lacking = [s for s in specs if s.name not in cached_tasks(record)]
            added = []
            if lacking and distributed.is_main():
                added = add_targets(ws, key, lacking, dataset, lambda new: open_split(ws, dataset, split, folder, new),
                                    batch_size=batch_size, workers=workers, progress=progress)
            distributed.barrier()
            if distributed.is_main() and not added:
                log.debug("%s: already cached in %s (use --overwrite to rebuild)", key, path)  # CLI prints it
            return CacheResult(key, path, _rows(path), 0, 0.0, skipped=True, added=added)

    base = open_split(ws, dataset, split, folder, specs)
    layouts = {s.name: target_layout(s, dataset, size) for s in specs}
    # workers hand over targets in the stored dtypes: the writer then neither converts nor checks them
    stored = {name: layout[1] for name, layout in layouts.items()}
    if split == "val":  # the untouched ground truth as well, for evaluation at the original size
        sizes = _image_sizes(base)
        separate = sizes != {tuple(size)}  # images all at the working size: their targets are the originals
        largest = (max(h for h, _ in sizes), max(w for _, w in sizes))
        rows = _OriginalTargetsViewDataset(base, views, size, seed, largest if separate else None, stored)
        if separate:
            layouts.update({original_target(s.name): target_layout(s, dataset, largest) for s in specs})
        layouts[ORIGINAL_SIZE_TARGET] = ((2,), "uint32", "int64")
    else:
        rows = ViewDataset(base, views, size, seed, storage=stored)
    target = partial_path(path) if overwrite else path
    world, rank = distributed.world_size(), distributed.rank()
    kwargs = dict(
        num_samples=len(rows), scales=_scales(backbone, size),
        targets=layouts, ids=rows.row_ids(),
        fingerprint=ws.fingerprint, input_size=size, backbone=backbone.name,
        normalisation={"mean": backbone.config()["mean"], "std": backbone.config()["std"]},
        dataset=dataset, split=split, view_index=rows.row_views(), view_param_names=VIEW_PARAMS,
        strides=backbone.strides, dtype=storage, compression=compression,
        metadata={"views": views, "seed": seed, "root": str(folder), "tasks": [s.name for s in specs],
                  "specs": [s.to_dict() for s in specs]})
    if world > 1:
        writer = create_shard_writer(target, rank, world, **kwargs)
    else:
        writer = _create_writer(target, overwrite, kwargs)
    todo = [int(i) for i in writer.missing_indices()]
    started = time.perf_counter()
    # one decode per image for all its views; batches of whole images (the plain consecutive batches
    # of rows when batch_size is a multiple of the views)
    settings = loader_kwargs(device, workers)
    lanes, threads = forward_lanes(device, lanes)
    # the image batches' memory, reused in this process (a worker stacks its own, and the collate_fn
    # it gets must pickle); not when the batch is pinned: pinning copies it into fresh page-locked
    # memory, which is what the loop then holds
    buffer = None if settings["pin_memory"] or settings["num_workers"] > 0 else ImageBuffer(capacity=lanes)
    loader = DataLoader(ImageRows(rows, todo, batch_size), batch_size=None, shuffle=False,
                        collate_fn=functools.partial(RowBatch.collate, targets=list(layouts), images=buffer),
                        **settings)
    bar = tqdm(total=len(todo), desc=f"cache {dataset}/{split}", unit="img", dynamic_ncols=True,
               disable=progress_disable(progress and distributed.is_main()))
    background = BackgroundWriter(writer, max_pending=4)
    counting = threading.Lock()

    def step(batch: RowBatch) -> None:
        images = batch["image"].to(device, non_blocking=batch.pinned)
        features = backbone_features(backbone, images, precision, storage)
        if buffer is not None:
            buffer.release(batch["image"])  # read by the forward: a later batch is collated into it
        background.put(batch["row"], features, {key: batch[key] for key in layouts}, batch["view_params"])
        with counting:  # lanes count side by side
            bar.update(len(images))

    try:
        # on a CPU two lanes by default: one decodes its next batch while the other runs the forward
        run_lanes(iter(loader), step, lanes, threads)
        background.close(finalize=True)
    except BaseException:
        with contextlib.suppress(Exception):
            background.close()
        writer.close()
        raise
    finally:
        bar.close()
    elapsed = time.perf_counter() - started

    if world > 1:
        distributed.barrier()
        if distributed.is_main():
            join_shards(target, world)
        distributed.barrier()
    if distributed.is_main():
        if overwrite:
            with atomic_cache(path):
                pass  # the new cache was built at the partial path; replace the old one now
            remove_target_files(path)  # the new cache holds every task's targets
        in_use = {shard_path(target, r, world).name for r in range(world)} if world > 1 else set()
        _remove_stale_shards(path, in_use)
        _register(ws, key, path, dataset, split, views, size, specs, folder, storage)
        log.debug("%s: %d rows in %s (%.1f images/s)", key, len(rows), path, len(todo) / max(elapsed, 1e-9))
    distributed.barrier()
    return CacheResult(key, path, len(rows), len(todo), elapsed)


def _image_sizes(base) -> set[tuple[int, int]]:
    """The distinct ``(H, W)`` of the images of ``base`` (read from the file headers only)."""
    from PIL import Image

    sizes = set()
    for image_id in base.ids:
        path = base.image_path(image_id)
        try:
            with Image.open(path) as image:
                w, h = image.size
        except OSError as e:
            raise CacheError(f"cannot read the size of image {path} ({e})") from None
        sizes.add((h, w))
    return sizes


class _OriginalTargetsViewDataset(ViewDataset):
    """:class:`ViewDataset` rows that also carry ``original_size`` ``[H0, W0]`` and, unless ``largest``
    is None, each target untouched (``TASK@original``, zero-padded to ``largest`` at the bottom and
    right, in the stored dtype of ``storage``)."""

    def __init__(self, base, views: int, size: Sequence[int], seed: int, largest: tuple[int, int] | None,
                 storage: dict[str, str]):
        super().__init__(base, views, size, seed, storage=storage)
        self.largest = largest
        self.storage = dict(storage)

    def view(self, decoded: dict[str, Any], image: int, view: int) -> dict[str, Any]:
        sample = super().view(decoded, image, view)
        height, width = (int(v) for v in decoded["meta"]["orig_size"])
        for task in self.base.specs if self.largest is not None else ():
            padded = F.pad(decoded[task], (0, self.largest[1] - width, 0, self.largest[0] - height))
            sample[original_target(task)] = padded.to(getattr(torch, self.storage.get(task, str(padded.dtype)[6:])))
        sample[ORIGINAL_SIZE_TARGET] = torch.tensor([height, width], dtype=torch.int64)
        return sample


def _refuse_other_settings(key: str, path: Path, size: Sequence[int], storage: str) -> None:
    """A :class:`CacheError` when the cache already there holds another precision or input size than
    requested (it would otherwise be reported as "already cached")."""
    try:
        with FeatureCacheReader(path, require_complete=False) as reader:
            layout = reader.layout
    except Exception:  # noqa: BLE001 - unreadable or foreign: the resume below reports it
        return
    stored_size = tuple(int(v) for v in layout.identity.get("input_size", ()))
    found = []
    if layout.dtype != storage:
        found.append(f"{layout.dtype} features (requested {storage})")
    if stored_size != tuple(size):
        found.append(f"input size {'x'.join(map(str, stored_size))} (requested {size[0]}x{size[1]})")
    if found:
        raise CacheError(f"{key}: the cache {path} holds {' and '.join(found)}; pass --overwrite to rebuild it "
                         "with the requested settings, or leave the option out to use it as it is")


def _refuse_overwriting_eval_caches(ws, dataset: str, splits: Sequence[str], views: int) -> None:
    """A :class:`WorkspaceError` when ``--overwrite`` would replace a registered cache that registered
    tasks were evaluated on (without ``--force``)."""
    caches = ws.read()["caches"]
    for split in splits:
        key = ws.cache_key(dataset, split, 1 if split == "val" else views)
        if key not in caches:
            continue
        users = sorted(name for name, record in ws.tasks.items() if record["eval"].get("cache") == key)
        if users:
            raise WorkspaceError(f"the {key} cache is the one registered task(s) {', '.join(users)} were evaluated on; "
                                 f"--overwrite would change what `ufl evaluate` compares them against: pass --force "
                                 f"to rebuild it anyway (at another --size, re-register them afterwards with "
                                 f"`ufl add-task NAME --replace`), or remove those tasks first")


def _create_writer(target: Path, overwrite: bool, kwargs: dict[str, Any]) -> FeatureCacheWriter:
    """The writer of one split; with ``overwrite``, a partial rebuild left by an earlier killed
    ``--overwrite`` is resumed when it fits this run, else discarded and started again."""
    try:
        return FeatureCacheWriter.create(target, **kwargs)
    except CacheBusyError:
        raise
    except FeatureCacheError as e:
        if not overwrite:
            raise
        log.info("%s: a rebuild left by an earlier run does not fit this one (%s); starting it again", target,
                 str(e).splitlines()[0])
        return FeatureCacheWriter.create(target, overwrite=True, **kwargs)


def _scales(backbone, size) -> list[tuple[int, int, int]]:
    return [(c, size[0] // s, size[1] // s) for c, s in zip(backbone.channels, backbone.strides)]


def _rows(path: Path) -> int:
    with FeatureCacheReader(path, require_complete=False) as reader:
        return len(reader)


def _remove_stale_shards(path: Path, in_use: set[str]) -> None:
    """Shard files of an earlier build of ``path`` (single or sharded, overwritten) serve nothing."""
    for pattern in (f"{path.stem}.shard*of*{path.suffix}", f"{path.name}.shard*of*.partial"):
        for stale in path.parent.glob(pattern):
            if stale.name not in in_use:
                stale.unlink(missing_ok=True)


def _register(ws, key, path, dataset, split, views, size, specs, folder, storage) -> None:
    with ws.manifest.update() as manifest:
        manifest["caches"][key] = {
            "file": str(path.relative_to(ws.root)), "dataset": dataset, "split": split, "views": views,
            "size": list(size), "rows": _rows(path), "tasks": [s.name for s in specs], "root": str(folder.resolve()),
            "storage": storage, "fingerprint": ws.fingerprint, "created": now()}


def require_cache(ws, dataset: str, split: str, views: int | None = None) -> tuple[dict[str, Any], Path]:
    """The registered cache of ``dataset``/``split`` (most views unless given), checked."""
    record = ws.find_cache(dataset, split, views)
    if record is None:
        raise CacheError(f"no {dataset}/{split} feature cache in workspace {ws.root}; run "
                         f"`ufl cache-features --dataset {dataset} --split {split}`")
    return record, ws.cache_path(record)
