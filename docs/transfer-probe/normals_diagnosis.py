"""Why the normals positive control does not decide on generated data (report normals-diagnosis.json).

    python normals_diagnosis.py OUT DATA WORK [--seeds 0,1,2] [--train 384] [--head-epochs 16] [--json]

OUT is a finished ``ufl reproduce --preset transfer`` folder (``OUT/seed<K>/ufl/{medusa,random}/workspace``
and ``OUT/seed<K>/pretrain/medusa-ne/run``), DATA the data it ran on; WORK a scratch folder. Per seed, at the working size,
with the transfer preset's data statistics:

1. ``reproduce``: the registered PASCAL normals heads of the run (96 training images) on its own
   train and val caches, beside the trivial predictor (the mean training normal, every pixel);
2. ``more_images``: the same frozen backbones re-cache PASCAL-like data with ``--train`` training
   images (``make_synthetic(WORK/data, size, train, val, seed=0)``; the first 96 are the run's) and
   train a normals head with the preset's settings (lr, batch, weight decay) for ``--head-epochs``;
3. ``nyud_head``: the NYUD normals head of the pretraining itself, applied to the PASCAL val images
   without any PASCAL training (the frozen features' own notion of normals).

Metrics: mean angular error in degrees over valid pixels (MTI-Net's, ``ufl.metrics.NormalsMetric``),
lower is better; ``gap`` = random - pretrained (> 0: pretrained better), 95 % t-interval over seeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ufl.cfg import load_preset
from ufl.evaluation import evaluate
from ufl.evidence import paired_interval, verdict
from ufl.synthetic import make_synthetic
from ufl.trivial import PriorPredictor
from ufl.workspace import HeadTrainingConfig, Workspace
from ufl.workspace.targets import open_cache

CPU = torch.device("cpu")


def split_metrics(ws: Workspace, name: str, head: torch.nn.Module | None) -> dict[str, dict[str, float]]:
    """``{"train"|"val": {"head": mean angle, "prior": mean angle}}`` at the caches' working size
    (``head`` None: only the prior); the prior is fitted on the train cache."""
    spec = ws.spec(name)
    train, val = ws.find_cache("pascal", "train"), ws.find_cache("pascal", "val", 1)
    prior = PriorPredictor({name: spec}, "pascal").fit(DataLoader(open_cache(ws, train, [spec.name]), batch_size=16))
    out = {}
    for split, cache in (("train", train), ("val", val)):
        loader = DataLoader(open_cache(ws, cache, [spec.name]), batch_size=16)
        size = tuple(cache["size"])
        models = {"prior": prior}
        if head is not None:
            models["head"] = lambda batch: {name: head(batch["features"], out_size=size)["out"]}
        with torch.no_grad():
            out[split] = {what: evaluate(model, loader, {name: spec}, "pascal", CPU, progress=False)[name]["mean"]
                          for what, model in models.items()}
    return out


def interval(pairs: list[tuple[float, float]]) -> dict:
    """random - pretrained per seed, its mean, 95 % interval and verdict."""
    diffs = [random - pretrained for pretrained, random in pairs]
    mean, ci = paired_interval(diffs)
    return {"per_seed": diffs, "mean": mean, "ci95": list(ci) if ci else None, "verdict": verdict(ci)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("data")
    parser.add_argument("work")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train", type=int, default=384)
    parser.add_argument("--head-epochs", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    preset = load_preset("transfer")
    out, work = Path(args.out), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    size = preset.pascal_size
    data = work / "data"
    if not (data / "PASCAL_MT").is_dir():
        make_synthetic(data, size=size[0], n_train=args.train, n_val=48, seed=0, progress=False)
    report: dict = {"settings": {**vars(args), "preset": "transfer", "lr": preset.lr, "batch_size": preset.batch_size,
                                 "size": list(size)}, "seeds": {}}
    for seed in seeds:
        row: dict = {}
        for model in ("medusa", "random"):
            ws = Workspace(out / f"seed{seed}" / "ufl" / model / "workspace")
            row.setdefault("reproduce", {})[model] = split_metrics(ws, "normals", ws.head("normals").eval())
            copy = work / f"ws-{model}-{seed}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(ws.root, copy, ignore=shutil.ignore_patterns("eval-cache"))
            ws = Workspace(copy)
            ws.cache_features("pascal", data_root=data, size=size, overwrite=True, force=True, device="cpu",
                              workers=0, seed=seed, progress=False)
            config = HeadTrainingConfig(epochs=args.head_epochs, batch_size=preset.batch_size, lr=preset.lr,
                                        weight_decay=preset.weight_decay, seed=seed)
            ws.add_task("normals", config=config, device="cpu", workers=0, replace=True, progress=False)
            row.setdefault("more_images", {})[model] = split_metrics(ws, "normals", ws.head("normals").eval())
        nyud = work / f"ws-nyud-{seed}"
        shutil.rmtree(nyud, ignore_errors=True)
        ws = Workspace.from_checkpoint(nyud, out / f"seed{seed}" / "pretrain" / "medusa-ne" / "run", device="cpu",
                                       data_root=args.data, progress=False, eval_resolution="working")
        ws.cache_features("pascal", data_root=data, size=size, device="cpu", workers=0, seed=seed, progress=False)
        row["nyud_head"] = split_metrics(ws, "normals", ws.head("normals").eval())
        report["seeds"][str(seed)] = row
        print(f"seed {seed}: {json.dumps(row)}", file=sys.stderr, flush=True)
    rows = report["seeds"].values()
    report["gaps"] = {where: interval([(r[where]["medusa"]["val"]["head"], r[where]["random"]["val"]["head"])
                                       for r in rows]) for where in ("reproduce", "more_images")}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for where, gap in report["gaps"].items():
            print(where, gap)


if __name__ == "__main__":
    main()
