"""``ufl doctor``: check a workspace, and with ``--fix`` remove what interrupted runs left behind.

What is checked (each finding names its file and what to do):

- the manifest: schema and every task and cache record (:meth:`Manifest.read`);
- the backbone weights against the recorded fingerprint;
- every task: a valid name, its spec, its head file inside ``heads/`` and matching the recorded
  sha256, its backbone fingerprint, and that the val cache it is evaluated on has the size it was
  registered at;
- every registered cache (and the target files of tasks added to it later): inside ``caches/``,
  present, complete, of this backbone, and (when the installed :mod:`feature_cache` has
  ``verify_file``) its stored checksums;
- litter: temporary files of atomic writes (``*.tmp``, also 0-byte ones), cache skeletons
  (``*.creating``), unfinished ``--overwrite`` rebuilds (``*.partial``), shards no cache reads,
  head files being deleted (``*.removing``), and head files no task refers to (orphans).

Problems make :attr:`DoctorReport.ok` false (``ufl doctor`` exits 1). Notes (a rescued head, a
cache that is complete but not yet registered, an interrupted first caching run that
``cache-features`` resumes) are listed but are not problems. ``fix=True`` removes the litter under
the workspace lock, never a registered head or a registered cache (or a shard one reads); files
another process holds open (HDF5's lock) or changed in the last :data:`GRACE_SECONDS` (unless only
a lock holder writes them) are left and said so.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import UflError, WorkspaceError
from ..taskspec import TaskSpec, check_task_name
from .manifest import LOCK, MANIFEST, Manifest

__all__ = ["doctor", "DoctorReport", "Finding", "GRACE_SECONDS", "is_in_use", "remove_stale"]

log = logging.getLogger(__name__)

GRACE_SECONDS = 30.0
"""A temporary file changed this recently may belong to a running ufl: ``--fix`` leaves it."""


@dataclass
class Finding:
    """One thing ``ufl doctor`` found: ``severity`` is ``problem`` or ``note``; ``fixable`` when
    ``--fix`` may remove ``path``; ``fixed`` once it did (``skipped`` says why it did not)."""

    kind: str
    path: str
    message: str
    severity: str = "problem"
    fixable: bool = False
    fixed: bool = False
    skipped: str = ""
    restore_to: str = ""


@dataclass
class DoctorReport:
    """What :func:`doctor` found in a workspace (``to_dict`` is the ``--json`` output)."""

    root: str
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    cache_checksums: bool = False

    @property
    def problems(self) -> list[Finding]:
        """Problems still present (fixed ones excluded)."""
        return [f for f in self.findings if f.severity == "problem" and not f.fixed]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"workspace": self.root, "ok": self.ok, "checked": dict(self.checked),
                "cache_checksums": self.cache_checksums, "findings": [asdict(f) for f in self.findings]}

    def lines(self) -> list[str]:
        """The report as text, one line per finding, then a summary line."""
        out = []
        for f in self.findings:
            state = (f" [restored to {f.restore_to}]" if f.restore_to else " [removed]") if f.fixed else (f" [left: {f.skipped}]" if f.skipped else "")
            hint = f" (--fix {'restores' if f.restore_to else 'removes'} it)" if f.fixable and not f.fixed and not f.skipped else ""
            out.append(f"{f.severity}: {f.kind}: {f.message}{hint}{state}")
        checked = ", ".join(f"{n} {k}" for k, n in self.checked.items())
        verdict = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        out.append(f"{self.root}: {verdict} (checked {checked or 'nothing'})")
        return out

    def add(self, kind: str, path: Any, message: str, **kwargs: Any) -> None:
        self.findings.append(Finding(kind, str(path), " ".join(str(message).split()), **kwargs))


def is_in_use(path: Path) -> bool:
    """Whether another process holds ``path`` open through HDF5 (which takes an ``flock`` on every
    file it opens; a file nobody holds can be locked here at once)."""
    try:
        with open(path, "rb") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def doctor(path: str | os.PathLike | None = None, fix: bool = False) -> DoctorReport:
    """Check the workspace at ``path`` (see the module docstring); with ``fix`` remove its litter.

    A folder that holds no workspace at all is a :class:`WorkspaceError`; everything else is a
    finding of the returned :class:`DoctorReport`."""
    from .core import resolve_workspace

    root = resolve_workspace(path)
    if not root.is_dir() or not (root / MANIFEST).is_file():
        raise WorkspaceError(f"no workspace at {root} (no {MANIFEST}); pass --workspace")
    report = DoctorReport(str(root))
    lock = contextlib.nullcontext() if not fix else Manifest(root).locked()
    with lock:
        protected = _find_litter(root, report, *_check_records(root, report))
        if fix:
            _fix(report, protected)
            if any(f.fixed and f.restore_to for f in report.findings):  # check the restored heads again
                fixed = [f for f in report.findings if f.fixed]
                report = DoctorReport(str(root))
                _find_litter(root, report, *_check_records(root, report))
                report.findings[:0] = fixed
    return report


def remove_stale(folder: Path, pattern: str) -> list[Path]:
    """Remove the files of ``folder`` matching ``pattern`` that an interrupted run left: not open in
    another process and unchanged for :data:`GRACE_SECONDS`. Returns the removed files."""
    removed = []
    now = time.time()
    for path in folder.glob(pattern):
        try:
            if path.is_symlink() or not path.is_file() or now - path.stat().st_mtime < GRACE_SECONDS:
                continue
            if is_in_use(path):
                continue
            path.unlink()
        except OSError:
            continue
        removed.append(path)
        log.info("removed %s, left by an interrupted run", path)
    return removed


def _check_records(root: Path, report: DoctorReport) -> tuple[set[Path] | None, bool]:
    """Check manifest, backbone, tasks and caches: the files they refer to (resolved; None when the
    manifest itself is unreadable, then no file counts as an orphan), and whether every task's head
    path was sound (if not, a head file no task refers to may be the one a damaged record lost)."""
    from .core import Workspace
    from .evaluate import check_val_cache
    from .targets import target_path

    try:
        ws = Workspace(root)
        data = ws.read()
    except UflError as e:
        report.add("manifest", root / MANIFEST, str(e))
        return None, False
    referenced: set[Path] = set()
    heads_sound = True
    with _finding(report, "backbone", root / data["backbone"]["weights"]):
        referenced.add(ws.inside(data["backbone"]["weights"], "backbone weights"))
        ws.backbone("cpu")
    report.checked["tasks"] = len(data["tasks"])
    for name, record in data["tasks"].items():
        with _finding(report, "task", f"{root / MANIFEST}:{name}"):
            check_task_name(name, f"registered task name in {root / MANIFEST}:")
        with _finding(report, "task", f"{root / MANIFEST}:{name}"):
            TaskSpec.from_dict(record["spec"], source=f"{root / MANIFEST}:{name}")
        try:
            referenced.add(ws.head_file(name, record))
        except UflError as e:
            heads_sound = False
            report.add("head", record["head"], str(e))
        else:
            with _finding(report, "head", record["head"]):
                ws.checked_head_file(name, record)
        if record["fingerprint"] != ws.fingerprint:
            report.add("task", f"{root / MANIFEST}:{name}", f"task {name!r} was registered on another backbone "
                       f"(fingerprint {record['fingerprint'][:12]}); re-add it with `ufl add-task {name} --replace`")
        with _finding(report, "task", f"{root / MANIFEST}:{name}"):
            check_val_cache(ws, name, record)
    report.checked["caches"] = len(data["caches"])
    verify = _verify_function()
    report.cache_checksums = verify is not None
    for key, record in data["caches"].items():
        with _finding(report, "cache", record["file"]):
            path = ws.cache_path(record)
            referenced.add(path)
            if not path.is_file():
                raise WorkspaceError(f"the {key} cache file {path} is missing; re-cache it with `ufl cache-features "
                                     f"--dataset {record['dataset']} --split {record['split']} --overwrite`")
            referenced.update(_sources(path))
            _check_cache(ws, key, record, path, verify, report)
        for task in record.get("targets") or {}:  # targets of a task added later, beside the cache
            with _finding(report, "cache", record["targets"][task].get("file")):
                path = target_path(ws, record, task)
                referenced.add(path)
                if not path.is_file():
                    raise WorkspaceError(f"the {task} target file {path} of the {key} cache is missing; re-cache with "
                                         f"`ufl cache-features --dataset folder --dataset-name {record['dataset']} "
                                         f"--overwrite`")
                _check_cache(ws, f"{key} ({task} targets)", record, path, verify, report)
    return referenced, heads_sound


@contextlib.contextmanager
def _finding(report: DoctorReport, kind: str, path: Any) -> Iterator[None]:
    """Turn an error inside the block into a problem finding (doctor reports, it does not crash:
    a damaged file may fail in any library)."""
    from feature_cache.errors import FeatureCacheError

    try:
        yield
    except (UflError, FeatureCacheError, OSError) as e:
        report.add(kind, path, str(e))
    except Exception as e:  # noqa: BLE001  anything else a damaged file makes a library raise
        report.add(kind, path, f"{path}: {type(e).__name__}: {e}")


def _verify_function():
    """``feature_cache.verify_file`` (per-row checksums) when the installed package has it."""
    import feature_cache

    return getattr(feature_cache, "verify_file", None)


def _sources(path: Path) -> list[Path]:
    """The shard files a joined cache reads (resolved; none for a single file)."""
    import h5py

    from feature_cache.reader import virtual_source_files

    try:
        with h5py.File(path, "r") as f:
            return [p.resolve() for p in virtual_source_files(f, path)]
    except Exception:  # noqa: BLE001  unreadable: the cache check reports it
        return []


def _check_cache(ws, key: str, record: dict, path: Path, verify, report: DoctorReport) -> None:
    from feature_cache import FeatureCacheReader

    FeatureCacheReader(path, ws.fingerprint).close()  # complete, of this backbone, readable
    if verify is not None:
        for problem in verify(path):
            report.add("cache", path, f"{key}: {problem}")


def _litter_kind(path: Path) -> tuple[str, str, bool] | None:
    """``(kind, message, only written under the workspace lock)`` when ``path`` is litter by its name."""
    name = path.name
    if name.endswith(".tmp"):
        locked = name.startswith(f".{MANIFEST}.") or path.parent.name == "heads"
        size = path.stat().st_size if path.exists() else 0
        return "temp", f"temporary file of an interrupted write ({size} bytes)", locked
    if name.endswith(".creating"):
        return "temp", "cache skeleton of an interrupted `cache-features`", False
    if name.endswith(".removing"):
        return "temp", "head file of an interrupted `remove-task`", True
    if name.endswith(".partial"):
        return "partial", ("unfinished `cache-features --overwrite` rebuild (rerun that command to finish it, "
                           "or remove it)"), False
    return None


def _find_litter(root: Path, report: DoctorReport, referenced: set[Path] | None, heads_sound: bool) -> set[str]:
    """Add the litter (and notes) of ``root``, ``heads/`` and ``caches/`` to ``report``; the paths of
    litter that only a holder of the workspace lock writes (so it is stale while doctor holds it).
    Head files no task refers to are removable only when every task's head path is sound."""
    from .core import REMOVING, RESCUE_PREFIX

    files = 0
    protected: set[str] = set()
    for folder in (root, root / "heads", root / "caches"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_symlink() or not path.is_file():
                continue
            files += 1
            if path.name in (MANIFEST, LOCK):
                continue
            if path.name.endswith(REMOVING) and path.name.startswith("."):
                original = path.with_name(path.name[1:-len(REMOVING)])
                if referenced is not None and original.resolve() in referenced:
                    report.add("removing", path, f"{path}: head file of registered task, renamed by an interrupted "
                               f"`remove-task`", fixable=True, restore_to=str(original))
                    protected.add(str(path))
                    continue
            litter = _litter_kind(path)
            if litter is not None:
                kind, message, locked = litter
                report.add(kind, path, f"{path}: {message}", fixable=True)
                if locked:
                    protected.add(str(path))
                continue
            if path.name.startswith(RESCUE_PREFIX):
                report.add("rescued", path, f"{path}: a trained head whose registration failed; register it with "
                           f"`ufl register-rescued {path}`", severity="note")
                continue
            if referenced is None or path.resolve() in referenced:
                continue
            if folder.name == "heads" and path.suffix == ".safetensors" and heads_sound:
                report.add("orphan_head", path, f"{path}: head file no registered task refers to (left by an "
                           f"interrupted add-task or remove-task)", fixable=True)
            elif folder.name == "heads" and path.suffix == ".safetensors":
                report.add("orphan_head", path, f"{path}: head file no task refers to; kept, since a damaged task "
                           f"record may have lost it (restore workspace.json first)")
            elif folder.name == "caches" and ".shard" in path.name:
                report.add("stale_shard", path, f"{path}: shard file no registered cache reads", fixable=True)
            elif folder.name == "caches" and path.suffix == ".h5":
                report.add("unregistered_cache", path, f"{path}: cache file not registered (an interrupted "
                           f"`cache-features`; rerunning it resumes or registers it)", severity="note")
    report.checked["files"] = files
    return protected


def _fix(report: DoctorReport, protected: set[str]) -> None:
    """Remove every fixable finding's file that nobody is using (called under the workspace lock)."""
    now = time.time()
    for finding in report.findings:
        if not finding.fixable:
            continue
        path = Path(finding.path)
        locked = finding.path in protected
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            finding.fixed = True
            continue
        if not locked and age < GRACE_SECONDS:
            finding.skipped = f"changed {age:.0f} s ago, may belong to a running ufl; run doctor again later"
            continue
        if path.suffix in (".h5", ".partial", ".creating") and is_in_use(path):
            finding.skipped = "open in another process"
            continue
        try:
            if finding.restore_to:
                os.replace(path, finding.restore_to)
            else:
                path.unlink()
        except OSError as e:
            finding.skipped = f"could not {'restore' if finding.restore_to else 'remove'} it ({e.strerror or e})"
            continue
        finding.fixed = True
        log.info("%s %s", "restored" if finding.restore_to else "removed", path)
