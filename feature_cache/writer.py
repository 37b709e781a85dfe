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
- ``write()`` writes the rows and their checksums (see :mod:`feature_cache.format`), calls
  ``H5Fflush`` (every byte handed to the OS), and only then sets the rows' ``complete`` flags and
  flushes again. A kill before the second flush loses at most the
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
from .errors import (CacheCorruptError, CacheIncompleteError, CacheVersionError, FeatureCacheError,
                     LayoutMismatchError)
from .format import CacheLayout, TargetSpec, check_fingerprint, open_h5, read_layout

# NOTE: open_h5, read_layout and check_fingerprint live in format.py (shared with the reader); they
# stay importable from here for callers of earlier versions.

__all__ = ["FeatureCacheWriter", "BackgroundWriter", "atomic_cache", "partial_path", "open_h5",
           "round_to_storage"]

ArrayLike = Any  # np.ndarray | torch.Tensor | nested sequences


def utc_now() -> str:
    """The current UTC time as ISO 8601 (seconds), as stored in the created/finished attributes."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def as_numpy(x: ArrayLike) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array (no copy when already numpy on CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16:  # numpy has no bfloat16
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def round_to_storage(features: torch.Tensor, dtype: str) -> torch.Tensor:
    """(B, ...) features with exactly the values a cache of ``dtype`` gives back for them.

    ``"float32"``: as float32. ``"float16"``: ``features.to(float16)`` when every row fits float16
    (the usual case: one max reduction more); otherwise float32 holding, per row,
    ``float16(x / 2**k) * 2**k`` with the writer's ``k`` (see :mod:`feature_cache.format`). Runs on
    the tensor's device. Writing the result stores the same values, so features computed online and
    read from a cache agree bit for bit (up to the dtype: compare values).
    """
    if dtype == "float32":
        return features.to(torch.float32)
    if dtype != "float16":
        raise FeatureCacheError(f"feature dtype must be float16 or float32, got {dtype!r}")
    if features.dtype == torch.float16:
        return features
    x = features.float()
    peak = x.abs().amax(dim=tuple(range(1, x.ndim))) if x.ndim > 1 else x.abs()
    if not bool((peak > fmt.FLOAT16_MAX).any()):
        return features.to(torch.float16)
    scale = torch.from_numpy(fmt.scales_for_peaks(peak.cpu().numpy())).to(x.device)
    scale = scale.reshape(-1, *([1] * (x.ndim - 1)))
    return (x / scale).to(torch.float16).float() * scale


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
        self._feature_scale = file[fmt.FEATURE_SCALE]
        self._checksums = file[fmt.CHECKSUMS]
        #: per-row datasets whose rows are written as raw chunks (see :func:`_raw_chunk_rows`)
        self._raw_chunks = {id(d): _raw_chunk_rows(d) for d in (*self._features, *self._targets.values())}

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
        layout = CacheLayout(
            num_samples=int(num_samples), scales=scales, strides=strides, targets=specs,
            dtype=dtype, compression=compression,
            view_param_names=tuple(str(n) for n in view_param_names),
            identity=fmt.make_identity(fingerprint, backbone, input_size, normalisation, dataset, split),
        )
        too_large = fmt.chunk_too_large(layout)
        if too_large:
            raise FeatureCacheError(
                f"{too_large}, but HDF5 stores at most 4 GiB per row (one chunk); use a smaller "
                f"input size than {input_size[0]}x{input_size[1]}")
        return layout

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
            version = int(f.attrs[fmt.ATTR_FORMAT_VERSION])
            if version != fmt.FORMAT_VERSION:
                raise CacheVersionError(
                    f"cache {path} was written with format version {version} (no row checksums); "
                    "it cannot be resumed, rewrite it (cache-features --overwrite)")
            _check_index_readable(f, path, stored)
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
        except (OSError, RuntimeError, KeyError) as e:  # HDF5 could not walk the file's structure
            f.close()
            raise fmt.damaged_error(path, e) from None
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
        """Write B rows with their checksums, then mark them complete.

        Args:
            indices: (B,) global row indices (any order, no repeats).
            features: one (B, C_s, H_s, W_s) tensor or array per scale (any float dtype/device).
                Already in the stored dtype, they are written as they are (float16 input is only
                checked for inf/NaN, through an integer view); float32 input to a float16 cache is
                divided, per row and scale, by the power of two that float16 needs (see
                :mod:`feature_cache.format`), so features beyond float16's range are kept.
            targets: task -> (B, *shape) for every task of the cache (in the stored dtype: no cast,
                no check; else cast and checked to fit), or a list of B per-row (*shape) arrays
                or tensors (the same rows, written without stacking them into one batch first:
                an uncompressed cache writes each row on its own anyway).
            view_params: (B, K) view parameters; required when the cache has K > 0 names.

        Everything is validated and converted before the file is touched. Rows already complete
        are unmarked (and flushed) first, so an interrupted rewrite is never taken as complete.
        An HDF5 write error (e.g. a full disk) raises :class:`FeatureCacheError` with what to do.
        """
        self._write(indices, features, targets, view_params, None)

    def _write(self, indices, features, targets, view_params, feature_scale) -> None:
        rows = self._rows(indices)
        batch = len(rows)
        if feature_scale is None:
            feats, scales = self._convert_features(features, batch)
        else:  # stored values and their scales, copied from another cache (consolidate)
            feats = [np.ascontiguousarray(as_numpy(x)) for x in features]
            scales = np.ascontiguousarray(as_numpy(feature_scale), dtype=np.float32)
        tgts = self._convert_targets(targets or {}, batch)
        params = self._convert_view_params(view_params, batch)
        if batch == 0:
            return
        columns = [*feats, *tgts.values(), params, scales]
        sums = np.empty((batch, len(columns)), np.uint64)
        for j, row in enumerate(rows):
            index = int(row) + self.first_index
            for c, arr in enumerate(columns):
                sums[j, c] = fmt.row_checksum(arr[j], index)
        runs = _runs(rows)
        try:
            if self._complete[...][rows].any():
                for start, stop, _ in runs:
                    self._complete[start:stop] = 0
                self._file.flush()
            per_row = [*zip(self._features, feats), *((self._targets[task], arr) for task, arr in tgts.items())]
            sliced = []
            for dset, arr in per_row:
                if self._raw_chunks[id(dset)] and arr[0].dtype == dset.dtype:
                    _write_raw_chunks(dset, rows, arr)
                else:
                    sliced.append((dset, np.stack(arr) if isinstance(arr, list) else arr))
            for start, stop, pos in runs:
                take = (lambda a: a) if len(runs) == 1 and np.array_equal(pos, np.arange(batch)) \
                    else (lambda a: a[pos])  # one ordered run: no copy
                for dset, arr in sliced:
                    dset[start:stop] = take(arr)
                self._view_params[start:stop] = take(params)
                self._feature_scale[start:stop] = take(scales)
                self._checksums[start:stop] = take(sums)
            self._file.flush()  # every byte of the rows is in the file before any flag says so
            for start, stop, _ in runs:
                self._complete[start:stop] = 1
            self._file.flush()
        except (OSError, RuntimeError) as e:  # h5py raises RuntimeError when a flush fails
            damaged = ("; a compressed cache can be damaged by a failed write: if the next run "
                       "says so, rewrite it (cache-features --overwrite)") if self.layout.compression else ""
            raise FeatureCacheError(
                f"writing {batch} rows to cache {self.path} failed ({fmt._hdf5_reason(str(e))}); if the "
                f"disk is full, free space and run again to resume (rows written before are kept){damaged}"
            ) from None

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

    def _convert_features(self, features: Sequence[ArrayLike], batch: int
                          ) -> tuple[list[np.ndarray], np.ndarray]:
        """Stored arrays per scale and the (B, S) float32 scales they were divided by."""
        if len(features) != len(self.layout.scales):
            raise LayoutMismatchError(
                f"{len(features)} feature scales given, cache {self.path} has {len(self.layout.scales)}")
        stored_dtype = np.dtype(self.layout.dtype)
        out, scales = [], np.ones((batch, len(self.layout.scales)), np.float32)
        for s, (x, shape) in enumerate(zip(features, self.layout.scales)):
            if isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16:
                x = x.float()
            arr = as_numpy(x)
            if arr.shape != (batch, *shape):
                raise LayoutMismatchError(
                    f"features of scale {s} have shape {arr.shape}, cache {self.path} expects {(batch, *shape)}")
            if arr.dtype.kind != "f":
                raise LayoutMismatchError(f"features of scale {s} have dtype {arr.dtype}, not a float type")
            if arr.dtype == stored_dtype:
                if not _all_finite(arr):
                    raise FeatureCacheError(
                        f"features of scale {s} hold NaN or inf values; check the backbone"
                        + (" (already float16: pass float32 features, which the cache scales to "
                           "fit float16)" if stored_dtype == np.float16 else ""))
                out.append(np.ascontiguousarray(arr))
                continue
            if stored_dtype == np.float16:
                arr32 = arr.astype(np.float32, copy=False)
                row_scale = fmt.float16_scales(arr32)
                if not _all_finite(arr32):
                    raise FeatureCacheError(f"features of scale {s} hold NaN or inf values; check the backbone")
                if (row_scale != 1).any():
                    arr32 = arr32 / row_scale.reshape(-1, *([1] * len(shape)))
                    scales[:, s] = row_scale
                # torch's float32 -> float16 cast is vectorised (numpy's is ~50x slower here)
                out.append(torch.from_numpy(np.ascontiguousarray(arr32)).to(torch.float16).numpy())
            else:
                with np.errstate(over="ignore"):
                    stored = np.ascontiguousarray(arr.astype(stored_dtype))
                if not _all_finite(stored):
                    raise FeatureCacheError(
                        f"features of scale {s} hold NaN or inf values or overflow {stored_dtype}; "
                        "check the backbone")
                out.append(stored)
        return out, scales

    def _convert_targets(self, targets: Mapping[str, ArrayLike], batch: int
                         ) -> dict[str, np.ndarray | list[np.ndarray]]:
        missing = set(self.layout.targets) - set(targets)
        unknown = set(targets) - set(self.layout.targets)
        if missing or unknown:
            raise LayoutMismatchError(
                f"targets for cache {self.path} must be exactly {sorted(self.layout.targets)}; "
                f"missing {sorted(missing)}, unknown {sorted(unknown)}")
        out: dict[str, np.ndarray | list[np.ndarray]] = {}
        for task, spec in self.layout.targets.items():
            value = targets[task]
            if isinstance(value, (list, tuple)):  # B rows, kept apart
                if len(value) != batch:
                    raise LayoutMismatchError(
                        f"targets of {task!r} have {len(value)} rows, cache {self.path} expects {batch}")
                rows = [as_numpy(v) for v in value]
                bad = next((r.shape for r in rows if r.shape != tuple(spec.shape)), None)
                if bad is not None:
                    raise LayoutMismatchError(
                        f"a row of the targets of {task!r} has shape {bad}, cache {self.path} expects {spec.shape}")
                out[task] = [_cast_checked(r, np.dtype(spec.dtype), f"targets of {task!r}") for r in rows]
                continue
            arr = as_numpy(value)
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


def _raw_chunk_rows(dset: h5py.Dataset) -> bool:
    """Whether each row of ``dset`` can be written as one raw chunk (``H5Dwrite_chunk``).

    True for the per-row datasets of an uncompressed cache: chunked one row per chunk, no filter,
    no external storage, a native numeric dtype. Such a chunk's bytes are the row's bytes in C
    order, exactly what h5py's slice assignment stores, so the file is byte for byte the same
    (tested); the write skips h5py's selection, HDF5's chunk cache (a second copy of every chunk
    smaller than its 1 MiB, written again at the flush) and its type conversion path. With the
    chunks allocated at creation (uncompressed caches), it writes raw bytes in place and touches
    no metadata, as the slice assignment does (crash safety: see the module docstring).
    """
    if dset.is_virtual or not dset.dtype.isnative or dset.dtype.kind not in "biuf" or dset.ndim < 1:
        return False
    if dset.chunks != (1, *dset.shape[1:]):
        return False
    dcpl = dset.id.get_create_plist()
    return dcpl.get_nfilters() == 0 and dcpl.get_external_count() == 0


def _write_raw_chunks(dset: h5py.Dataset, rows: np.ndarray, arr: np.ndarray | Sequence[np.ndarray]) -> None:
    """Write ``arr[j]`` (in ``dset``'s dtype; a batch or a list of rows) as the chunk of row
    ``rows[j]``, one call per row."""
    zeros = (0,) * (dset.ndim - 1)
    write = dset.id.write_direct_chunk
    for j, row in enumerate(rows.tolist()):
        write((row, *zeros), np.ascontiguousarray(arr[j]))


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


def _all_finite(arr: np.ndarray) -> bool:
    """Whether ``arr`` holds no NaN/inf, without a float pass for float16 (numpy's float16 math is
    slow): a float16 is finite iff its exponent bits are not all ones."""
    if arr.dtype == np.float16:
        bits = arr.view(np.uint16)
        return bits.size == 0 or int((bits & 0x7C00).max()) != 0x7C00
    if arr.size == 0:
        return True
    with np.errstate(invalid="ignore"):
        return bool(np.isfinite(arr.max()) and np.isfinite(arr.min()))


def _check_free_space(path: Path, layout: CacheLayout) -> None:
    """Refuse, before anything is written, a cache that cannot fit on its disk.

    Uncompressed rows have a known size (the file is allocated up front and filled as rows come);
    a compressed cache is checked against an upper bound (a lossless filter never makes a chunk
    much larger than its raw bytes, see :func:`feature_cache.format.disk_bytes_bound`), so a cache
    that could not fit even uncompressed is refused before HDF5 allocates anything.
    """
    needed = fmt.disk_bytes_bound(layout)
    free = shutil.disk_usage(path.parent if path.parent.exists() else Path.cwd()).free
    if needed > free:
        row = needed / layout.num_samples
        if layout.compression:
            raise FeatureCacheError(
                f"cache {path} may need up to {needed / 1e9:.1f} GB ({layout.num_samples} rows of up to "
                f"{row / 1e6:.2f} MB before compression) but only {free / 1e9:.1f} GB are free there; "
                "free space, cache fewer views or a smaller --size")
        raise FeatureCacheError(
            f"cache {path} needs about {needed / 1e9:.1f} GB ({layout.num_samples} rows of {row / 1e6:.2f} MB) "
            f"but only {free / 1e9:.1f} GB are free there; free space, cache fewer views, or use compression "
            f"(cache-features --compression lzf)")


def _check_index_readable(f: h5py.File, path: Path, layout: CacheLayout) -> None:
    """Refuse to resume a file whose chunk index HDF5 cannot walk (a compressed cache whose write
    failed mid-flush, e.g. on a full disk: HDF5 then reports "addr overflow" on the next write)."""
    if layout.compression is None:
        return
    size = os.path.getsize(path)
    for name in fmt.checksum_columns(layout)[:-2]:
        dset = f[name]
        try:
            ends: list[int] = []
            dset.id.chunk_iter(lambda info: ends.append(info.byte_offset + info.size))
        except Exception as e:  # noqa: BLE001 - any HDF5 failure here means a damaged index
            _raise_damaged(path, f"{name}: {fmt._hdf5_reason(str(e))}")
        if ends and max(ends) > size:
            _raise_damaged(path, f"{name}: chunks end at byte {max(ends)} beyond the file's {size}")


def _raise_damaged(path: Path, detail: str) -> None:
    raise CacheCorruptError(
        f"cache {path} is damaged ({detail}), probably by a write that failed (full disk) or was "
        "killed mid-flush; it cannot be resumed: rewrite it (cache-features --overwrite)")


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
    f.create_dataset(fmt.FEATURE_SCALE, data=np.ones((n, len(layout.scales)), np.float32), dcpl=_early_dcpl())
    sums = f.create_dataset(fmt.CHECKSUMS, shape=(n, len(fmt.checksum_columns(layout))), dtype=np.uint64,
                            dcpl=_early_dcpl())
    sums.attrs["columns"] = fmt.to_json(fmt.checksum_columns(layout))
    sums.attrs["algorithm"] = "xxh3_64"
    for key, value in layout.to_attrs().items():
        f.attrs[key] = value
    f.attrs[fmt.ATTR_VIEWS] = int(views.max()) + 1
    f.attrs[fmt.ATTR_CREATED] = utc_now()
    f.attrs[fmt.ATTR_FINISHED] = ""
    f.attrs[fmt.ATTR_METADATA] = fmt.to_json(dict(metadata or {}))
    f.attrs[fmt.ATTR_CHECKSUM] = "xxh3_64"
    if first_index or shard is not None:
        f.attrs[fmt.ATTR_FIRST_INDEX] = int(first_index)
    if shard is not None:
        rank, world, total = shard
        f.attrs[fmt.ATTR_SHARD_RANK] = int(rank)
        f.attrs[fmt.ATTR_SHARD_WORLD] = int(world)
        f.attrs[fmt.ATTR_TOTAL_SAMPLES] = int(total)


# -- background writing ---------------------------------------------------------------------------
_STOP = object()


class BackgroundWriter:
    """Writes batches on a thread behind a bounded queue, so a GPU loop never waits on disk.

    ``put`` takes ownership of the batch WITHOUT copying CPU arrays or tensors: the caller must not
    modify them after ``put`` (a DataLoader's batches and a forward pass's outputs are fresh each
    step, so the caching loop never does). CUDA tensors are copied to pinned CPU memory with a
    non-blocking copy (the thread waits for the copy's CUDA event). ``put`` returns at once; the
    thread calls ``writer.write``. At most ``max_pending`` batches wait, which bounds memory and blocks the
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
        """Queue one batch (the arguments of :meth:`FeatureCacheWriter.write`).

        NOTE: the arrays are used as they are, later, on the writer thread: do not modify them
        after this call (pass copies if you must reuse buffers).
        """
        self._raise_pending()
        if self._closed:
            raise FeatureCacheError(f"background writer of {self.writer.path} is closed")
        item = (_to_host(indices), [_to_host(x) for x in features],
                {k: [_to_host(x) for x in v] if isinstance(v, (list, tuple)) else _to_host(v)
                 for k, v in (targets or {}).items()},
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
                targets = {k: [_from_host(x) for x in v] if isinstance(v, list) else _from_host(v)
                           for k, v in item[2].items()}
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
    """``x`` on the CPU: CUDA tensors copied (non-blocking, pinned), everything else as it is
    (ownership passes to the writer; see :meth:`BackgroundWriter.put`)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_cuda:
            host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
            host.copy_(x, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            return (host, event)
        return x
    return x if isinstance(x, np.ndarray) else np.asarray(x)


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
