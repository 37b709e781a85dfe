"""The empty cache file that :meth:`FeatureCacheWriter.create` starts from (its skeleton).

Every dataset, the ids, the view indices, the attributes and a zeroed completion mask, made before
the first row is written (the writer builds it under a temporary name, see
:func:`feature_cache.atomic.created_atomically`). Without compression every per-row dataset is
allocated here, so a write changes raw bytes only and never HDF5's metadata (crash safety: see
:mod:`feature_cache.writer`). :func:`check_free_space` refuses a cache that cannot fit first.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
from h5py import h5d, h5p

from . import format as fmt
from .errors import FeatureCacheError
from .format import CacheLayout

__all__ = ["write_skeleton", "check_free_space", "early_dcpl"]


def early_dcpl() -> h5p.PropDCID:
    """Dataset creation properties: allocate all file space when the dataset is created."""
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
    return dcpl


def check_free_space(path: Path, layout: CacheLayout) -> None:
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


def write_skeleton(f: h5py.File, layout: CacheLayout, ids: np.ndarray, views: np.ndarray,
                   metadata: Mapping[str, Any] | None, first_index: int,
                   shard: tuple[int, int, int] | None, created: str) -> None:
    """Create every dataset and attribute of an empty cache in the open file ``f``.

    ``ids`` (N,) object strings, ``views`` (N,) int32; ``created``: the ISO 8601 UTC time stored
    in the ``created`` attribute. Every row's ``complete`` flag is 0 and every feature scale 1.
    """
    n = layout.num_samples
    filters = fmt.compression_kwargs(layout.compression)
    # Raw chunks are allocated up front, so writes never touch metadata (module docstring);
    # filtered chunks change size and must be allocated as written.
    chunked = dict(filters) if filters else {"dcpl": early_dcpl(), "fill_time": "never"}
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
    vp = f.create_dataset(fmt.VIEW_PARAMS, shape=(n, k), dtype=np.float32, dcpl=early_dcpl())
    vp.attrs["names"] = fmt.to_json(list(layout.view_param_names))
    if k:
        vp[...] = 0
    f.create_dataset(fmt.COMPLETE, data=np.zeros(n, np.uint8), dcpl=early_dcpl())
    f.create_dataset(fmt.FEATURE_SCALE, data=np.ones((n, len(layout.scales)), np.float32), dcpl=early_dcpl())
    sums = f.create_dataset(fmt.CHECKSUMS, shape=(n, len(fmt.checksum_columns(layout))), dtype=np.uint64,
                            dcpl=early_dcpl())
    sums.attrs["columns"] = fmt.to_json(fmt.checksum_columns(layout))
    sums.attrs["algorithm"] = "xxh3_64"
    for key, value in layout.to_attrs().items():
        f.attrs[key] = value
    f.attrs[fmt.ATTR_VIEWS] = int(views.max()) + 1
    f.attrs[fmt.ATTR_CREATED] = created
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
