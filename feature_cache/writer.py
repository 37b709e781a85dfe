"""Writing a feature cache: create or resume, write batches crash-safely, finalise.

Crash safety (the design a reviewer must know). A cache takes hours to compute, so a run killed
at any instant (SIGKILL, OOM killer, a pre-empted job) must leave a file that (1) still opens,
(2) marks complete only rows whose bytes are really in it, and (3) resumes where it stopped.

- The file skeleton (every dataset, the ids, the attributes, a zeroed completion mask) is built in
  a temporary file and renamed into place, so ``path`` is never a half-created file.
- Without compression every dataset is allocated at creation (``H5D_ALLOC_TIME_EARLY``, no fill
  write, so the file is sparse until written). Writing a row then changes raw bytes only, never
  HDF5 metadata: the structure on disk is the same before, during and after any write, so a kill
  in the middle of a write cannot damage it. (Compressed chunks change size, so HDF5 must allocate
  them as they come and update its chunk index: there the file is consistent after each flush, and
  a kill inside the flush itself can, rarely, damage it; the writer then says so and offers to start
  again. Use no compression when the run may be killed often.)
- ``write()`` writes the rows, calls ``H5Fflush`` (every byte handed to the OS), and only then sets
  the rows' ``complete`` flags and flushes again. A kill before the second flush loses at most the
  flags of the last batch, which are simply written again on resume.
- The files use the default superblock (version 0), which has no "file is open for writing"
  flag: a killed writer leaves no flag that would need ``h5clear`` before the file opens again.

NOTE: ``H5Fflush`` hands the data to the operating system; it does not ``fsync``. That survives
the death of the process (SIGKILL), not a power cut or kernel crash mid-run: after one, re-check
the cache or write it again.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import queue
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np
import torch
from h5py import h5d, h5p

from . import format as fmt
from .errors import (CacheBusyError, CacheCorruptError, CacheIncompleteError, CacheVersionError,
                     FeatureCacheError, FingerprintMismatchError, LayoutMismatchError)
from .format import CacheLayout, TargetSpec

__all__ = ["FeatureCacheWriter", "BackgroundWriter", "atomic_cache", "partial_path", "open_h5"]

ArrayLike = Any  # np.ndarray | torch.Tensor | nested sequences


def utc_now() -> str:
    """The current UTC time as ISO 8601 (seconds), as stored in the created/finished attributes."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def open_h5(path: Path, mode: str) -> h5py.File:
    """Open an HDF5 file, turning HDF5's errors into one clear :class:`FeatureCacheError` line."""
    try:
        return h5py.File(path, mode)
    except BlockingIOError as e:  # HDF5 could not take its file lock (errno EAGAIN/EWOULDBLOCK)
        raise CacheBusyError(
            f"cache {path} is open for writing in another process ({e}); wait for it to finish "
            "or stop it") from None
    except OSError as e:
        if "lock" in str(e).lower():
            raise CacheBusyError(
                f"cache {path} is locked by another process ({e}); wait for it to finish or stop it"
            ) from None
        raise CacheCorruptError(
            f"cache {path} cannot be opened as HDF5 ({e}); it was probably damaged by an "
            "interrupted run: delete it, or write it again with overwrite=True "
            "(cache-features --overwrite)") from None


