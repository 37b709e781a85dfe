"""Errors a user can cause.

Every error raised for bad input (a missing folder, an unreadable file, an unknown task, a cache
from another backbone) is a :class:`UflError`. The CLI prints its message as one line on stderr
and exits with status 1, without a traceback (``ufl --debug`` shows it). The message says what is
wrong, where (the file or value), and what to do.
"""

from __future__ import annotations

__all__ = ["UflError", "DataError", "SpecError", "WorkspaceError", "CacheError"]


class UflError(Exception):
    """Base class of the errors a user can cause; its message is shown as it is."""


class DataError(UflError):
    """A data set file or folder is missing, unreadable or malformed."""


class SpecError(UflError):
    """A task spec is unknown or invalid."""


class WorkspaceError(UflError):
    """The workspace or its manifest is missing, corrupt, or refuses the request."""


class CacheError(UflError):
    """A feature cache is missing, incomplete, or belongs to another backbone."""
