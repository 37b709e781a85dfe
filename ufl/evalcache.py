"""Small on-disk caches of evaluation results: per-image counts (edge matching), so that unchanged
heads re-evaluate without matching again (:class:`CountCache`), and per-task metrics, so that an
unchanged task is not evaluated again at all (:class:`MetricsCache`).

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

:class:`MetricsCache` keeps one JSON file per key in ``WORKSPACE/eval-cache/metrics/`` (the key is
made by :func:`ufl.workspace.evaluate.metrics_key`: head file hash, val cache content id
(:func:`cache_content_id`), protocol, code version). Written and bounded the same way; a damaged
entry is ignored with a warning, removed and recomputed.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .io import atomic_path

__all__ = ["CountCache", "image_key", "DEFAULT_MAX_ENTRIES", "MetricsCache", "DEFAULT_MAX_METRIC_ENTRIES",
           "cache_content_id"]

log = logging.getLogger(__name__)

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


class _EntryCache(abc.ABC):
    """What the evaluation caches share: a folder of entry files (``entries()``, made by the
    subclass), bounded to ``max_entries`` (default :attr:`default_max_entries`) by :meth:`prune`,
    with hit / miss / write counters."""

    default_max_entries = DEFAULT_MAX_ENTRIES

    def __init__(self, root: str | os.PathLike, max_entries: int | None = None):
        max_entries = self.default_max_entries if max_entries is None else max_entries
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.root = Path(root)
        self.max_entries = int(max_entries)
        self.hits = 0
        self.misses = 0
        self.written = 0

    @abc.abstractmethod
    def entries(self) -> list[Path]:
        """The stored entry files."""

    def _hit(self, path: Path) -> None:
        """Count a hit and mark ``path`` as just used (its modification time, for :meth:`prune`)."""
        self.hits += 1
        try:
            os.utime(path)
        except OSError:
            pass

    def prune(self) -> int:
        """Remove the least recently used entries (oldest modification time: ``get`` touches an
        entry it reads) beyond ``max_entries``; return how many."""
        return _prune(self.entries(), self.max_entries)


class CountCache(_EntryCache):
    """Per-image count dicts (``{name: ndarray}``) on disk, keyed by :func:`image_key`.

    Args:
        root: the folder (created on the first write).
        max_entries: bound on the number of entries kept (see :meth:`prune`).
    """

    default_max_entries = DEFAULT_MAX_ENTRIES

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
        self._hit(path)
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



def _prune(files: list[Path], max_entries: int) -> int:
    """Remove the oldest (modification time) of ``files`` beyond ``max_entries``; return how many."""
    excess = len(files) - max_entries
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


#: A metrics entry is under 1 kB (a few kB with per-class figures).
DEFAULT_MAX_METRIC_ENTRIES = 2_000
#: Version of the entry layout written by :class:`MetricsCache` (an entry of another is a miss).
METRICS_ENTRY_FORMAT = 1


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


class MetricsCache(_EntryCache):
    """A task's evaluation result (``{"metrics": {name: float}, "details": {figure: [float]} | None}``)
    on disk, one JSON file per key (a hex digest).

    Floats are written with ``json``'s ``repr`` (NaN as ``NaN``), so they are read back bit for bit.

    Args:
        root: the folder (created on the first write).
        max_entries: bound on the number of entries kept (see :meth:`prune`).
    """

    default_max_entries = DEFAULT_MAX_METRIC_ENTRIES

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The entry stored under ``key`` (``{"metrics", "details"}``), or None. An unreadable or
        malformed entry is a miss: a warning names it, and it is removed (the caller recomputes)."""
        path = self._path(key)
        try:
            with open(path, encoding="utf-8") as f:
                entry = json.load(f)
            problem = self._problem(entry, key)
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            problem = f"{type(e).__name__}: {e}"
        if problem:
            log.warning("eval cache entry %s is unreadable (%s): ignored and removed, the metrics are recomputed",
                        path, problem)
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
            self.misses += 1
            return None
        self._hit(path)
        return {"metrics": entry["metrics"], "details": entry.get("details")}

    @staticmethod
    def _problem(entry: Any, key: str) -> str:
        """Why ``entry`` is not a well-formed entry of ``key`` ("" when it is)."""
        if not isinstance(entry, dict) or entry.get("format") != METRICS_ENTRY_FORMAT:
            return "not an entry of this format"
        if entry.get("key") != key:
            return "written under another key"
        metrics, details = entry.get("metrics"), entry.get("details")
        if not isinstance(metrics, dict) or not metrics or not all(
                isinstance(k, str) and _number(v) for k, v in metrics.items()):
            return "no metrics"
        if details is not None and not (isinstance(details, dict) and all(
                isinstance(k, str) and isinstance(v, list) and all(_number(x) for x in v) for k, v in details.items())):
            return "malformed details"
        return ""

    def put(self, key: str, metrics: Mapping[str, float], details: Mapping[str, list] | None = None) -> None:
        """Store ``metrics`` (and ``details``) under ``key`` atomically (:func:`ufl.io.atomic_path`,
        without fsync: a lost entry is only a miss). A full or read-only disk only costs the
        speed-up (said in the log); a failure leaves no temporary file and the entry as it was."""
        def number(v):
            return None if v is None else float(v)

        try:
            entry = {"format": METRICS_ENTRY_FORMAT, "key": key,
                     "metrics": {str(k): number(v) for k, v in metrics.items()},
                     "details": None if details is None else {str(k): [number(x) for x in v] for k, v in details.items()}}
        except (TypeError, ValueError) as e:  # a result this cache cannot hold: not kept
            log.info("metrics not kept in the eval cache %s (%s)", self.root, e)
            return
        try:
            with atomic_path(self._path(key), suffix=".json", fsync=False) as tmp:
                tmp.write_text(json.dumps(entry, allow_nan=True), encoding="utf-8")
        except OSError as e:
            log.info("could not store the metrics in the eval cache %s (%s)", self.root, e)
            return
        self.written += 1

    def entries(self) -> list[Path]:
        """The stored entry files."""
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob("*.json") if not p.name.startswith(".")]