def as_numpy(x: ArrayLike) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array (no copy when already numpy on CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16:  # numpy has no bfloat16
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def _early_dcpl() -> h5p.PropDCID:
    """Dataset creation properties: allocate all file space when the dataset is created."""
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
    return dcpl


def _runs(rows: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Split rows into runs of consecutive values: ``[(start, stop, positions in rows), ...]``.

    Each run is written with one slice (one HDF5 call per dataset) instead of one call per row.
    """
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
    return [(int(ordered[p[0]]), int(ordered[p[-1]]) + 1, order[p])
            for p in np.split(np.arange(len(rows)), breaks) if len(p)]


class FeatureCacheWriter:
    """Writes one feature cache file; create it (or resume it) with :meth:`create`.

    Example::

        w = FeatureCacheWriter.create("pascal_val.h5", num_samples=len(ds),
                                      scales=[(18, 128, 128), (36, 64, 64), ...],
                                      targets={"semseg": ((512, 512), "uint8")},
                                      ids=ds.ids, fingerprint=fp, input_size=(512, 512))
        for idx in batches(w.missing_indices(), 8):
            w.write(idx, backbone(images(idx)), {"semseg": labels(idx)})
        w.finalize()
    """

    def __init__(self, file: h5py.File, path: Path, layout: CacheLayout, first_index: int,
                 resumed: bool) -> None:
        self._file = file
        self.path = path
        self.layout = layout
        #: global index of this file's first row (0, or a shard's start)
        self.first_index = first_index
        #: True when :meth:`create` found an existing compatible file and kept it
        self.resumed = resumed
        self._features = [file[fmt.feature_key(s)] for s in range(len(layout.scales))]
        self._targets = {t: file[fmt.target_key(t)] for t in layout.targets}
        self._view_params = file[fmt.VIEW_PARAMS]
        self._complete = file[fmt.COMPLETE]

    # -- creation / resumption ----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        num_samples: int,
        scales: Sequence[Sequence[int]],
        targets: Mapping[str, Any] | None = None,
        ids: Sequence[str] | None = None,
        *,
        fingerprint: str,
        input_size: Sequence[int],
        backbone: str = "",
        normalisation: Mapping[str, Any] | None = None,
        dataset: str = "",
        split: str = "",
        view_index: Sequence[int] | None = None,
        view_param_names: Sequence[str] = (),
        strides: Sequence[int] | None = None,
        metadata: Mapping[str, Any] | None = None,
        dtype: str = "float16",
        compression: str | None = None,
        resume: bool = True,
        overwrite: bool = False,
        first_index: int = 0,
        shard: tuple[int, int, int] | None = None,
    ) -> "FeatureCacheWriter":
        """Create the cache at ``path``, or reopen it to resume an interrupted run.

        Args:
            num_samples: rows N (images x views).
            scales: per scale ``(C, H, W)`` of one sample's features, finest first; empty for a
                file of targets alone (targets added beside an existing cache, row for row: same
                ids, views and view parameters; ``write`` then takes ``features=[]``).
            targets: task -> ``(shape, dtype)`` or ``(shape, dtype, decoded_dtype)``; ``shape`` is
                one sample's decoded, resized target (e.g. ``(H, W)``), ``dtype`` how it is stored
                (e.g. ``"uint8"`` for int64 labels with ignore 255, see
                :func:`~feature_cache.format.label_storage_dtype`; ``"float16"`` for dense maps).
            ids: N sample ids (default ``"0"``, ``"1"``, ...); the same id repeats across views.
            fingerprint: the backbone fingerprint; a reader refuses a cache with another one.
            input_size: ``(H, W)`` of the network input in pixels.
            view_index: N view indices (0 = un-augmented); default all 0.
            view_param_names: names of the K per-row view parameters (e.g. flip, zoom, angle).
            strides: per scale, input pixels per feature cell; default ``input_size[0] // H_s``.
            metadata: extra JSON-serialisable metadata, stored as the ``metadata`` attribute.
            dtype: ``"float16"`` (default) or ``"float32"`` for the features.
            compression: ``None``, ``"gzip"``, ``"lzf"``, ``"zstd"`` or ``"blosc"`` (lossless).
            resume: when ``path`` exists with the same layout and fingerprint, keep it and write
                only :meth:`missing_indices`; when it differs raise :class:`LayoutMismatchError` /
                :class:`FingerprintMismatchError`. ``resume=False`` refuses any existing file.
            overwrite: delete an existing ``path`` first (see :func:`atomic_cache` to keep the old
                cache until the new one is complete).
            first_index, shard: for shard files (see :mod:`feature_cache.shards`): the global index
                of row 0, and ``(rank, world, total_samples)``.
        """
        path = Path(path)
        layout = cls._requested_layout(num_samples, scales, targets, fingerprint, input_size,
                                       backbone, normalisation, dataset, split, view_param_names,
                                       strides, dtype, compression)
        ids_array = cls._check_ids(ids, num_samples, first_index)
        views = cls._check_view_index(view_index, num_samples)
        if path.is_dir():
            raise FeatureCacheError(f"cache path {path} is a folder; give a file name such as {path / 'cache.h5'}")
        if path.exists() and overwrite:
            path.unlink()
        if path.exists():
            if not resume:
                raise LayoutMismatchError(
                    f"cache {path} already exists; resume it, or pass overwrite=True "
                    "(cache-features --overwrite) to replace it")
            return cls._resume(path, layout, ids_array, views, first_index, shard)
        if shard is None and layout.compression is None:
            _check_free_space(path, layout)
        cls._create_skeleton(path, layout, ids_array, views, metadata, first_index, shard)
        return cls(open_h5(path, "r+"), path, layout, first_index, resumed=False)

    @staticmethod
    def _requested_layout(num_samples, scales, targets, fingerprint, input_size, backbone,
                          normalisation, dataset, split, view_param_names, strides, dtype,
                          compression) -> CacheLayout:
        if int(num_samples) <= 0:
            raise FeatureCacheError(f"num_samples must be positive, got {num_samples}")
        scales = tuple(tuple(int(d) for d in s) for s in scales)
        if (not scales and not targets) or any(len(s) != 3 or min(s) <= 0 for s in scales):
            raise FeatureCacheError(f"scales must be a list of positive (C, H, W) (empty only for a file of "
                                    f"targets alone), got {scales}")
        input_size = tuple(int(v) for v in input_size)
        if len(input_size) != 2 or min(input_size) <= 0:
            raise FeatureCacheError(f"input_size must be (H, W) in pixels, got {input_size}")
        if strides is None:
            if any(input_size[0] % s[1] for s in scales):
                raise FeatureCacheError(
                    f"cannot derive strides from input_size {input_size} and scales {scales}; pass strides=")
            strides = [input_size[0] // s[1] for s in scales]
        strides = tuple(int(s) for s in strides)
        if len(strides) != len(scales):
            raise FeatureCacheError(f"{len(strides)} strides given for {len(scales)} scales")
        if dtype not in fmt.FEATURE_DTYPES:
            raise FeatureCacheError(f"feature dtype must be float16 or float32, got {dtype!r}")
        fmt.compression_kwargs(compression)  # validates the name, needs hdf5plugin for zstd/blosc
        specs = {}
        for task, spec in (targets or {}).items():
            if task in fmt.RESERVED_ITEM_KEYS or not task or "/" in task:
                raise FeatureCacheError(
                    f"task name {task!r} is reserved or invalid (reserved: {', '.join(fmt.RESERVED_ITEM_KEYS)})")
            specs[str(task)] = TargetSpec.parse(task, spec)
        return CacheLayout(
            num_samples=int(num_samples), scales=scales, strides=strides, targets=specs,
            dtype=dtype, compression=compression,
            view_param_names=tuple(str(n) for n in view_param_names),
            identity=fmt.make_identity(fingerprint, backbone, input_size, normalisation, dataset, split),
        )

    @staticmethod
    def _check_ids(ids, num_samples: int, first_index: int) -> np.ndarray:
        if ids is None:
            ids = [str(first_index + i) for i in range(num_samples)]
        ids = [str(i) for i in ids]
        if len(ids) != num_samples:
            raise FeatureCacheError(f"{len(ids)} ids given for {num_samples} samples")
        return np.array(ids, dtype=object)

    @staticmethod
    def _check_view_index(view_index, num_samples: int) -> np.ndarray:
        views = np.zeros(num_samples, np.int32) if view_index is None else np.asarray(view_index)
        if views.shape != (num_samples,) or views.dtype.kind not in "iu" or (views < 0).any():
            raise FeatureCacheError(
                f"view_index must hold {num_samples} non-negative integers, got shape {views.shape} dtype {views.dtype}")
        return views.astype(np.int32)

    @staticmethod
    def _create_skeleton(path: Path, layout: CacheLayout, ids: np.ndarray, views: np.ndarray,
                         metadata, first_index: int, shard) -> None:
        """Build every dataset and attribute in a temporary file, then rename it to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".creating", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with h5py.File(tmp, "w") as f:
                write_skeleton(f, layout, ids, views, metadata, first_index, shard)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def _resume(cls, path: Path, layout: CacheLayout, ids: np.ndarray, views: np.ndarray,
                first_index: int, shard) -> "FeatureCacheWriter":
        f = open_h5(path, "r+")
        try:
            stored = read_layout(f, path)
            check_fingerprint(path, stored.identity[fmt.ATTR_FINGERPRINT],
                              layout.identity[fmt.ATTR_FINGERPRINT], "this run's")
            diffs = stored.differences(layout)
            stored_ids = f[fmt.IDS].asstr()[...]
            if not np.array_equal(stored_ids, ids.astype(str)):
                diffs.append("ids differ")
            if not np.array_equal(f[fmt.VIEW][...], views):
                diffs.append("view indices differ")
            stored_first = int(f.attrs.get(fmt.ATTR_FIRST_INDEX, 0))
            if stored_first != first_index:
                diffs.append(f"first_index: stored {stored_first} vs requested {first_index}")
            if shard is not None and tuple(int(f.attrs.get(a, -1)) for a in (
                    fmt.ATTR_SHARD_RANK, fmt.ATTR_SHARD_WORLD, fmt.ATTR_TOTAL_SAMPLES)) != tuple(shard):
                diffs.append("shard rank/world/total differ")
            if diffs:
                raise LayoutMismatchError(
                    f"cache {path} exists with another layout ({'; '.join(diffs)}); pass "
                    "overwrite=True (cache-features --overwrite) to replace it")
        except BaseException:
            f.close()
            raise
        return cls(f, path, stored, first_index, resumed=True)

    # -- state ----------------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return self.layout.num_samples

    def missing_indices(self) -> np.ndarray:
        """Global indices of the rows not yet written (ascending, int64)."""
        return np.flatnonzero(self._complete[...] == 0).astype(np.int64) + self.first_index

    def num_complete(self) -> int:
        return int(np.count_nonzero(self._complete[...]))

    # -- writing --------------------------------------------------------------------------------
    def write(self, indices: ArrayLike, features: Sequence[ArrayLike],
              targets: Mapping[str, ArrayLike] | None = None,
              view_params: ArrayLike | None = None) -> None:
        """Write B rows, then mark them complete.

        Args:
            indices: (B,) global row indices (any order, no repeats).
            features: one (B, C_s, H_s, W_s) tensor or array per scale (any float dtype/device).
            targets: task -> (B, *shape) for every task of the cache.
            view_params: (B, K) view parameters; required when the cache has K > 0 names.

        Everything is validated and converted before the file is touched. Rows already complete
        are unmarked (and flushed) first, so an interrupted rewrite is never taken as complete.
        """
        rows = self._rows(indices)
        batch = len(rows)
        feats = self._convert_features(features, batch)
        tgts = self._convert_targets(targets or {}, batch)
        params = self._convert_view_params(view_params, batch)
        if batch == 0:
            return
        runs = _runs(rows)
        if self._complete[...][rows].any():
            for start, stop, _ in runs:
                self._complete[start:stop] = 0
            self._file.flush()
        for start, stop, pos in runs:
            for dset, arr in zip(self._features, feats):
                dset[start:stop] = arr[pos]
            for task, arr in tgts.items():
                self._targets[task][start:stop] = arr[pos]
            self._view_params[start:stop] = params[pos]
        self._file.flush()  # every byte of the rows is in the file before any flag says so
        for start, stop, _ in runs:
            self._complete[start:stop] = 1
        self._file.flush()

    def _rows(self, indices: ArrayLike) -> np.ndarray:
        idx = as_numpy(indices).astype(np.int64, copy=False).reshape(-1)
        rows = idx - self.first_index
        if ((rows < 0) | (rows >= self.num_samples)).any():
            bad = idx[(rows < 0) | (rows >= self.num_samples)][0]
            raise FeatureCacheError(
                f"index {bad} is outside cache {self.path} (rows {self.first_index}.."
                f"{self.first_index + self.num_samples - 1})")
        if len(np.unique(rows)) != len(rows):
            raise FeatureCacheError(f"indices written to cache {self.path} repeat within one batch")
        return rows

    def _convert_features(self, features: Sequence[ArrayLike], batch: int) -> list[np.ndarray]:
        if len(features) != len(self.layout.scales):
            raise LayoutMismatchError(
                f"{len(features)} feature scales given, cache {self.path} has {len(self.layout.scales)}")
        out = []
        for s, (x, shape) in enumerate(zip(features, self.layout.scales)):
            arr = as_numpy(x)
            if arr.shape != (batch, *shape):
                raise LayoutMismatchError(
                    f"features of scale {s} have shape {arr.shape}, cache {self.path} expects {(batch, *shape)}")
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected just below
                stored = arr.astype(self.layout.dtype, copy=False)
            if not np.isfinite(stored).all():
                if not np.isfinite(arr).all():
                    raise FeatureCacheError(f"features of scale {s} hold NaN or inf values; check the backbone")
                raise FeatureCacheError(
                    f"features of scale {s} overflow {self.layout.dtype} (max |x| = "
                    f"{float(np.abs(arr).max()):.4g}); create the cache with dtype='float32'")
            out.append(stored)
        return out

    def _convert_targets(self, targets: Mapping[str, ArrayLike], batch: int) -> dict[str, np.ndarray]:
        missing = set(self.layout.targets) - set(targets)
        unknown = set(targets) - set(self.layout.targets)
        if missing or unknown:
            raise LayoutMismatchError(
                f"targets for cache {self.path} must be exactly {sorted(self.layout.targets)}; "
                f"missing {sorted(missing)}, unknown {sorted(unknown)}")
        out = {}
        for task, spec in self.layout.targets.items():
            arr = as_numpy(targets[task])
            if arr.shape != (batch, *spec.shape):
                raise LayoutMismatchError(
                    f"targets of {task!r} have shape {arr.shape}, cache {self.path} expects {(batch, *spec.shape)}")
            out[task] = _cast_checked(arr, np.dtype(spec.dtype), f"targets of {task!r}")
        return out

    def _convert_view_params(self, view_params: ArrayLike | None, batch: int) -> np.ndarray:
        k = len(self.layout.view_param_names)
        if view_params is None:
            if k:
                raise FeatureCacheError(
                    f"cache {self.path} stores view parameters {list(self.layout.view_param_names)}; pass view_params")
            return np.zeros((batch, 0), np.float32)
        arr = as_numpy(view_params).astype(np.float32)
        if arr.shape != (batch, k):
            raise LayoutMismatchError(f"view_params have shape {arr.shape}, cache {self.path} expects {(batch, k)}")
        return arr

    # -- closing --------------------------------------------------------------------------------
    def finalize(self) -> Path:
        """Check every row is complete, store the finished timestamp and close the file."""
        done, total = self.num_complete(), self.num_samples
        if done != total:
            raise CacheIncompleteError(
                f"cache {self.path} is incomplete: {done} of {total} samples; write "
                "missing_indices() before finalize()")
        self._file.attrs[fmt.ATTR_FINISHED] = utc_now()
        self.close()
        return self.path

    def close(self) -> None:
        """Flush and close (the file stays resumable)."""
        if self._file.id.valid:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> "FeatureCacheWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cast_checked(arr: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """Cast to the stored dtype, refusing values that would not survive the cast."""
    with np.errstate(over="ignore", invalid="ignore"):  # detected below, with a clearer message
        out = arr.astype(dtype, copy=False)
    if out is arr:
        return out
    if dtype.kind in "biu":
        if not np.array_equal(out.astype(arr.dtype), arr):
            raise LayoutMismatchError(
                f"{what} do not fit the stored dtype {dtype} (values {arr.min()}..{arr.max()}); "
                "store a wider dtype")
    elif not np.array_equal(np.isfinite(out), np.isfinite(arr)):
        raise LayoutMismatchError(f"{what} overflow the stored dtype {dtype}; store float32")
    return out


def _check_free_space(path: Path, layout: CacheLayout) -> None:
    """Refuse, before anything is written, a cache that cannot fit on its disk (uncompressed rows
    have a known size; the file is allocated up front and filled as rows come)."""
    row = fmt.estimate_bytes_per_sample(layout.scales, layout.dtype, layout.targets, len(layout.view_param_names))
    needed = layout.num_samples * row
    free = shutil.disk_usage(path.parent if path.parent.exists() else Path.cwd()).free
    if needed > free:
        raise FeatureCacheError(
            f"cache {path} needs about {needed / 1e9:.1f} GB ({layout.num_samples} rows of {row / 1e6:.2f} MB) "
            f"but only {free / 1e9:.1f} GB are free there; free space, cache fewer views, or use compression "
            f"(cache-features --compression lzf)")


def write_skeleton(f: h5py.File, layout: CacheLayout, ids: np.ndarray, views: np.ndarray,
                   metadata: Mapping[str, Any] | None, first_index: int,
                   shard: tuple[int, int, int] | None) -> None:
    """Create every dataset and attribute of an empty cache in the open file ``f``."""
    n = layout.num_samples
    filters = fmt.compression_kwargs(layout.compression)
    # Raw chunks are allocated up front, so writes never touch metadata (module docstring);
    # filtered chunks change size and must be allocated as written.
    chunked = dict(filters) if filters else {"dcpl": _early_dcpl(), "fill_time": "never"}
    for s, (c, h, w) in enumerate(layout.scales):
        f.create_dataset(fmt.feature_key(s), shape=(n, c, h, w), dtype=layout.dtype,
                         chunks=(1, c, h, w), **chunked)
    f.require_group(fmt.TARGETS)
    for task, spec in layout.targets.items():
        d = f.create_dataset(fmt.target_key(task), shape=(n, *spec.shape), dtype=spec.dtype,
                             chunks=(1, *spec.shape), **chunked)
        d.attrs["dtype"] = spec.dtype
        d.attrs["decoded_dtype"] = spec.decoded_dtype
    f.create_dataset(fmt.IDS, data=ids, dtype=h5py.string_dtype("utf-8"))
    f.create_dataset(fmt.VIEW, data=views, dtype=np.int32)
    k = len(layout.view_param_names)
    vp = f.create_dataset(fmt.VIEW_PARAMS, shape=(n, k), dtype=np.float32, dcpl=_early_dcpl())
    vp.attrs["names"] = fmt.to_json(list(layout.view_param_names))
    if k:
        vp[...] = 0
    f.create_dataset(fmt.COMPLETE, data=np.zeros(n, np.uint8), dcpl=_early_dcpl())
    for key, value in layout.to_attrs().items():
        f.attrs[key] = value
    f.attrs[fmt.ATTR_VIEWS] = int(views.max()) + 1
    f.attrs[fmt.ATTR_CREATED] = utc_now()
    f.attrs[fmt.ATTR_FINISHED] = ""
    f.attrs[fmt.ATTR_METADATA] = fmt.to_json(dict(metadata or {}))
    if first_index or shard is not None:
        f.attrs[fmt.ATTR_FIRST_INDEX] = int(first_index)
    if shard is not None:
        rank, world, total = shard
        f.attrs[fmt.ATTR_SHARD_RANK] = int(rank)
        f.attrs[fmt.ATTR_SHARD_WORLD] = int(world)
        f.attrs[fmt.ATTR_TOTAL_SAMPLES] = int(total)


def read_layout(f: h5py.File, path: Path) -> CacheLayout:
    """The layout stored in an open cache file; refuses non-caches and other schema versions."""
    if fmt.ATTR_FORMAT_VERSION not in f.attrs:
        raise CacheCorruptError(f"{path} is not a feature cache (no {fmt.ATTR_FORMAT_VERSION} attribute)")
    version = int(f.attrs[fmt.ATTR_FORMAT_VERSION])
    if version != fmt.FORMAT_VERSION:
        raise CacheVersionError(
            f"cache {path} has format version {version}, this feature_cache reads version "
            f"{fmt.FORMAT_VERSION}; re-run cache-features --overwrite to rebuild it")
    try:
        return CacheLayout.from_attrs(f.attrs)
    except (KeyError, ValueError, TypeError) as e:
        raise CacheCorruptError(f"cache {path} has malformed attributes ({e!r}); rebuild it") from None


def check_fingerprint(path: Path, stored: str, expected: str | None, whose: str) -> None:
    """Refuse a cache made with another backbone (one line, both fingerprints abbreviated)."""
    if expected is not None and stored != expected:
        raise FingerprintMismatchError(
            f"cache {path} was made with backbone fingerprint {stored[:12]}..., {whose} is "
            f"{expected[:12]}...; re-run cache-features (--overwrite) to rebuild it")


# -- background writing ---------------------------------------------------------------------------
_STOP = object()


class BackgroundWriter:
    """Writes batches on a thread behind a bounded queue, so a GPU loop never waits on disk.

    ``put`` copies the batch to CPU memory (CUDA tensors through pinned memory with a
    non-blocking copy; the thread waits for the copy's CUDA event) and returns; the thread calls
    ``writer.write``. At most ``max_pending`` batches wait, which bounds memory and blocks the
    producer only when the disk is truly slower than the GPU. An exception in the thread is raised
    again in the caller's thread at the next ``put`` or at ``close``.
    """

    def __init__(self, writer: FeatureCacheWriter, max_pending: int = 4) -> None:
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(max_pending)))
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="feature-cache-writer", daemon=True)
        self._thread.start()

    def put(self, indices: ArrayLike, features: Sequence[ArrayLike],
            targets: Mapping[str, ArrayLike] | None = None,
            view_params: ArrayLike | None = None) -> None:
        """Queue one batch (the arguments of :meth:`FeatureCacheWriter.write`)."""
        self._raise_pending()
        if self._closed:
            raise FeatureCacheError(f"background writer of {self.writer.path} is closed")
        item = (_to_host(indices), [_to_host(x) for x in features],
                {k: _to_host(v) for k, v in (targets or {}).items()},
                None if view_params is None else _to_host(view_params))
        self._queue.put(item)

    def close(self, finalize: bool = False) -> None:
        """Wait until every queued batch is written; re-raise a writer error; optionally finalise."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_pending()
        if finalize:
            self.writer.finalize()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # keep draining so a producer blocked on put() wakes up and sees the error
            try:
                indices = _from_host(item[0])
                features = [_from_host(x) for x in item[1]]
                targets = {k: _from_host(v) for k, v in item[2].items()}
                view_params = None if item[3] is None else _from_host(item[3])
                self.writer.write(indices, features, targets, view_params)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                self._error = e

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._closed = True
            raise error

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # stop the thread without hiding the original exception
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
                self._thread.join()


def _to_host(x: ArrayLike) -> Any:
    """An owned CPU copy of ``x`` (the caller may reuse its buffers as soon as ``put`` returns)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_cuda:
            host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
            host.copy_(x, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            return (host, event)
        return x.clone()
    return np.array(x, copy=True)


def _from_host(x: Any) -> np.ndarray:
    if isinstance(x, tuple):  # (pinned tensor, CUDA event): wait for the copy to land
        host, event = x
        event.synchronize()
        return as_numpy(host)
    return as_numpy(x)


# -- atomic overwrite -----------------------------------------------------------------------------
def partial_path(path: str | os.PathLike) -> Path:
    """Where :func:`atomic_cache` builds a replacement for ``path`` (same folder, fixed name)."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


@contextlib.contextmanager
def atomic_cache(path: str | os.PathLike, keep_partial: bool = True) -> Iterator[Path]:
    """Build a cache beside ``path`` and replace ``path`` only when the new one is finished.

    Yields the temporary path (``partial_path(path)``) to create the writer on. On leaving the
    block without an exception, the temporary file must be a finalised cache (every row
    complete, finished timestamp set); it is fsynced and renamed over ``path`` in one atomic
    step. On an exception, or if it is not finalised, ``path`` is left exactly as it was.

    The temporary name is fixed, so a run killed while rebuilding resumes its partial file next
    time (``keep_partial=True``, default); ``keep_partial=False`` deletes it on an exception.
    """
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
    except BaseException:
        if not keep_partial:
            tmp.unlink(missing_ok=True)
        raise
    if not tmp.is_file():
        raise FeatureCacheError(f"nothing was written to {tmp}; {path} is unchanged")
    with open_h5(tmp, "r") as f:
        finished = fmt._text(f.attrs.get(fmt.ATTR_FINISHED, ""))
        complete = f[fmt.COMPLETE][...] if fmt.COMPLETE in f else np.zeros(0)
    if not finished or not complete.all():
        raise CacheIncompleteError(
            f"new cache {tmp} is not finalised ({int(complete.sum())} of {complete.size} samples); "
            f"{path} is unchanged")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Persist a rename (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
