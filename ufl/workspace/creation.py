"""Making a new workspace folder: built aside, moved into place whole.

:func:`staged_workspace` gives a hidden, empty sibling folder to build in and moves it to the
workspace path only when the build succeeds (a failed or killed ``ufl init`` never blocks its
retry); :func:`write_new` writes the backbone's weights and a manifest without tasks into it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from ..errors import WorkspaceError
from ..io import default_mode
from .manifest import LOCK, MANIFEST, Manifest

if TYPE_CHECKING:  # torch and the models are imported where used: `ufl list-tasks` needs neither
    from ..models import Backbone

__all__ = ["BACKBONE_FILE", "HEADS", "CACHES", "check_folder", "staged_workspace", "write_new"]

log = logging.getLogger(__name__)

BACKBONE_FILE = "backbone.safetensors"
HEADS = "heads"
CACHES = "caches"
#: What a workspace folder holds at its top (a folder holding some of them without a manifest is
#: not a workspace, and is not built into)
_WORKSPACE_ENTRIES = {MANIFEST, BACKBONE_FILE, HEADS, CACHES, LOCK}


def check_folder(root: Path) -> None:
    """One clear error when ``root`` or a folder above it exists as something else than a folder
    (``--workspace notes.txt/ws``)."""
    for folder in (root, *root.parents):
        if folder.exists() and not folder.is_dir():
            raise WorkspaceError(f"workspace path {root}: {folder} is a file, not a folder; choose another "
                                 f"--workspace")


@contextlib.contextmanager
def staged_workspace(root: Path) -> Iterator[Path]:
    """A hidden, empty sibling folder of ``root`` to build a new workspace in; moved to ``root``
    when the block ends without an error (in one rename when ``root`` does not exist or is empty,
    else entry by entry with the manifest last), deleted when it fails. So ``root`` holds a
    manifest only once the workspace is complete, and a failed or killed ``ufl init`` never
    blocks its retry (a killed one leaves only the hidden ``.NAME.*.creating`` folder)."""
    root = Path(root)
    check_folder(root)
    if (root / MANIFEST).exists():
        raise WorkspaceError(f"{root} already holds a workspace; choose another --workspace or remove it")
    clash = sorted(p.name for p in root.iterdir() if p.name in _WORKSPACE_ENTRIES) if root.is_dir() else []
    if clash:
        raise WorkspaceError(f"{root} holds {', '.join(clash)} but no {MANIFEST} (not a workspace); remove them or "
                             f"choose another --workspace")
    target = root.resolve() if root.exists() else root  # a symlinked folder: build on its own disk
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".creating", dir=target.parent))
    staging.chmod(default_mode(folder=True))  # a folder as mkdir makes it (mkdtemp's is private)
    try:
        yield staging
        if not root.exists() or (not root.is_symlink() and not any(root.iterdir())):
            os.replace(staging, root)  # an empty folder is replaced in the same rename
        else:
            entries = sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST)  # the manifest last
            for entry in entries:
                os.replace(entry, target / entry.name)
            staging.rmdir()
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e.filename, (str, os.PathLike)) and Path(e.filename).is_relative_to(staging):
            # name the file as the user will know it, inside --workspace
            raise OSError(e.errno, e.strerror, str(root / Path(e.filename).relative_to(staging))) from None
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_new(root: Path, backbone: Backbone, source: str, provenance: Mapping[str, Any] | None) -> None:
    """The backbone's weights and a manifest without tasks, in the empty folder ``root``."""
    from ..io import save_weights

    backbone = backbone.cpu().freeze()
    fingerprint = backbone.fingerprint()
    save_weights(root / BACKBONE_FILE, backbone.model.state_dict(),
                 metadata={"config": json.dumps(backbone.config()), "fingerprint": fingerprint})
    Manifest(root).create({"config": backbone.config(), "fingerprint": fingerprint, "weights": BACKBONE_FILE,
                           "source": source, "channels": backbone.channels, "strides": backbone.strides,
                           "size_divisor": backbone.size_divisor,
                           **({"provenance": dict(provenance)} if provenance is not None else {})})
    log.debug("new workspace: backbone %s (%s), fingerprint %s", backbone.name, source, fingerprint[:12])
