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

Presets: ``paper`` is the reference protocol (NYUD 480x640, PASCAL 512x512, 100 epochs, Adam 1e-4,
ImageNet weights when reachable); ``quick`` is sized for a 2-core CPU on ``ufl make-synthetic``
data; ``transfer`` is the CPU benchmark of whether the frozen features transfer (its own generated
data, see :attr:`Preset.synthetic`; only the NYUD runs that the UFL rows freeze).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .checkpoint import has_checkpoint
from .errors import UflError
from .evidence import Claim, claims_figure, claims_markdown, decide
from .io import json_safe, read_json, write_json
from .evaluation import delta_m
from .profile import profile_models
from .tables import markdown_table
from .training.pretrain import PretrainConfig, pretrain
from .viz import grouped_bars
from .foundation import frozen_backbone_step, train_ufl_heads
from .workspace import Workspace

__all__ = ["Preset", "PRESETS", "System", "SYSTEMS", "DEFAULT_MODELS", "MODEL_INFO", "POSTER", "ReproduceConfig",
           "reproduce", "mtl_rows", "ufl_rows", "summarise", "StepRunner"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    """Sizes and schedule of one reproduction."""

    name: str
    nyud_size: tuple[int, int]
    pascal_size: tuple[int, int]
    pretrain_epochs: int
    head_epochs: int
    batch_size: int
    lr: float
    views: int
    pretrained: str
    val_every: int
    #: The systems run when ``--models`` is not given.
    models: tuple[str, ...] = ()
    #: The PASCAL tasks of the UFL rows (a Medusa head each on every frozen backbone).
    ufl_tasks: tuple[str, ...] = ("human_parts", "saliency")
    #: Pretrain only the NYUD runs that UFL rows freeze (no MTL-only runs).
    ufl_only: bool = False
    #: The ``ufl make-synthetic`` options of the generated data the preset is sized for ("": any).
    synthetic: str = ""
    #: Epochs of the oracle's PASCAL trainings (backbone unfrozen); ``None``: ``head_epochs``. A
    #: trained backbone costs far more per epoch than a head on cached features, so a preset whose
    #: heads need many epochs gives the oracle its own.
    oracle_epochs: int | None = None


#: The poster's six systems, in its order, and the two controls every preset runs by default.
POSTER_MODELS = ("st", "mt-baseline", "mtan", "pad-net", "mti-net", "medusa")
CONTROLS = ("random", "oracle")
ABLATIONS = ("medusa-no-sfa", "medusa-no-msa", "medusa-no-ip")

PRESETS: dict[str, Preset] = {
    # DESIGN.md section 6. NOTE: cached features cannot be augmented on the fly, so the PASCAL
    # heads see 4 fixed views per image (original, flip, 2 random scale/rotation draws) instead of
    # a fresh augmentation every epoch.
    "paper": Preset("paper", (480, 640), (512, 512), 100, 100, 8, 1e-4, 4, "auto", 5,
                    models=POSTER_MODELS + CONTROLS),
    # 2-core CPU on `ufl make-synthetic --size 96` data; random init, so a higher learning rate.
    "quick": Preset("quick", (96, 128), (96, 96), 16, 30, 8, 1e-3, 2, "none", 4, models=POSTER_MODELS + CONTROLS,
                    synthetic="--size 96 --train 64 --val 24"),
    # Does pretraining transfer? Medusa and its ablations against the floor and the ceiling, normals
    # as a third PASCAL task. Sized by bench/transfer_probe.py (README, "Sizing a CPU transfer
    # benchmark"): 96 training images per dataset (pretraining 24 epochs: the cost of 48 on 48
    # images), 48 val images, heads 32 epochs on the cached features (at 8 every head, the oracle's
    # too, stayed at the all-background parts level), the oracle 32 epochs (backbone unfrozen).
    # MTI-Net is left out to keep 3 seeds near an hour (--models adds it).
    "transfer": Preset("transfer", (64, 96), (64, 64), 24, 32, 8, 1e-3, 1, "none", 24,
                       models=("medusa",) + ABLATIONS + CONTROLS,
                       ufl_tasks=("human_parts", "saliency", "normals"), ufl_only=True,
                       synthetic="--size 64 --train 96 --val 48 --nyud-persons 2", oracle_epochs=32),
}

@dataclass(frozen=True)
class System:
    """One system of the poster's tables and how ``reproduce`` runs it.

    ``key`` is the ``--models`` name (the registered model name, except ``st``: one single-task
    model per main task); ``mtl`` the N+E settings of its MTL rows (``None``: the single-task pair,
    no N+E column); ``ufl_source`` the NYUD run whose frozen backbone its UFL row uses (``None``: no
    UFL row).
    """

    key: str
    name: str
    head: str
    model: str
    mtl: tuple[bool | None, ...]
    ufl_source: str | None
    #: ``"random"`` / ``"oracle"`` for the controls (no NYUD run; see the module docstring).
    control: str | None = None

    def runs(self) -> list[tuple[str, str, list[str], list[str]]]:
        """The NYUD pretraining runs: ``(run key, step name, tasks, aux)`` each."""
        if self.mtl == (None,):
            return [(f"{self.key}-{t}", f"{self.key}-{t}", [t], []) for t in MAIN_TASKS]
        return [(f"{self.key}+ne" if ne else self.key, f"{self.key}-ne" if ne else self.key, list(MAIN_TASKS),
                 list(AUX_TASKS) if ne else []) for ne in self.mtl]


#: NYUD's main tasks (the MTL table's columns) and the "+N,E" auxiliary tasks.
MAIN_TASKS = ("semseg", "depth")
AUX_TASKS = ("normals", "edges")

#: Every system of the poster's two tables, in the poster's order. Heads as built here: PAD-Net
#: follows MTI-Net's code (Bottleneck heads on HRNet's fused features, the poster says HRHead).
#: NOTE: the poster's MTL table has no "MT baseline +N,E" row, so the MT baseline is pretrained on
#: semseg + depth only and that backbone is its UFL row's; every other multi-task UFL row freezes
#: the model's +N,E backbone, the single-task row the semseg model's.
SYSTEMS: dict[str, System] = {s.key: s for s in (
    System("st", "ST baseline", "HRNet head", "single-task", (None,), "st-semseg"),
    System("mt-baseline", "MT baseline", "HRNet head", "mt-baseline", (False,), "mt-baseline"),
    System("mtan", "MTAN", "DeepLab-v3+", "mtan", (False, True), "mtan+ne"),
    System("pad-net", "PAD-Net", "Bottleneck (ref. code)", "pad-net", (False, True), None),
    System("mti-net", "MTI-Net", "HRNet head", "mti-net", (False, True), "mti-net+ne"),
    System("medusa", "Medusa", "MSA", "medusa", (False, True), "medusa+ne"),
    System("medusa-no-sfa", "Medusa w/o SFA", "MSA", "medusa-no-sfa", (True,), "medusa-no-sfa+ne"),
    System("medusa-no-msa", "Medusa w/o MSA", "HRNet head", "medusa-no-msa", (True,), "medusa-no-msa+ne"),
    System("medusa-no-ip", "Medusa w/o IP", "MSA", "medusa-no-ip", (True,), "medusa-no-ip+ne"),
    System("random", "Random init (floor)", "-", "medusa", (), None, control="random"),
    System("oracle", "PASCAL oracle (ceiling)", "-", "medusa", (), None, control="oracle"),
)}
DEFAULT_MODELS = PRESETS["quick"].models

#: Display name and head description per model key (kept for callers of earlier versions).
MODEL_INFO: dict[str, tuple[str, str]] = {k: (s.name, s.head) for k, s in SYSTEMS.items()}

#: The poster's figures (HRNet-18; DESIGN.md section 6), every row of both tables. MTL rows are
#: keyed by NYUD run (``model`` without, ``model+ne`` with normals and edges; ``st`` the single-task
#: pair): seg mIoU %, depth RMSE m, Delta_m %. UFL rows by model: parts mIoU %, saliency maxF %,
#: Delta_m on PASCAL %.
POSTER: dict[str, dict[str, dict[str, float]]] = {
    "mtl": {
        "st": {"seg": 34.57, "depth": 0.606, "delta_m": 0.00},
        "mt-baseline": {"seg": 33.21, "depth": 0.614, "delta_m": -2.63},
        "mtan": {"seg": 35.25, "depth": 0.581, "delta_m": 3.02},
        "mtan+ne": {"seg": 36.19, "depth": 0.567, "delta_m": 5.57},
        "pad-net": {"seg": 34.39, "depth": 0.617, "delta_m": -1.23},
        "pad-net+ne": {"seg": 35.46, "depth": 0.604, "delta_m": 1.43},
        "mti-net": {"seg": 36.94, "depth": 0.559, "delta_m": 7.26},
        "mti-net+ne": {"seg": 37.40, "depth": 0.540, "delta_m": 9.48},
        "medusa": {"seg": 36.99, "depth": 0.573, "delta_m": 6.19},
        "medusa+ne": {"seg": 37.48, "depth": 0.545, "delta_m": 9.24},
    },
    "ufl": {
        "st": {"parts": 48.73, "sal": 56.44, "delta_m_pascal": 0.00},
        "mt-baseline": {"parts": 36.13, "sal": 51.96, "delta_m_pascal": -12.93},
        "mtan": {"parts": 47.37, "sal": 57.84, "delta_m_pascal": 4.26},
        "mti-net": {"parts": 51.50, "sal": 60.19, "delta_m_pascal": 10.76},
        "medusa": {"parts": 52.24, "sal": 61.91, "delta_m_pascal": 13.18},
    },
}


def _mtl_key(model: str, ne: bool | None) -> str:
    """The NYUD run key of an MTL row (``st`` for the single-task pair)."""
    return model if ne is None or not ne else f"{model}+ne"


@dataclass
class ReproduceConfig:
    data_root: str = "data"
    out: str = "reproduce"
    #: Systems to run (``SYSTEMS`` keys); ``None``: the preset's.
    models: Sequence[str] | None = None
    preset: str = "quick"
    seeds: Sequence[int] = (0,)
    backbone: str = "hrnet_w18_small_v2"
    device: str = "auto"
    pretrain_epochs: int | None = None
    head_epochs: int | None = None
    #: Override of the preset's oracle epochs (:attr:`Preset.oracle_epochs`).
    oracle_epochs: int | None = None
    progress: bool = True
    #: timm backbones frozen as they come (no NYUD training) for extra UFL rows (ufl.foundation).
    backbones: Sequence[str] = ()

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise UflError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        self.models = tuple(PRESETS[self.preset].models if self.models is None else self.models)
        unknown = [m for m in self.models if m not in SYSTEMS]
        if unknown:
            raise UflError(f"unknown model(s) {unknown}; choose from {', '.join(SYSTEMS)}")
        if len(set(self.models)) != len(self.models):
            raise UflError(f"a model is named twice in {list(self.models)}")
        if not self.seeds:
            raise UflError("give at least one seed")
        import timm

        unknown = [b for b in self.backbones if not timm.is_model(b)]
        if unknown:
            raise UflError(f"unknown backbone(s) {unknown} in --backbones; use timm model names, e.g. "
                           f"vit_small_patch14_dinov2")

    @property
    def schedule(self) -> Preset:
        preset = PRESETS[self.preset]
        changes = {k: v for k, v in (("pretrain_epochs", self.pretrain_epochs), ("head_epochs", self.head_epochs),
                                     ("oracle_epochs", self.oracle_epochs)) if v is not None}
        return dataclasses.replace(preset, **changes)


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
            lr=preset.lr, val_every=preset.val_every if nyud else epochs, device=config.device, seed=seed,
            resume=has_checkpoint(out), progress=config.progress))
        return {"metrics": result.metrics, "checkpoint": str(out)}
    return run


