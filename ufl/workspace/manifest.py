"""The workspace manifest (``workspace.json``): schema, atomic updates under a file lock.

Every change goes through :meth:`Manifest.update`, which takes the workspace's file lock, re-reads
the manifest from disk, applies the change to a copy, validates it, and writes it to a temporary
file that replaces ``workspace.json`` in one rename. A crash at any point leaves either the old or
the new manifest, never a mix; two processes never overwrite each other's changes.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from ..errors import WorkspaceError
from ..io import read_json, write_json

__all__ = ["Manifest", "SCHEMA_VERSION", "MANIFEST", "LOCK", "TASK_KEYS", "CACHE_KEYS", "now"]

SCHEMA_VERSION = 1
MANIFEST = "workspace.json"
LOCK = ".workspace.lock"
_REQUIRED = {"schema_version": int, "backbone": dict, "tasks": dict, "caches": dict, "data": dict}
_BACKBONE_KEYS = {"config": dict, "fingerprint": str, "weights": str, "channels": list}
# What every task record must hold, and of which type; other keys are allowed (optional ones such
# as "source", "training", "role" or "registered_at", and any a later version adds).
TASK_KEYS = {"spec": dict, "dataset": str, "head": str, "head_sha256": str, "fingerprint": str, "eval": dict,
             "registered": dict}
CACHE_KEYS = {"file": str, "dataset": str, "split": str, "views": int, "size": list}


def now() -> str:
    """UTC timestamp for records."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """Read and update ``ROOT/workspace.json``.

    The manifest holds::

        schema_version  int
        created         ISO time
        backbone        {"config": {...}, "fingerprint": str, "weights": "backbone.safetensors",
                         "source": str}
        data            {dataset: {"root": absolute folder, "size": [H, W]}}; a folder dataset by its
                        name, with "kind": "folder" and its "specs" (ufl.workspace.folders)
        caches          {"pascal/train/2v": {"file": "caches/pascal-train-2v.h5", "dataset", "split",
                         "views", "size", "samples", "tasks", "fingerprint", "created",
                         "targets": {task: {"file", "created"}} for tasks added later, optional}}
        tasks           {name: {"spec", "dataset", "head", "head_sha256", "fingerprint", "training",
                         "eval", "registered", "registered_at", "source", "precision"}}
                        ("precision": the head's autocast, fp32 | bf16 | fp16, in which its registered
                        metrics were computed and every evaluation repeats them; absent = fp32)
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.path = self.root / MANIFEST
        self.lock = FileLock(str(self.root / LOCK), timeout=60)

    # -- reading -------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_file()

    def read(self) -> dict[str, Any]:
        """The manifest as a dict; a missing, corrupt or foreign one is one clear error."""
        if not self.root.is_dir():
            raise WorkspaceError(f"no workspace at {self.root}; create one with `ufl init --checkpoint RUN` "
                                 f"or `ufl init --backbone NAME` (or pass --workspace)")
        if not self.path.is_file():
            raise WorkspaceError(f"{self.path} is missing: {self.root} is not a ufl workspace; "
                                 f"create one with `ufl init` or pass --workspace")
        data = read_json(self.path, "workspace manifest", WorkspaceError,
                         hint="restore it, or make a new workspace with `ufl init`")
        self.validate(data)
        return data

    def validate(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise WorkspaceError(f"workspace manifest {self.path} is corrupt (not a JSON object)")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise WorkspaceError(f"workspace manifest {self.path} has schema version {version!r}; this ufl "
                                 f"reads version {SCHEMA_VERSION}")
        for key, kind in _REQUIRED.items():
            if not isinstance(data.get(key), kind):
                raise WorkspaceError(f"workspace manifest {self.path} is corrupt: {key!r} is missing or not "
                                     f"a {kind.__name__}")
        fix = "restore workspace.json from a backup, or delete that entry from it (then `ufl doctor`)"
        self._check_record(data["backbone"], _BACKBONE_KEYS, "the backbone record", fix)
        for name, record in data["tasks"].items():
            self._check_record(record, TASK_KEYS, f"the record of task {name!r}", fix)
            size = record["eval"].get("size")
            if not (isinstance(size, list) and len(size) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
                raise WorkspaceError(f"workspace manifest {self.path} is corrupt: the record of task {name!r} has "
                                     f"eval.size {size!r}, not [H, W]; {fix}")
        for key, record in data["caches"].items():
            self._check_record(record, CACHE_KEYS, f"the record of cache {key!r}", fix)

    def _check_record(self, record: Any, keys: dict[str, type], what: str, fix: str) -> None:
        """One clear error when ``record`` is not a dict holding ``keys`` with their types (extra
        keys are fine)."""
        if not isinstance(record, dict):
            raise WorkspaceError(f"workspace manifest {self.path} is corrupt: {what} is not an object; {fix}")
        for key, kind in keys.items():
            if key not in record:
                raise WorkspaceError(f"workspace manifest {self.path} is corrupt: {what} lacks {key!r}; {fix}")
            value = record[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise WorkspaceError(f"workspace manifest {self.path} is corrupt: {what} has {key!r} of type "
                                     f"{type(value).__name__}, not {kind.__name__}; {fix}")

    # -- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the workspace lock (re-entrant within one process)."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with self.lock:
                yield
        except Timeout:
            raise WorkspaceError(f"workspace {self.root} is locked by another ufl process "
                                 f"({self.root / LOCK}); wait for it to finish") from None

    def create(self, backbone: dict[str, Any]) -> dict[str, Any]:
        """Write a new manifest; refuses to overwrite an existing one."""
        with self.locked():
            if self.path.exists():
                raise WorkspaceError(f"{self.root} already holds a workspace; choose another --workspace "
                                     f"or remove it first")
            data = {"schema_version": SCHEMA_VERSION, "created": now(), "backbone": backbone,
                    "data": {}, "caches": {}, "tasks": {}}
            self.validate(data)
            write_json(self.path, data)
            return data

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        """Yield a copy of the current manifest to change; it is written when the block ends
        without an exception (and discarded otherwise)."""
        with self.locked():
            for stale in self.root.glob(f".{MANIFEST}.*.tmp"):  # only lock holders write these: a crash's
                stale.unlink(missing_ok=True)                    # leftovers, never a running write
            data = copy.deepcopy(self.read())
            yield data
            self.validate(data)
            write_json(self.path, data)
