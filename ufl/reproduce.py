"""``ufl reproduce``: the poster's two experiments, end to end, on any data in the public formats.

**MTL table (NYUD).** For each model, pretrain on semseg + depth, without and with normals + edges
as auxiliary tasks (``N+E``); two single-task models (one per task) are the references of Delta_m.
Rows: ``model, backbone, head, N+E, seg mIoU, depth RMSE, Delta_m``.

**UFL table (PASCAL).** Freeze each model's NYUD backbone (the ``+N,E`` one; the single-task
semseg backbone for the single-task row), cache the PASCAL features once per backbone, train a
Medusa head for human parts and one for saliency on each (so only the features differ), and
evaluate. Rows: ``model, NYUD seg, NYUD depth, Delta_m NYUD, PASCAL parts, PASCAL sal,
Delta_m PASCAL``, Delta_m against the single-task row, as on the poster.

Every step writes its result to ``OUT/seed<k>/<step>/result.json`` when it finishes; running the
command again skips finished steps and resumes an interrupted pretraining from its checkpoint.
``--seeds 0,1,2`` repeats everything per seed and reports mean ± standard deviation.

Presets: ``paper`` is the reference protocol (NYUD 480x640, PASCAL 512x512, 100 epochs, Adam 1e-4,
ImageNet weights when reachable); ``quick`` is sized for a 2-core CPU on ``ufl make-synthetic`` data.
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
from .io import json_safe, read_json, write_json
from .metrics import delta_m
from .profile import profile_models
from .tables import markdown_table
from .training.pretrain import PretrainConfig, pretrain
from .visualize import grouped_bars
from .workspace import HeadTrainingConfig, Workspace

__all__ = ["Preset", "PRESETS", "MODEL_INFO", "POSTER", "ReproduceConfig", "reproduce", "mtl_rows", "ufl_rows",
           "summarise", "StepRunner"]

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


PRESETS: dict[str, Preset] = {
    # DESIGN.md section 6. NOTE: cached features cannot be augmented on the fly, so the PASCAL
    # heads see 4 fixed views per image (original, flip, 2 random scale/rotation draws) instead of
    # a fresh augmentation every epoch.
    "paper": Preset("paper", (480, 640), (512, 512), 100, 100, 8, 1e-4, 4, "auto", 5),
    # 2-core CPU on `ufl make-synthetic --size 96` data; random init, so a higher learning rate.
    "quick": Preset("quick", (96, 128), (96, 96), 16, 30, 8, 1e-3, 2, "none", 4),
}

#: Display name and head description per model key (``st`` = one single-task model per task).
MODEL_INFO: dict[str, tuple[str, str]] = {
    "st": ("Single-task", "HRNet head, one model per task"),
    "mt-baseline": ("MT baseline", "HRNet head per task"),
    "mti-net": ("MTI-Net", "multi-scale distillation"),
    "medusa": ("Medusa", "SFA + MSA heads"),
}

#: The poster's numbers (HRNet-18; DESIGN.md section 6) for comparison.
POSTER = {
    "mtl": {"medusa+ne": {"seg": 37.48, "depth": 0.545}},
    "ufl": {"medusa": {"parts": 52.24, "sal": 61.91}, "mti-net": {"parts": 51.50, "sal": 60.19},
            "st": {"parts": 48.73, "sal": 56.44}},
}


@dataclass
class ReproduceConfig:
    data_root: str = "data"
    out: str = "reproduce"
    models: Sequence[str] = ("st", "mt-baseline", "mti-net", "medusa")
    preset: str = "quick"
    seeds: Sequence[int] = (0,)
    backbone: str = "hrnet_w18_small_v2"
    device: str = "auto"
    pretrain_epochs: int | None = None
    head_epochs: int | None = None
    progress: bool = True

    def __post_init__(self):
        unknown = [m for m in self.models if m not in MODEL_INFO]
        if unknown:
            raise UflError(f"unknown model(s) {unknown}; choose from {', '.join(MODEL_INFO)}")
        if self.preset not in PRESETS:
            raise UflError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        if not self.seeds:
            raise UflError("give at least one seed")

    @property
    def schedule(self) -> Preset:
        preset = PRESETS[self.preset]
        changes = {k: v for k, v in (("pretrain_epochs", self.pretrain_epochs), ("head_epochs", self.head_epochs))
                   if v is not None}
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
                   aux: list[str]) -> Callable[[Path], dict[str, Any]]:
    def run(folder: Path) -> dict[str, Any]:
        out = folder / "run"
        result = pretrain(PretrainConfig(
            out=str(out), dataset="nyud", tasks=tasks, aux=aux, model=model, backbone=config.backbone,
            pretrained=_pretrained(preset, config.backbone), data_root=config.data_root, size=preset.nyud_size,
            epochs=preset.pretrain_epochs, batch_size=preset.batch_size, lr=preset.lr,
            val_every=preset.val_every, device=config.device, seed=seed, resume=has_checkpoint(out),
            progress=config.progress))
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
        ws.cache_features("pascal", ["train", "val"], data_root=config.data_root, size=preset.pascal_size,
                          views=preset.views, device=config.device, seed=seed, progress=config.progress)
        heads = HeadTrainingConfig(epochs=preset.head_epochs, batch_size=preset.batch_size, lr=preset.lr, seed=seed)
        for task in ("human_parts", "saliency"):
            if task not in ws.tasks:
                ws.add_task(task, config=heads, device=config.device, progress=config.progress)
        return {"metrics": {task: ws.tasks[task]["registered"] for task in ("human_parts", "saliency")},
                "workspace": str(path)}
    return run


def _run_seed(config: ReproduceConfig, preset: Preset, seed: int, steps: StepRunner) -> dict[str, Any]:
    nyud: dict[str, dict[str, Any]] = {}
    if "st" in config.models:
        for task in ("semseg", "depth"):
            nyud[f"st-{task}"] = steps(f"seed{seed}/pretrain/st-{task}",
                                       _pretrain_step(config, preset, seed, "single-task", [task], []))
    for model in config.models:
        if model == "st":
            continue
        nyud[model] = steps(f"seed{seed}/pretrain/{model}",
                            _pretrain_step(config, preset, seed, model, ["semseg", "depth"], []))
        nyud[f"{model}+ne"] = steps(f"seed{seed}/pretrain/{model}-ne",
                                    _pretrain_step(config, preset, seed, model, ["semseg", "depth"],
                                                   ["normals", "edges"]))
    pascal = {}
    for model in config.models:
        source = nyud["st-semseg" if model == "st" else f"{model}+ne"]["checkpoint"]
        pascal[model] = steps(f"seed{seed}/ufl/{model}", _ufl_step(config, preset, seed, source))
    return {"nyud": {k: v["metrics"] for k, v in nyud.items()}, "pascal": {k: v["metrics"] for k, v in pascal.items()}}


# -- the tables -----------------------------------------------------------------------------------
def _headline(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {"seg": metrics["semseg"]["mIoU"], "depth": metrics["depth"]["rmse"]}


def mtl_rows(nyud: Mapping[str, Mapping[str, Mapping[str, float]]], models: Sequence[str]) -> list[dict[str, Any]]:
    """MTL table rows of one seed: seg mIoU, depth RMSE and Delta_m against the single-task models."""
    reference = None
    if "st" in models:
        reference = {"semseg": nyud["st-semseg"]["semseg"]["mIoU"], "depth": nyud["st-depth"]["depth"]["rmse"]}
    rows = []
    for model in models:
        runs = [("st", None)] if model == "st" else [(model, False), (f"{model}+ne", True)]
        for key, ne in runs:
            if key == "st":
                values = {"seg": reference["semseg"], "depth": reference["depth"]} if reference else None
            else:
                values = _headline(nyud[key])
            if values is None:
                continue
            score = delta_m({"semseg": values["seg"], "depth": values["depth"]}, reference) if reference else None
            rows.append({"model": model, "ne": ne, "seg": values["seg"], "depth": values["depth"], "delta_m": score})
    return rows


def ufl_rows(nyud, pascal, models: Sequence[str]) -> list[dict[str, Any]]:
    """UFL table rows of one seed: the NYUD backbone's own results and the PASCAL heads on it,
    each with Delta_m against the single-task row."""
    mtl = {(r["model"], r["ne"]): r for r in mtl_rows(nyud, models)}
    st_pascal = pascal["st"] if "st" in models else None
    st_nyud = mtl.get(("st", None))
    rows = []
    for model in models:
        source = mtl.get(("st", None) if model == "st" else (model, True))
        parts = pascal[model]["human_parts"]["mIoU"]
        sal = pascal[model]["saliency"]["maxF"]
        row = {"model": model, "seg": source["seg"] if source else None, "depth": source["depth"] if source else None,
               "delta_m_nyud": source["delta_m"] if source else None, "parts": parts, "sal": sal,
               "delta_m_pascal": None}
        if st_pascal is not None:
            row["delta_m_pascal"] = delta_m({"human_parts": parts, "saliency": sal},
                                            {"human_parts": st_pascal["human_parts"]["mIoU"],
                                             "saliency": st_pascal["saliency"]["maxF"]})
        if st_nyud is None:
            row["delta_m_nyud"] = None
        rows.append(row)
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


def mtl_markdown(rows, backbone: str) -> str:
    body = []
    for r in rows:
        name, head = MODEL_INFO[r["model"]]
        ne = "-" if r["ne"] is None else ("yes" if r["ne"] else "no")
        body.append([name, backbone, head, ne, _cell(r["seg"]), _cell(r["depth"], 3), _cell(r["delta_m"])])
    return markdown_table(["model", "backbone", "head", "N+E", "seg mIoU ↑", "depth RMSE ↓", "Δm % ↑"], body)


def ufl_markdown(rows) -> str:
    body = [[MODEL_INFO[r["model"]][0], _cell(r["seg"]), _cell(r["depth"], 3), _cell(r["delta_m_nyud"]),
             _cell(r["parts"]), _cell(r["sal"]), _cell(r["delta_m_pascal"])] for r in rows]
    return markdown_table(["model", "NYUD seg ↑", "NYUD depth ↓", "Δm NYUD % ↑", "PASCAL parts ↑", "PASCAL sal ↑",
                           "Δm PASCAL % ↑"], body)


def _profile(config: ReproduceConfig, preset: Preset) -> list[dict[str, Any]]:
    """Parameters and GFLOPs of each model in its +N,E configuration (4 tasks) at the NYUD size;
    the single-task row counts its two models (semseg and depth)."""
    rows = []
    if "st" in config.models:
        singles = [profile_models((1,), config.backbone, preset.nyud_size, ("single-task",), task_channels=[c])["rows"][0]
                   for c in (40, 1)]
        rows.append({"model": "st", "tasks": 2, "params": sum(r["params"] for r in singles),
                     "gflops": sum(r["gflops"] for r in singles)})
    multi = [m for m in config.models if m != "st"]
    if multi:
        rows += profile_models((4,), config.backbone, preset.nyud_size, multi)["rows"]
    return rows


def _claims(mtl, ufl, profile) -> list[dict[str, Any]]:
    """The poster's claims, checked on these results (means over seeds)."""
    by_model = {r["model"]: r for r in ufl}
    params = {r["model"]: r["params"] for r in profile}
    claims = []

    def mean(value):
        return None if value is None else value[0]

    if "medusa" in by_model and "mti-net" in by_model:
        m, t = by_model["medusa"], by_model["mti-net"]
        claims.append({"claim": "UFL: Medusa's frozen features serve PASCAL parts and saliency better than MTI-Net's",
                       "held": mean(m["parts"]) > mean(t["parts"]) and mean(m["sal"]) > mean(t["sal"])})
    if "medusa" in by_model and "st" in by_model:
        claims.append({"claim": "UFL: Medusa's Delta_m on PASCAL against the single-task backbone is positive",
                       "held": (mean(by_model["medusa"]["delta_m_pascal"]) or -1) > 0})
    ne_rows = {r["model"]: r for r in mtl if r["ne"]}
    if "medusa" in ne_rows and "mti-net" in ne_rows:
        m, t = ne_rows["medusa"], ne_rows["mti-net"]
        claims.append({"claim": "MTL: Medusa +N,E matches MTI-Net +N,E on NYUD (seg within 1 point, depth within 5%)",
                       "held": mean(m["seg"]) >= mean(t["seg"]) - 1 and mean(m["depth"]) <= 1.05 * mean(t["depth"])})
    if "medusa" in params and "mti-net" in params:
        claims.append({"claim": "Cost: a 4-task Medusa is at least 25% smaller than a 4-task MTI-Net",
                       "held": params["medusa"] <= 0.75 * params["mti-net"]})
    return claims


