"""The on-disk layout of a feature cache: names, schema version, attributes, filters.

One HDF5 file per (dataset, split, view set). ``N`` rows, one per sample (an image under one view)::

    /features/{s}      (N, C_s, H_s, W_s) float16|float32, chunk (1, C_s, H_s, W_s)   scale s = 0, 1, ...
    /targets/{task}    (N, *shape) stored dtype, chunk (1, *shape)       attrs: dtype, decoded_dtype
    /ids               (N,) variable-length UTF-8 string: the sample id
    /view              (N,) int32: view index (0 = the un-augmented view)
    /view_params       (N, K) float32                                     attrs: names (JSON list)
    /complete          (N,) uint8: 1 once the row is written AND flushed to the file
    /feature_scale     (N, S) float32: per row and scale, the power of two the stored features
                       were divided by (1 unless float16 would overflow; version 2)
    /checksums         (N, D) uint64: xxh3-64 of each per-row dataset's row     attrs: columns (JSON)
                       (version 2; see "Checksums" below)

File attributes (plain HDF5 scalars and strings, so ``h5ls -v`` / ``h5dump -A`` show them): see the
``ATTR_*`` names below. Structured values (scales, strides, tasks, targets, normalisation, extra
metadata) are JSON strings.

Every row is one chunk, so reading a random sample reads exactly one chunk per dataset (the access
pattern of a shuffled DataLoader). Filters are lossless: ``None``, ``"gzip"``, ``"lzf"`` (built into
h5py), ``"zstd"`` and ``"blosc"`` (through ``hdf5plugin``; a reader needs it too).

Checksums (format version 2). Every row of every per-row dataset (each feature scale, each target,
the view parameters and the feature scales: the ``columns`` attribute of ``/checksums`` names them
in order) has a 64-bit xxh3 hash of its stored bytes, seeded with the row's global index (so a row
read from the wrong place fails too). The writer computes it before the row's bytes go to the file,
in the same flush that precedes the completion flag; every read (the h5py path and the direct chunk
reader) checks it and raises :class:`~feature_cache.errors.CacheCorruptError` naming the file,
split, row and dataset. NOTE: why not HDF5's fletcher32 filter: it makes every chunk *filtered*,
so chunks are no longer plain bytes at a fixed offset (the direct reader and the allocate-once
crash-safety design both need unfiltered chunks), and it is about 10x slower: reading a 590 kB
float16 row through h5py took 1.5 ms longer with fletcher32, where xxh3 hashes it in 0.15 ms (2-core
machine, shared). A companion dataset costs 8 bytes per row and dataset.

Version 1 files (no checksums, no feature scales) are still read: their rows cannot be verified,
which :attr:`FeatureCacheReader.verified` and :func:`feature_cache.verify_file` say.

Features beyond float16's range (e.g. a randomly initialised backbone at 256 px) are stored as
``x / 2**k`` in float16 with ``2**k`` in ``/feature_scale`` (``k`` the smallest integer that makes the
row's largest magnitude fit; a power of two changes the exponent only, so the relative precision
is float16's as for every other row). Readers multiply it back; with ``k = 0`` (every row of a
normal backbone) nothing changes. Use ``dtype="float32"`` to keep float32's full precision.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
import xxhash

from .errors import CacheCorruptError, CacheVersionError, FeatureCacheError, FingerprintMismatchError

if TYPE_CHECKING:  # only for annotations: importing format (names, layout) stays light
    import h5py

__all__ = [
    "FORMAT_VERSION",
    "FEATURES",
    "TARGETS",
    "IDS",
    "VIEW",
    "VIEW_PARAMS",
    "COMPLETE",
    "FEATURE_SCALE",
    "CHECKSUMS",
    "READABLE_VERSIONS",
    "feature_key",
    "target_key",
    "COMPRESSIONS",
    "FEATURE_DTYPES",
    "RESERVED_ITEM_KEYS",
    "TargetSpec",
    "CacheLayout",
    "compression_kwargs",
    "label_storage_dtype",
    "estimate_bytes_per_sample",
    "make_identity",
    "to_json",
    "from_json",
    "attr_text",
    "read_layout",
    "check_fingerprint",
    "checksum_columns",
    "row_checksum",
    "row_extremes",
    "float16_scales",
    "FLOAT16_MAX",
    "MAX_CHUNK_BYTES",
]

#: Schema version of the layout above. Bump it on any change a reader of the old layout would
#: misread; readers refuse every other version.
FORMAT_VERSION = 2
#: Versions a reader accepts: 1 (no checksums: read, but unverified) and 2.
READABLE_VERSIONS = (1, 2)

# -- dataset names --------------------------------------------------------------------------------
FEATURES = "features"
TARGETS = "targets"
IDS = "ids"
VIEW = "view"
VIEW_PARAMS = "view_params"
COMPLETE = "complete"
FEATURE_SCALE = "feature_scale"
CHECKSUMS = "checksums"
#: HDF5 refuses chunks of 4 GiB or more; a row is one chunk.
MAX_CHUNK_BYTES = 2**32 - 1
#: Largest finite float16.
FLOAT16_MAX = 65504.0


def feature_key(scale: int) -> str:
    """HDF5 path of the features of scale ``scale`` (0 = the finest)."""
    return f"{FEATURES}/{scale}"


def target_key(task: str) -> str:
    """HDF5 path of the targets of ``task``."""
    return f"{TARGETS}/{task}"


# -- file attribute names -------------------------------------------------------------------------
ATTR_FORMAT_VERSION = "format_version"   # int
ATTR_FINGERPRINT = "fingerprint"         # str: the backbone fingerprint (weights hash)
ATTR_BACKBONE = "backbone"               # str: backbone name, e.g. "hrnet_w18_small_v2"
ATTR_INPUT_SIZE = "input_size"           # int[2]: (H, W) of the network input, pixels
ATTR_NORMALISATION = "normalisation"     # JSON: {"mean": [...], "std": [...]} or null
ATTR_DATASET = "dataset"                 # str
ATTR_SPLIT = "split"                     # str
ATTR_VIEWS = "views"                     # int: number of views (max view index + 1)
ATTR_FEATURE_DTYPE = "feature_dtype"     # str: "float16" | "float32"
ATTR_COMPRESSION = "compression"         # str: "none" | "gzip" | "lzf" | "zstd" | "blosc"
ATTR_NUM_SAMPLES = "num_samples"         # int: rows in this file
ATTR_SCALES = "scales"                   # JSON: [[C, H, W], ...] per scale
ATTR_STRIDES = "strides"                 # JSON: [stride, ...] per scale (input pixels per cell)
ATTR_TASKS = "tasks"                     # JSON: [task, ...]
ATTR_TARGETS = "targets"                 # JSON: {task: {"shape": [...], "dtype": s, "decoded_dtype": s}}
ATTR_VIEW_PARAM_NAMES = "view_param_names"  # JSON: [name, ...] (also attr "names" of /view_params)
ATTR_CREATED = "created"                 # str: ISO 8601 UTC
ATTR_FINISHED = "finished"               # str: ISO 8601 UTC, "" until finalize()
ATTR_METADATA = "metadata"               # JSON: the caller's extra metadata
ATTR_CHECKSUM = "checksum"               # str: "xxh3_64" (version 2)
# shard files only (see shards.py)
ATTR_SHARD_RANK = "shard_rank"
ATTR_SHARD_WORLD = "shard_world"
ATTR_FIRST_INDEX = "first_index"         # global index of this file's first row
ATTR_TOTAL_SAMPLES = "total_samples"     # rows of the joined cache
SHARD_ATTRS = (ATTR_SHARD_RANK, ATTR_SHARD_WORLD, ATTR_FIRST_INDEX, ATTR_TOTAL_SAMPLES)

COMPRESSIONS = (None, "gzip", "lzf", "zstd", "blosc")
FEATURE_DTYPES = ("float16", "float32")
#: Keys of a FeatureCacheDataset item; a task may not use them as its name.
RESERVED_ITEM_KEYS = ("features", "id", "index", "view", "view_params")


def to_json(value: Any) -> str:
    """Compact JSON for an attribute (sorted keys: equal values give equal strings)."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))


