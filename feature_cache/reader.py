"""Reading a feature cache: validation first, then per-sample and batched reads.

A reader refuses, each with one line (:class:`~feature_cache.errors.FeatureCacheError`): a missing
file or shard, a file that is not a cache or cannot be opened, another schema version, another
backbone fingerprint than the expected one, and an incomplete cache (an interrupted run: resume it).
A cache joined from shards (HDF5 virtual datasets) reads exactly like a single file.

Every row read is checked against its checksum (format version 2, see :mod:`feature_cache.format`);
a mismatch raises :class:`~feature_cache.errors.CacheCorruptError` naming the file, split, row and
dataset. Version 1 caches have no checksums: they are read unverified (:attr:`FeatureCacheReader.verified`
is False, and a warning is logged once per file).

Direct chunk reads. In an uncompressed single-file cache every row of a dataset is one unfiltered
chunk at a fixed file offset (allocated at creation, see :mod:`feature_cache.writer`). The reader
reads those offsets once (``chunk_iter``: one walk of HDF5's chunk index), maps the file read-only
(``mmap``) and copies a batch's rows of one dataset with one NumPy gather (a strided view of the
mapping, one row per offset), without HDF5 (about 10 h5py calls and their selection machinery per
row otherwise) and without a system call per row: a row is one chunk *per dataset*, so positional
reads (``direct="pread"``, one ``os.preadv`` per row and dataset) pay five system calls per row of
features + one target, where a plain file of whole rows pays one. The checksums are computed over
the returned copy, never over the mapping (what is checked is what the caller gets). Compressed,
virtual (joined shards) or otherwise unusual datasets fall back to h5py; every path returns
identical arrays. NOTE: a mapped file that another process truncates *in place* while a batch is
being copied would kill this process with SIGBUS; before each copy the reader compares the rows'
end with the file's current size (one ``fstat``) and reports rows beyond it as truncated
(:class:`CacheCorruptError`), which leaves only a truncation during the copy itself (microseconds
to milliseconds) uncovered. ``cache-features`` never truncates a cache in place (``--overwrite``
writes a new file and renames it; the mapping keeps the old one). Where that window matters,
``direct="pread"`` turns a short read into the same error. A forked DataLoader worker inherits the
mapping and descriptor safely (no shared file offset).
"""

from __future__ import annotations

import logging
import mmap
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import h5py
import numpy as np
import xxhash

from . import format as fmt
from .direct import HAS_PREADV, DirectRows, pread_into
from .errors import CacheCorruptError, CacheIncompleteError, CacheMissingError, FeatureCacheError
from .format import CacheLayout, check_fingerprint, read_layout
from .h5io import damaged_error, hdf5_reason, open_h5

__all__ = ["FeatureCacheReader", "decode_attrs", "virtual_source_files"]

