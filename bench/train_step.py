"""Benchmark: compute throughput of each step of the real-data protocol, at the real resolutions.

    python bench/train_step.py [--json] [--device auto] [--steps 20] [--models medusa,mt-baseline,mti-net]

Each figure runs the library's own code on one batch of generated data (``ufl make-synthetic``),
rendered once at the size and repeated, so data loading is left out: these are the rates the data
loaders have to keep up with, and the compute time of the paper's protocol on this machine.

* ``pretrain``: one training step (``Trainer.train_step``: forward with deep supervision, the
  loss, backward, Adam; AMP and channels_last on CUDA) of each model with NYUD's 4 tasks, batch 8,
  480x640 (``--nyud-size``);
* ``cache``: the frozen backbone's forward as ``cache-features`` runs it (float16 autocast and
  channels_last on CUDA), batch 16, 512x512 (``--pascal-size``);
* ``head``: one head-training step as ``add-task`` runs it (saliency head on cached features of
  512x512 images), batch 8.

Each is turned into the time of the protocol (DESIGN.md section 6): 100 epochs over NYUD's 795
train images; caching PASCAL (4,998 train images x 4 views + 5,105 val); 100 epochs of a head over
4,998 x 4 cached rows. Prints one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine, sync  # noqa: E402
from ufl.datasets import build_transforms, get_dataset  # noqa: E402
from ufl.synthetic import make_synthetic  # noqa: E402
from ufl.losses import MultiTaskLoss  # noqa: E402
from ufl.models import Backbone, build_head, build_model  # noqa: E402
from ufl.runtime import Precision, precision_for, resolve_device  # noqa: E402
from ufl.taskspec import get_spec  # noqa: E402
from ufl.training import Trainer  # noqa: E402
from ufl.workspace.views import backbone_features  # noqa: E402

NYUD_TRAIN, PASCAL_TRAIN, PASCAL_VAL, VIEWS, EPOCHS = 795, 4998, 5105, 4, 100
NYUD_TASKS = ("semseg", "depth", "normals", "edges")


def rate(step, batch_size: int, steps: int, device: torch.device) -> float:
    """Images per second of ``step()`` after 3 warm-up calls."""
    for _ in range(3):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch_size * steps / (time.perf_counter() - start)


def one_batch(root: Path, dataset: str, tasks, size, batch_size: int) -> dict:
    modalities = {name: get_spec(name).modality for name in tasks}
    data = get_dataset(dataset, root / ("NYUD_MT" if dataset == "nyud" else "PASCAL_MT"), "train", list(tasks),
                       transform=build_transforms(dataset, False, size, modalities))
    return next(iter(DataLoader(data, batch_size=batch_size, shuffle=False)))


def pretrain_rate(model_name: str, batch: dict, device: torch.device, steps: int, autotune: bool = False) -> float:
    torch.manual_seed(0)
    backbone = Backbone("hrnet_w18_small_v2", warn_random_init=False)
    specs = {name: get_spec(name) for name in NYUD_TASKS}
    model = build_model(model_name, backbone, {n: s.out_channels("nyud") for n, s in specs.items()})
    model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    trainer = Trainer(model, optimizer, lambda net, b: net(b["image"].contiguous(memory_format=torch.channels_last)),
                      MultiTaskLoss(specs, "nyud", deep_supervision=True).to(device), epochs=EPOCHS, base_lr=1e-4,
                      device=device, precision=precision_for(device))
    model.train()
    saved, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, autotune
    try:
        return rate(lambda: trainer.train_step(batch), len(batch["image"]), steps, device)
    finally:
        torch.backends.cudnn.benchmark = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per figure (after 3 warm-up steps)")
    parser.add_argument("--models", default="medusa,mt-baseline,mti-net", help="models of the pretrain figure")
    parser.add_argument("--nyud-size", default="480x640", help="HxW of the pretrain step")
    parser.add_argument("--pascal-size", default="512x512", help="HxW of the cache and head steps")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="processes rendering data")
    args = parser.parse_args()
    device = resolve_device(args.device)
    nyud_size = tuple(int(v) for v in args.nyud_size.split("x"))
    pascal_size = tuple(int(v) for v in args.pascal_size.split("x"))
    report = {"machine": machine(),
              "device": str(device), "amp": str(precision_for(device).dtype), "nyud_size": list(nyud_size),
              "pascal_size": list(pascal_size), "images_per_second": {}, "protocol_hours": {}}
    ips, hours = report["images_per_second"], report["protocol_hours"]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_synthetic(root, size=nyud_size[0], n_train=16, n_val=1, seed=0, workers=args.workers, progress=False)
        nyud = one_batch(root, "nyud", NYUD_TASKS, nyud_size, 8)
        pascal = one_batch(root, "pascal", ("saliency",), pascal_size, 16)
    to_device = {k: v.to(device) for k, v in nyud.items() if torch.is_tensor(v)}

    for model_name in args.models.split(","):
        ips[f"pretrain_{model_name}"] = pretrain_rate(model_name, to_device, device, args.steps)
        hours[f"pretrain_{model_name}"] = EPOCHS * NYUD_TRAIN / ips[f"pretrain_{model_name}"] / 3600
    if device.type == "cuda":  # would cuDNN autotuning (torch.backends.cudnn.benchmark) pay?
        ips["pretrain_medusa_with_cudnn_autotune"] = pretrain_rate("medusa", to_device, device, args.steps, True)

    torch.manual_seed(0)
    backbone = Backbone("hrnet_w18_small_v2", warn_random_init=False).to(device)
    backbone.freeze()
    images = pascal["image"].to(device)
    cache_precision = Precision("cuda", torch.float16) if device.type == "cuda" else None
    ips["cache"] = rate(lambda: backbone_features(backbone, images, cache_precision), len(images), args.steps, device)
    hours["cache_pascal"] = (PASCAL_TRAIN * VIEWS + PASCAL_VAL) / ips["cache"] / 3600

    features = [f[:8].float() for f in backbone_features(backbone, images, cache_precision)]
    spec = get_spec("saliency")
    head = build_head(backbone.channels, spec.out_channels("pascal")).to(device, memory_format=torch.channels_last)
    target = pascal["saliency"][:8].to(device)
    head_batch = {"features": [f.contiguous(memory_format=torch.channels_last) for f in features], "saliency": target}
    trainer = Trainer(head, torch.optim.Adam(head.parameters(), lr=1e-4, weight_decay=1e-4),
                      lambda h, b: {"saliency": h(b["features"], out_size=b["saliency"].shape[-2:])},
                      MultiTaskLoss({"saliency": spec}, "pascal").to(device), epochs=EPOCHS, base_lr=1e-4,
                      device=device, precision=precision_for(device))
    head.train()
    ips["head"] = rate(lambda: trainer.train_step(head_batch), 8, args.steps, device)
    hours["head_pascal"] = EPOCHS * PASCAL_TRAIN * VIEWS / ips["head"] / 3600
    if device.type == "cuda":
        report["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30

    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            if isinstance(value, dict):
                for name, figure in value.items():
                    print(f"{key + ' ' + name:>40}: {figure:.4g}")
            else:
                print(f"{key:>40}: {value}")


if __name__ == "__main__":
    main()