def reproduce(config: ReproduceConfig) -> dict[str, Any]:
    """Run (or resume) every step for every seed; write tables, JSON and the figure into OUT."""
    preset = config.schedule
    out = Path(config.out)
    steps = StepRunner(out)
    seeds = [int(s) for s in config.seeds]
    runs = {seed: _run_seed(config, preset, seed, steps) for seed in seeds}
    mtl = summarise([mtl_rows(runs[s]["nyud"], config.models) for s in seeds], ("seg", "depth", "delta_m"))
    ufl = summarise([ufl_rows(runs[s]["nyud"], runs[s]["pascal"], config.models) for s in seeds],
                    ("seg", "depth", "delta_m_nyud", "parts", "sal", "delta_m_pascal"))
    profile = _profile(config, preset)
    claims = _claims(mtl, ufl, profile)

    markdown = "\n\n".join([
        f"### MTL on NYUD ({preset.name} preset, seeds {', '.join(map(str, seeds))}; mean ± std)",
        mtl_markdown(mtl, config.backbone),
        f"### UFL on PASCAL with the frozen NYUD backbone ({preset.name} preset)",
        ufl_markdown(ufl),
        "### Cost (4 tasks: semseg, depth, normals, edges; single-task: two models)",
        markdown_table(["model", "tasks", "params (M)", "GFLOPs"],
                       [[MODEL_INFO[r["model"]][0], r["tasks"], r["params"] / 1e6, r["gflops"]] for r in profile]),
        "### The poster's claims on these results",
        "\n".join(f"- {'held' if c['held'] else 'did not hold'}: {c['claim']}" for c in claims),
    ])
    (out / "tables.md").write_text(markdown + "\n")
    figure = {"NYUD seg mIoU": {}, "NYUD depth RMSE": {}, "PASCAL parts mIoU": {}, "PASCAL sal maxF": {}}
    for r in ufl:
        name = MODEL_INFO[r["model"]][0]
        for task, key in (("NYUD seg mIoU", "seg"), ("NYUD depth RMSE", "depth"), ("PASCAL parts mIoU", "parts"),
                          ("PASCAL sal maxF", "sal")):
            if r[key] is not None:
                figure[task][name] = tuple(r[key])
    grouped_bars(figure, out / "figure.png", title=f"ufl reproduce ({preset.name} preset)",
                 higher_is_better={"NYUD seg mIoU": True, "NYUD depth RMSE": False, "PASCAL parts mIoU": True,
                                   "PASCAL sal maxF": True})
    result = {"preset": dataclasses.asdict(preset), "seeds": seeds, "models": list(config.models),
              "backbone": config.backbone, "mtl": mtl, "ufl": ufl, "profile": profile, "claims": claims,
              "poster": POSTER, "per_seed": {str(s): runs[s] for s in seeds},
              "steps": {"ran": steps.ran, "skipped": steps.skipped}, "markdown": markdown,
              "files": {"tables": str(out / "tables.md"), "figure": str(out / "figure.png"),
                        "json": str(out / "results.json")}}
    write_json(out / "results.json", json_safe(result))
    return result

