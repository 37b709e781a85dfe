"""A user's folder datasets in a workspace: any number, each with its own name.

Each folder dataset is known by a *name* under which the manifest remembers its folder, input size
and task specs (``data[NAME] = {"kind": "folder", "root", "size", "specs"}``), its caches are
``caches/NAME-SPLIT-Nv.h5`` and its tasks are registered (``"dataset": NAME``). So a second folder
dataset never changes the first one's folder, specs, caches or registered tasks.

Which dataset ``--dataset folder`` means (:func:`resolve_dataset`):

- ``--dataset-name NAME``: that one (a new one when ``--root`` is given and NAME is new);
- ``--root FOLDER``: the one made from that folder, else a new one named after the folder
  (``../My-Data2`` -> ``my_data2``; a name another folder has already is refused: give
  ``--dataset-name``);
- neither: the workspace's only folder dataset.

NOTE: workspaces made before this named their one folder dataset ``folder``; it keeps that name
(and ``--dataset folder`` alone still picks it when it is the only one).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from ..datasets import DATASETS
from ..errors import WorkspaceError
from ..taskspec import TaskSpec

__all__ = ["dataset_kind", "is_folder", "folder_datasets", "resolve_dataset", "name_from_folder",
           "merge_specs", "expand_datasets"]

_NAME = re.compile(r"[a-z][a-z0-9_]*")


def dataset_kind(dataset: str) -> str:
    """The dataset class a workspace dataset name stands for: ``nyud``, ``pascal`` or ``folder``."""
    return dataset if dataset in DATASETS.names() else "folder"


def is_folder(dataset: str) -> bool:
    """Whether ``dataset`` (a workspace dataset name, or ``"folder"``) is a user's folder dataset."""
    return dataset_kind(dataset) == "folder"


def folder_datasets(ws) -> dict[str, dict[str, Any]]:
    """The workspace's folder datasets: ``{name: {"root", "size", "specs", ...}}``."""
    return {name: dict(settings) for name, settings in ws.read()["data"].items() if is_folder(name)}


def name_from_folder(folder: str | Path) -> str:
    """A dataset name from a folder's own name: lower case, runs of other characters as ``_``
    (``My-Data 2`` -> ``my_data_2``); ``folder_...`` when that is no name or a built-in dataset's."""
    name = re.sub(r"[^a-z0-9_]+", "_", Path(folder).resolve().name.lower()).strip("_")
    if not _NAME.fullmatch(name) or (name in DATASETS.names() and name != "folder"):
        name = f"folder_{name}".rstrip("_")
    return name


def _same_folder(settings: dict[str, Any], folder: Path) -> bool:
    return bool(settings.get("root")) and Path(settings["root"]).resolve() == folder


def resolve_dataset(ws, dataset: str, root: str | Path | None = None, name: str | None = None) -> str:
    """The workspace's name for ``dataset`` (see the module docstring): ``nyud``/``pascal``
    unchanged; ``"folder"`` (or a folder dataset's own name) by ``name`` and ``root``."""
    if not is_folder(dataset):
        if name is not None:
            raise WorkspaceError(f"--dataset-name names folder datasets; {dataset!r} is a built-in dataset")
        return dataset
    if dataset != "folder":  # the API was given a folder dataset's own name
        if name is not None and name != dataset:
            raise WorkspaceError(f"dataset {dataset!r} and --dataset-name {name!r} disagree; give one")
        name = dataset
    known = folder_datasets(ws)
    folder = Path(root).resolve() if root is not None else None
    if name is not None:
        if not _NAME.fullmatch(name) or not is_folder(name):
            raise WorkspaceError(f"--dataset-name {name!r}: use lower-case letters, digits and '_', starting with a "
                                 f"letter, and not a built-in dataset's name ({', '.join(DATASETS.names())})")
        if name in known:
            if folder is not None and not _same_folder(known[name], folder):
                raise WorkspaceError(f"folder dataset {name!r} of workspace {ws.root} is {known[name]['root']}, not "
                                     f"{folder}; give this folder another --dataset-name")
        elif folder is None:
            raise WorkspaceError(f"workspace {ws.root} has no folder dataset {name!r} (it has: "
                                 f"{', '.join(sorted(known)) or 'none'}); give its folder with --root to add it")
        return name
    if folder is not None:
        same = sorted(n for n, settings in known.items() if _same_folder(settings, folder))
        if len(same) == 1:
            return same[0]
        if same:
            raise WorkspaceError(f"folder {folder} is cached in workspace {ws.root} under several names "
                                 f"({', '.join(same)}); pick one with --dataset-name")
        name = name_from_folder(folder)
        if name in known:
            raise WorkspaceError(f"workspace {ws.root} already has a folder dataset named {name!r} "
                                 f"({known[name]['root']}); name the dataset in {folder} with --dataset-name NAME")
        return name
    if len(known) == 1:
        return next(iter(known))
    if not known:
        raise WorkspaceError("a folder dataset needs its folder: give --root FOLDER (images/, splits/, one folder "
                             "of targets per task)")
    listed = ", ".join(f"{n} ({s.get('root')})" for n, s in sorted(known.items()))
    raise WorkspaceError(f"workspace {ws.root} has several folder datasets: {listed}; pick one with "
                         f"--dataset-name NAME or --root FOLDER")


def merge_specs(ws, dataset: str, given: Sequence[TaskSpec] | None, overwrite: bool = False) -> list[TaskSpec]:
    """A folder dataset's task specs: those the workspace remembers for it, then the ``given`` new
    ones. A given spec that differs from the remembered one of the same name is refused (its
    cached targets would no longer be what registered tasks trained on) unless ``overwrite``
    re-caches; none at all is an error naming ``--spec``."""
    source = f"{ws.root}/workspace.json"
    remembered = {s["name"]: TaskSpec.from_dict(s, source=source)
                  for s in ws.data_settings(dataset).get("specs") or []}
    merged = dict(remembered)
    for spec in given or []:
        old = remembered.get(spec.name)
        if old is not None and old.to_dict() != spec.to_dict() and not overwrite:
            raise WorkspaceError(f"the workspace caches task {spec.name!r} of dataset {dataset!r} with another spec "
                                 f"than {spec.source or 'the one given'}; give the task another name, or pass "
                                 f"--overwrite to re-cache {dataset} with this spec")
        merged[spec.name] = spec
    if not merged:
        raise WorkspaceError(f"folder dataset {dataset!r} needs its task specs: pass --spec FILE.yaml (one per task)")
    return list(merged.values())


def expand_datasets(ws, datasets: Sequence[str]) -> list[str]:
    """Dataset names with ``"folder"`` standing for every folder dataset of the workspace (and
    for the legacy dataset named ``folder``)."""
    out: list[str] = []
    for dataset in datasets:
        names = sorted(folder_datasets(ws)) if dataset == "folder" else [dataset]
        out.extend(n for n in names if n not in out)
    return out
