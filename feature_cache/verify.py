"""Checking a whole cache file: every problem found, as one line each (for ``ufl doctor``).

:func:`verify_file` opens the file like a reader (truncated, unreadable, foreign, other version,
missing shards), checks the completion flags against the finished timestamp, and reads every
complete row of every per-row dataset, comparing it with its checksum. It never raises for a
problem with the file: it returns the list of problems (empty when the cache is sound).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import format as fmt
from .errors import FeatureCacheError
from .reader import FeatureCacheReader

__all__ = ["verify_file", "MAX_ROWS_REPORTED"]

#: At most this many bad rows are listed one by one; the rest are counted in one more line.
MAX_ROWS_REPORTED = 20


def verify_file(path: str | os.PathLike, *, require_checksums: bool = False,
                rows_per_read: int = 64) -> list[str]:
    """Every problem of the cache at ``path``, one line each; ``[]`` when it is sound.

    Problems: the file is missing, truncated or not readable as a cache; a shard of a joined cache
    is missing; rows are missing (a finalised file with unwritten rows, or an interrupted run to
    resume); a row of a dataset does not match its checksum or cannot be read. A cache without
    checksums (format version 1) is checked for everything else; with ``require_checksums=True``
    that it cannot be verified is a problem too. Each line says what to do.
    """
    path = Path(path)
    try:
        # one pass over every row: positional reads (a mapping's page tables would be built for
        # one use, and a file cut short meanwhile is a clear error, never SIGBUS)
        reader = FeatureCacheReader(path, require_complete=False, direct="pread")
    except FeatureCacheError as e:
        return [str(e)]
    except (OSError, RuntimeError) as e:  # e.g. a permission problem outside HDF5
        return [f"cache {path} cannot be read ({e}); check its permissions or rewrite it"]
    problems: list[str] = []
    with reader:
        split = reader.split
        redo = f"rewrite this cache (cache-features --overwrite --split {split})"
        if not reader.verified and require_checksums:
            problems.append(f"cache {path} (split {split}) has format version {reader.version} without row "
                            f"checksums, so its rows cannot be verified; {redo}")
        done = np.flatnonzero(reader.complete)
        missing = len(reader) - len(done)
        if missing:
            finished = reader.attrs.get(fmt.ATTR_FINISHED, "")
            if finished:
                problems.append(f"cache {path} (split {split}) was finalised but {missing} of {len(reader)} rows "
                                f"are not marked written (first: row {int(np.flatnonzero(~reader.complete)[0])}); {redo}")
            else:
                problems.append(f"cache {path} (split {split}) is incomplete: {len(done)} of {len(reader)} rows "
                                "written (an interrupted run); run cache-features again to resume it")
        bad: list[str] = []
        extra = 0
        for start in range(0, len(done), rows_per_read):
            for line in _check_rows(reader, done[start:start + rows_per_read]):
                if len(bad) < MAX_ROWS_REPORTED:
                    bad.append(line)
                else:
                    extra += 1
        problems += bad
        if extra:
            problems.append(f"cache {path}: {extra} more bad rows (not listed); {redo}")
    return problems


def _check_rows(reader: FeatureCacheReader, rows: np.ndarray) -> list[str]:
    """Problems of ``rows`` (complete, ascending): a batch read first, row by row only on failure."""
    names = [(fmt.feature_key(s), d) for s, d in enumerate(reader._features)]
    names += [(fmt.target_key(t), d) for t, d in reader._targets.items()]
    names += [(fmt.VIEW_PARAMS, reader._view_params)]
    out = []
    for name, dset in names:
        try:
            reader._read_rows(name, dset, rows)
            continue
        except FeatureCacheError:
            pass
        for row in rows.tolist():  # find every bad row of the batch
            try:
                reader._read_rows(name, dset, np.asarray([row]))
            except FeatureCacheError as e:
                out.append(str(e))
    return out
