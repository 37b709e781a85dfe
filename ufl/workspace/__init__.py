"""The workspace: a frozen backbone, its HDF5 feature caches and the registered task heads.

:class:`Workspace` is the Python API behind ``ufl init``, ``cache-features``, ``add-task``,
``evaluate``, ``list-tasks``, ``remove-task`` and ``predict``.
"""

from .core import DEFAULT_WORKSPACE, Workspace, resolve_workspace
from .manifest import SCHEMA_VERSION

_LAZY = {"HeadTrainingConfig": "heads", "AddTaskResult": "heads"}  # torch & co. on first use, not for list-tasks

__all__ = ["Workspace", "resolve_workspace", "DEFAULT_WORKSPACE", "HeadTrainingConfig", "AddTaskResult",
           "SCHEMA_VERSION"]


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