def _pretrained(preset: Preset, backbone: str):
    from .models.backbone import resolve_pretrained

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


# -- the tables -----------------------------------------------------------------------------------
def _headline(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {"seg": metrics["semseg"]["mIoU"], "depth": metrics["depth"]["rmse"]}


#: Each PASCAL task of the UFL rows: its row key, headline metric and whether higher is better.
UFL_COLUMNS: dict[str, tuple[str, str, bool]] = {"human_parts": ("parts", "mIoU", True),
                                                 "saliency": ("sal", "maxF", True),
                                                 "normals": ("normals", "mean", False)}


def mtl_rows(nyud: Mapping[str, Mapping[str, Mapping[str, float]]], models: Sequence[str]) -> list[dict[str, Any]]:
    """MTL table rows of one seed, in the order of ``models``: ``{"model", "ne", "seg", "depth",
    "delta_m", "poster"}`` with Delta_m against the single-task models (None without ``st``) and
    the poster's figures of the row (None where the poster has none). Runs not in ``nyud`` (the
    ``transfer`` preset pretrains only what the UFL rows freeze) have no row."""
    reference = None
    if "st" in models and "st-semseg" in nyud and "st-depth" in nyud:
        reference = {"semseg": nyud["st-semseg"]["semseg"]["mIoU"], "depth": nyud["st-depth"]["depth"]["rmse"]}
    rows = []
    for model in models:
        for ne in SYSTEMS[model].mtl:
            if ne is None:
                if reference is None:
                    continue
                values = {"seg": reference["semseg"], "depth": reference["depth"]}
            elif _mtl_key(model, ne) in nyud:
                values = _headline(nyud[_mtl_key(model, ne)])
            else:
                continue
            score = delta_m({"semseg": values["seg"], "depth": values["depth"]}, reference) if reference else None
            rows.append({"model": model, "ne": ne, "seg": values["seg"], "depth": values["depth"], "delta_m": score,
                         "poster": POSTER["mtl"].get(_mtl_key(model, ne))})
    return rows


def _pascal_values(metrics: Mapping[str, Mapping[str, float]], tasks: Sequence[str]) -> dict[str, float | None]:
    """``{"parts", "sal", "normals"}`` of one UFL row (None for a task not run)."""
    values: dict[str, float | None] = {key: None for key, _, _ in UFL_COLUMNS.values()}
    for task in tasks:
        key, metric, _ = UFL_COLUMNS[task]
        values[key] = metrics[task][metric]
    return values


def pascal_delta_m(row: Mapping[str, Any], reference: Mapping[str, Any], tasks: Sequence[str]) -> float:
    """Delta_m (%) of a UFL row's PASCAL values against ``reference``'s over ``tasks``."""
    results, references = {}, {}
    for task in tasks:
        key, metric, _ = UFL_COLUMNS[task]
        results[task] = {metric: row[key]}
        references[task] = {metric: reference[key]}
    return delta_m(results, references)


def ufl_rows(nyud, pascal, models: Sequence[str], tasks: Sequence[str] = ("human_parts", "saliency")
             ) -> list[dict[str, Any]]:
    """UFL table rows of one seed: the frozen NYUD backbone's own results (``backbone`` names its
    run; ``random init`` / ``PASCAL, unfrozen`` for the controls) and the PASCAL heads on it (one
    value per task of ``tasks``: ``parts``, ``sal``, ``normals``; None for a task not run), each
    with Delta_m against the single-task row, and the poster's figures of the row."""
    mtl = {_mtl_key(r["model"], r["ne"]): r for r in mtl_rows(nyud, models)}
    rows = []
    for model in models:
        system = SYSTEMS[model]
        if system.control is None and system.ufl_source is None:
            continue
        run = {"random": "random init", "oracle": "PASCAL, unfrozen"}.get(system.control, system.ufl_source)
        source = None if system.control else mtl.get("st" if run.startswith("st-") else run)
        row = {"model": model, "backbone": run, "seg": source["seg"] if source else None,
               "depth": source["depth"] if source else None,
               "delta_m_nyud": source["delta_m"] if source else None, **_pascal_values(pascal[model], tasks),
               "delta_m_pascal": None, "poster": POSTER["ufl"].get(model)}
        rows.append(row)
    st = next((r for r in rows if r["model"] == "st"), None)
    if st is not None:
        for row in rows:
            row["delta_m_pascal"] = pascal_delta_m(row, st, tasks)
    return rows


def summarise(per_seed: Sequence[Sequence[Mapping[str, Any]]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of several seeds -> one row each with ``[mean, std]`` per value (std over seeds, ddof=1;
    0 for one seed)."""
    out = []
    for rows in zip(*per_seed):
        row = {k: rows[0][k] for k in rows[0] if k not in keys}
        for key in keys:
            values = [r[key] for r in rows if r[key] is not None]
            if not values:
                row[key] = None
                continue
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            row[key] = [float(np.mean(values)), std]
        out.append(row)
    return out


def _cell(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    mean, std = value
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def _poster(row: Mapping[str, Any], key: str, digits: int = 2) -> str:
    figure = (row.get("poster") or {}).get(key)
    return "-" if figure is None else f"{figure:+.{digits}f}" if key.startswith("delta_m") else f"{figure:.{digits}f}"


def mtl_markdown(rows, backbone: str) -> str:
    """The MTL table, each measured value beside the poster's figure for the row."""
    body = []
    for r in rows:
        system = SYSTEMS[r["model"]]
        ne = "-" if r["ne"] is None else ("yes" if r["ne"] else "no")
        body.append([system.name, backbone, system.head, ne, _cell(r["seg"]), _poster(r, "seg"),
                     _cell(r["depth"], 3), _poster(r, "depth", 3), _cell(r["delta_m"]), _poster(r, "delta_m")])
    return markdown_table(["model", "backbone", "head", "N+E", "seg mIoU ↑", "poster", "depth RMSE ↓", "poster",
                           "Δm % ↑", "poster"], body)


def ufl_markdown(rows) -> str:
    """The UFL table, each PASCAL value beside the poster's figure for the row (a normals column
    when the rows have normals; the poster has none)."""
    normals = any(r.get("normals") is not None for r in rows)
    body = [[SYSTEMS[r["model"]].name, r["backbone"], _cell(r["seg"]), _cell(r["depth"], 3), _cell(r["delta_m_nyud"]),
             _cell(r["parts"]), _poster(r, "parts"), _cell(r["sal"]), _poster(r, "sal"),
             *([_cell(r.get("normals"))] if normals else []), _cell(r["delta_m_pascal"]),
             _poster(r, "delta_m_pascal")] for r in rows]
    return markdown_table(["model", "frozen backbone", "NYUD seg ↑", "NYUD depth ↓", "Δm NYUD % ↑", "PASCAL parts ↑",
                           "poster", "PASCAL sal ↑", "poster", *(["PASCAL normals (mean °) ↓"] if normals else []),
                           "Δm PASCAL % ↑", "poster"], body)


def _profile(config: ReproduceConfig, preset: Preset) -> list[dict[str, Any]]:
    """Parameters and GFLOPs of each model as built in its +N,E configuration (4 tasks, normals
    and edges auxiliary: PAD-Net and MTI-Net without their final heads) at the NYUD size; the
    single-task row counts its two models (semseg and depth)."""
    rows = []
    if "st" in config.models:
        singles = [profile_models((1,), config.backbone, preset.nyud_size, ("single-task",), task_channels=[c])["rows"][0]
                   for c in (40, 1)]
        rows.append({"model": "st", "tasks": 2, "params": sum(r["params"] for r in singles),
                     "gflops": sum(r["gflops"] for r in singles)})
    multi = [SYSTEMS[m].model for m in config.models if m != "st" and SYSTEMS[m].control is None]
    if multi:
        rows += profile_models((4,), config.backbone, preset.nyud_size, multi, aux=AUX_TASKS)["rows"]
    return rows


def _claims(mtl: Mapping[int, Mapping[str, Mapping[str, Any]]], ufl: Mapping[int, Mapping[str, Mapping[str, Any]]],
            profile: Sequence[Mapping[str, Any]], tasks: Sequence[str], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The poster's claims and the controls', each decided on per-seed paired differences
    (:func:`ufl.evidence.decide`). ``mtl[seed]`` / ``ufl[seed]``: that seed's rows by NYUD run key /
    by model. A claim whose models did not run is left out."""
    claims: list[Claim] = []
    ran = set(ufl[seeds[0]]) if seeds else set()
    label = {"human_parts": "parts mIoU", "saliency": "saliency maxF", "normals": "normals mean angle"}

    def task_gain(a: str, b: str, task: str) -> Callable[[int], float]:
        key, _, higher = UFL_COLUMNS[task]
        return lambda s: (1 if higher else -1) * (ufl[s][a][key] - ufl[s][b][key])

    def gain(a: str, b: str) -> Callable[[int], float]:  # Delta_m of a against b over the PASCAL tasks
        return lambda s: pascal_delta_m(ufl[s][a], ufl[s][b], tasks)

    unit = {"human_parts": "points", "saliency": "points", "normals": "degrees"}
    if {"medusa", "random"} <= ran:
        claims += [Claim(f"Transfer (positive control): the NYUD-pretrained Medusa backbone beats the random-init "
                         f"floor on PASCAL {label[t]}", task_gain("medusa", "random", t), unit=unit[t]) for t in tasks]
    if {"medusa", "mti-net"} <= ran:
        claims += [Claim(f"UFL: Medusa's frozen features serve PASCAL {label[t]} better than MTI-Net's",
                         task_gain("medusa", "mti-net", t), unit=unit[t]) for t in tasks]
        claims.append(Claim("UFL: Medusa's frozen features serve PASCAL better than MTI-Net's (Delta_m of Medusa "
                            "against MTI-Net over the PASCAL tasks)", gain("medusa", "mti-net"), unit="%"))
    if {"medusa", "st"} <= ran:
        claims.append(Claim("UFL: Medusa's Delta_m on PASCAL against the single-task backbone is positive",
                            lambda s: ufl[s]["medusa"]["delta_m_pascal"], unit="%"))
    for ablation, part in (("medusa-no-sfa", "shared feature attention"), ("medusa-no-msa", "the multi-scale "
                           "attention head"), ("medusa-no-ip", "the initial predictions")):
        if {"medusa", ablation} <= ran:
            claims.append(Claim(f"Ablation: pretraining with {part} makes features that transfer better (Delta_m of "
                                f"Medusa against {ablation} on PASCAL)", gain("medusa", ablation), unit="%"))
    if {"medusa", "oracle"} <= ran:
        claims.append(Claim("Ceiling (control): PASCAL-trained single-task models beat the frozen Medusa features "
                            "(Delta_m of the oracle against Medusa on PASCAL)", gain("oracle", "medusa"), unit="%"))
    if seeds and {"medusa+ne", "mti-net+ne"} <= set(mtl[seeds[0]]):
        claims.append(Claim("MTL: Medusa +N,E matches MTI-Net +N,E on NYUD seg (Medusa - MTI-Net mIoU above -1 point)",
                            lambda s: mtl[s]["medusa+ne"]["seg"] - mtl[s]["mti-net+ne"]["seg"], threshold=-1.0,
                            unit="points"))
        claims.append(Claim("MTL: Medusa +N,E matches MTI-Net +N,E on NYUD depth (RMSE at most 5 % higher)",
                            lambda s: 100 * (mtl[s]["mti-net+ne"]["depth"] - mtl[s]["medusa+ne"]["depth"])
                            / mtl[s]["mti-net+ne"]["depth"], threshold=-5.0, unit="%"))
    decided = [decide(c, seeds) for c in claims]
    params = {r["model"]: r["params"] for r in profile}
    if "medusa" in params and "mti-net" in params:  # a fact of the architectures: no seed, no interval
        smaller = 100 * (1 - params["medusa"] / params["mti-net"])
        verdict = "held" if smaller >= 25 else "not held"
        decided.append({"claim": "Cost: a 4-task Medusa is at least 25% smaller than a 4-task MTI-Net",
                        "verdict": verdict, "mean": smaller, "ci95": [smaller, smaller], "seeds": [],
                        "differences": [], "threshold": 25.0, "unit": "% fewer parameters", "held": verdict == "held"})
    return decided


def _frozen_markdown(rows, preset: Preset) -> list[str]:
    if not rows:
        return []
    from .foundation import frozen_markdown

    return [f"### UFL on PASCAL with frozen backbones that never saw NYUD ({preset.name} preset)",
            frozen_markdown(rows, _cell)]


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
        from .foundation import frozen_rows, run_frozen_backbones

        frozen = summarise(frozen_rows(run_frozen_backbones(config, preset, seeds, steps),
                                       {s: runs[s]["pascal"].get("st") for s in seeds}),
                           ("parts", "sal", "delta_m_pascal"))
    profile = _profile(config, preset)
    claims = _claims({s: {_mtl_key(r["model"], r["ne"]): r for r in mtl_seed[s]} for s in seeds},
                     {s: {r["model"]: r for r in ufl_seed[s]} for s in seeds}, profile, preset.ufl_tasks, seeds)

    markdown = "\n\n".join([
        f"### MTL on NYUD ({preset.name} preset, seeds {', '.join(map(str, seeds))}; mean ± std)",
        mtl_markdown(mtl, config.backbone),
        f"### UFL on PASCAL with the frozen NYUD backbone ({preset.name} preset)",
        ufl_markdown(ufl),
        *_frozen_markdown(frozen, preset),
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

