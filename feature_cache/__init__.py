"""feature_cache: an HDF5 store of multi-scale feature pyramids, usable on its own.

A frozen backbone's features are computed once per (dataset, split, view set) and stored with the
decoded targets of every task, so new heads train from disk without running the backbone. The
package needs only numpy, h5py and torch (hdf5plugin for zstd/blosc compression); it does not import
``ufl``. Files are plain HDF5 that ``h5ls``/``h5dump`` show: see :mod:`feature_cache.format`.

- :class:`FeatureCacheWriter`: create or resume a cache; crash-safe ``write``; ``finalize``.
- :class:`BackgroundWriter`: the same writes on a thread behind a bounded queue.
- :func:`atomic_cache`: rebuild a cache beside the old one, replace it only on success.
- :class:`FeatureCacheReader`, :class:`FeatureCacheDataset`: validated, checksum-verified reads
  (direct chunk reads for uncompressed caches); a torch Dataset with batched reads.
- :func:`verify_file`: every problem of a cache file (bad rows, missing rows, truncation), one line each.
- :mod:`feature_cache.shards`: one shard per process, joined with HDF5 virtual datasets.
"""

from .dataset import FeatureCacheDataset, available_memory_bytes
from .errors import (CacheBusyError, CacheCorruptError, CacheIncompleteError, CacheMissingError,
                     CacheVersionError, FeatureCacheError, FingerprintMismatchError,
                     LayoutMismatchError)
from .format import (COMPRESSIONS, FORMAT_VERSION, CacheLayout, TargetSpec,
                     estimate_bytes_per_sample, label_storage_dtype)
from .reader import FeatureCacheReader
from .shards import consolidate, create_shard_writer, join_shards, shard_path, shard_range
from .verify import verify_file
from .writer import BackgroundWriter, FeatureCacheWriter, atomic_cache, partial_path, round_to_storage

__all__ = [
    "FORMAT_VERSION",
    "COMPRESSIONS",
    "CacheLayout",
    "TargetSpec",
    "estimate_bytes_per_sample",
    "label_storage_dtype",
    "FeatureCacheWriter",
    "BackgroundWriter",
    "atomic_cache",
    "partial_path",
    "round_to_storage",
    "FeatureCacheReader",
    "FeatureCacheDataset",
    "available_memory_bytes",
    "shard_range",
    "shard_path",
    "create_shard_writer",
    "join_shards",
    "consolidate",
    "verify_file",
    "FeatureCacheError",
    "CacheMissingError",
    "CacheIncompleteError",
    "CacheVersionError",
    "FingerprintMismatchError",
    "LayoutMismatchError",
    "CacheCorruptError",
    "CacheBusyError",
]
