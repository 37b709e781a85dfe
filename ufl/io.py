"""Atomic file writes, weight files and file hashes.

Nothing already stored is lost when a write fails: every file is written to a temporary name in
the same folder, flushed to disk, and renamed over the target (``os.replace`` is atomic on POSIX
and Windows). Weights are stored as safetensors and loaded without executing pickled code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .errors import UflError

if TYPE_CHECKING:  # imported where used: JSON helpers serve `ufl list-tasks`, which needs no torch
    import torch

__all__ = ["atomic_path", "write_json", "read_json", "json_safe", "save_weights", "load_weights", "file_sha256",
           "default_mode"]

# Read once, at import: os.umask can only be read by setting it, and setting it while other threads
# create files would give those files the wrong permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)


def default_mode(folder: bool = False) -> int:
    """The permissions ``open`` (0o666) or ``mkdir`` (0o777, ``folder``) give under the process's
    umask, for files and folders made private by ``tempfile`` and then published."""
    return (0o777 if folder else 0o666) & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. ``fsync``: flush
    the file to disk before the rename (the default); ``False`` skips that for files that may be
    lost in a power cut without harm (a cache), which makes many small writes much faster; readers
    still see a whole file or none.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, default_mode())  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by None, which JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON (NaN and inf become null), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike, what: str = "JSON file", error: type[UflError] = UflError,
              hint: str = "") -> Any:
    """Read JSON, turning a missing or corrupt file into one clear ``error`` (a :class:`UflError`);
    ``hint`` says what the file should hold."""
    path = Path(path)
    hint = f"; {hint}" if hint else ""
    if not path.is_file():
        raise error(f"{what} not found: {path}{hint}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{what} {path} is not valid JSON ({e}){hint}") from None


def save_weights(path: str | os.PathLike, state: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> None:
    """Save a state dict as safetensors, atomically (tensors made contiguous, shared ones copied)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors state dict (no pickled code is executed)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UflError(f"weights file not found: {path}")
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise UflError(f"weights file {path} is unreadable ({e}); re-create it") from None


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes as 64 hex digits, read in 1 MiB blocks (any file size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