def from_json(text: Any) -> Any:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(text)


def compression_kwargs(compression: str | None) -> dict[str, Any]:
    """Keyword arguments for ``h5py.Group.create_dataset`` that apply a lossless filter.

    ``None`` stores raw chunks; ``"gzip"`` (level 4) and ``"lzf"`` are built into h5py; ``"zstd"``
    (level 3) and ``"blosc"`` (LZ4, byte shuffle) need ``hdf5plugin``. The byte-shuffle filter is
    added before gzip/lzf: float16 feature maps compress noticeably better byte-plane by byte-plane.
    """
    if compression not in COMPRESSIONS:
        raise FeatureCacheError(
            f"unknown compression {compression!r}; choose one of none, gzip, lzf, zstd, blosc")
    if compression is None:
        return {}
    if compression in ("gzip", "lzf"):
        return {"compression": compression, "shuffle": True,
                **({"compression_opts": 4} if compression == "gzip" else {})}
    try:
        import hdf5plugin
    except ImportError:
        raise FeatureCacheError(
            f"compression={compression!r} needs the hdf5plugin package: pip install hdf5plugin, "
            "or use compression='lzf'") from None
    if compression == "zstd":
        return dict(hdf5plugin.Zstd(clevel=3))
    return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))


def ensure_filters_readable(compression: str | None, path: Any) -> None:
    """Register hdf5plugin's filters when a file needs them (a reader cannot decode otherwise)."""
    if compression in ("zstd", "blosc"):
        try:
            import hdf5plugin  # noqa: F401  (importing registers the filters with HDF5)
        except ImportError:
            raise FeatureCacheError(
                f"cache {path} is compressed with {compression}, which needs the hdf5plugin "
                "package: pip install hdf5plugin") from None


