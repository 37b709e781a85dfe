"""Multi-task pretraining (``ufl pretrain``): a backbone and its heads trained jointly on one dataset.

The reference schedule (DESIGN.md section 6, ``ufl/cfg/default.yaml``) is the default: Adam, lr 1e-4,
weight decay 1e-4, poly decay (power 0.9) per epoch, batch 8, 100 epochs, the dataset's reference
augmentations, deep supervision where the model has it. Auxiliary tasks (``aux``) are built as the
model builds them (:func:`ufl.models.build_model`): PAD-Net's and MTI-Net's have no final output and are neither
validated nor reported; the other models' are ordinary tasks with their own heads. Validation runs
every ``val_every`` epochs, by default at each val image's original size (``eval_resolution``, see
:mod:`ufl.evaluation`); a checkpoint is written after every epoch (see :mod:`ufl.checkpoint`), and
``resume=True`` continues a run exactly.
Under ``torchrun`` the model is wrapped in DistributedDataParallel (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from .. import distributed
from ..cfg import DEFAULTS
from ..checkpoint import has_checkpoint, load_checkpoint
from ..datasets import RECIPES, build_transforms, dataset_root, get_dataset
from ..errors import UflError
from ..evaluation import (EDGE_THRESHOLDS_QUICK, OriginalSizeDataset, check_resolution, collate_original_size,
                          evaluate)
from ..losses import MultiTaskLoss
from ..models import Backbone, build_model
from ..outputs import default_activation
from ..provenance import describe_init, training_data
from ..runtime import loader_kwargs, named_precision, precision_for, resolve_device, seed_everything
from ..taskspec import TaskSpec, get_spec
from .callbacks import Checkpointer, JsonLog, ProgressBar, Validation
from .priors import start_at_prior
from .trainer import Callback, Trainer, poly_lr

__all__ = ["PretrainConfig", "PretrainResult", "pretrain", "RESUME_KEYS"]

log = logging.getLogger(__name__)

#: Settings a resumed run must share with the checkpoint (others, e.g. device, may change).
RESUME_KEYS = ("model", "dataset", "tasks", "aux", "backbone", "size", "batch_size", "lr", "weight_decay",
               "seed", "augment", "epochs", "model_options", "poly_power")
#: The value of a resume key that checkpoints written before it existed were trained with.
_BEFORE_KEY = {"poly_power": 0.9}


@dataclass
class PretrainConfig:
    """Everything ``ufl pretrain`` needs; the defaults are the reference protocol (:data:`ufl.cfg.DEFAULTS`)."""

    out: str = "runs/medusa"
    dataset: str = "nyud"
    tasks: Sequence[str] = ("semseg", "depth")
    aux: Sequence[str] = ("normals", "edges")
    model: str = "medusa"
    backbone: str = DEFAULTS.backbone
    pretrained: str | bool | None = None
    data_root: str = "data"
    root: str | None = None
    size: Sequence[int] | None = None
    epochs: int = DEFAULTS.pretrain_epochs
    batch_size: int = DEFAULTS.batch_size
    lr: float = DEFAULTS.lr
    weight_decay: float = DEFAULTS.weight_decay
    #: The learning rate at epoch e is ``lr * (1 - e / epochs) ** poly_power``.
    poly_power: float = DEFAULTS.poly_power
    val_every: int = DEFAULTS.val_every
    device: str = "auto"
    amp: bool = True
    precision: str | None = None
    """``fp32`` | ``bf16`` | ``fp16`` (CUDA only): autocast of training and validation; ``None``: by
    ``amp`` (AMP on CUDA, bfloat16 where supported, else float16 with a gradient scaler; float32 on
    the CPU)."""
    workers: int | None = None
    seed: int = DEFAULTS.seed
    resume: bool = False
    augment: bool = True
    edge_thresholds: int | None = EDGE_THRESHOLDS_QUICK
    eval_resolution: str = "original"
    model_options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    #: The provenance ``init`` to record when it says more than ``pretrained`` does (e.g.
    #: :data:`ufl.provenance.UNREACHABLE`: random init because the ImageNet weights were unreachable).
    init_note: str | None = None

    def __post_init__(self):
        self.tasks = list(self.tasks)
        self.aux = [t for t in self.aux if t not in self.tasks]
        self.size = list(self.size) if self.size is not None else None
        if not self.tasks:
            raise UflError("give at least one task with --tasks")
        if self.epochs < 1 or self.batch_size < 1 or self.val_every < 1:
            raise UflError("--epochs, --batch-size and --val-every must be at least 1")
        if not self.poly_power >= 0:
            raise UflError(f"poly_power must not be negative, got {self.poly_power}")
        if self.eval_resolution not in ("original", "working"):
            raise UflError(f"--eval-resolution must be original or working, got {self.eval_resolution!r}")
        if self.precision not in (None, "fp32") and not self.amp:
            raise UflError(f"--no-amp and --precision {self.precision} contradict each other; give one of them")
        if self.model == "single-task" and len(self.tasks) + len(self.aux) != 1:
            raise UflError("a single-task model trains exactly one task: give one --tasks and no --aux")

    @property
    def all_tasks(self) -> list[str]:
        return [*self.tasks, *self.aux]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PretrainResult:
    """Where the run is and how it ended: final validation metrics and the per-epoch history."""

    run_dir: Path
    metrics: dict[str, dict[str, float]]
    history: list[dict[str, Any]]


def _specs(config: PretrainConfig) -> dict[str, TaskSpec]:
    specs = {name: get_spec(name) for name in config.all_tasks}
    for name, spec in specs.items():
        if not spec.supports(config.dataset):
            raise UflError(f"task {name!r} is not defined on dataset {config.dataset!r} "
                           f"(it is defined on: {', '.join(spec.datasets())})")
    return specs


def _datasets(config: PretrainConfig, specs: dict[str, TaskSpec]):
    root = dataset_root(config.dataset, config.data_root, config.root)
    modalities = {name: spec.modality for name, spec in specs.items()}
    train = get_dataset(config.dataset, root, "train", list(specs),
                        transform=build_transforms(config.dataset, True, config.size, modalities, config.augment))
    if check_resolution(config.eval_resolution) == "original":  # targets untouched, image at the working size
        val = OriginalSizeDataset(get_dataset(config.dataset, root, "val", list(specs)),
                                  config.size or RECIPES[config.dataset].size)
    else:
        val = get_dataset(config.dataset, root, "val", list(specs),
                          transform=build_transforms(config.dataset, False, config.size, modalities))
    return root, train, val


def _check_resume(config: PretrainConfig, meta: dict[str, Any]) -> None:
    stored = {**_BEFORE_KEY, **meta.get("config", {})}
    current = config.to_dict()
    differ = [k for k in RESUME_KEYS if stored.get(k) != current.get(k)]
    if differ:
        pairs = ", ".join(f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in differ)
        raise UflError(f"cannot resume {config.out}: settings differ from the checkpoint ({pairs}); "
                       f"resume with the same settings or choose another --out")


def pretrain(config: PretrainConfig, callbacks: Sequence[Callback] = ()) -> PretrainResult:
    """Train ``config.model`` on ``config.dataset``; return the final metrics and history.

    ``callbacks`` run after the built-in ones (validation, checkpoint, log, progress) at each hook.
    """
    device = resolve_device(config.device)
    # --precision checked before any work (fp16 needs CUDA)
    precision = named_precision(config.precision, device) if config.precision else precision_for(device, config.amp)
    distributed.init_distributed(device)
    seed_everything(config.seed)
    run_dir = Path(config.out)
    specs = _specs(config)

    checkpoint = None
    if has_checkpoint(run_dir):
        if not config.resume:
            raise UflError(f"{run_dir} already holds a checkpoint; pass --resume to continue it or choose "
                           f"another --out")
        checkpoint = load_checkpoint(run_dir, with_optimizer=True)
        _check_resume(config, checkpoint.meta)
    elif config.resume:
        raise UflError(f"nothing to resume: {run_dir} holds no checkpoint (run without --resume to start)")

    root, train_set, val_set = _datasets(config, specs)
    backbone = Backbone(config.backbone, pretrained=None if checkpoint else config.pretrained,
                        warn_random_init=checkpoint is None and distributed.is_main())
    backbone.check_size(config.size or RECIPES[config.dataset].size)
    out_channels = {name: spec.out_channels(config.dataset) for name, spec in specs.items()}
    model = build_model(config.model, backbone, out_channels, aux=config.aux, **config.model_options)
    # PAD-Net's and MTI-Net's auxiliary tasks have no final output: nothing of theirs to validate.
    predicted = {name: spec for name, spec in specs.items() if name in model.tasks}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                 weight_decay=config.weight_decay)
    train_loader = _train_loader(train_set, config, device)
    start_epoch = 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint.model_state)
        start_epoch = checkpoint.epoch
    else:
        start_at_prior(model, specs, next(iter(train_loader)))

    model.to(device).to(memory_format=torch.channels_last)  # faster convolutions, on CPU too
    if checkpoint is not None:  # after the move: Adam puts its state on its parameters' device
        optimizer.load_state_dict(checkpoint.optimizer_state)
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if distributed.is_distributed() else model

    val_loader = DataLoader(_shard(val_set), batch_size=config.batch_size, shuffle=False,
                            collate_fn=collate_original_size, **loader_kwargs(device, config.workers))

    def forward(net, batch):
        return net(batch["image"].contiguous(memory_format=torch.channels_last))

    def validate() -> dict[str, dict[str, float]]:
        model.eval()
        results = evaluate(lambda b: {t: o["out"] for t, o in model(b["image"]).items()}, val_loader, predicted,
                           config.dataset, device, precision, config.edge_thresholds, desc="validate",
                           progress=config.progress)
        model.train()
        return results

    if checkpoint is not None:  # a resumed run keeps the record of how it started
        init = (checkpoint.meta.get("provenance") or {}).get("init") or \
            describe_init((checkpoint.meta.get("config") or {}).get("pretrained"))
    else:
        init = config.init_note or describe_init(config.pretrained)
    provenance = {"init": init, "data": [training_data(config.dataset, root)]}

    def meta() -> dict[str, Any]:
        return {"model": config.model, "tasks": config.tasks, "aux": config.aux, "dataset": config.dataset,
                "root": str(Path(root).resolve()), "size": config.size, "epochs": config.epochs,
                "out_channels": out_channels, "specs": {n: s.to_dict() for n, s in specs.items()},
                "backbone": backbone.config(), "fingerprint": backbone.fingerprint(),
                "model_options": config.model_options, "config": config.to_dict(), "provenance": provenance,
                # what each head's raw output was trained through (ufl.outputs); absent in older checkpoints
                "output_activation": {n: default_activation(s.kind) for n, s in specs.items()}}

    loss_fn = MultiTaskLoss(specs, config.dataset, deep_supervision=True).to(device)
    trainer = Trainer(net, optimizer, forward, loss_fn, epochs=config.epochs, base_lr=config.lr, device=device,
                      lr_schedule=functools.partial(poly_lr, power=config.poly_power), precision=precision,
                      seed=config.seed,
                      callbacks=[Validation(validate, config.val_every),
                                 Checkpointer(run_dir, meta, model.state_dict),
                                 JsonLog(run_dir / "log.jsonl"),
                                 ProgressBar(f"pretrain {config.model}", enabled=config.progress),
                                 *callbacks])
    if checkpoint is not None:
        trainer.state.history = list(checkpoint.meta.get("history", []))
        trainer.state.metrics = dict(checkpoint.meta.get("metrics") or {})
        if checkpoint.meta.get("grad_scaler") and trainer.scaler.is_enabled():
            trainer.scaler.load_state_dict(checkpoint.meta["grad_scaler"])
    if distributed.is_main():
        log.info("pretraining %s on %s (%d train / %d val images), tasks %s, aux %s, epochs %d-%d, device %s",
                 config.model, config.dataset, len(train_set), len(val_set), config.tasks, config.aux,
                 start_epoch + 1, config.epochs, device)
    state = trainer.fit(train_loader, start_epoch)
    return PretrainResult(run_dir=run_dir, metrics=state.metrics, history=state.history)


def _shard(dataset):
    """This process's share of an evaluation set (every world-th sample; no padding, no repeats)."""
    if not distributed.is_distributed():
        return dataset
    return Subset(dataset, range(distributed.rank(), len(dataset), distributed.world_size()))


def _train_loader(dataset, config: PretrainConfig, device: torch.device) -> DataLoader:
    kwargs = loader_kwargs(device, config.workers)
    if distributed.is_distributed():
        sampler = torch.utils.data.distributed.DistributedSampler(dataset, shuffle=True, seed=config.seed)
        return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, **kwargs)
    generator = torch.Generator().manual_seed(config.seed)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=generator, **kwargs)
