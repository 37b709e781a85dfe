"""A new task's targets beside an existing feature cache: one target file per (dataset, split,
task), so adding a task to a cached dataset never recomputes or rewrites the features.

A cache ``caches/NAME-SPLIT-Nv.h5`` made for some tasks gets, for a task added later, the file
``caches/NAME-SPLIT-Nv.targets-TASK.h5``: written by the same :class:`feature_cache.FeatureCacheWriter`
(no feature scales, the task's decoded targets under the very views of the cache: the same ids,
view indices and view parameters row for row, checked while writing), resumable, and registered in
the cache's manifest record under ``"targets": {TASK: {"file", "created"}}``. :func:`open_cache`
reads the features from the cache and each task's targets from wherever they are.
``cache-features --overwrite`` rebuilds the cache with every task's targets and drops these files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, Subset
from tqdm.auto import tqdm

from feature_cache import FeatureCacheDataset, FeatureCacheReader, FeatureCacheWriter

from ..errors import CacheError
from ..runtime import loader_kwargs, progress_disable
from ..taskspec import TaskSpec
from .manifest import now
from .views import VIEW_PARAMS, ViewDataset

__all__ = ["cached_tasks", "open_cache", "add_targets", "target_file", "target_path", "remove_target_files",
           "CacheRows"]

log = logging.getLogger(__name__)


def cached_tasks(record: dict[str, Any]) -> list[str]:
    """Every task whose targets a cache record holds: in the cache file, then in target files."""
    return [*record["tasks"], *(t for t in record.get("targets", {}) if t not in record["tasks"])]


def target_path(ws, record: dict[str, Any], task: str) -> Path:
    """The registered target file of ``task`` beside the cache of ``record`` (inside ``ROOT/caches``,
    else a :class:`~ufl.errors.WorkspaceError`)."""
    key = ws.cache_key(record.get("dataset"), record.get("split"), record.get("views"))
    return ws.inside(record["targets"][task]["file"], f"{task} target file of {key}", "caches")


def target_file(cache: Path, task: str) -> Path:
    """Where ``task``'s targets beside the cache file ``cache`` go."""
    return cache.with_name(f"{cache.stem}.targets-{task}{cache.suffix}")


class CacheRows(Dataset):
    """The rows of a cache with their features and the targets of ``tasks``, read from the cache
    file and, for tasks added later, from their target files (items as
    :class:`feature_cache.FeatureCacheDataset`'s)."""

    def __init__(self, main: FeatureCacheDataset, side: dict[str, FeatureCacheDataset]):
        self.main = main
        self.side = side
        for task, data in side.items():
            if data.ids != main.ids or not np.array_equal(data.view, main.view):
                raise CacheError(f"target file {data.path} does not match cache {main.path} row for row (ids or views "
                                 f"differ); re-cache with `ufl cache-features --overwrite`")
        self.tasks = [*main.tasks, *side]

    @property
    def in_memory(self) -> bool:
        return self.main.in_memory

    @property
    def ids(self) -> list[str]:
        return self.main.ids

    def __len__(self) -> int:
        return len(self.main)

    def __getitem__(self, index: int | list[int]) -> dict[str, Any]:
        """Row ``index``; given a list of indices (a :meth:`loader`'s batch), the collated batch."""
        if isinstance(index, (list, tuple, np.ndarray, torch.Tensor)):
            return self.batch(index)
        item = self.main[index]
        for task, data in self.side.items():
            item[task] = data[index][task]
        return item

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """A DataLoader's batch: one batched read of the cache and of each target file."""
        items = self.main.__getitems__(indices)
        for task, data in self.side.items():
            for item, side in zip(items, data.__getitems__(indices)):
                item[task] = side[task]
        return items

    def batch(self, indices: Any) -> dict[str, Any]:
        """The rows ``indices`` as one collated batch (:meth:`feature_cache.FeatureCacheDataset.batch`),
        each added task's targets read from its target file."""
        out = self.main.batch(indices)
        for task, data in self.side.items():
            out[task] = data.batch(indices)[task]
        return out

    def loader(self, batch_size: int, shuffle: bool = False, drop_last: bool = False,
               generator: torch.Generator | None = None, **kwargs: Any) -> DataLoader:
        """Whole batches through :meth:`batch`, as :meth:`feature_cache.FeatureCacheDataset.loader`
        (the same batches as a default-collated ``DataLoader`` over these rows)."""
        base = RandomSampler(self, generator=generator) if shuffle else SequentialSampler(self)
        return DataLoader(self, batch_size=None, sampler=BatchSampler(base, batch_size, drop_last),
                          generator=generator, **kwargs)

    def close(self) -> None:
        self.main.close()
        for data in self.side.values():
            data.close()


