"""``ufl reproduce``'s tables and claims: rows from the runs' metrics, mean and std over seeds,
markdown beside the poster's figures, the cost rows, and the claims decided on per-seed paired
differences (:mod:`ufl.evidence`)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..evaluation import delta_m
from ..evidence import Claim, decide
from ..profile import profile_models
from ..tables import markdown_table
from .config import AUX_TASKS, POSTER, SYSTEMS, Preset, ReproduceConfig, mtl_key

__all__ = ["UFL_COLUMNS", "mtl_rows", "ufl_rows", "pascal_delta_m", "summarise", "cell", "mtl_markdown",
           "ufl_markdown", "cost_rows", "decide_claims", "frozen_markdown"]


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
            elif mtl_key(model, ne) in nyud:
                values = _headline(nyud[mtl_key(model, ne)])
            else:
                continue
            score = delta_m({"semseg": values["seg"], "depth": values["depth"]}, reference) if reference else None
            rows.append({"model": model, "ne": ne, "seg": values["seg"], "depth": values["depth"], "delta_m": score,
                         "poster": POSTER["mtl"].get(mtl_key(model, ne))})
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
    mtl = {mtl_key(r["model"], r["ne"]): r for r in mtl_rows(nyud, models)}
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


def cell(value, digits: int = 2) -> str:
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
        body.append([system.name, backbone, system.head, ne, cell(r["seg"]), _poster(r, "seg"),
                     cell(r["depth"], 3), _poster(r, "depth", 3), cell(r["delta_m"]), _poster(r, "delta_m")])
    return markdown_table(["model", "backbone", "head", "N+E", "seg mIoU ↑", "poster", "depth RMSE ↓", "poster",
                           "Δm % ↑", "poster"], body)


def ufl_markdown(rows) -> str:
    """The UFL table, each PASCAL value beside the poster's figure for the row (a normals column
    when the rows have normals; the poster has none)."""
    normals = any(r.get("normals") is not None for r in rows)
    body = [[SYSTEMS[r["model"]].name, r["backbone"], cell(r["seg"]), cell(r["depth"], 3), cell(r["delta_m_nyud"]),
             cell(r["parts"]), _poster(r, "parts"), cell(r["sal"]), _poster(r, "sal"),
             *([cell(r.get("normals"))] if normals else []), cell(r["delta_m_pascal"]),
             _poster(r, "delta_m_pascal")] for r in rows]
    return markdown_table(["model", "frozen backbone", "NYUD seg ↑", "NYUD depth ↓", "Δm NYUD % ↑", "PASCAL parts ↑",
                           "poster", "PASCAL sal ↑", "poster", *(["PASCAL normals (mean °) ↓"] if normals else []),
                           "Δm PASCAL % ↑", "poster"], body)


def cost_rows(config: ReproduceConfig, preset: Preset) -> list[dict[str, Any]]:
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


def decide_claims(mtl: Mapping[int, Mapping[str, Mapping[str, Any]]],
                  ufl: Mapping[int, Mapping[str, Mapping[str, Any]]], profile: Sequence[Mapping[str, Any]],
                  tasks: Sequence[str], seeds: Sequence[int]) -> list[dict[str, Any]]:
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


def frozen_markdown(rows, preset: Preset) -> list[str]:
    """The section of the ``--backbones`` rows (none without rows)."""
    if not rows:
        return []
    from ..foundation import frozen_markdown as table

    return [f"### UFL on PASCAL with frozen backbones that never saw NYUD ({preset.name} preset)",
            table(rows, cell)]
