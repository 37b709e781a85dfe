"""Reading a feature cache: validation first, then per-sample and batched reads.

A reader refuses, each with one line (:class:`~feature_cache.errors.FeatureCacheError`): a missing
file or shard, a file that is not a cache or cannot be opened, another schema version, another
backbone fingerprint than the expected one, and an incomplete cache (an interrupted run: resume it).
A cache joined from shards (HDF5 virtual datasets) reads exactly like a single file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import h5py
import numpy as np

from . import format as fmt
from .errors import CacheIncompleteError, CacheMissingError, FeatureCacheError
from .format import CacheLayout
from .writer import check_fingerprint, open_h5, read_layout

__all__ = ["FeatureCacheReader", "decode_attrs", "virtual_source_files"]

_JSON_ATTRS = {fmt.ATTR_NORMALISATION, fmt.ATTR_SCALES, fmt.ATTR_STRIDES, fmt.ATTR_TASKS,
               fmt.ATTR_TARGETS, fmt.ATTR_VIEW_PARAM_NAMES, fmt.ATTR_METADATA}


def decode_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    """File attributes as Python values: JSON parsed, numpy scalars as int/float, arrays as tuples."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if key in _JSON_ATTRS:
            value = fmt.from_json(value)
        elif isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, np.ndarray):
            value = tuple(value.tolist())
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def virtual_source_files(f: h5py.File, path: Path) -> list[Path]:
    """The files the virtual datasets of ``f`` read from, resolved as HDF5 does: relative names
    against the folder of ``path`` (so a folder of cache + shards can be moved as a whole)."""
    files: dict[str, Path] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.is_virtual:
            for source in obj.virtual_sources():
                if source.file_name != "." and source.file_name not in files:
                    p = Path(source.file_name)
                    files[source.file_name] = p if p.is_absolute() else path.parent / p

    f.visititems(visit)
    return list(files.values())