def open_cache(ws, record: dict[str, Any], tasks: Sequence[str], **options: Any) -> FeatureCacheDataset | CacheRows:
    """The rows of a registered cache with the targets of ``tasks`` (``options`` go to
    :class:`feature_cache.FeatureCacheDataset`, e.g. ``in_memory``)."""
    side_files = record.get("targets", {})
    own = [t for t in tasks if t in record["tasks"] or t not in side_files]
    main = FeatureCacheDataset(ws.cache_path(record), ws.fingerprint, tasks=own, **options)
    side = {t: FeatureCacheDataset(target_path(ws, record, t), ws.fingerprint, tasks=[t], **options)
            for t in tasks if t not in own}
    return CacheRows(main, side) if side else main


def add_targets(ws, key: str, specs: Sequence[TaskSpec], dataset: str, base_factory, *, batch_size: int = 16,
                workers: int | None = None, progress: bool = True) -> list[str]:
    """Write the targets of ``specs`` beside the registered cache ``key`` (one target file per task)
    and register them; return the tasks added. ``base_factory(specs)`` gives the split's dataset
    object with those tasks' targets."""
    record = ws.read()["caches"][key]
    cache = ws.cache_path(record)
    with FeatureCacheReader(cache, ws.fingerprint) as reader:
        kwargs = reader.creation_kwargs()
        stored_params = reader.view_params_batch(np.arange(len(reader)))
        meta = reader.attrs.get("metadata") or {}
    size = tuple(int(v) for v in kwargs["input_size"])
    from .cache import target_layout

    added = []
    for spec in specs:
        rows = ViewDataset(base_factory([spec]), int(record["views"]), size, int(meta.get("seed", 0)))
        if rows.row_ids() != list(kwargs["ids"]):
            raise CacheError(f"the {dataset}/{record['split']} images are not those of cache {cache} any more (the "
                             f"split file changed?); re-cache with `ufl cache-features --overwrite`")
        path = target_file(cache, spec.name)
        writer = FeatureCacheWriter.create(
            path, **{**kwargs, "scales": (), "strides": (), "compression": None,
                     "targets": {spec.name: target_layout(spec, dataset, size)},
                     "metadata": {**meta, "targets_of": cache.name, "tasks": [spec.name], "specs": [spec.to_dict()]}})
        todo = [int(i) for i in writer.missing_indices()]
        loader = DataLoader(Subset(rows, todo), batch_size=batch_size, shuffle=False,
                            **loader_kwargs(torch.device("cpu"), workers))
        try:
            with tqdm(total=len(todo), desc=f"targets {spec.name} {dataset}/{record['split']}", unit="img",
                      dynamic_ncols=True, disable=progress_disable(progress)) as bar:
                for batch in loader:
                    params = batch["view_params"].numpy()
                    if not np.array_equal(params, stored_params[batch["row"].numpy()]):
                        raise CacheError(f"the views of {dataset}/{record['split']} differ from those of cache "
                                         f"{cache}; re-cache with `ufl cache-features --overwrite`")
                    writer.write(batch["row"], [], {spec.name: batch[spec.name]}, params)
                    bar.update(len(params))
            writer.finalize()
        finally:
            writer.close()
        with ws.manifest.update() as manifest:
            manifest["caches"][key].setdefault("targets", {})[spec.name] = {
                "file": str(path.relative_to(ws.root.resolve())), "created": now()}
        log.debug("%s: %s targets added in %s (features unchanged)", key, spec.name, path)  # CLI prints it
        added.append(spec.name)
    return added


def remove_target_files(cache: Path) -> None:
    """Drop the target files beside ``cache`` (after it was rebuilt with every task's targets)."""
    for path in cache.parent.glob(f"{cache.stem}.targets-*{cache.suffix}"):
        path.unlink(missing_ok=True)
