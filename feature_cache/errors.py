"""Errors of the feature cache.

Every problem a user can cause (a missing, incomplete, damaged or foreign cache, a layout that does
not match, data that does not fit the declared layout) raises a :class:`FeatureCacheError` whose
message is ONE line: what is wrong, where (the file), and what to do. The package imports nothing
from ``ufl``; the ``ufl`` CLI catches :class:`FeatureCacheError` like its own errors.

The subclasses let a caller react to one case (e.g. resume on :class:`CacheIncompleteError`).
"""

from __future__ import annotations

__all__ = [
    "FeatureCacheError",
    "CacheMissingError",
    "CacheIncompleteError",
    "CacheVersionError",
    "FingerprintMismatchError",
    "LayoutMismatchError",
    "CacheCorruptError",
    "CacheBusyError",
]


class FeatureCacheError(Exception):
    """A feature cache problem the user can fix; the message is a single line."""

    def __init__(self, message: str) -> None:
        # NOTE: messages often embed other libraries' error text, which may span lines; the
        # contract is one line, so newlines are folded here once for every subclass.
        super().__init__(" ".join(str(message).split()))


class CacheMissingError(FeatureCacheError):
    """The cache file (or one of its shards) does not exist."""


class CacheIncompleteError(FeatureCacheError):
    """Some samples of the cache are not written yet (an interrupted run); resume it."""


class CacheVersionError(FeatureCacheError):
    """The cache was written with another schema version of this package."""


class FingerprintMismatchError(FeatureCacheError):
    """The cache was made with another backbone (fingerprint) than the one expected."""


class LayoutMismatchError(FeatureCacheError):
    """An existing cache has another layout than the one requested (or the data does not fit it)."""


class CacheCorruptError(FeatureCacheError):
    """The file cannot be opened or read as a feature cache (damaged, or not a cache at all)."""


class CacheBusyError(FeatureCacheError):
    """Another process holds the cache open for writing."""
