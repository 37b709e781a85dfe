"""Writing a feature cache: create or resume, write batches crash-safely, finalise.

Crash safety (the design a reviewer must know). A cache takes hours to compute, so a run killed
at any instant (SIGKILL, OOM killer, a pre-empted job) must leave a file that (1) still opens,
(2) marks complete only rows whose bytes are really in it, and (3) resumes where it stopped.

- The file skeleton (every dataset, the ids, the attributes, a zeroed completion mask,
  :mod:`feature_cache.skeleton`) is built in a temporary file and renamed into place
  (:mod:`feature_cache.atomic`), so ``path`` is never a half-created file.
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
- The writer keeps the completion flags in memory (read once when the file opens): a batch reads
  no flag from the file, and writes only its own rows' flags. The memory copy may say "complete"
  where the file does not yet (it is set just before the flags are written), never the reverse,
  so rewriting a row always unmarks it in the file first.
- The files use the default superblock (version 0), which has no "file is open for writing"
  flag: a killed writer leaves no flag that would need ``h5clear`` before the file opens again.

NOTE: ``H5Fflush`` hands the data to the operating system; it does not ``fsync``. That survives
the death of the process (SIGKILL), not a power cut or kernel crash mid-run: after one, re-check
the cache or write it again.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np
import torch

from . import format as fmt
from .atomic import created_atomically
from .convert import ArrayLike, as_numpy, stored_features, stored_targets, stored_view_params
from .errors import CacheIncompleteError, CacheVersionError, FeatureCacheError, LayoutMismatchError
from .format import CacheLayout, TargetSpec, check_fingerprint, read_layout
from .h5io import check_index_readable, damaged_error, hdf5_reason, open_h5, plain_storage
from .skeleton import check_free_space, write_skeleton

__all__ = ["FeatureCacheWriter", "round_to_storage", "utc_now"]


def utc_now() -> str:
    """The current UTC time as ISO 8601 (seconds), as stored in the created/finished attributes."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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
    if x.ndim > 1:  # the largest magnitude per row, from two reductions (no |x| copy of the batch)
        dims = tuple(range(1, x.ndim))
        peak = torch.maximum(x.amax(dim=dims), x.amin(dim=dims).neg())
    else:
        peak = x.abs()
    if not bool((peak > fmt.FLOAT16_MAX).any()):
        return features.to(torch.float16)
    scale = torch.from_numpy(fmt.scales_for_peaks(peak.cpu().numpy())).to(x.device)
    scale = scale.reshape(-1, *([1] * (x.ndim - 1)))
    return (x / scale).to(torch.float16).float() * scale


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
        #: completion flags in memory (see the module docstring: never False where the file says 1)
        self._marked = np.asarray(self._complete[...], dtype=bool)

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
        check_free_space(path, layout)
        with created_atomically(path) as tmp, h5py.File(tmp, "w") as f:
            write_skeleton(f, layout, ids_array, views, metadata, first_index, shard, created=utc_now())
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
            check_index_readable(f, path, stored)
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
            raise damaged_error(path, e) from None
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

    def write_stored(self, indices: ArrayLike, features: Sequence[ArrayLike], targets: Mapping[str, ArrayLike],
                     view_params: ArrayLike, feature_scale: ArrayLike) -> None:
        """:meth:`write` for rows copied from another cache with the same layout
        (:func:`feature_cache.shards.consolidate`): ``features`` are the stored values
        (:meth:`FeatureCacheReader.stored_features_batch`) and ``feature_scale`` (B, S) the powers
        of two they were divided by, written as they are; targets as stored (``decode=False``)."""
        self._write(indices, features, targets, view_params, feature_scale)

    def _write(self, indices, features, targets, view_params, feature_scale) -> None:
        rows = self._rows(indices)
        batch = len(rows)
        if feature_scale is None:
            feats, scales = stored_features(features, self.layout, batch, self.path)
        else:  # stored values and their scales, copied from another cache (consolidate)
            feats = [np.ascontiguousarray(as_numpy(x), dtype=self.layout.dtype) for x in features]  # no copy when stored as is
            scales = np.ascontiguousarray(as_numpy(feature_scale), dtype=np.float32)
        tgts = stored_targets(targets or {}, self.layout, batch, self.path)
        params = stored_view_params(view_params, self.layout, batch, self.path)
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
            if self._marked[rows].any():  # a rewrite: unmark the rows in the file before touching them
                for start, stop, _ in runs:
                    self._complete[start:stop] = 0
                self._file.flush()
                self._marked[rows] = False
            per_row = [*zip(self._features, feats), *((self._targets[task], arr) for task, arr in tgts.items())]
            sliced = []
            for dset, arr in per_row:  # arr is in dset's dtype (converted above)
                if self._raw_chunks[id(dset)]:
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
            self._marked[rows] = True  # before the file's flags: the memory copy never misses one
            for start, stop, _ in runs:
                self._complete[start:stop] = 1
            self._file.flush()
        except (OSError, RuntimeError) as e:  # h5py raises RuntimeError when a flush fails
            damaged = ("; a compressed cache can be damaged by a failed write: if the next run "
                       "says so, rewrite it (cache-features --overwrite)") if self.layout.compression else ""
            raise FeatureCacheError(
                f"writing {batch} rows to cache {self.path} failed ({hdf5_reason(str(e))}); if the "
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
    return plain_storage(dset) is not None and dset.chunks == (1, *dset.shape[1:])


def _write_raw_chunks(dset: h5py.Dataset, rows: np.ndarray, arr: np.ndarray | Sequence[np.ndarray]) -> None:
    """Write ``arr[j]`` (in ``dset``'s dtype; a batch or a list of rows) as the chunk of row
    ``rows[j]``, one call per row."""
    zeros = (0,) * (dset.ndim - 1)
    write = dset.id.write_direct_chunk
    for j, row in enumerate(rows.tolist()):
        write((row, *zeros), np.ascontiguousarray(arr[j]))
