"""HDF5 helpers shared by the writer, the reader and verification (below all three).

- :func:`open_h5`, :func:`hdf5_reason`, :func:`damaged_error`: HDF5's errors as one clear line.
- :func:`plain_storage`: whether a dataset's rows are plain bytes in the file (no filter, no
  external storage, a native numeric dtype), the condition of the writer's raw chunk writes and
  the reader's direct chunk reads.
- :func:`check_index_readable`: refuse to resume a compressed file whose chunk index is damaged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import h5py

from . import format as fmt
from .errors import CacheBusyError, CacheCorruptError

__all__ = ["open_h5", "hdf5_reason", "damaged_error", "plain_storage", "check_index_readable"]


def open_h5(path: Any, mode: str) -> h5py.File:
    """Open an HDF5 file, turning HDF5's errors into one clear :class:`FeatureCacheError` line.

    A file shorter than its superblock says (an interrupted copy, a full disk) is reported as
    truncated; only HDF5's own lock failure (``BlockingIOError``, or its "unable to lock file"
    text) is reported as busy. NOTE: the word "lock" also occurs inside HDF5's "sblock" (superblock)
    messages, so a plain substring test would call a damaged file "locked" (issue 13, item 3).
    """
    try:
        return h5py.File(path, mode)
    except BlockingIOError as e:  # HDF5 could not take its file lock (errno EAGAIN/EWOULDBLOCK)
        raise CacheBusyError(
            f"cache {path} is open for writing in another process ({e}); wait for it to finish "
            "or stop it") from None
    except OSError as e:
        text = str(e)
        if "truncated file" in text:
            raise CacheCorruptError(
                f"cache {path} is truncated ({hdf5_reason(text)}): the file is shorter than its "
                "header says, e.g. after a full disk or an interrupted copy; delete it or rewrite "
                "it (cache-features --overwrite)") from None
        if "unable to lock file" in text.lower():
            raise CacheBusyError(
                f"cache {path} is locked by another process ({hdf5_reason(text)}); wait for it "
                "to finish or stop it") from None
        raise CacheCorruptError(
            f"cache {path} cannot be opened as HDF5 ({hdf5_reason(text)}); it was probably damaged "
            "by an interrupted run or a full disk: delete it, or write it again with overwrite=True "
            "(cache-features --overwrite)") from None


def hdf5_reason(text: str) -> str:
    """The operating system's reason inside an h5py error text (e.g. "No space left on device"),
    else HDF5's parenthesised reason, else the text itself."""
    system = re.search(r"error message = '([^']*)'", text)
    if system:
        return system.group(1)
    start = text.find("(")
    return text[start + 1:text.rfind(")")] if start >= 0 and text.endswith(")") else text


def damaged_error(path: Any, error: BaseException) -> CacheCorruptError:
    """The one-line error for a cache whose HDF5 structure cannot be read (h5py raises OSError,
    RuntimeError or KeyError for a damaged chunk index or object header, e.g. "addr overflow")."""
    return CacheCorruptError(
        f"cache {path} is damaged ({hdf5_reason(str(error))}), probably by a write that failed "
        "(full disk) or a run killed mid-flush; rewrite it (cache-features --overwrite)")


def plain_storage(dset: h5py.Dataset) -> Any:
    """The creation properties of ``dset`` when its rows are plain bytes in this file (not
    virtual, a native bool/integer/float dtype, at least one dimension, no filter, no external
    storage), else ``None``."""
    if dset.is_virtual or not dset.dtype.isnative or dset.dtype.kind not in "biuf" or dset.ndim < 1:
        return None
    dcpl = dset.id.get_create_plist()
    return None if dcpl.get_nfilters() or dcpl.get_external_count() else dcpl


def check_index_readable(f: h5py.File, path: Path, layout: fmt.CacheLayout) -> None:
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
            _raise_damaged(path, f"{name}: {hdf5_reason(str(e))}")
        if ends and max(ends) > size:
            _raise_damaged(path, f"{name}: chunks end at byte {max(ends)} beyond the file's {size}")


def _raise_damaged(path: Path, detail: str) -> None:
    raise CacheCorruptError(
        f"cache {path} is damaged ({detail}), probably by a write that failed (full disk) or was "
        "killed mid-flush; it cannot be resumed: rewrite it (cache-features --overwrite)")