def cache_content_id(path: str | os.PathLike) -> str | None:
    """An id of a feature cache file's content read from what the file already stores, without
    reading its rows: BLAKE2b (32 bytes, hex) of its file attributes (backbone fingerprint, input
    size, dtype, dataset, split, targets, creation and finishing times, ...), its row ids, and its
    ``/checksums`` dataset (xxh3-64 of every stored row of every per-row dataset: features,
    targets, view parameters, feature scales; see :mod:`feature_cache.format`), 8 bytes per row and
    dataset. None for a file without checksums (format version 1) or one that cannot be read.

    NOTE: the id trusts the stored checksums to describe the stored rows; every read of a row
    checks its checksum (so evaluating a cache whose rows no longer match them fails), and
    ``ufl doctor`` checks all of them; a rewritten cache has new checksums or new times.
    """
    from feature_cache import format as fmt
    from feature_cache.h5io import open_h5

    h = hashlib.blake2b(digest_size=32)
    try:
        with open_h5(path, "r") as f:
            if fmt.CHECKSUMS not in f or fmt.IDS not in f:
                return None
            for name in sorted(f.attrs):
                h.update(f"attr|{name}|".encode())
                _update(h, np.asarray(f.attrs[name]) if not isinstance(f.attrs[name], (str, bytes)) else f.attrs[name])
            sums = f[fmt.CHECKSUMS]
            h.update(f"columns|{sums.attrs.get('columns')!r}|".encode())
            _update(h, np.asarray(sums[...]))
            h.update("\0".join(f[fmt.IDS].asstr()[...]).encode())
    except Exception as e:  # noqa: BLE001  unreadable or foreign: no id (evaluation reports the file itself)
        log.info("no content id for %s (%s): its metrics are not kept in the eval cache", path, e)
        return None
    return h.hexdigest()
