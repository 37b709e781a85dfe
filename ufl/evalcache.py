"""A small on-disk cache of per-image evaluation counts (edge matching), so that unchanged heads
re-evaluate without matching again.

Edge evaluation spends most of its time in the one-to-one matcher (99 thresholds per image). Its
per-image counts depend only on the prediction, the ground truth and the protocol's settings, so
:class:`EdgeMetric <ufl.metrics.EdgeMetric>` looks them up here under a hash of exactly those
(:func:`image_key`); a workspace keeps them in ``WORKSPACE/eval-cache/edges/``.

- One ``.npz`` file per (prediction, ground truth, settings), in 256 sub-folders by the first two
  hex digits of the key; written by :func:`ufl.io.atomic_path` (a temporary file, renamed), so a
  reader sees a whole entry or none, and concurrent evaluations may share the folder. NOTE: without
  fsync (``atomic_path(fsync=False)``): an entry lost in a power cut is only a miss.
- A damaged or unreadable entry is a miss (and removed); nothing else depends on the cache, so
  deleting the folder is always safe.
- Bounded: at most ``max_entries`` files; :meth:`CountCache.prune` removes the least recently used
  beyond that (a read touches the entry's modification time).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .io import atomic_path

__all__ = ["CountCache", "image_key", "DEFAULT_MAX_ENTRIES"]

#: About 4 kB per entry at 99 thresholds: 50,000 entries (10 edge heads on PASCAL's 5,105 val
#: images) take about 200 MB.
DEFAULT_MAX_ENTRIES = 50_000


def _update(h, value: Any) -> None:
    if isinstance(value, np.ndarray):
        value = np.ascontiguousarray(value)
        h.update(f"ndarray|{value.dtype.str}|{value.shape}|".encode())
        h.update(value.view(np.uint8).reshape(-1).data)
    else:
        h.update(f"{type(value).__name__}|{value!r}|".encode())


def image_key(settings: Iterable[Any], *arrays: np.ndarray) -> str:
    """Hex digest (BLAKE2b, 32 bytes) of ``settings`` (values with a stable ``repr`` or arrays) and
    the arrays' dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=32)
    for value in settings:
        _update(h, value)
    h.update(b"||")
    for array in arrays:
        _update(h, np.asarray(array))
    return h.hexdigest()


class CountCache:
    """Per-image count dicts (``{name: ndarray}``) on disk, keyed by :func:`image_key`.

    Args:
        root: the folder (created on the first write).
        max_entries: bound on the number of entries kept (see :meth:`prune`).
    """

    def __init__(self, root: str | os.PathLike, max_entries: int = DEFAULT_MAX_ENTRIES):
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.root = Path(root)
        self.max_entries = int(max_entries)
        self.hits = 0
        self.misses = 0
        self.written = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str, expected: Mapping[str, tuple[tuple[int, ...], str]]) -> dict[str, np.ndarray] | None:
        """The counts stored under ``key`` when they have exactly the ``expected`` names, shapes and
        dtypes (``{name: (shape, dtype)}``); None otherwise (a damaged entry is removed)."""
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                counts = {name: data[name] for name in data.files}
        except FileNotFoundError:
            self.misses += 1
            return None
        except Exception:  # truncated or foreign file: a miss, and not kept
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        if set(counts) != set(expected) or any(
                counts[n].shape != tuple(shape) or counts[n].dtype != np.dtype(dtype)
                for n, (shape, dtype) in expected.items()):
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        try:
            os.utime(path)  # last use, for prune()
        except OSError:
            pass
        return counts

    def put(self, key: str, counts: Mapping[str, np.ndarray]) -> None:
        """Store ``counts`` under ``key`` atomically (:func:`ufl.io.atomic_path`, without fsync: see
        the module docstring). A full or read-only disk only costs the speed-up: the error is
        swallowed; any failure leaves no temporary file and the entry as it was."""
        path = self._path(key)
        try:
            with atomic_path(path, suffix=".npz", fsync=False) as tmp, open(tmp, "wb") as f:
                np.savez(f, **{name: np.asarray(value) for name, value in counts.items()})
        except OSError:
            return
        self.written += 1

    def entries(self) -> list[Path]:
        """The stored entry files."""
        if not self.root.is_dir():
            return []
        return [p for sub in self.root.iterdir() if sub.is_dir() for p in sub.glob("*.npz")]

    def prune(self) -> int:
        """Remove the least recently used entries (oldest modification time: :meth:`get` touches
        an entry it reads) beyond ``max_entries``; return how many."""
        files = self.entries()
        excess = len(files) - self.max_entries
        if excess <= 0:
            return 0

        def last_use(p: Path) -> float:
            try:
                return p.stat().st_mtime
            except OSError:
                return 0.0

        files.sort(key=last_use)
        for path in files[:excess]:
            path.unlink(missing_ok=True)
        return excess