def label_storage_dtype(max_value: int) -> str:
    """Smallest unsigned integer dtype holding labels ``0..max_value`` (ignore index included).

    E.g. 40 NYUD classes with ignore 255 -> ``"uint8"``; PASCAL-Context's 459 -> ``"uint16"``.
    """
    for name in ("uint8", "uint16", "uint32"):
        if max_value <= np.iinfo(name).max:
            return name
    return "int64"


@dataclass(frozen=True)
class TargetSpec:
    """How one task's targets are stored.

    ``shape`` is one sample's shape (e.g. ``(H, W)`` labels, ``(1, H, W)`` depth); ``dtype`` the
    stored dtype; ``decoded_dtype`` the dtype a reader returns (the dtype the caller works in:
    default int64 for integer storage, float32 for float storage, bool for bool).
    """

    shape: tuple[int, ...]
    dtype: str
    decoded_dtype: str

    @classmethod
    def parse(cls, task: str, value: Any) -> "TargetSpec":
        """From ``(shape, dtype)`` or ``(shape, dtype, decoded_dtype)`` or a TargetSpec."""
        if isinstance(value, TargetSpec):
            return value
        if isinstance(value, Mapping):
            value = (value["shape"], value["dtype"], value.get("decoded_dtype"))
        if not isinstance(value, (tuple, list)) or len(value) not in (2, 3):
            raise FeatureCacheError(
                f"target {task!r}: expected (shape, dtype) or (shape, dtype, decoded_dtype), got {value!r}")
        shape = tuple(int(s) for s in value[0])
        if any(s <= 0 for s in shape):
            raise FeatureCacheError(f"target {task!r}: shape {shape} must be positive")
        try:
            dtype = np.dtype(value[1])
            decoded = np.dtype(value[2]) if len(value) == 3 and value[2] is not None else _default_decoded(dtype)
        except TypeError as e:
            raise FeatureCacheError(f"target {task!r}: bad dtype ({e})") from None
        for d in (dtype, decoded):
            if d.kind not in "biuf":
                raise FeatureCacheError(f"target {task!r}: dtype {d} is not a bool, integer or float type")
        return cls(shape, dtype.name, decoded.name)

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "decoded_dtype": self.decoded_dtype}

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


