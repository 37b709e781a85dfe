"""The workspace: a frozen backbone, its HDF5 feature caches and the registered task heads.

:class:`Workspace` is the Python API behind ``ufl init``, ``cache-features``, ``add-task``,
``evaluate``, ``list-tasks``, ``remove-task`` and ``predict``.
"""

from .core import DEFAULT_WORKSPACE, Workspace, resolve_workspace
from .heads import AddTaskResult, HeadTrainingConfig
from .manifest import SCHEMA_VERSION

__all__ = ["Workspace", "resolve_workspace", "DEFAULT_WORKSPACE", "HeadTrainingConfig", "AddTaskResult",
           "SCHEMA_VERSION"]
