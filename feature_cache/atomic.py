"""Atomic file creation: a new cache file appears under its name only once it is whole.

- :func:`created_atomically`: build a file under a hidden temporary name beside its target and
  rename it into place when the block succeeds (the writer's empty skeleton is made this way, so a
  cache path is never a half-created file).
- :func:`atomic_cache`: rebuild a cache beside the old one and replace the old one only when the
  new one is finalised (``cache-features --overwrite``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from . import format as fmt
from .errors import CacheIncompleteError, FeatureCacheError
from .h5io import open_h5

__all__ = ["created_atomically", "atomic_cache", "partial_path"]


@contextlib.contextmanager
def created_atomically(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (hidden, ``.NAME.*.creating``) to build a file at; renamed
    to ``path`` in one step when the block ends without an exception, deleted when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".creating", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
        finished = fmt.attr_text(f.attrs.get(fmt.ATTR_FINISHED, ""))
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
