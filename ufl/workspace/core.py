"""The :class:`Workspace`: a frozen backbone, its feature caches, and the registered task heads.

A workspace folder holds::

    workspace.json              the manifest (see ufl.workspace.manifest)
    backbone.safetensors        the frozen backbone's weights (its config in the metadata)
    heads/TASK-XXXXXXXX.safetensors   one Medusa head per registered task
    caches/DATASET-SPLIT-Nv.h5  backbone features (+ decoded targets) per dataset, split and views
    caches/DATASET-SPLIT-Nv.targets-TASK.h5   the targets of a folder task added later

The Python API mirrors the CLI (which is a thin layer over it)::

    ws = Workspace.from_checkpoint("ufl-workspace", "runs/medusa")   # ufl init --checkpoint
    ws.cache_features("pascal", splits=["train", "val"])              # ufl cache-features
    ws.add_task("saliency")                                           # ufl add-task
    ws.evaluate()                                                     # ufl evaluate --all-tasks
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from safetensors import SafetensorError

from ..errors import UflError, WorkspaceError
from ..io import file_sha256, json_safe
from ..provenance import backbone_note, describe_init, training_data
from ..taskspec import TaskSpec, check_task_name
from .creation import CACHES, HEADS, staged_workspace, write_new
from .manifest import Manifest, now

if TYPE_CHECKING:  # torch and the models are imported where used: `ufl list-tasks` needs neither
    import torch

    from ..models import Backbone, MedusaHead

__all__ = ["Workspace", "resolve_workspace", "DEFAULT_WORKSPACE", "RESCUE_PREFIX"]

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE = "ufl-workspace"
RESCUE_PREFIX = "ufl-rescued-head-"
REMOVING = ".removing"
"""Suffix of a head file being deleted by ``remove-task`` (renamed first, so a failure changes nothing)."""


def resolve_workspace(path: str | os.PathLike | None) -> Path:
    """``--workspace`` / ``$UFL_WORKSPACE`` / ``./ufl-workspace``."""
    return Path(path or os.environ.get("UFL_WORKSPACE") or DEFAULT_WORKSPACE)


def os_error_text(error: BaseException) -> str:
    """``[Errno 28] No space left on device: 'path'`` -> ``no space left on device (path)``."""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror[0].lower() + error.strerror[1:]
        return f"{text}: {error.filename}" if error.filename else text
    return " ".join(str(error).split()) or type(error).__name__


class Workspace:
    """An existing workspace (use :meth:`create` or :meth:`from_checkpoint` to make one)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.root = resolve_workspace(path)
        self.manifest = Manifest(self.root)
        self.manifest.read()  # fail early, with one clear line, on a missing or corrupt manifest
        self._backbone: Backbone | None = None

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike | None, backbone: Backbone, source: str,
               provenance: Mapping[str, Any] | None = None) -> "Workspace":
        """A new workspace around ``backbone`` (frozen, weights saved), with no tasks; ``provenance``
        (see :mod:`ufl.provenance`) is recorded as the backbone's. Built aside and moved into place
        whole (see :func:`ufl.workspace.creation.staged_workspace`)."""
        with staged_workspace(resolve_workspace(path)) as staging:
            write_new(staging, backbone, source, provenance)
        return cls(path)

    @classmethod
    def from_backbone(cls, path: str | os.PathLike | None, name: str | None = None,
                      pretrained: bool | str | None = None, init_note: str | None = None) -> "Workspace":
        """``ufl init --backbone NAME``: a bare (e.g. ImageNet) backbone, no tasks (``name`` default:
        :data:`ufl.models.backbone.DEFAULT_BACKBONE`; ``init_note``: the provenance ``init`` when it
        says more than ``pretrained``, see :mod:`ufl.provenance`)."""
        from ..models.backbone import DEFAULT_BACKBONE, Backbone

        name = name or DEFAULT_BACKBONE
        backbone = Backbone(name, pretrained=pretrained)
        if pretrained is True:
            source = "timm ImageNet weights"
        elif pretrained:
            source = f"weights file {pretrained}"
        else:
            source = "random init"
        return cls.create(path, backbone, source, {"init": init_note or describe_init(pretrained), "data": []})

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None, run_dir: str | os.PathLike, *,
                        register: bool = True, **options: Any) -> "Workspace":
        """``ufl init --checkpoint RUN``: the run's backbone, frozen; with a Medusa checkpoint (not one
        of its ablations'), its tasks registered with their heads and their val metrics measured
        through the workspace's own cache (``options`` go to :meth:`register_checkpoint_tasks`)."""
        from ..checkpoint import load_checkpoint
        from ..models import Backbone

        ckpt = load_checkpoint(run_dir)
        backbone = Backbone.from_config(ckpt.meta["backbone"])
        backbone.load_state_dict({k[len("backbone."):]: v for k, v in ckpt.model_state.items()
                                  if k.startswith("backbone.")}, strict=True)
        if backbone.fingerprint() != ckpt.meta.get("fingerprint"):
            raise WorkspaceError(f"checkpoint {run_dir}: the backbone weights do not match the recorded "
                                 f"fingerprint; the run folder is damaged")
        provenance = ckpt.meta.get("provenance")
        if provenance is None:  # a checkpoint from before provenance was recorded: what its record says
            try:
                trained_on = ckpt.data_folder()  # an older run's relative folder, found
            except UflError:
                trained_on = ckpt.meta.get("root")
            provenance = {"init": describe_init((ckpt.meta.get("config") or {}).get("pretrained")),
                          "data": [training_data(ckpt.meta["dataset"], trained_on)]}
        source = f"checkpoint {Path(run_dir).resolve()} ({ckpt.meta['model']}, epoch {ckpt.epoch})"
        # built aside and moved into place whole: a failed init leaves nothing that blocks the retry
        with staged_workspace(resolve_workspace(path)) as staging:
            write_new(staging, backbone, source, provenance)
            if register:
                from .registration import register_checkpoint_tasks

                register_checkpoint_tasks(cls(staging), ckpt, **options)
        return cls(path)

    # -- reading --------------------------------------------------------------------------------
    def read(self) -> dict[str, Any]:
        return self.manifest.read()

    @property
    def fingerprint(self) -> str:
        return self.read()["backbone"]["fingerprint"]

    def backbone_note(self) -> str | None:
        """One line when the backbone is random-init or was trained only on generated data (its
        predictions on real photos are then noise), else None; see :mod:`ufl.provenance`."""
        record = self.read()["backbone"]
        provenance = record.get("provenance")
        if provenance is None and record.get("source") == "random init":  # a workspace from before provenance
            provenance = {"init": "random", "data": []}
        return backbone_note(provenance)

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """Registered tasks: ``{name: record}``."""
        return self.read()["tasks"]

    def task(self, name: str) -> dict[str, Any]:
        tasks = self.tasks
        if name not in tasks:
            raise WorkspaceError(f"task {name!r} is not registered in {self.root}; registered: "
                                 f"{', '.join(sorted(tasks)) or 'none'} (see `ufl list-tasks`)")
        return tasks[name]

    def spec(self, name: str) -> TaskSpec:
        return TaskSpec.from_dict(self.task(name)["spec"], source=f"{self.root}/workspace.json:{name}")

    def backbone(self, device: str | torch.device = "cpu") -> Backbone:
        """The frozen backbone (loaded once; its fingerprint checked against the manifest)."""
        import torch

        from ..io import load_weights
        from ..models import Backbone

        if self._backbone is None:
            record = self.read()["backbone"]
            backbone = Backbone.from_config(record["config"])
            state = load_weights(self.inside(record["weights"], "backbone weights"))
            try:
                backbone.model.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise WorkspaceError(f"{self.root / record['weights']} does not fit backbone "
                                     f"{record['config']['name']} ({str(e).splitlines()[0]})") from None
            if backbone.fingerprint() != record["fingerprint"]:
                raise WorkspaceError(f"{self.root / record['weights']} does not match the workspace's backbone "
                                     f"fingerprint; the file was changed or damaged")
            # channels_last weights, like the inputs of backbone_features (faster convolutions)
            self._backbone = backbone.freeze().to(memory_format=torch.channels_last)
        return self._backbone.to(device)

    def inside(self, relative: Any, what: str, folder: str | None = None) -> Path:
        """``ROOT/relative`` resolved (symbolic links followed), when it lies inside the workspace
        (inside ``ROOT/folder`` when given); a path read from the manifest that is absolute or leads
        out (``../victim.txt``) is one clear :class:`WorkspaceError`, and nothing is touched."""
        base = (self.root / folder if folder else self.root).resolve()
        if not isinstance(relative, str) or not relative or os.path.isabs(relative) or "\0" in relative:
            raise WorkspaceError(f"{what} path {relative!r} in {self.manifest.path} is not a path relative to the "
                                 f"workspace; the manifest was edited or damaged: restore it (`ufl doctor` lists "
                                 f"what is wrong)")
        path = (self.root / relative).resolve()
        if path == base or not path.is_relative_to(base):
            raise WorkspaceError(f"{what} path {relative!r} in {self.manifest.path} leads outside {base}; refusing to "
                                 f"use it: the manifest was edited or damaged, restore it (`ufl doctor` lists what "
                                 f"is wrong)")
        return path

    def head_file(self, name: str, record: Mapping[str, Any] | None = None) -> Path:
        """Where task ``name``'s head file is (inside ``ROOT/heads``, else a :class:`WorkspaceError`)."""
        record = self.task(name) if record is None else record
        return self.inside(record["head"], f"head file of task {name!r}", HEADS)

    def checked_head_file(self, name: str, record: Mapping[str, Any] | None = None) -> Path:
        """:meth:`head_file`, present and matching the recorded sha256 (else a :class:`WorkspaceError`)."""
        path = self.head_file(name, record)
        record = self.task(name) if record is None else record
        if not path.is_file():
            raise WorkspaceError(f"head file of task {name!r} is missing: {path}; re-add the task with "
                                 f"`ufl add-task {name} --replace`")
        if file_sha256(path) != record["head_sha256"]:
            raise WorkspaceError(f"head file of task {name!r} ({path}) does not match its recorded hash; "
                                 f"it was changed or damaged: re-add the task with --replace")
        return path

    def head(self, name: str, device: str | torch.device = "cpu") -> MedusaHead:
        """A registered task's head (its file checked against the recorded hash)."""
        from ..models import MedusaHead

        return MedusaHead.load(self.checked_head_file(name), device=device).eval()

    # -- caches ---------------------------------------------------------------------------------
    @staticmethod
    def cache_key(dataset: str, split: str, views: int) -> str:
        return f"{dataset}/{split}/{views}v"

    def cache_file(self, dataset: str, split: str, views: int) -> Path:
        return self.root / "caches" / f"{dataset}-{split}-{views}v.h5"

    def caches(self, dataset: str | None = None, split: str | None = None) -> dict[str, dict[str, Any]]:
        """Registered caches, optionally of one dataset and split: ``{key: record}``."""
        return {k: v for k, v in self.read()["caches"].items()
                if (dataset is None or v["dataset"] == dataset) and (split is None or v["split"] == split)}

    def cache_path(self, record: Mapping[str, Any]) -> Path:
        """The file of a cache record (inside ``ROOT/caches``, else a :class:`WorkspaceError`)."""
        key = self.cache_key(record.get("dataset"), record.get("split"), record.get("views"))
        return self.inside(record["file"], f"cache file of {key}", CACHES)

    def find_cache(self, dataset: str, split: str, views: int | None = None) -> dict[str, Any] | None:
        """The cache record of ``dataset``/``split`` (with ``views`` views, or the most views)."""
        found = self.caches(dataset, split)
        if views is not None:
            return found.get(self.cache_key(dataset, split, views))
        return max(found.values(), key=lambda r: r["views"], default=None)

    def data_settings(self, dataset: str) -> dict[str, Any]:
        """What the workspace remembers of a dataset (a folder dataset by its name): ``{"root":
        folder, "size": [H, W]}``, and a folder dataset's ``"specs"`` (or {})."""
        return dict(self.read()["data"].get(dataset, {}))

    # -- task registry --------------------------------------------------------------------------
    def new_head_path(self, name: str) -> Path:
        """A fresh file name for ``name``'s head (a replaced head never overwrites the registered one)."""
        return self.root / "heads" / f"{name}-{secrets.token_hex(4)}.safetensors"

    def register(self, name: str, head: MedusaHead, record: Mapping[str, Any], replace: bool = False) -> None:
        """Save ``head`` and add ``record`` (spec, dataset, training, eval, registered metrics) to the
        manifest, atomically; with ``replace`` an existing task's head and record are swapped.

        The head is saved and registered under the workspace lock (so ``ufl doctor --fix`` never
        takes it for an orphan). When it cannot be saved or registered (a full disk, a read-only
        folder), the trained head is kept in a rescue file (see :meth:`rescue_head`) whose path the
        error names, so the training is not lost; :meth:`register_rescued` registers it later.
        """
        check_task_name(name)
        if name in self.tasks and not replace:
            raise WorkspaceError(f"task {name!r} is already registered; pass --replace to train it again")
        path = self.new_head_path(name)
        old = None
        with self.manifest.locked():
            for stale in (self.root / HEADS).glob(".*.tmp"):  # heads are written under the lock only:
                stale.unlink(missing_ok=True)                   # these are an interrupted run's leftovers
            try:
                head.save(path, extra={"task": name, "fingerprint": self.fingerprint})
                with self.manifest.update() as manifest:
                    if name in manifest["tasks"] and not replace:
                        raise WorkspaceError(f"task {name!r} was registered meanwhile; pass --replace")
                    old = manifest["tasks"].get(name)
                    manifest["tasks"][name] = {**record, "head": str(path.relative_to(self.root)),
                                               "head_sha256": file_sha256(path), "fingerprint": self.fingerprint,
                                               "registered_at": now()}
            except (OSError, SafetensorError) as e:
                path.unlink(missing_ok=True)
                rescued = self.rescue_head(name, head, record)
                kept = (f"the trained head is kept in {rescued}: fix that, then register it with "
                        f"`ufl register-rescued {rescued}`" if rescued else
                        "no folder could hold the trained head either, so the training is lost")
                raise WorkspaceError(f"could not save the head of task {name!r} in {path.parent} "
                                     f"({os_error_text(e)}); {kept}") from None
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            if old is not None:
                self._delete_head(name, old, strict=False)

    def rescue_head(self, name: str, head: MedusaHead, record: Mapping[str, Any]) -> Path | None:
        """Save a trained head that could not be registered, with its task name, backbone fingerprint
        and record in the metadata, as ``ufl-rescued-head-NAME-XXXX.safetensors`` in the system's temp
        folder (else the workspace, else the home folder); its path, or None when none could hold it."""
        extra = {"task": name, "fingerprint": self.fingerprint, "record": json.dumps(json_safe(dict(record)))}
        for folder in (Path(tempfile.gettempdir()), self.root, Path.home()):
            target = folder / f"{RESCUE_PREFIX}{name}-{secrets.token_hex(4)}.safetensors"
            try:
                head.save(target, extra=extra)
            except (OSError, SafetensorError) as e:
                log.debug("could not rescue the head of %s in %s: %s", name, folder, e)
                continue
            log.warning("the trained head of %s is kept in %s", name, target)
            return target
        return None

    def register_rescued(self, file: str | os.PathLike, replace: bool = False) -> str:
        """Register a head kept by :meth:`rescue_head` (``ufl register-rescued FILE``) under its task
        name, with the record it was trained with; the rescue file is deleted once registered.
        Returns the task name."""
        from ..models import MedusaHead
        from ..models.medusa import read_head_metadata

        file = Path(file)
        metadata = read_head_metadata(file)
        name, fingerprint = metadata.get("task"), metadata.get("fingerprint")
        if "record" not in metadata or name is None:
            raise WorkspaceError(f"{file} is not a rescued head (no task record in its metadata)")
        if fingerprint != self.fingerprint:
            raise WorkspaceError(f"{file} was trained on another backbone (fingerprint {str(fingerprint)[:12]}) than "
                                 f"workspace {self.root} ({self.fingerprint[:12]}); use the workspace it came from")
        try:
            record = json.loads(metadata["record"])
        except json.JSONDecodeError as e:
            raise WorkspaceError(f"{file}: its task record is not valid JSON ({e})") from None
        self.register(name, MedusaHead.load(file), record, replace=replace)
        file.unlink(missing_ok=True)
        return name

    def _delete_head(self, name: str, record: Mapping[str, Any], strict: bool = True) -> None:
        """Delete a head file once it is unregistered, only when it lies inside ``heads/`` and matches
        its recorded hash; otherwise raise (``strict``) or leave it and log why."""
        try:
            path = self.head_file(name, record)
            if path.is_file() and file_sha256(path) != record["head_sha256"]:
                raise WorkspaceError(f"the old head file of task {name!r} ({path}) does not match its recorded "
                                     f"hash, so it is not deleted (`ufl doctor` lists it)")
            path.unlink(missing_ok=True)
        except (WorkspaceError, OSError) as e:
            if strict:
                raise
            log.warning("%s", e)

    def remove_task(self, name: str, keep_file: bool = False) -> dict[str, str | None]:
        """Unregister ``name`` and delete its head file (``keep_file``: leave the file); other tasks are
        untouched. Returns ``{"task": name, "file": the head file deleted (None: there was none, or
        ``keep_file``), "kept_file": the head file left in place with ``keep_file`` (None: none there
        or not ``keep_file``)}``.

        The head file is checked first (inside ``heads/``, matching its recorded sha256: a manifest
        pointing elsewhere deletes nothing) and renamed aside before the task is unregistered, so a
        folder that refuses the deletion leaves the task registered and its file in place.
        """
        with self.manifest.locked():
            tasks = self.tasks
            if name not in tasks:
                check_task_name(name)
                raise WorkspaceError(f"task {name!r} is not registered in {self.root}; registered: "
                                     f"{', '.join(sorted(tasks)) or 'none'}")
            record = tasks[name]
            path = aside = None
            if not keep_file:
                path = self.head_file(name, record)
                if path.is_file():
                    if file_sha256(path) != record["head_sha256"]:
                        raise WorkspaceError(
                            f"head file of task {name!r} ({path}) does not match its recorded hash, so it is not "
                            f"deleted; `ufl remove-task {name} --keep-file` unregisters the task and keeps the file")
                    aside = path.with_name(f".{path.name}{REMOVING}")
                    os.replace(path, aside)  # refused (read-only folder): nothing has changed yet
            try:
                with self.manifest.update() as manifest:
                    manifest["tasks"].pop(name, None)
            except BaseException:
                if aside is not None:
                    os.replace(aside, path)
                raise
            if aside is not None:
                aside.unlink(missing_ok=True)
        kept = self.root / record["head"] if keep_file else None
        return {"task": name, "file": None if aside is None else str(path),
                "kept_file": str(kept) if kept is not None and kept.is_file() else None}

    # -- the pipeline (implemented in sibling modules) --------------------------------------------
    def cache_features(self, dataset: str, splits: Sequence[str] = ("train", "val"), **options: Any):
        """Cache the frozen backbone's features of ``dataset`` (see :func:`ufl.workspace.cache.cache_features`)."""
        from .cache import cache_features

        return cache_features(self, dataset, splits, **options)

    def add_task(self, name: str | None = None, **options: Any):
        """Train and register a head (see :func:`ufl.workspace.heads.add_task`)."""
        from .heads import add_task

        return add_task(self, name, **options)

    def evaluate(self, tasks: Sequence[str] | None = None, **options: Any):
        """Evaluate registered tasks (see :func:`ufl.workspace.evaluate.evaluate_tasks`)."""
        from .evaluate import evaluate_tasks

        return evaluate_tasks(self, tasks, **options)

    def predict(self, images: Sequence[str | os.PathLike], out: str | os.PathLike, **options: Any):
        """Predict every (or the given) task on image files (see :func:`ufl.workspace.predict.predict`)."""
        from .predict import predict

        return predict(self, images, out, **options)

    def visualize(self, out: str | os.PathLike, **options: Any):
        """Val images with ground truth, predictions and attention (see :func:`ufl.workspace.predict.visualize`)."""
        from .predict import visualize

        return visualize(self, out, **options)

    def doctor(self, fix: bool = False):
        """Check this workspace; with ``fix`` remove its litter (see :func:`ufl.workspace.doctor.doctor`)."""
        from .doctor import doctor

        return doctor(self.root, fix=fix)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r}, tasks={sorted(self.tasks)})"
