"""``ufl demo``: the whole pipeline on generated data, on a CPU, in minutes.

make-synthetic -> pretrain Medusa on the NYUD-like data (semseg, depth; aux normals, edges) ->
init a workspace from the checkpoint -> cache the PASCAL-like features -> add-task human_parts ->
add-task saliency -> evaluate --all-tasks, printed beside a trivial predictor (majority class,
mean depth, mean normal, positive rate) so you can see the heads learnt.

It leaves ``OUT/data`` (NYUD_MT/, PASCAL_MT/), ``OUT/run`` (the pretraining checkpoint) and
``OUT/workspace`` to keep working with (``ufl add-task normals --dataset pascal --workspace
OUT/workspace`` adds PASCAL normals as ``pascal_normals`` beside NYUD's ``normals``; every other
task stays bit-identical), plus ``OUT/results.json``, ``OUT/evaluate.png`` (each task's headline
metric beside the trivial predictor's, one panel per unit) and ``OUT/visualize-nyud.png`` /
``OUT/visualize-pascal.png`` (a val image per dataset: ground truth and prediction of every task,
with colour keys).

NOTE: the demo trains from a randomly initialised backbone (no ImageNet weights here) on a small
data set, so it uses a higher learning rate (1e-3) than the reference schedule (1e-4, made for
ImageNet-pretrained backbones and 100 epochs); every other setting follows the reference.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .synthetic import make_synthetic
from .errors import UflError
from .io import write_json
from . import tables
from .training.pretrain import PretrainConfig, pretrain
from .workspace import HeadTrainingConfig, Workspace
from .workspace.evaluate import plot_evaluation, trivial_metrics

__all__ = ["DemoConfig", "run_demo", "format_results", "markdown_table", "readme_table", "replace_readme_table",
           "TABLE_START", "TABLE_END"]

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """Sizes chosen so the demo runs in minutes on 2 CPU cores and the heads clearly learn."""

    out: str = "ufl-demo"
    size: int = 96
    #: Width of the NYUD-like training images (default: 4:3 of ``size``, a multiple of 32).
    width: int | None = None
    train: int = 96
    val: int = 24
    pretrain_epochs: int = 24
    head_epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    views: int = 2
    seed: int = 0
    device: str = "auto"
    progress: bool = True


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run every step; return (and save as OUT/results.json) the evaluation with trivial baselines."""
    out = Path(config.out)
    if out.exists() and any(out.iterdir()):
        raise UflError(f"{out} already exists and is not empty; remove it or pass another --out")
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def step(name: str):
        timings[name] = time.perf_counter()
        log.info("== %s", name)

    def done(name: str):
        timings[name] = round(time.perf_counter() - timings[name], 1)

    height, width = config.size, config.width or (config.size * 4 // 3 + 16) // 32 * 32  # 4:3, multiples of 32
    step("make-synthetic")
    make_synthetic(out / "data", size=config.size, n_train=config.train, n_val=config.val, seed=config.seed,
                   progress=config.progress)
    done("make-synthetic")

    step("pretrain")
    pretrain(PretrainConfig(out=str(out / "run"), data_root=str(out / "data"), size=(height, width),
                            epochs=config.pretrain_epochs, batch_size=config.batch_size, lr=config.lr,
                            val_every=max(1, config.pretrain_epochs // 4), device=config.device, seed=config.seed,
                            progress=config.progress))
    done("pretrain")

    step("init")
    ws = Workspace.from_checkpoint(out / "workspace", out / "run", device=config.device, progress=config.progress)
    done("init")

    step("cache-features")
    ws.cache_features("pascal", ["train", "val"], data_root=out / "data", size=(config.size, config.size),
                      views=config.views, device=config.device, seed=config.seed, progress=config.progress)
    done("cache-features")

    heads = HeadTrainingConfig(epochs=config.head_epochs, batch_size=config.batch_size, lr=config.lr,
                               seed=config.seed)
    for task in ("human_parts", "saliency"):
        step(f"add-task {task}")
        ws.add_task(task, config=heads, device=config.device, progress=config.progress)
        done(f"add-task {task}")

    step("evaluate")
    evaluation = ws.evaluate(device=config.device, progress=config.progress).to_dict()
    for name, result in evaluation["tasks"].items():
        result["trivial"] = trivial_metrics(ws, name)
        result["metric"] = ws.spec(name).metric
        result["higher_is_better"] = ws.spec(name).higher_is_better
    done("evaluate")
    timings["total"] = round(time.perf_counter() - started, 1)

    files = {"results": out / "results.json", "chart": plot_evaluation(ws, evaluation, out / "evaluate.png",
                                                                      title="ufl demo: headline metric per task")}
    for path in ws.visualize(out, datasets=["nyud", "pascal"], num=1, attention=False, device=config.device):
        files[path.stem] = path
    results = {"config": asdict(config), "evaluation": evaluation, "seconds": timings,
               "threads": torch.get_num_threads(), "files": {k: str(v) for k, v in files.items()}}
    write_json(out / "results.json", results)
    return results


#: The demo table's columns, in the terminal (:func:`format_results`) and the README (:func:`markdown_table`)
_COLUMNS = ["task", "dataset", "metric", "ufl", "trivial", "drift"]


def format_results(results: dict[str, Any]) -> str:
    """The demo's table: each task's headline metric, the trivial predictor's, and the drift."""
    rows = []
    for name, r in results["evaluation"]["tasks"].items():
        metric = r["metric"]
        arrow = "higher" if r["higher_is_better"] else "lower"
        rows.append([name, r["dataset"], f"{metric} ({arrow} is better)", r["metrics"][metric],
                     r["trivial"][metric], r["drift"]])
    table = tables.text_table(_COLUMNS, rows)
    return f"{table}\n\ntotal {results['seconds']['total']:.0f} s " + \
        "(" + ", ".join(f"{k} {v:.0f} s" for k, v in results["seconds"].items() if k != "total") + ")"


#: The README's demo table sits between these two lines (machine-readable; see :func:`readme_table`).
TABLE_START, TABLE_END = "<!-- demo-table -->", "<!-- /demo-table -->"
_METRIC_LABELS = {"mIoU": "mIoU", "rmse": "RMSE (m)", "mean": "mean angle (°)", "odsF": "odsF", "maxF": "maxF"}
_DATASET_LABELS = {"nyud": "NYUD", "pascal": "PASCAL"}


def _figure(value: float | None) -> str:
    """3 significant figures as the README prints them (4.83, 0.916, 27.0, 123); 0 as 0.0."""
    if value is None or value != value:
        return "n/a"
    if value == 0:
        return "0.0"
    size = abs(value)
    return f"{value:.{0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3}f}"


def markdown_table(results: dict[str, Any]) -> str:
    """The README's demo table (header, separator, one row per task) from a demo's ``results.json``."""
    from .datasets.catalog import MetadataCatalog

    rows = []
    for name, r in results["evaluation"]["tasks"].items():
        metric = r["metric"]
        label = f"{_METRIC_LABELS.get(metric, metric)} {'↑' if r['higher_is_better'] else '↓'}"
        if name == "semseg" and (r["dataset"], name) in MetadataCatalog:
            label += f" ({MetadataCatalog.get(r['dataset'], name).num_classes} classes)"
        drift = r["drift"]
        rows.append([name, _DATASET_LABELS.get(r["dataset"], r["dataset"]), label, _figure(r["metrics"][metric]),
                     _figure(r["trivial"][metric]), "0" if drift == 0 else f"{drift:.2g}"])
    return tables.markdown_table(_COLUMNS, rows)


def readme_table(text: str) -> list[list[str]]:
    """The rows (cells as strings, header and separator left out) of the table between
    :data:`TABLE_START` and :data:`TABLE_END` in a README's ``text``."""
    if TABLE_START not in text or TABLE_END not in text:
        raise UflError(f"no demo table in the README (the lines {TABLE_START} and {TABLE_END} are missing)")
    block = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in block.strip().splitlines() if line.strip().startswith("|")]
    return [row for row in rows[2:]]


def replace_readme_table(text: str, results: dict[str, Any]) -> str:
    """``text`` with the table between the markers replaced by :func:`markdown_table` of ``results``."""
    readme_table(text)  # the markers must be there
    head, rest = text.split(TABLE_START, 1)
    tail = rest.split(TABLE_END, 1)[1]
    return f"{head}{TABLE_START}\n{markdown_table(results)}\n{TABLE_END}{tail}"


def table_total(results: dict[str, Any]) -> str:
    """The README's line under the table: total and per-step seconds."""
    steps = ", ".join(f"{k} {v:.0f}" for k, v in results["seconds"].items() if k != "total")
    return f"Total {results['seconds']['total']:.0f} s ({steps})"
