"""Benchmark: one epoch of head training from the feature cache vs. on the frozen backbone online.

    python bench/add_task.py [--json] [--images 64] [--size 128] [--task saliency] [--device auto]
                             [--precision fp32|bf16|fp16]

Same data, same head (same initial weights), same optimiser, same process:

* ``cached``: a Medusa head trained for one epoch on ``FeatureCacheDataset`` batches as ``ufl
  add-task`` reads them (in-memory rows, ``dtype=None``, whole batches through ``.loader()``,
  float16 features cast to float32 on the device);
* ``cached_collate``: the same epoch through a plain default-collated ``DataLoader`` of float32
  items (what add-task did before; the same batches);
* ``online``: the same epoch with every batch decoded from the dataset files and run through the
  frozen backbone first (what training a new head costs without the cache);
* ``speedup = online / cached`` (target >= 3.3x on CPU with ``--precision bf16``);
  ``loader_speedup = cached_collate / cached``.

``--precision`` is the head's autocast (``ufl add-task --precision``) on both sides (default: the
device's, AMP on CUDA, float32 on the CPU); the online side's backbone runs as ``cache-features``
runs it whatever the head's precision (float16 autocast on CUDA, float32 on the CPU).

Prints one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, machine, sync  # noqa: E402
from feature_cache import FeatureCacheDataset  # noqa: E402
from ufl.synthetic import make_synthetic  # noqa: E402
from ufl.losses import MultiTaskLoss  # noqa: E402
from ufl.models import Backbone, build_head  # noqa: E402
from ufl.runtime import Precision, loader_kwargs, named_precision, precision_for, precision_name, resolve_device  # noqa: E402
from ufl.training import Trainer  # noqa: E402
from ufl.taskspec import get_spec  # noqa: E402
from ufl.workspace import Workspace  # noqa: E402
from ufl.workspace.cache import dataset_specs, open_split, resolve_data  # noqa: E402
from ufl.workspace.views import ViewDataset, backbone_features  # noqa: E402


def epoch(head, loader, features_of, task, loss_fn, device, precision) -> float:
    """One epoch of head training as ``ufl add-task`` runs it (``Trainer.train_step``: channels_last,
    Adam, the task's loss, autocast of ``precision``)."""
    head.to(memory_format=torch.channels_last)

    def forward(model, batch):
        features = [f.to(torch.float32, memory_format=torch.channels_last) for f in features_of(batch)]
        return {task: model(features, out_size=batch[task].shape[-2:])}

    trainer = Trainer(head, torch.optim.Adam(head.parameters(), lr=1e-4, weight_decay=1e-4), forward, loss_fn,
                      epochs=1, base_lr=1e-4, device=device, precision=precision)
    head.train()
    start = time.perf_counter()
    for batch in loader:
        trainer.train_step(batch)
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=128, help="input size (square, multiple of 32)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--task", default="saliency", choices=["saliency", "human_parts", "semseg", "normals", "edges"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None,
                        help="the head's autocast (default: AMP on CUDA, fp32 on the CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best of each is kept")
    args = parser.parse_args()
    device = resolve_device(args.device)
    precision = named_precision(args.precision, device) if args.precision else precision_for(device)
    torch.manual_seed(0)
    spec = get_spec(args.task)
    loss_fn = MultiTaskLoss({args.task: spec}, "pascal").to(device)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_synthetic(tmp / "data", size=args.size, n_train=args.images, n_val=2, seed=0, progress=False,
                       workers=min(8, os.cpu_count() or 1))
        ws = Workspace.create(tmp / "ws", Backbone("hrnet_w18_small_v2", warn_random_init=False), "random init")
        size = (args.size, args.size)
        ws.cache_features("pascal", ["train"], data_root=tmp / "data", size=size, device=str(device), progress=False)
        backbone = ws.backbone(device)
        cache_file = ws.cache_file("pascal", "train", 1)
        cached = FeatureCacheDataset(cache_file, ws.fingerprint, tasks=[args.task], in_memory=True, dtype=None).loader(
            args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0),
            **loader_kwargs(device, 0))  # as add-task: in-memory rows, no workers
        collated = DataLoader(FeatureCacheDataset(cache_file, ws.fingerprint, tasks=[args.task], in_memory=True),
                              batch_size=args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0),
                              **loader_kwargs(device, 0))
        folder, _ = resolve_data(ws, "pascal", None, None, size)
        rows = ViewDataset(open_split(ws, "pascal", "train", folder, dataset_specs(ws, "pascal", None)), 1, size)
        online = DataLoader(rows, batch_size=args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0),
                            **loader_kwargs(device))
        initial = build_head(backbone.channels, spec.out_channels("pascal")).state_dict()

        def from_cache(batch):
            return batch["features"]

        # the backbone as cache-features runs it (float16 autocast on CUDA, float32 on the CPU),
        # whatever the head's autocast around it
        cache_precision = Precision("cuda", torch.float16) if device.type == "cuda" else None

        def from_backbone(batch):
            with torch.autocast(device.type, enabled=False):
                return [f.float() for f in backbone_features(backbone, batch["image"], cache_precision)]

        cached_times, collate_times, online_times = [], [], []
        for _ in range(args.repeats):
            for times, loader, features_of in ((cached_times, cached, from_cache), (collate_times, collated, from_cache),
                                               (online_times, online, from_backbone)):
                head = build_head(backbone.channels, spec.out_channels("pascal")).to(device)
                head.load_state_dict(initial)
                times.append(epoch(head, loader, features_of, args.task, loss_fn, device, precision))

    cached_s, collate_s, online_s = min(cached_times), min(collate_times), min(online_times)
    report = {"machine": machine(),
              "device": str(device), "precision": precision_name(precision), "task": args.task, "images": args.images, "size": list(size),
              "batch_size": args.batch_size, "speedup": online_s / cached_s, "cached_epoch_seconds": cached_s,
              "online_epoch_seconds": online_s, "cached_collate_epoch_seconds": collate_s,
              "loader_speedup": collate_s / cached_s}
    emit(report, args.json)


if __name__ == "__main__":
    main()
