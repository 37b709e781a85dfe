"""Direct chunk reads: where each row of a dataset sits in the file, and positional reads.

The reader (:mod:`feature_cache.reader`, whose docstring explains when and why) copies the rows
of uncompressed single-file datasets straight from the file, without HDF5: :class:`DirectRows`
holds the file offset of every row, read once from HDF5's chunk index; :func:`pread_into` reads
one row's bytes at its offset.
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np

from .h5io import plain_storage

__all__ = ["DirectRows", "pread_into", "HAS_PREADV"]

#: Whether ``os.preadv`` exists (POSIX): one system call reads a row into its buffer.
HAS_PREADV = hasattr(os, "preadv")


class DirectRows:
    """File offsets of every row of one unfiltered, non-virtual dataset (read once); its row shape
    and dtype (h5py's properties cost microseconds per access); ``view``: (file bytes, row_bytes)
    uint8 rows of the mapped file starting at every byte (a strided view, no copy), set while the
    file is mapped."""

    def __init__(self, offsets: np.ndarray, row_bytes: int) -> None:
        self.offsets = offsets
        self.row_bytes = row_bytes
        self.shape: tuple[int, ...] = ()
        self.dtype = np.dtype(np.uint8)
        self.view: np.ndarray | None = None
        self.last_end = self.end()

    @classmethod
    def of(cls, dset: h5py.Dataset) -> "DirectRows | None":
        """The row offsets of ``dset``, or ``None`` when it must be read through h5py."""
        dcpl = plain_storage(dset)
        if dcpl is None:
            return None
        rows = cls._offsets(dset, dcpl)
        if rows is not None:
            rows.shape, rows.dtype = tuple(dset.shape[1:]), np.dtype(dset.dtype)
        return rows

    @classmethod
    def _offsets(cls, dset: h5py.Dataset, dcpl: Any) -> "DirectRows | None":
        n = dset.shape[0]
        row_bytes = int(np.prod(dset.shape[1:], dtype=np.int64)) * dset.dtype.itemsize
        if row_bytes == 0:
            return cls(np.zeros(n, np.int64), 0)
        layout = dcpl.get_layout()
        if layout == h5py.h5d.CONTIGUOUS:
            base = dset.id.get_offset()
            return None if base is None else cls(base + row_bytes * np.arange(n, dtype=np.int64), row_bytes)
        if layout != h5py.h5d.CHUNKED or dset.chunks != (1, *dset.shape[1:]):
            return None
        offsets = np.full(n, -1, np.int64)

        def visit(info: Any) -> None:
            if info.filter_mask == 0 and info.size == row_bytes:
                offsets[info.chunk_offset[0]] = info.byte_offset

        try:
            dset.id.chunk_iter(visit)
        except Exception:  # noqa: BLE001 - an old HDF5 without chunk_iter, or an odd index: h5py reads it
            return None
        return cls(offsets, row_bytes) if (offsets >= 0).all() else None

    def end(self) -> int:
        return int(self.offsets.max()) + self.row_bytes if len(self.offsets) else 0


def pread_into(fd: int, buffer: np.ndarray, offset: int) -> int:
    """Read ``buffer.nbytes`` bytes at ``offset`` into ``buffer``; the number of bytes read."""
    if HAS_PREADV:
        total = 0
        view = memoryview(buffer)
        while total < len(view):
            got = os.preadv(fd, [view[total:]], offset + total)
            if got == 0:
                break
            total += got
        return total
    data = os.pread(fd, buffer.nbytes, offset)
    buffer[:len(data)] = np.frombuffer(data, np.uint8)
    return len(data)
