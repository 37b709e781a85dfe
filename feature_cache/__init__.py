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

from importlib import import_module

from . import errors  # light: imports nothing

# Names and the submodule that defines each, imported on first use (PEP 562): importing the package,
# or its light ``errors`` / ``format`` modules, does not import torch or h5py.
_LAZY = {
    "FeatureCacheDataset": "dataset", "available_memory_bytes": "dataset",
    **dict.fromkeys(errors.__all__, "errors"),
    **dict.fromkeys(("COMPRESSIONS", "FORMAT_VERSION", "CacheLayout", "TargetSpec", "estimate_bytes_per_sample",
                     "label_storage_dtype"), "format"),
    "FeatureCacheReader": "reader",
    "verify_file": "verify",
    **dict.fromkeys(("consolidate", "create_shard_writer", "join_shards", "shard_path", "shard_range"), "shards"),
    **dict.fromkeys(("FeatureCacheWriter", "round_to_storage"), "writer"),
    "BackgroundWriter": "background",
    **dict.fromkeys(("atomic_cache", "partial_path"), "atomic"),
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


#: the public names: exactly those imported on first use above
__all__ = list(_LAZY)
