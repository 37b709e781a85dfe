"""Training checkpoints: safetensors weights + a JSON record, written so a crash never loses the
last good one.

A run folder holds::

    RUN/checkpoint.json         the record: epoch, weights file name and its sha256, metadata
                                (model, tasks, backbone config and fingerprint, metrics, settings)
    RUN/epoch-0005.safetensors  model tensors (``model.*``) and optimizer tensors (``optim.*``)

A save writes the new weights file first, then replaces ``checkpoint.json`` atomically, then
deletes older weights files. Killed at any point, the folder still holds a record that points to a
complete weights file with a matching hash. Nothing is unpickled on load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import UflError
from .io import file_sha256, load_weights, read_json, save_weights, write_json

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "has_checkpoint", "RECORD"]

RECORD = "checkpoint.json"
FORMAT = "ufl-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: metadata, model state dict and (optionally) optimizer state dict."""

    meta: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None = None
    path: Path | None = field(default=None)

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])

    def data_folder(self) -> Path:
        """The folder of the dataset the run trained on (``meta["root"]``), as a path that exists.

        Runs record it absolute. Older runs recorded it as given, relative to the folder ``ufl
        pretrain`` ran in: that folder is found from the run folder and its recorded ``--out``
        (``/abs/ufl-demo/run`` made as ``--out ufl-demo/run`` ran in ``/abs``); then the run
        folder itself and the current folder are tried. None existing is a :class:`UflError`
        naming every place looked at and ``--root``.
        """
        recorded = self.meta.get("root")
        dataset = self.meta.get("dataset", "training")
        if not recorded:
            raise UflError(f"checkpoint {self.path} records no data folder; pass the {dataset} folder with --root")
        folder = Path(recorded)
        if folder.is_absolute():
            candidates = [folder]
        else:
            candidates = []
            made_in = _run_cwd(self.path, self.meta.get("config", {}).get("out"))
            if made_in is not None:
                candidates.append(made_in / folder)
            if self.path is not None:
                candidates.append(Path(self.path).resolve() / folder)
            candidates.append(Path.cwd() / folder)
        for candidate in candidates:
            if candidate.is_dir():
                return candidate.resolve()
        looked = ", ".join(dict.fromkeys(str(c) for c in candidates))
        raise UflError(f"the {dataset} data folder of checkpoint {self.path} ({recorded}) is not found (looked at: "
                       f"{looked}); pass it with --root FOLDER (or --data-root)")


def _run_cwd(run_dir: Path | None, out: str | None) -> Path | None:
    """The folder a run was made in: ``run_dir`` (absolute) minus its relative ``--out``."""
    if run_dir is None or not out or Path(out).is_absolute():
        return None
    run_dir = Path(run_dir).resolve()
    parts = Path(os.path.normpath(out)).parts
    if ".." in parts or tuple(run_dir.parts[-len(parts):]) != parts:
        return None
    return Path(*run_dir.parts[: -len(parts)]) if len(parts) < len(run_dir.parts) else None


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON-able values."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for idx, entries in state["state"].items():
        plain["state"][str(idx)] = {}
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                plain["state"][str(idx)][key] = value
    return tensors, plain


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in plain["state"].items()}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(run_dir: str | Path, model_state: dict[str, torch.Tensor], meta: dict[str, Any],
                    optimizer_state: dict[str, Any] | None = None) -> Path:
    """Save a checkpoint for ``meta["epoch"]`` into ``run_dir``; return the record path.

    ``model_state`` keys lose a DistributedDataParallel ``module.`` prefix.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    epoch = int(meta["epoch"])
    tensors = {f"model.{k.removeprefix('module.')}": v for k, v in model_state.items()}
    optim_plain = None
    if optimizer_state is not None:
        optim_tensors, optim_plain = _flatten_optimizer(optimizer_state)
        tensors.update(optim_tensors)
    weights = run_dir / f"epoch-{epoch:04d}.safetensors"
    save_weights(weights, tensors)
    record = {"format": FORMAT, "version": VERSION, **meta, "weights": weights.name,
              "sha256": file_sha256(weights), "optimizer": optim_plain}
    write_json(run_dir / RECORD, record)
    for old in run_dir.glob("epoch-*.safetensors"):
        if old.name != weights.name:
            old.unlink(missing_ok=True)
    return run_dir / RECORD


def has_checkpoint(run_dir: str | Path) -> bool:
    return (Path(run_dir) / RECORD).is_file()


def load_checkpoint(run_dir: str | Path, with_optimizer: bool = False) -> Checkpoint:
    """Load the checkpoint of ``run_dir`` (a run folder or its ``checkpoint.json``)."""
    path = Path(run_dir)
    if path.name == RECORD:
        path = path.parent
    record_path = path / RECORD
    if not path.is_dir():
        raise UflError(f"checkpoint folder not found: {path} (pass the --out folder of `ufl pretrain`)")
    record = read_json(record_path, what="checkpoint record")
    if record.get("format") != FORMAT:
        raise UflError(f"{record_path} is not a ufl checkpoint record")
    if record.get("version") != VERSION:
        raise UflError(f"{record_path} has checkpoint version {record.get('version')}, this ufl reads {VERSION}")
    weights = (path / str(record.get("weights") or "")).resolve()
    if not weights.is_relative_to(path.resolve()) or weights == path.resolve() or not isinstance(record.get("sha256"), str):
        raise UflError(f"{record_path}: its weights entry {record.get('weights')!r} (or its sha256) is invalid or "
                       f"leads outside the run folder; the run folder is damaged")
    if not weights.is_file():
        raise UflError(f"checkpoint weights {weights} are missing; the run folder is damaged")
    if file_sha256(weights) != record["sha256"]:
        raise UflError(f"checkpoint weights {weights} do not match their recorded hash; the file is damaged")
    tensors = load_weights(weights)
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optimizer_state = None
    if with_optimizer and record.get("optimizer") is not None:
        optim_tensors = {k: v for k, v in tensors.items() if k.startswith("optim.")}
        optimizer_state = _unflatten_optimizer(optim_tensors, record["optimizer"])
    meta = {k: v for k, v in record.items() if k not in ("format", "version", "weights", "sha256", "optimizer")}
    return Checkpoint(meta=meta, model_state=model_state, optimizer_state=optimizer_state, path=path)