def _default_decoded(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "b":
        return np.dtype(bool)
    return np.dtype("int64") if dtype.kind in "iu" else np.dtype("float32")


@dataclass(frozen=True)
class CacheLayout:
    """Everything that fixes what a cache's rows hold; two runs may share a file only when equal.

    ``identity`` holds the attributes that fix what the features *mean* (backbone fingerprint and
    name, input size, normalisation, dataset, split): the same shapes from another backbone or
    another normalisation are not the same cache.
    """

    num_samples: int
    scales: tuple[tuple[int, int, int], ...]
    strides: tuple[int, ...]
    targets: Mapping[str, TargetSpec]
    dtype: str
    compression: str | None
    view_param_names: tuple[str, ...]
    identity: Mapping[str, Any] = field(default_factory=dict)

    def to_attrs(self) -> dict[str, Any]:
        """The layout as HDF5 file attributes (strings, ints, int arrays; JSON for structures)."""
        ident = self.identity
        return {
            ATTR_FORMAT_VERSION: FORMAT_VERSION,
            ATTR_FINGERPRINT: str(ident.get(ATTR_FINGERPRINT, "")),
            ATTR_BACKBONE: str(ident.get(ATTR_BACKBONE, "")),
            ATTR_INPUT_SIZE: np.asarray(ident.get(ATTR_INPUT_SIZE, ()), dtype=np.int64),
            ATTR_NORMALISATION: to_json(ident.get(ATTR_NORMALISATION)),
            ATTR_DATASET: str(ident.get(ATTR_DATASET, "")),
            ATTR_SPLIT: str(ident.get(ATTR_SPLIT, "")),
            ATTR_FEATURE_DTYPE: self.dtype,
            ATTR_COMPRESSION: self.compression or "none",
            ATTR_NUM_SAMPLES: self.num_samples,
            ATTR_SCALES: to_json([list(s) for s in self.scales]),
            ATTR_STRIDES: to_json(list(self.strides)),
            ATTR_TASKS: to_json(list(self.targets)),
            ATTR_TARGETS: to_json({k: v.to_dict() for k, v in self.targets.items()}),
            ATTR_VIEW_PARAM_NAMES: to_json(list(self.view_param_names)),
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "CacheLayout":
        """Read a layout back from a file's attributes (the inverse of :meth:`to_attrs`)."""
        targets = from_json(attrs[ATTR_TARGETS])
        compression = attr_text(attrs[ATTR_COMPRESSION])
        return cls(
            num_samples=int(attrs[ATTR_NUM_SAMPLES]),
            scales=tuple(tuple(int(d) for d in s) for s in from_json(attrs[ATTR_SCALES])),
            strides=tuple(int(s) for s in from_json(attrs[ATTR_STRIDES])),
            # the task order of the file is the order of the "tasks" list
            targets={t: TargetSpec.parse(t, targets[t]) for t in from_json(attrs[ATTR_TASKS])},
            dtype=attr_text(attrs[ATTR_FEATURE_DTYPE]),
            compression=None if compression == "none" else compression,
            view_param_names=tuple(from_json(attrs[ATTR_VIEW_PARAM_NAMES])),
            identity=make_identity(
                fingerprint=attr_text(attrs[ATTR_FINGERPRINT]),
                backbone=attr_text(attrs[ATTR_BACKBONE]),
                input_size=attrs[ATTR_INPUT_SIZE],
                normalisation=from_json(attrs[ATTR_NORMALISATION]),
                dataset=attr_text(attrs[ATTR_DATASET]),
                split=attr_text(attrs[ATTR_SPLIT]),
            ),
        )

    def differences(self, other: "CacheLayout") -> list[str]:
        """Human-readable ``name: stored X vs requested Y`` items where ``self`` and ``other`` differ."""
        out = []
        pairs = {
            "num_samples": (self.num_samples, other.num_samples),
            "scales": (self.scales, other.scales),
            "strides": (self.strides, other.strides),
            "targets": ({k: v.to_dict() for k, v in self.targets.items()},
                        {k: v.to_dict() for k, v in other.targets.items()}),
            "feature dtype": (self.dtype, other.dtype),
            "compression": (self.compression, other.compression),
            "view_param_names": (self.view_param_names, other.view_param_names),
        }
        for key in sorted(set(self.identity) | set(other.identity)):
            if key != ATTR_FINGERPRINT:  # reported on its own, with its own message
                pairs[key] = (self.identity.get(key), other.identity.get(key))
        for name, (a, b) in pairs.items():
            if a != b:
                out.append(f"{name}: stored {_short(a)} vs requested {_short(b)}")
        return out


def make_identity(fingerprint: str, backbone: str, input_size: Sequence[int] | None,
                  normalisation: Any, dataset: str, split: str) -> dict[str, Any]:
    """The identity attributes in one canonical form (tuples of ints, JSON-normalised values)."""
    return {
        ATTR_FINGERPRINT: str(fingerprint),
        ATTR_BACKBONE: str(backbone),
        ATTR_INPUT_SIZE: tuple(int(v) for v in (input_size if input_size is not None else ())),
        # JSON round trip: tuples become lists and numpy scalars floats, as they come back from disk
        ATTR_NORMALISATION: from_json(to_json(_plain(normalisation))),
        ATTR_DATASET: str(dataset),
        ATTR_SPLIT: str(split),
    }


def _plain(value: Any) -> Any:
    """numpy arrays and scalars -> lists and Python numbers, so ``json`` can encode them."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def attr_text(value: Any) -> str:
    """An HDF5 string attribute as ``str`` (h5py returns ``str`` or ``bytes`` by storage type)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def estimate_bytes_per_sample(scales: Iterable[Sequence[int]], dtype: str = "float16",
                              targets: Mapping[str, Any] | None = None, view_params: int = 0) -> int:
    """Uncompressed bytes one row takes: features of every scale, targets, id excluded.

    E.g. HRNet-W18-small-v2 at 128x128 input, scales (18,32,32), (36,16,16), (72,8,8), (144,4,4),
    float16: 2 * 34560 = 69120 bytes. ``targets`` maps task -> (shape, dtype); ``view_params`` is K.
    Bookkeeping adds 4 (view) + 4*K (view params) + 1 (complete) + 4 per scale (feature scale)
    + 8 per checksummed dataset (scales + tasks + 2) bytes; the variable-length id and HDF5's
    chunk index add a few tens of bytes more.
    """
    scales = list(scales)
    itemsize = np.dtype(dtype).itemsize
    total = sum(math.prod(int(d) for d in s) for s in scales) * itemsize
    for task, spec in (targets or {}).items():
        total += TargetSpec.parse(task, spec).nbytes
    columns = len(scales) + len(targets or {}) + 2
    return total + 4 + 4 * view_params + 1 + 4 * len(scales) + 8 * columns


# -- reading a file's layout (shared by the writer, the reader and verification) ------------------
def read_layout(f: "h5py.File", path: Any) -> CacheLayout:
    """The layout stored in an open cache file; refuses non-caches and unknown schema versions."""
    if ATTR_FORMAT_VERSION not in f.attrs:
        raise CacheCorruptError(f"{path} is not a feature cache (no {ATTR_FORMAT_VERSION} attribute)")
    version = int(f.attrs[ATTR_FORMAT_VERSION])
    if version not in READABLE_VERSIONS:
        raise CacheVersionError(
            f"cache {path} has format version {version}, this feature_cache reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}; re-run cache-features --overwrite to rebuild it")
    try:
        return CacheLayout.from_attrs(f.attrs)
    except (KeyError, ValueError, TypeError) as e:
        raise CacheCorruptError(f"cache {path} has malformed attributes ({e!r}); rebuild it") from None


def check_fingerprint(path: Any, stored: str, expected: str | None, whose: str) -> None:
    """Refuse a cache made with another backbone (one line, both fingerprints abbreviated)."""
    if expected is not None and stored != expected:
        raise FingerprintMismatchError(
            f"cache {path} was made with backbone fingerprint {stored[:12]}..., {whose} is "
            f"{expected[:12]}...; re-run cache-features (--overwrite) to rebuild it")


def checksum_columns(layout: CacheLayout) -> list[str]:
    """The per-row datasets that ``/checksums`` covers, in column order."""
    return ([feature_key(s) for s in range(len(layout.scales))]
            + [target_key(t) for t in layout.targets] + [VIEW_PARAMS, FEATURE_SCALE])


def row_checksum(row: np.ndarray, index: int) -> int:
    """xxh3-64 of one row's stored bytes (C order), seeded with its global row ``index``."""
    if not row.flags.c_contiguous:
        row = np.ascontiguousarray(row)
    return xxhash.xxh3_64_intdigest(row.data if row.size else b"", seed=int(index))


def row_extremes(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``arr`` (B, ...): its largest and smallest value, (B,) each (0 for empty rows);
    NaN where the row holds a NaN, +-inf where it holds an infinity (so both are finite iff the
    row is)."""
    flat = arr.reshape(len(arr), math.prod(arr.shape[1:]))
    if flat.shape[1] == 0:
        zeros = np.zeros(len(arr), arr.dtype)
        return zeros, zeros
    with np.errstate(invalid="ignore"):
        return flat.max(axis=1), flat.min(axis=1)


def float16_scales(arr: np.ndarray) -> np.ndarray:
    """Per row of ``arr`` (B, ...): the power of two to divide by so float16 holds it (1 when it
    already fits); float32, shape (B,). Rows holding NaN or inf get 1 (refused elsewhere)."""
    high, low = row_extremes(arr)
    return scales_for_peaks(np.maximum(high, -low))


def scales_for_peaks(peak: np.ndarray) -> np.ndarray:
    """:func:`float16_scales` from each row's largest magnitude (B,)."""
    peak = np.asarray(peak, dtype=np.float64)
    scales = np.ones(len(peak), np.float32)
    over = np.isfinite(peak) & (peak > FLOAT16_MAX)
    if over.any():
        # smallest k with peak / 2**k <= FLOAT16_MAX (a value just above it would round to inf)
        k = np.ceil(np.log2(peak[over] / FLOAT16_MAX))
        k += peak[over] / np.exp2(k) > FLOAT16_MAX
        scales[over] = np.exp2(k)
    return scales


def chunk_too_large(layout: CacheLayout) -> str | None:
    """A description of the first row chunk HDF5 cannot store (4 GiB or more), else ``None``."""
    itemsize = np.dtype(layout.dtype).itemsize
    for s, shape in enumerate(layout.scales):
        if math.prod(shape) * itemsize > MAX_CHUNK_BYTES:
            return f"features of scale {s} {tuple(shape)} take {math.prod(shape) * itemsize / 2**30:.1f} GiB per row"
    for task, spec in layout.targets.items():
        if spec.nbytes > MAX_CHUNK_BYTES:
            return f"targets of {task!r} {spec.shape} take {spec.nbytes / 2**30:.1f} GiB per row"
    return None


def disk_bytes_bound(layout: CacheLayout) -> int:
    """An upper bound of the file size of a complete cache (any compression).

    Raw rows plus bookkeeping; a lossless filter never makes a chunk larger than its raw bytes
    plus a small header (HDF5 stores a chunk unfiltered when a filter would grow it; zstd's and
    blosc's bounds add under 1/128 + 64 bytes), plus HDF5's chunk index (well under 128 bytes a
    chunk), plus the ids and 1 MiB of metadata.
    """
    row = estimate_bytes_per_sample(layout.scales, layout.dtype, layout.targets,
                                    len(layout.view_param_names))
    chunks = len(layout.scales) + len(layout.targets)
    per_row = row + (row // 128 + 64 if layout.compression else 0) + 128 * chunks + 64
    return layout.num_samples * per_row + 2**20