log = logging.getLogger("feature_cache")
_WARNED_UNVERIFIED: set[str] = set()

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
        direct: read uncompressed single-file datasets with direct chunk reads: ``True`` or
            ``"mmap"`` (default) from a read-only mapping of the file, ``"pread"`` with one
            positional read per row and dataset (slower; no SIGBUS window, see the module
            docstring); ``False`` reads everything through h5py. The same arrays every way.
        verify: check every row read against its checksum (default). ``False`` skips the row
            checks (the file's structure and the feature scales are still checked at opening):
            only to measure what the checks cost (``bench/cache_features.py``), never to train
            or evaluate on a cache nothing else has verified.

    Indices are row numbers ``0..N-1`` of this file (negative ones count from the end).
    Features come back in the stored dtype (float16 by default) unless the cache holds rows that
    were scaled to fit float16 (see :mod:`feature_cache.format`): the features of such a scale
    come back as float32, scaled back (:attr:`feature_dtypes`). Targets in their decoded dtype.
    Every row is checked against its checksum (:class:`CacheCorruptError` on a mismatch).
    """

    def __init__(self, path: str | os.PathLike, fingerprint: str | None = None, *,
                 require_complete: bool = True, direct: bool | str = True, verify: bool = True) -> None:
        self.path = Path(path)
        if direct not in (True, False, "mmap", "pread"):
            raise ValueError(f"direct must be True, False, 'mmap' or 'pread', not {direct!r}")
        if not self.path.is_file():
            raise CacheMissingError(f"feature cache not found: {self.path}; run cache-features to create it")
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._direct: dict[str, DirectRows] = {}
        self._file = open_h5(self.path, "r")
        try:
            self.layout: CacheLayout = read_layout(self._file, self.path)
            fmt.ensure_filters_readable(self.layout.compression, self.path)
            self.is_virtual = self._check_sources()
            check_fingerprint(self.path, self.layout.identity[fmt.ATTR_FINGERPRINT], fingerprint,
                              "the workspace's")
            self.complete = self._read_small(fmt.COMPLETE).astype(bool)
            done, total = int(self.complete.sum()), len(self.complete)
            if require_complete and done != total:
                raise CacheIncompleteError(
                    f"cache {self.path} is incomplete: {done} of {total} samples; run "
                    "cache-features again to resume")
            self.attrs: dict[str, Any] = decode_attrs(self._file.attrs)
            self.ids: list[str] = list(self._file[fmt.IDS].asstr()[...])
            self.view: np.ndarray = self._read_small(fmt.VIEW)
            self.version = int(self.attrs[fmt.ATTR_FORMAT_VERSION])
            #: global index of row 0 (a shard's start; 0 for single and joined files): the checksum seed
            self.first_index = int(self.attrs.get(fmt.ATTR_FIRST_INDEX, 0))
            self._features = [self._file[fmt.feature_key(s)] for s in range(len(self.layout.scales))]
            self._targets = {t: self._file[fmt.target_key(t)] for t in self.layout.targets}
            self._view_params = self._file[fmt.VIEW_PARAMS]
            #: True when the rows carry checksums (format version 2) and are checked on every read
            #: (False for a reader opened with ``verify=False``)
            self.verified = fmt.CHECKSUMS in self._file
            if self.verified:
                sums = self._file[fmt.CHECKSUMS]
                names = fmt.from_json(sums.attrs["columns"])
                if names != fmt.checksum_columns(self.layout):
                    raise CacheCorruptError(
                        f"cache {self.path} has checksum columns {names} that do not match its layout; "
                        "rewrite it (cache-features --overwrite)")
                self._sums = self._read_small(fmt.CHECKSUMS).astype(np.uint64, copy=False)
                self._column = {name: c for c, name in enumerate(names)}
                self.feature_scale = self._read_small(fmt.FEATURE_SCALE)
                self._verify(fmt.FEATURE_SCALE, np.flatnonzero(self.complete), self.feature_scale[self.complete])
            else:
                self._sums, self._column = None, {}
                self.feature_scale = np.ones((total, len(self.layout.scales)), np.float32)
                if str(self.path) not in _WARNED_UNVERIFIED:
                    _WARNED_UNVERIFIED.add(str(self.path))
                    log.warning("cache %s has format version %d: its rows carry no checksums and are read "
                                "unverified; rewrite it (cache-features --overwrite) to protect it",
                                self.path, self.version)
            #: per scale: the dtype features come back in (float32 where rows were scaled)
            self.feature_dtypes = [np.dtype(self.layout.dtype) if (self.feature_scale[:, s] == 1).all()
                                   else np.dtype(np.float32) for s in range(len(self.layout.scales))]
            self.verified = self.verified and verify
            if direct and not self.is_virtual:
                self._setup_direct(mapped=direct != "pread")
        except (OSError, RuntimeError, KeyError) as e:  # HDF5 could not walk the file's structure
            self.close()
            raise damaged_error(self.path, e) from None
        except BaseException:
            self.close()
            raise

    def _read_small(self, name: str) -> np.ndarray:
        try:
            return self._file[name][...]
        except (OSError, RuntimeError) as e:
            raise CacheCorruptError(
                f"cache {self.path}: {name} cannot be read ({hdf5_reason(str(e))}); the file is "
                "damaged: rewrite it (cache-features --overwrite)") from None

    def _setup_direct(self, mapped: bool) -> None:
        size = os.path.getsize(self.path)
        names = [fmt.feature_key(s) for s in range(len(self.layout.scales))]
        names += [fmt.target_key(t) for t in self.layout.targets] + [fmt.VIEW_PARAMS]
        for name in names:
            rows = DirectRows.of(self._file[name])
            if rows is None:
                continue
            if rows.last_end > size:
                raise CacheCorruptError(
                    f"cache {self.path} is truncated: {name} ends at byte {rows.last_end} but the file has "
                    f"{size}; rewrite it (cache-features --overwrite --split {self.split})")
            self._direct[name] = rows
        if self._direct:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            if mapped and size:
                try:
                    self._map = mmap.mmap(self._fd, size, access=mmap.ACCESS_READ)
                except (OSError, OverflowError, ValueError) as e:  # e.g. no address space for it
                    log.info("cache %s cannot be mapped (%s); reading it with positional reads", self.path, e)
                    return
                data = np.frombuffer(self._map, np.uint8)
                for rows in self._direct.values():
                    if rows.row_bytes:
                        # row i of the view: the row_bytes bytes from file byte i on
                        rows.view = np.lib.stride_tricks.as_strided(
                            data, shape=(size - rows.row_bytes + 1, rows.row_bytes), strides=(1, 1),
                            writeable=False)
                del data

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
    def split(self) -> str:
        return self.layout.identity[fmt.ATTR_SPLIT] or "?"

    @property
    def scales(self) -> tuple[tuple[int, int, int], ...]:
        return self.layout.scales

    @property
    def tasks(self) -> list[str]:
        return list(self.layout.targets)

    @property
    def view_param_names(self) -> tuple[str, ...]:
        return self.layout.view_param_names

    @property
    def direct_datasets(self) -> list[str]:
        """The datasets read with direct chunk reads (the others go through h5py)."""
        return list(self._direct)

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
        """Sample ``i``'s features: one (C_s, H_s, W_s) array per scale (:attr:`feature_dtypes`)."""
        return [f[0] for f in self.features_batch([i])]

    def targets(self, i: int, tasks: Iterable[str] | None = None, decode: bool = True) -> dict[str, np.ndarray]:
        """Sample ``i``'s targets: task -> (*shape) array (decoded dtype; stored dtype if not ``decode``)."""
        return {t: v[0] for t, v in self.targets_batch([i], tasks, decode).items()}

    def view_params(self, i: int) -> np.ndarray:
        """Sample ``i``'s (K,) float32 view parameters (names: :attr:`view_param_names`)."""
        return self.view_params_batch([i])[0]

    # -- batches --------------------------------------------------------------------------------
    def features_batch(self, indices: Sequence[int]) -> list[np.ndarray]:
        """One (B, C_s, H_s, W_s) array per scale for the rows ``indices`` (any order, repeats ok)."""
        rows = self._rows(indices)
        stored = [self._read_rows(fmt.feature_key(s), d, rows) for s, d in enumerate(self._features)]
        return [self._unscale(s, arr, rows) for s, arr in enumerate(stored)]

    def stored_features_batch(self, indices: Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
        """The stored feature arrays (no scaling back) and their (B, S) float32 scales."""
        rows = self._rows(indices)
        return ([self._read_rows(fmt.feature_key(s), d, rows) for s, d in enumerate(self._features)],
                self.feature_scale[rows])

    def targets_batch(self, indices: Sequence[int], tasks: Iterable[str] | None = None,
                      decode: bool = True) -> dict[str, np.ndarray]:
        rows = self._rows(indices)
        return {t: self._decode(t, self._read_rows(fmt.target_key(t), self._targets[t], rows), decode)
                for t in self._tasks(tasks)}

    def view_params_batch(self, indices: Sequence[int]) -> np.ndarray:
        return self._read_rows(fmt.VIEW_PARAMS, self._view_params, self._rows(indices))

    def _rows(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices).reshape(-1)
        if idx.dtype.kind not in "iu":
            idx = np.asarray([int(i) for i in idx], dtype=np.int64)
        n = len(self)
        if not len(idx):
            return idx.astype(np.int64)
        low = idx.min()
        if low < -n or idx.max() >= n:
            bad = idx[(idx < -n) | (idx >= n)][0]
            raise IndexError(f"index {int(bad)} out of range for cache {self.path} with {n} samples")
        idx = idx.astype(np.int64, copy=False)  # NOTE: may be the caller's array; never written to
        return idx % n if low < 0 else idx

    def _unscale(self, s: int, arr: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if self.feature_dtypes[s] == arr.dtype:
            return arr
        scale = self.feature_scale[rows, s].reshape(-1, *([1] * (arr.ndim - 1)))
        return arr.astype(np.float32) * scale

    def _read_rows(self, name: str, dset: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (in range, any order, repeats ok) of one dataset, stored dtype, verified."""
        direct = self._direct.get(name)
        if direct is not None:
            if direct.view is not None:
                out = self._read_mapped(name, direct, rows).view(direct.dtype).reshape(len(rows), *direct.shape)
            else:
                out = np.empty((len(rows), *direct.shape), dtype=direct.dtype)
                self._read_direct(name, direct, rows, out)
            self._verify(name, rows, out)
            return out
        unique, inverse = np.unique(rows, return_inverse=True)
        buffer = np.empty((len(unique), *dset.shape[1:]), dtype=dset.dtype)
        # consecutive rows are read with one slice each (one HDF5 call per run, not per row)
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        for run in np.split(np.arange(len(unique)), breaks):
            if not len(run):
                continue
            first, last = int(unique[run[0]]), int(unique[run[-1]])
            try:
                # a single row goes through h5py's fast path for integer indexing (several times
                # faster than a one-row slice)
                buffer[run[0]:run[-1] + 1] = dset[first] if first == last else dset[first:last + 1]
            except (OSError, RuntimeError) as e:
                which = f"row {first}" if first == last else f"rows {first}..{last}"
                raise CacheCorruptError(
                    f"cache {self.path} (split {self.split}): {which} of {name} cannot be read "
                    f"({hdf5_reason(str(e))}); the file is damaged: rewrite this cache "
                    f"(cache-features --overwrite --split {self.split})") from None
        self._verify(name, unique, buffer)
        return buffer[inverse.reshape(-1)]

    def _read_mapped(self, name: str, direct: DirectRows, rows: np.ndarray) -> np.ndarray:
        """(B, row_bytes) uint8: the rows' bytes copied from the mapping with one gather (a fresh
        C-contiguous array). Rows now beyond the file's end are refused before anything is touched."""
        offsets = direct.offsets[rows]
        nbytes = direct.row_bytes
        size = os.fstat(self._fd).st_size  # a mapped page beyond the end of the file is SIGBUS
        if size < direct.last_end and len(offsets) and int(offsets.max()) + nbytes > size:
            j = int(np.flatnonzero(offsets + nbytes > size)[0])
            raise self._truncated(name, int(rows[j]), max(0, size - int(offsets[j])), nbytes)
        return direct.view[offsets]

    def _truncated(self, name: str, row: int, got: int, nbytes: int) -> CacheCorruptError:
        return CacheCorruptError(
            f"cache {self.path} (split {self.split}) is truncated: row {row} of {name} has {got} of "
            f"{nbytes} bytes; rewrite this cache (cache-features --overwrite --split {self.split})")

    def _read_direct(self, name: str, direct: DirectRows, rows: np.ndarray, out: np.ndarray) -> None:
        nbytes = direct.row_bytes
        if nbytes == 0 or not len(rows):
            return
        flat = out.reshape(len(rows), -1).view(np.uint8).reshape(len(rows), nbytes)
        fd = self._fd
        for j, offset in enumerate(direct.offsets[rows].tolist()):
            # one system call per row in the common case (this loop is the reader's hot path)
            got = os.preadv(fd, (flat[j],), offset) if HAS_PREADV else 0
            if got != nbytes:
                got = pread_into(fd, flat[j], offset)
            if got != nbytes:
                raise self._truncated(name, int(rows[j]), got, nbytes)

    def _verify(self, name: str, rows: np.ndarray, data: np.ndarray) -> None:
        """Compare each row's checksum with the stored one (no-op for unverified version 1 files)."""
        if not self.verified or not len(rows):
            return
        flat = data.reshape(len(rows), -1)
        if not flat.flags.c_contiguous:
            flat = np.ascontiguousarray(flat)
        # one C-level iteration over the rows (numpy row views, no Python frame per row); the
        # comparison of two lists of ints costs less than building arrays for it
        got = list(map(xxhash.xxh3_64_intdigest, flat, (rows + self.first_index).tolist()))
        stored = self._sums[rows, self._column[name]].tolist()
        if got != stored:
            bad = next(j for j, (a, b) in enumerate(zip(got, stored)) if a != b)
            raise CacheCorruptError(self.corrupt_message(int(rows[bad]), name))

    def corrupt_message(self, row: int, name: str) -> str:
        """The one-line report of a row whose bytes do not match its checksum."""
        sample = self.ids[row] if 0 <= row < len(self.ids) else "?"
        return (f"cache {self.path} (split {self.split}) is corrupt: row {row} (sample {sample!r}) of "
                f"{name} does not match its checksum; rewrite this cache "
                f"(cache-features --overwrite --split {self.split})")

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
        """Every row at once, verified: (features per scale as :attr:`feature_dtypes`, targets per
        task in the stored dtype, view params)."""
        rows = np.arange(len(self))
        return (self.features_batch(rows),
                {t: self._read_rows(fmt.target_key(t), self._targets[t], rows) for t in self._tasks(tasks)},
                self.view_params_batch(rows))

    def nbytes(self, tasks: Iterable[str] | None = None) -> int:
        """Bytes :meth:`read_all` needs in memory (uncompressed)."""
        feats = sum(int(np.prod(d.shape)) * dt.itemsize for d, dt in zip(self._features, self.feature_dtypes))
        dsets = [*(self._targets[t] for t in self._tasks(tasks)), self._view_params]
        return feats + sum(int(np.prod(d.shape)) * d.dtype.itemsize for d in dsets)

    def close(self) -> None:
        for rows in self._direct.values():
            rows.view = None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a view of the mapping is still alive: unmapped when it is collected
                pass
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> "FeatureCacheReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"FeatureCacheReader({str(self.path)!r}, samples={len(self)}, scales={list(self.scales)}, "
                f"tasks={self.tasks}, dtype={self.layout.dtype})")
