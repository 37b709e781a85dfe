"""Writing one cache from several processes (torchrun), then joining the shards.

Rank r of W writes the contiguous block ``shard_range(N, r, W)`` of rows into its own file
``shard_path(path, r, W)`` (the same layout, only its rows, plus ``shard_*`` attributes); no two
processes ever write one HDF5 file. When every rank is done (e.g. after ``dist.barrier()``), rank 0
calls :func:`join_shards`, which writes ``path`` as HDF5 virtual datasets (``h5py.VirtualLayout`` /
``VirtualSource``) over the shards: no data is copied, and the joined cache reads exactly like a
single-process one (same rows, ids, order, attributes) through the same reader.

The shards stay beside the joined file and are referenced by *relative* file names, which HDF5
resolves against the joined file's folder: the folder can be moved or copied as a whole.
:func:`consolidate` copies a joined cache into one real file for users who want a single file.

Typical use under torchrun::

    rank, world = dist.get_rank(), dist.get_world_size()
    rows = shard_range(len(ds), rank, world)
    w = create_shard_writer(path, rank, world, len(ds), scales, targets, ids, fingerprint=fp, ...)
    for batch in loader_over(rows):           # global indices inside rows
        w.write(batch_indices, features, batch_targets)
    w.finalize()
    dist.barrier()
    if rank == 0:
        join_shards(path, world)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from . import format as fmt
from .errors import CacheMissingError, LayoutMismatchError
from .atomic import atomic_cache
from .h5io import open_h5
from .reader import FeatureCacheReader, virtual_source_files
from .writer import FeatureCacheWriter

__all__ = ["shard_range", "shard_path", "create_shard_writer", "join_shards", "consolidate"]


def shard_range(n: int, rank: int, world: int) -> range:
    """Rows of rank ``rank`` among ``world``: contiguous, in rank order, sizes differ by at most 1
    (the first ``n % world`` ranks take one more), covering ``0..n-1`` exactly once."""
    if world <= 0 or not 0 <= rank < world or n < 0:
        raise ValueError(f"bad shard request: n={n}, rank={rank}, world={world}")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def shard_path(path: str | os.PathLike, rank: int, world: int) -> Path:
    """File of shard ``rank`` of ``world``, beside ``path``: ``name.shard{r}of{W}.ext``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.shard{rank}of{world}{path.suffix}")


def create_shard_writer(path: str | os.PathLike, rank: int, world: int, num_samples: int,
                        scales: Sequence[Sequence[int]], targets: Mapping[str, Any] | None = None,
                        ids: Sequence[str] | None = None, *, view_index: Sequence[int] | None = None,
                        **kwargs: Any) -> FeatureCacheWriter:
    """The writer of rank ``rank``'s shard of the ``num_samples``-row cache ``path``.

    Takes the arguments of :meth:`FeatureCacheWriter.create` for the WHOLE cache (all ids, all
    view indices); the shard keeps its rows. ``write`` takes global indices (within
    ``shard_range(num_samples, rank, world)``); ``missing_indices`` returns global indices.
    Resuming works per shard, as for a single file.
    """
    rows = shard_range(num_samples, rank, world)
    if len(rows) == 0:
        raise LayoutMismatchError(
            f"shard {rank} of {world} would be empty ({num_samples} samples); use fewer processes")
    ids = [str(i) for i in range(num_samples)] if ids is None else list(ids)
    if len(ids) != num_samples:
        raise LayoutMismatchError(f"{len(ids)} ids given for {num_samples} samples")
    views = None if view_index is None else np.asarray(view_index)[rows.start:rows.stop]
    return FeatureCacheWriter.create(
        shard_path(path, rank, world), len(rows), scales, targets, ids[rows.start:rows.stop],
        view_index=views, first_index=rows.start, shard=(rank, world, num_samples), **kwargs)


def _row_datasets(f: h5py.File, layout: fmt.CacheLayout) -> list[str]:
    """Every per-row dataset of a cache (all of them are joined)."""
    return ([fmt.feature_key(s) for s in range(len(layout.scales))]
            + [fmt.target_key(t) for t in layout.targets]
            + [fmt.IDS, fmt.VIEW, fmt.VIEW_PARAMS, fmt.COMPLETE]
            + [name for name in (fmt.FEATURE_SCALE, fmt.CHECKSUMS) if name in f])


def join_shards(path: str | os.PathLike, world: int) -> Path:
    """Write ``path`` as virtual datasets over the ``world`` shards; returns ``path``.

    Refuses (one line each) a missing shard, an incomplete one (resume it first), and shards that
    disagree on layout, fingerprint or rows. ``path`` is written to a temporary file and renamed,
    so an existing cache there is replaced only by a valid join.
    """
    path = Path(path)
    readers = []
    try:
        for rank in range(world):
            sp = shard_path(path, rank, world)
            if not sp.is_file():
                raise CacheMissingError(
                    f"shard {sp} (rank {rank} of {world}) of cache {path} is missing; run "
                    f"cache-features again with {world} processes to write it")
            readers.append(FeatureCacheReader(sp))  # refuses incomplete shards
        total = _check_shards(path, readers, world)
        _write_joined(path, readers, total)
    finally:
        for r in readers:
            r.close()
    return path


