"""``ufl reproduce --backbones``: UFL rows for frozen backbones that never saw NYUD.

Beside the poster's rows (each model's backbone pretrained on NYUD, then frozen), each named timm
backbone is frozen as it comes (ImageNet / DINOv2 weights when the preset's ``pretrained`` setting
reaches them, else random init, said in the row) and gets the same PASCAL protocol: its features
cached once, a Medusa head for human parts and one for saliency trained on them with the preset's
schedule, evaluated on val. Plain ViTs get their feature pyramid (:mod:`ufl.models.pyramid`), so
e.g. ``vit_small_patch14_dinov2`` sits in the same table as HRNet-18. Delta_m is against the
single-task row's PASCAL results when that row was run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .cfg import DEFAULTS
from .evaluation import delta_m
from .models.backbone import resolve_pretrained
from .tables import markdown_table
from .workspace import HeadTrainingConfig, Workspace

__all__ = ["train_ufl_heads", "frozen_backbone_step", "run_frozen_backbones", "frozen_rows", "frozen_markdown", "UFL_TASKS"]

UFL_TASKS = DEFAULTS.ufl_tasks


def train_ufl_heads(ws: Workspace, config, preset, seed: int, tasks: Sequence[str] = UFL_TASKS) -> dict[str, Any]:
    """The UFL protocol on one frozen backbone: PASCAL train and val cached (the preset's size and
    views), one Medusa head per task trained with the preset's schedule (tasks already registered
    are kept: a resumed step continues); returns ``{task: registered val metrics}``."""
    ws.cache_features("pascal", ["train", "val"], data_root=config.data_root, size=preset.pascal_size,
                      views=preset.views, device=config.device, seed=seed, progress=config.progress)
    heads = HeadTrainingConfig(epochs=preset.head_epochs, batch_size=preset.batch_size, lr=preset.lr, seed=seed,
                               weight_decay=preset.weight_decay, poly_power=preset.poly_power)
    for task in tasks:
        if task not in ws.tasks:
            ws.add_task(task, config=heads, device=config.device, progress=config.progress)
    return {task: ws.tasks[task]["registered"] for task in tasks}


def frozen_backbone_step(config, preset, seed: int, backbone: str,
                         random_init: bool = False) -> Callable[[Path], dict[str, Any]]:
    """A resumable step (for :class:`ufl.reproduce.StepRunner`): workspace on the bare ``backbone``
    (the preset's initial weights, or a random init with ``random_init``), PASCAL cached, a head per
    task of the preset (``preset.ufl_tasks``, default parts and saliency) added; returns their
    registered metrics.

    The random init is ``torch.manual_seed(seed)`` then the backbone: the very weights that
    ``ufl pretrain --seed SEED`` starts from (it seeds torch before building the backbone)."""
    tasks = tuple(preset.ufl_tasks)

    def run(folder: Path) -> dict[str, Any]:
        import torch

        path = folder / "workspace"
        if (path / "workspace.json").is_file():
            ws = Workspace(path)
        else:
            torch.manual_seed(seed)  # a random init is reproducible per seed
            pretrained = None if random_init else resolve_pretrained(preset.pretrained, backbone)
            ws = Workspace.from_backbone(path, backbone, pretrained)
        return {"metrics": train_ufl_heads(ws, config, preset, seed, tasks), "workspace": str(path),
                "source": ws.read()["backbone"].get("source", "")}
    return run


def run_frozen_backbones(config, preset, seeds: Sequence[int], steps) -> dict[str, dict[int, dict[str, Any]]]:
    """Every ``config.backbones`` for every seed: ``{backbone: {seed: step result}}``."""
    return {name: {seed: steps(f"seed{seed}/frozen/{name}", frozen_backbone_step(config, preset, seed, name))
                   for seed in seeds}
            for name in config.backbones}


def frozen_rows(frozen: Mapping[str, Mapping[int, Mapping[str, Any]]],
                st_pascal: Mapping[int, Mapping[str, Mapping[str, float]] | None]) -> list[dict[str, Any]]:
    """Per backbone and seed: ``{"backbone", "source", "parts", "sal", "delta_m_pascal"}``; Delta_m
    against ``st_pascal[seed]`` (the single-task row's PASCAL metrics) or None. Summarise over seeds
    with :func:`ufl.reproduce.summarise` (rows are grouped per seed, like the poster's rows)."""
    per_seed: dict[int, list[dict[str, Any]]] = {}
    for name, by_seed in frozen.items():
        for seed, result in by_seed.items():
            parts = result["metrics"]["human_parts"]["mIoU"]
            sal = result["metrics"]["saliency"]["maxF"]
            reference = st_pascal.get(seed)
            dm = None
            if reference is not None:
                dm = delta_m({"human_parts": parts, "saliency": sal},
                             {"human_parts": reference["human_parts"]["mIoU"], "saliency": reference["saliency"]["maxF"]})
            per_seed.setdefault(seed, []).append({"model": name, "source": result.get("source", ""), "parts": parts,
                                                  "sal": sal, "delta_m_pascal": dm})
    return [per_seed[s] for s in sorted(per_seed)]


def frozen_markdown(rows: Sequence[Mapping[str, Any]], cell: Callable[[Any], str]) -> str:
    """The frozen-backbone table from summarised rows (``cell`` formats a [mean, std] value)."""
    body = [[r["model"], r.get("source", ""), cell(r["parts"]), cell(r["sal"]), cell(r["delta_m_pascal"])]
            for r in rows]
    return markdown_table(["frozen backbone (no NYUD training)", "weights", "PASCAL parts ↑", "PASCAL sal ↑",
                           "Δm PASCAL % ↑"], body)