class FeatureCacheReader:
    """Random and batched access to one validated cache.

    Args:
        path: the cache file (single file or joined shards).
        fingerprint: the backbone fingerprint the caller expects (e.g. the workspace's); ``None``
            skips the check.
        require_complete: refuse a cache with unwritten rows (default). ``False`` is for tools
            that inspect an interrupted run.

    Indices are row numbers ``0..N-1`` of this file (negative ones count from the end).
    Features come back in the stored dtype (float16 by default); targets in their decoded dtype.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: str | None = None, *,
                 require_complete: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CacheMissingError(f"feature cache not found: {self.path}; run cache-features to create it")
        self._file = open_h5(self.path, "r")
        try:
            self.layout: CacheLayout = read_layout(self._file, self.path)
            fmt.ensure_filters_readable(self.layout.compression, self.path)
            self.is_virtual = self._check_sources()
            check_fingerprint(self.path, self.layout.identity[fmt.ATTR_FINGERPRINT], fingerprint,
                              "the workspace's")
            self.complete = self._file[fmt.COMPLETE][...].astype(bool)
            done, total = int(self.complete.sum()), len(self.complete)
            if require_complete and done != total:
                raise CacheIncompleteError(
                    f"cache {self.path} is incomplete: {done} of {total} samples; run "
                    "cache-features again to resume")
            self.attrs: dict[str, Any] = decode_attrs(self._file.attrs)
            self.ids: list[str] = list(self._file[fmt.IDS].asstr()[...])
            self.view: np.ndarray = self._file[fmt.VIEW][...]
            self._features = [self._file[fmt.feature_key(s)] for s in range(len(self.layout.scales))]
            self._targets = {t: self._file[fmt.target_key(t)] for t in self.layout.targets}
            self._view_params = self._file[fmt.VIEW_PARAMS]
        except BaseException:
            self._file.close()
            raise

    def _check_sources(self) -> bool:
        sources = virtual_source_files(self._file, self.path)
        for source in sources:
            if not source.is_file():
                raise CacheMissingError(
                    f"shard {source} of cache {self.path} is missing; restore it, or re-run "
                    "cache-features to rebuild the cache")
        return bool(sources)

    # -- metadata -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.layout.num_samples

    @property
    def fingerprint(self) -> str:
        return self.layout.identity[fmt.ATTR_FINGERPRINT]

    @property
    def scales(self) -> tuple[tuple[int, int, int], ...]:
        return self.layout.scales

    @property
    def tasks(self) -> list[str]:
        return list(self.layout.targets)

    @property
    def view_param_names(self) -> tuple[str, ...]:
        return self.layout.view_param_names

    def disk_bytes_per_sample(self) -> float:
        """Bytes on disk per row (the file, or the files a joined cache reads from)."""
        files = virtual_source_files(self._file, self.path) or [self.path]
        return sum(os.path.getsize(p) for p in files) / len(self)

    def creation_kwargs(self) -> dict[str, Any]:
        """Arguments of :meth:`FeatureCacheWriter.create` that make an empty cache of this layout."""
        ident = self.layout.identity
        return dict(
            num_samples=len(self), scales=self.layout.scales, targets=dict(self.layout.targets),
            ids=self.ids, fingerprint=ident[fmt.ATTR_FINGERPRINT], input_size=ident[fmt.ATTR_INPUT_SIZE],
            backbone=ident[fmt.ATTR_BACKBONE], normalisation=ident[fmt.ATTR_NORMALISATION],
            dataset=ident[fmt.ATTR_DATASET], split=ident[fmt.ATTR_SPLIT], view_index=self.view,
            view_param_names=self.layout.view_param_names, strides=self.layout.strides,
            metadata=self.attrs.get(fmt.ATTR_METADATA, {}), dtype=self.layout.dtype,
            compression=self.layout.compression,
        )

    # -- one sample -----------------------------------------------------------------------------
    def _row(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for cache {self.path} with {n} samples")
        return i % n

    def features(self, i: int) -> list[np.ndarray]:
        """Sample ``i``'s features: one (C_s, H_s, W_s) array per scale, stored dtype."""
        row = self._row(i)
        return [d[row] for d in self._features]

    def targets(self, i: int, tasks: Iterable[str] | None = None, decode: bool = True) -> dict[str, np.ndarray]:
        """Sample ``i``'s targets: task -> (*shape) array (decoded dtype; stored dtype if not ``decode``)."""
        row = self._row(i)
        return {t: self._decode(t, self._targets[t][row], decode) for t in self._tasks(tasks)}

    def view_params(self, i: int) -> np.ndarray:
        """Sample ``i``'s (K,) float32 view parameters (names: :attr:`view_param_names`)."""
        return self._view_params[self._row(i)]

    # -- batches --------------------------------------------------------------------------------
    def features_batch(self, indices: Sequence[int]) -> list[np.ndarray]:
        """One (B, C_s, H_s, W_s) array per scale for the rows ``indices`` (any order, repeats ok)."""
        return [self._read_rows(d, indices) for d in self._features]

    def targets_batch(self, indices: Sequence[int], tasks: Iterable[str] | None = None,
                      decode: bool = True) -> dict[str, np.ndarray]:
        return {t: self._decode(t, self._read_rows(self._targets[t], indices), decode)
                for t in self._tasks(tasks)}

    def view_params_batch(self, indices: Sequence[int]) -> np.ndarray:
        return self._read_rows(self._view_params, indices)

    def _read_rows(self, dset: h5py.Dataset, indices: Sequence[int]) -> np.ndarray:
        rows = np.asarray([self._row(i) for i in np.asarray(indices).reshape(-1)], dtype=np.int64)
        unique, inverse = np.unique(rows, return_inverse=True)
        buffer = np.empty((len(unique), *dset.shape[1:]), dtype=dset.dtype)
        # consecutive rows are read with one slice each (one HDF5 call per run, not per row)
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        for run in np.split(np.arange(len(unique)), breaks):
            first, last = int(unique[run[0]]), int(unique[run[-1]])
            # a single row goes through h5py's fast path for integer indexing (several times
            # faster than a one-row slice)
            buffer[run[0]:run[-1] + 1] = dset[first] if first == last else dset[first:last + 1]
        return buffer[inverse.reshape(-1)]

    def _tasks(self, tasks: Iterable[str] | None) -> list[str]:
        if tasks is None:
            return self.tasks
        tasks = list(tasks)
        unknown = [t for t in tasks if t not in self.layout.targets]
        if unknown:
            raise FeatureCacheError(
                f"cache {self.path} has no targets for {unknown}; it holds {self.tasks}")
        return tasks

    def _decode(self, task: str, arr: np.ndarray, decode: bool) -> np.ndarray:
        return arr.astype(self.layout.targets[task].decoded_dtype, copy=False) if decode else arr

    # -- whole cache ----------------------------------------------------------------------------
    def read_all(self, tasks: Iterable[str] | None = None
                 ) -> tuple[list[np.ndarray], dict[str, np.ndarray], np.ndarray]:
        """Every row at once, stored dtypes: (features per scale, targets per task, view params)."""
        return ([d[...] for d in self._features],
                {t: self._targets[t][...] for t in self._tasks(tasks)},
                self._view_params[...])

    def nbytes(self, tasks: Iterable[str] | None = None) -> int:
        """Bytes :meth:`read_all` needs in memory (uncompressed)."""
        dsets = [*self._features, *(self._targets[t] for t in self._tasks(tasks)), self._view_params]
        return sum(int(np.prod(d.shape)) * d.dtype.itemsize for d in dsets)

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> "FeatureCacheReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"FeatureCacheReader({str(self.path)!r}, samples={len(self)}, scales={list(self.scales)}, "
                f"tasks={self.tasks}, dtype={self.layout.dtype})")