def _check_shards(path: Path, readers: list[FeatureCacheReader], world: int) -> int:
    first = readers[0]
    total = int(first.attrs.get(fmt.ATTR_TOTAL_SAMPLES, -1))
    for rank, r in enumerate(readers):
        rows = shard_range(total, rank, world) if total >= 0 else range(0)
        got = (r.attrs.get(fmt.ATTR_SHARD_RANK), r.attrs.get(fmt.ATTR_SHARD_WORLD),
               r.attrs.get(fmt.ATTR_FIRST_INDEX), r.attrs.get(fmt.ATTR_TOTAL_SAMPLES), len(r))
        if got != (rank, world, rows.start, total, len(rows)):
            raise LayoutMismatchError(
                f"shard {r.path} does not hold rows {rows.start}..{rows.stop - 1} of {total} as rank "
                f"{rank} of {world}; re-run cache-features with {world} processes")
        diffs = _comparable(first.layout).differences(_comparable(r.layout))
        if r.fingerprint != first.fingerprint:
            diffs.append(f"fingerprint: {first.fingerprint[:12]}... vs {r.fingerprint[:12]}...")
        if diffs:
            raise LayoutMismatchError(
                f"shards {first.path} and {r.path} of cache {path} differ ({'; '.join(diffs)}); "
                "re-run cache-features --overwrite")
    return total


def _comparable(layout: fmt.CacheLayout) -> fmt.CacheLayout:
    """The layout without its row count (shards differ in rows by design)."""
    return fmt.CacheLayout(0, layout.scales, layout.strides, layout.targets, layout.dtype,
                           layout.compression, layout.view_param_names, layout.identity)


def _write_joined(path: Path, readers: list[FeatureCacheReader], total: int) -> None:
    first = readers[0]
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".joining", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with h5py.File(tmp, "w") as out:
            for name in _row_datasets(first._file, first.layout):
                _join_dataset(out, name, readers, path.parent, total)
            attrs = {k: v for k, v in first._file.attrs.items() if k not in fmt.SHARD_ATTRS}
            attrs[fmt.ATTR_NUM_SAMPLES] = total
            attrs[fmt.ATTR_VIEWS] = max(int(r.attrs[fmt.ATTR_VIEWS]) for r in readers)
            attrs[fmt.ATTR_CREATED] = min(r.attrs[fmt.ATTR_CREATED] for r in readers)
            attrs[fmt.ATTR_FINISHED] = max(r.attrs[fmt.ATTR_FINISHED] for r in readers)
            for key, value in attrs.items():
                out.attrs[key] = value
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _join_dataset(out: h5py.File, name: str, readers: list[FeatureCacheReader], folder: Path,
                  total: int) -> None:
    source0 = readers[0]._file[name]
    dtype = h5py.string_dtype("utf-8") if name == fmt.IDS else source0.dtype
    layout = h5py.VirtualLayout(shape=(total, *source0.shape[1:]), dtype=dtype)
    for r in readers:
        src = r._file[name]
        start = int(r.attrs[fmt.ATTR_FIRST_INDEX])
        # a relative name: HDF5 looks for it in the joined file's folder, wherever that is moved
        relative = os.path.relpath(r.path.resolve(), folder.resolve())
        layout[start:start + src.shape[0]] = h5py.VirtualSource(relative, name, shape=src.shape, dtype=dtype)
    # unmapped or unreadable rows read as 0: a vanished shard shows as incomplete, never as data
    dset = out.create_virtual_dataset(name, layout, fillvalue=None if name == fmt.IDS else 0)
    for key, value in source0.attrs.items():
        dset.attrs[key] = value


def consolidate(path: str | os.PathLike, out: str | os.PathLike | None = None,
                remove_shards: bool = False, rows_per_copy: int = 64) -> Path:
    """Copy a (joined) cache into one real file with the same layout, data and attributes.

    ``out`` defaults to ``path`` itself (replaced atomically once the copy is complete).
    ``remove_shards`` then deletes the files the joined cache read from.
    """
    path = Path(path)
    target = Path(out) if out is not None else path
    with FeatureCacheReader(path) as reader:
        sources = virtual_source_files(reader._file, path)
        raw_attrs = {k: v for k, v in reader._file.attrs.items()}
        with atomic_cache(target, keep_partial=False) as tmp:
            writer = FeatureCacheWriter.create(tmp, overwrite=True, **reader.creation_kwargs())
            for start in range(0, len(reader), rows_per_copy):
                rows = np.arange(start, min(start + rows_per_copy, len(reader)))
                stored, scales = reader.stored_features_batch(rows)  # verified on the way
                writer.write_stored(rows, stored, reader.targets_batch(rows, decode=False),
                                    reader.view_params_batch(rows) if reader.view_param_names else None, scales)
            writer.finalize()
            with open_h5(tmp, "r+") as f:  # same attributes, timestamps included: it is the same cache
                for key in (fmt.ATTR_CREATED, fmt.ATTR_FINISHED, fmt.ATTR_VIEWS):
                    f.attrs[key] = raw_attrs[key]
    if remove_shards:
        for source in sources:
            if source.resolve() != target.resolve():
                source.unlink(missing_ok=True)
    return target
