"""Validation of ``ufl probe``: does the LogME score rank backbones as the trained heads do?

    python bench/probe_rank.py [--json] [--epochs 5] [--size 64] [--train 16] [--val 8]

On generated PASCAL-like data (``make_synthetic``), for each backbone below and each built-in PASCAL
task: ``ufl probe`` (LogME of all scales of the cached train features), then ``ufl add-task`` (a
Medusa head trained on the same cache) and its headline val metric. Per task, the Spearman rank
correlation between probe score and metric across the backbones (the metric signed so that higher
is better: depth RMSE and normals' mean angle negated); then the mean over tasks, and Kendall's tau
over every (backbone, task) pair after ranking within each task.

Backbones: three randomly initialised (HRNet-18, ResNet-18, ViT-Tiny with the feature pyramid) and
three trained ones: HRNet-18 after ``ufl pretrain`` on the generated NYUD data of the single-task
baseline (semseg), the multi-task baseline and Medusa (semseg + depth, normals + edges auxiliary). CPU-cheap by design: tiny data, few epochs; the
figures show whether the ranking holds, not the real-data numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine  # noqa: E402
from ufl.synthetic import make_synthetic  # noqa: E402
from ufl.probe import probe_task  # noqa: E402
from ufl.taskspec import get_spec  # noqa: E402
from ufl.training.pretrain import PretrainConfig, pretrain  # noqa: E402
from ufl.workspace import HeadTrainingConfig, Workspace  # noqa: E402

TASKS = ("semseg", "human_parts", "saliency", "normals", "edges")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--epochs", type=int, default=5, help="head training epochs per task")
    parser.add_argument("--pretrain-epochs", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--val", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="ufl-probe-rank-"))
    data = tmp / "data"
    make_synthetic(data, size=args.size, n_train=args.train, n_val=args.val, seed=0)
    size = (args.size, args.size)

    def pretrained(model: str, tasks, aux) -> Workspace:
        out = tmp / f"run-{model}"
        pretrain(PretrainConfig(out=str(out), data_root=str(data), size=size, model=model, tasks=tasks, aux=aux,
                                epochs=args.pretrain_epochs, batch_size=4, lr=1e-3, workers=0, device="cpu",
                                progress=False, edge_thresholds=5))
        return Workspace.from_checkpoint(tmp / f"ws-{model}", out, register=False)

    def random(name: str) -> Workspace:
        torch.manual_seed(0)
        return Workspace.from_backbone(tmp / f"ws-{name}", name, pretrained=None)

    makers = {"HRNet-18 random": lambda: random("hrnet_w18_small_v2"),
              "ResNet-18 random": lambda: random("resnet18"),
              "ViT-Ti/16 random + pyramid": lambda: random("vit_tiny_patch16_224"),
              "HRNet-18 ST (semseg) on NYUD": lambda: pretrained("single-task", ("semseg",), ()),
              "HRNet-18 MT baseline on NYUD": lambda: pretrained("mt-baseline", ("semseg", "depth"), ("normals", "edges")),
              "HRNet-18 Medusa on NYUD": lambda: pretrained("medusa", ("semseg", "depth"), ("normals", "edges"))}
    config = HeadTrainingConfig(epochs=args.epochs, batch_size=4, lr=1e-3, seed=0)
    rows = []
    for label, make in makers.items():
        ws = make()
        ws.cache_features("pascal", data_root=data, size=size, device="cpu", progress=False, batch_size=4, workers=0)
        for task in TASKS:
            probe = probe_task(ws, task)
            result = ws.add_task(task, config=config, device="cpu", progress=False, workers=0)
            spec = get_spec(task)
            value = result.metrics[spec.metric]
            rows.append({"backbone": label, "task": task, "probe": probe.all, "relies_on": probe.relies_on,
                         "probe_seconds": probe.seconds, "metric": spec.metric, "value": value,
                         "signed": value if spec.higher_is_better else -value, "train_seconds": result.seconds})
            print(f"{label:<30}{task:<12} probe {probe.all:8.4f}  {spec.metric} {value:8.3f}", file=sys.stderr)
    per_task = {}
    ranks_probe, ranks_metric = [], []
    for task in TASKS:
        sub = [r for r in rows if r["task"] == task]
        p, m = [r["probe"] for r in sub], [r["signed"] for r in sub]
        per_task[task] = float(spearmanr(p, m).statistic)
        ranks_probe += list(np.argsort(np.argsort(p)))
        ranks_metric += list(np.argsort(np.argsort(m)))
    finite = [v for v in per_task.values() if np.isfinite(v)]
    report = {"machine": machine(), "backbones": list(makers), "tasks": list(TASKS), "rows": rows,
              "spearman_per_task": per_task, "spearman_mean": float(np.mean(finite)) if finite else None,
              "kendall_within_task_ranks": float(kendalltau(ranks_probe, ranks_metric).statistic),
              "settings": vars(args), "seconds": round(time.perf_counter() - started, 1)}
    if args.json:
        print(json.dumps(report))
        return
    print(f"| backbone | " + " | ".join(TASKS) + " |")
    print("|---|" + "---|" * len(TASKS))
    for label in makers:
        cells = []
        for task in TASKS:
            r = next(r for r in rows if r["backbone"] == label and r["task"] == task)
            cells.append(f"{r['probe']:.3f} / {r['value']:.2f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("| Spearman (probe vs metric) | " + " | ".join(f"{per_task[t]:+.2f}" for t in TASKS) + " |")
    print(f"mean Spearman {report['spearman_mean']:+.2f}; Kendall tau of within-task ranks "
          f"{report['kendall_within_task_ranks']:+.2f}; {report['seconds']} s on {report['machine']}")


if __name__ == "__main__":
    main()
