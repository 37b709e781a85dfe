"""``ufl reproduce``: the poster's two experiments, end to end, on any data in the public formats.

The systems and the poster's figures are facts in one place, :data:`SYSTEMS` and :data:`POSTER`;
by default every system of the poster runs (``st, mt-baseline, mtan, pad-net, mti-net, medusa``)
beside two controls (``random``, ``oracle``); the Medusa ablations (``medusa-no-sfa``,
``medusa-no-msa``, ``medusa-no-ip``) are selectable with ``--models`` and part of the ``transfer``
preset.

**MTL table (NYUD), 10 rows.** Each multi-task model is pretrained on semseg + depth, without and
with normals + edges as auxiliary tasks (``N+E``; the MT baseline without only, as on the poster);
two single-task models (one per task) are the references of Delta_m. The auxiliary tasks are built
as each model builds them (:func:`ufl.models.build_model`: PAD-Net and MTI-Net without final heads).
Rows: ``model, backbone, head, N+E, seg mIoU, depth RMSE, Delta_m``, each beside the poster's figure.

**UFL table (PASCAL), 5 rows** (ST, MT baseline, MTAN, MTI-Net, Medusa; the poster has no PAD-Net
row), plus the controls and ablations run. Freeze each model's NYUD backbone (``System.ufl_source``:
the ``+N,E`` run; the MT baseline's only run; the single-task semseg model's for the single-task
row), cache the PASCAL features once per backbone, train a Medusa head per PASCAL task of the
preset (human parts and saliency; the ``transfer`` preset adds normals) on each (so only the
features differ), and evaluate. Rows: ``model, NYUD seg, NYUD depth, Delta_m NYUD, PASCAL parts,
PASCAL sal, [PASCAL normals,] Delta_m PASCAL``, Delta_m against the single-task row, as on the poster.

**Controls.** ``random``: the same heads on a frozen *random-init* backbone (``torch.manual_seed(seed)``
then the backbone, exactly the init every pretrained model of that seed starts from): the floor,
what the heads learn with no pretraining. ``oracle``: one single-task Medusa model per PASCAL task
trained on PASCAL with the backbone *unfrozen* (the preset's head epochs and initial weights): the
ceiling.

**Claims** are decided on per-seed paired differences with a 95 % t-interval (:mod:`ufl.evidence`):
held, not held, or undecided when the interval contains the threshold (or with one seed).

Every step writes its result to ``OUT/seed<k>/<step>/result.json`` when it finishes; running the
command again skips finished steps and resumes an interrupted pretraining from its checkpoint.
``--seeds 0,1,2`` repeats everything per seed and reports mean ± standard deviation.

Presets (``ufl/cfg/NAME.yaml``, each overriding ``ufl/cfg/default.yaml``; a ``--config`` file
overrides the preset): ``paper`` is the reference protocol (NYUD 480x640, PASCAL 512x512, 100
epochs, Adam 1e-4, ImageNet weights when reachable); ``quick`` is sized for a 2-core CPU on
``ufl make-synthetic`` data; ``transfer`` is the CPU benchmark of whether the frozen features
transfer (its own generated data, see :attr:`ufl.cfg.Preset.synthetic`; only the NYUD runs that the
UFL rows freeze).

Modules: :mod:`.config` (systems, poster figures, presets, :class:`ReproduceConfig`),
:mod:`.tables` (rows, summaries, markdown, claims); this one runs the steps.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable

from ..checkpoint import has_checkpoint
from ..evidence import claims_figure, claims_markdown
from ..foundation import frozen_backbone_step, frozen_rows, run_frozen_backbones, train_ufl_heads
from ..io import json_safe, read_json, write_json
from ..tables import markdown_table
from ..training.pretrain import PretrainConfig, pretrain
from ..viz import grouped_bars
from ..workspace import Workspace
from .config import (ABLATIONS, AUX_TASKS, CONTROLS, DEFAULT_MODELS, MAIN_TASKS, MODEL_INFO, POSTER, POSTER_MODELS,
                     PRESETS, SYSTEMS, Preset, ReproduceConfig, System, mtl_key)
from .tables import (UFL_COLUMNS, cell, cost_rows, decide_claims, frozen_markdown, mtl_markdown, mtl_rows, pascal_delta_m,
                     summarise, ufl_markdown, ufl_rows)

__all__ = ["Preset", "PRESETS", "System", "SYSTEMS", "DEFAULT_MODELS", "MODEL_INFO", "POSTER", "POSTER_MODELS",
           "CONTROLS", "ABLATIONS", "MAIN_TASKS", "AUX_TASKS", "UFL_COLUMNS", "ReproduceConfig", "reproduce",
           "mtl_rows", "ufl_rows", "pascal_delta_m", "summarise", "cell", "mtl_markdown", "ufl_markdown",
           "StepRunner"]

log = logging.getLogger(__name__)


class StepRunner:
    """Runs named steps once: a finished step's ``result.json`` is read back instead of re-running."""

    def __init__(self, root: Path):
        self.root = root
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def __call__(self, name: str, fn: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        folder = self.root / name
        done = folder / "result.json"
        if done.is_file():
            self.skipped.append(name)
            log.info("step %s: finished before, skipped", name)
            return read_json(done, what="step result")
        log.info("step %s", name)
        folder.mkdir(parents=True, exist_ok=True)
        result = fn(folder)
        write_json(done, result)
        self.ran.append(name)
        return result


# -- the steps ------------------------------------------------------------------------------------
def _pretrain_step(config: ReproduceConfig, preset: Preset, seed: int, model: str, tasks: list[str],
                   aux: list[str], dataset: str = "nyud") -> Callable[[Path], dict[str, Any]]:
    """A pretraining run from the preset's initial weights: on NYUD (the MTL rows and the frozen
    backbones) for the preset's pretraining epochs, or on PASCAL (the oracle) for its oracle epochs
    (its head epochs when it has none), validated once at the end."""
    nyud = dataset == "nyud"
    epochs = preset.pretrain_epochs if nyud else (preset.oracle_epochs or preset.head_epochs)

    def run(folder: Path) -> dict[str, Any]:
        out = folder / "run"
        result = pretrain(PretrainConfig(
            out=str(out), dataset=dataset, tasks=tasks, aux=aux, model=model, backbone=config.backbone,
            pretrained=_pretrained(preset, config.backbone), data_root=config.data_root,
            size=preset.nyud_size if nyud else preset.pascal_size, epochs=epochs, batch_size=preset.batch_size,
            lr=preset.lr, weight_decay=preset.weight_decay, poly_power=preset.poly_power,
            val_every=preset.val_every if nyud else epochs, device=config.device, seed=seed,
            resume=has_checkpoint(out), progress=config.progress))
        return {"metrics": result.metrics, "checkpoint": str(out)}
    return run


def _pretrained(preset: Preset, backbone: str):
    from ..models.backbone import resolve_pretrained

    return resolve_pretrained(preset.pretrained, backbone)


def _ufl_step(config: ReproduceConfig, preset: Preset, seed: int, checkpoint: str) -> Callable[[Path], dict]:
    def run(folder: Path) -> dict[str, Any]:
        path = folder / "workspace"
        ws = Workspace(path) if (path / "workspace.json").is_file() else \
            Workspace.from_checkpoint(path, checkpoint, register=False)
        return {"metrics": train_ufl_heads(ws, config, preset, seed, preset.ufl_tasks), "workspace": str(path)}
    return run


def _run_seed(config: ReproduceConfig, preset: Preset, seed: int, steps: StepRunner) -> dict[str, Any]:
    nyud: dict[str, dict[str, Any]] = {}
    for key in config.models:
        system = SYSTEMS[key]
        for run, step, tasks, aux in system.runs():
            if preset.ufl_only and run != system.ufl_source:
                continue
            nyud[run] = steps(f"seed{seed}/pretrain/{step}",
                              _pretrain_step(config, preset, seed, system.model, tasks, aux))
    pascal = {}
    for key in config.models:
        system = SYSTEMS[key]
        if system.control == "random":
            pascal[key] = steps(f"seed{seed}/ufl/random",
                                frozen_backbone_step(config, preset, seed, config.backbone, random_init=True))
        elif system.control == "oracle":
            # the ceiling: a single-task Medusa per PASCAL task, trained on PASCAL, backbone unfrozen
            pascal[key] = {"metrics": {task: steps(f"seed{seed}/oracle/{task}", _pretrain_step(
                config, preset, seed, "medusa", [task], [], dataset="pascal"))["metrics"][task]
                                       for task in preset.ufl_tasks}}
        elif system.ufl_source is not None:
            pascal[key] = steps(f"seed{seed}/ufl/{key}",
                                _ufl_step(config, preset, seed, nyud[system.ufl_source]["checkpoint"]))
    return {"nyud": {k: v["metrics"] for k, v in nyud.items()}, "pascal": {k: v["metrics"] for k, v in pascal.items()}}



def reproduce(config: ReproduceConfig) -> dict[str, Any]:
    """Run (or resume) every step for every seed; write tables, JSON and the figure into OUT."""
    preset = config.schedule
    out = Path(config.out)
    steps = StepRunner(out)
    seeds = [int(s) for s in config.seeds]
    runs = {seed: _run_seed(config, preset, seed, steps) for seed in seeds}
    mtl_seed = {s: mtl_rows(runs[s]["nyud"], config.models) for s in seeds}
    ufl_seed = {s: ufl_rows(runs[s]["nyud"], runs[s]["pascal"], config.models, preset.ufl_tasks) for s in seeds}
    mtl = summarise([mtl_seed[s] for s in seeds], ("seg", "depth", "delta_m"))
    ufl = summarise([ufl_seed[s] for s in seeds],
                    ("seg", "depth", "delta_m_nyud", "parts", "sal", "normals", "delta_m_pascal"))
    frozen = []
    if config.backbones:
        frozen = summarise(frozen_rows(run_frozen_backbones(config, preset, seeds, steps),
                                       {s: runs[s]["pascal"].get("st") for s in seeds}),
                           ("parts", "sal", "delta_m_pascal"))
    profile = cost_rows(config, preset)
    claims = decide_claims({s: {mtl_key(r["model"], r["ne"]): r for r in mtl_seed[s]} for s in seeds},
                     {s: {r["model"]: r for r in ufl_seed[s]} for s in seeds}, profile, preset.ufl_tasks, seeds)

    markdown = "\n\n".join([
        f"### MTL on NYUD ({preset.name} preset, seeds {', '.join(map(str, seeds))}; mean ± std)",
        mtl_markdown(mtl, config.backbone),
        f"### UFL on PASCAL with the frozen NYUD backbone ({preset.name} preset)",
        ufl_markdown(ufl),
        *frozen_markdown(frozen, preset),
        "### Cost (+N,E: semseg, depth and auxiliary normals, edges; single-task: two models)",
        markdown_table(["model", "tasks", "params (M)", "GFLOPs"],
                       [[SYSTEMS[r["model"]].name, r["tasks"], r["params"] / 1e6, r["gflops"]] for r in profile]),
        "### Claims on these results (per-seed paired differences, 95 % t-interval; figure: claims.png)",
        claims_markdown(claims),
    ])
    (out / "tables.md").write_text(markdown + "\n")
    panels = {"NYUD seg mIoU": ("seg", True), "NYUD depth RMSE": ("depth", False), "PASCAL parts mIoU": ("parts", True),
              "PASCAL sal maxF": ("sal", True), "PASCAL normals mean angle": ("normals", False)}
    figure = {title: {SYSTEMS[r["model"]].name: tuple(r[key]) for r in ufl if r[key] is not None}
              for title, (key, _) in panels.items()}
    figure = {title: bars for title, bars in figure.items() if bars}
    grouped_bars(figure, out / "figure.png", title=f"ufl reproduce ({preset.name} preset)",
                 higher_is_better={title: panels[title][1] for title in figure})
    claims_png = claims_figure(claims, out / "claims.png", title=f"ufl reproduce ({preset.name} preset): paired "
                               f"differences")
    result = {"preset": dataclasses.asdict(preset), "seeds": seeds, "models": list(config.models),
              "backbone": config.backbone, "mtl": mtl, "ufl": ufl, "frozen": frozen, "profile": profile,
              "claims": claims,
              "poster": POSTER, "per_seed": {str(s): runs[s] for s in seeds},
              "steps": {"ran": steps.ran, "skipped": steps.skipped}, "markdown": markdown,
              "files": {"tables": str(out / "tables.md"), "figure": str(out / "figure.png"),
                        "claims": str(claims_png) if claims_png else None, "json": str(out / "results.json")}}
    write_json(out / "results.json", json_safe(result))
    return result
