"""Registering the tasks of a Medusa pretraining checkpoint in a new workspace (``ufl init``).

A Medusa checkpoint holds one independent head per task, so each becomes a registered task as it
is; its val metrics at registration are measured the way ``ufl evaluate`` will measure them later
(through the workspace's val cache of the checkpoint's dataset), so their drift starts at 0. The
baselines' heads are not independent of each other (MTI-Net's distillation, shared HRNet heads);
from those checkpoints only the backbone is taken.

NOTE: the checkpoints of Medusa's ablations (``medusa-no-sfa``, ``medusa-no-msa``, ``medusa-no-ip``)
give their backbone only too, with a log line: their heads lack a part of Medusa's head, while
every head ``ufl add-task`` trains in the workspace is a full one, and the workspace's tools
(attention maps, export) read a full head. The ablations are there to compare frozen backbones.
"""

from __future__ import annotations

import logging
from typing import Any

from ..checkpoint import Checkpoint
from ..models import MedusaHead
from ..outputs import RECORD_KEY, recorded_activation
from ..taskspec import TaskSpec
from .evaluate import eval_protocol, eval_threads, task_metrics

__all__ = ["register_checkpoint_tasks"]

log = logging.getLogger(__name__)

#: Models whose checkpoints give only their backbone although they have per-task Medusa heads.
ABLATIONS = ("medusa-no-sfa", "medusa-no-msa", "medusa-no-ip")


def register_checkpoint_tasks(ws, ckpt: Checkpoint, *, data_root=None, root=None, device: str = "auto",
                              batch_size: int = 16, progress: bool = True, eval_resolution: str = "original") -> list[str]:
    """Register every task of a Medusa checkpoint; return their names ([] for other models).
    ``eval_resolution``: ``"original"`` (each val image's own size) or ``"working"``."""
    meta = ckpt.meta
    if meta.get("model") in ABLATIONS:
        log.info("checkpoint model %r is an ablation of Medusa: only its backbone is used (its heads lack part of "
                 "Medusa's head and are not registered); add tasks with `ufl add-task`", meta.get("model"))
        return []
    if meta.get("model") != "medusa":
        log.info("checkpoint model %r has no independent per-task heads: only its backbone is used; add tasks "
                 "with `ufl add-task`", meta.get("model"))
        return []
    dataset = meta["dataset"]
    if root is None and data_root is None:
        root = ckpt.data_folder()  # absolute; an older run's relative folder found, or one clear error
    ws.cache_features(dataset, ["val"], data_root=data_root, root=root, size=meta.get("size"), device=device,
                      batch_size=batch_size, progress=progress)
    names = [*meta["tasks"], *meta.get("aux", [])]
    channels = ws.read()["backbone"]["channels"]
    options = meta.get("model_options") or {}
    for name in names:
        spec = TaskSpec.from_dict(meta["specs"][name], source=f"{ckpt.path}/checkpoint.json")
        head = MedusaHead(channels, meta["out_channels"][name], **options)
        prefix = f"heads.{name}."
        head.load_state_dict({k[len(prefix):]: v for k, v in ckpt.model_state.items() if k.startswith(prefix)})
        protocol = eval_protocol(ws, spec, dataset, eval_resolution)
        activation = recorded_activation(meta, name)  # an older checkpoint's heads: identity, as trained
        metrics = task_metrics(ws, name, spec, dataset, head, device=device, batch_size=batch_size,
                               progress=progress, activation=activation, **protocol)
        record: dict[str, Any] = {
            "spec": spec.to_dict(), "dataset": dataset, "source": f"checkpoint {ckpt.path} (epoch {ckpt.epoch})",
            "role": "main" if name in meta["tasks"] else "auxiliary", RECORD_KEY: activation,
            "training": {"pretrain": meta.get("config", {}), "epochs": ckpt.epoch},
            "eval": {"cache": ws.cache_key(dataset, "val", 1), "split": "val",
                     "size": ws.find_cache(dataset, "val", 1)["size"], "batch_size": batch_size,
                     "threads": eval_threads(device), **protocol},
            "registered": metrics}
        ws.register(name, head, record)
        log.info("registered %s (%s): %s", name, dataset, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    return names
