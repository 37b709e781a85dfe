"""``ufl pretrain``: multi-task training of Medusa or a baseline on one dataset."""

from __future__ import annotations

import click

from ..cfg import DEFAULTS
from ..model_names import MODEL_NAMES
from .base import (backbone_option, config_option, data_root_option, device_option, echo_json, eval_resolution_option,
                   json_option, list_option_help, main, optimizer_options, parse_names, parse_size, precision_option,
                   pretrained_option, seed_option, threads_option)

#: The protocol keys (ufl/cfg/default.yaml) that ``--config`` sets options of, by option.
PRETRAIN_KEYS = {"backbone": "backbone", "pretrained": "pretrained", "pretrain_epochs": "epochs",
                 "batch_size": "batch_size", "lr": "lr", "weight_decay": "weight_decay", "val_every": "val_every",
                 "seed": "seed"}


@main.command("pretrain")
@config_option(PRETRAIN_KEYS, "poly_power; nyud_size or pascal_size as --size")
@click.option("--dataset", type=click.Choice(["nyud", "pascal"]), default="nyud", show_default=True,
              help="Dataset to train on.")
@click.option("--tasks", default=("semseg,depth",), show_default=True, multiple=True, callback=parse_names,
              help=list_option_help("Main tasks."))
@click.option("--aux", default=("normals,edges",), show_default=True, multiple=True, callback=parse_names,
              help=list_option_help("Auxiliary tasks; '' for none. pad-net and mti-net use them only as initial "
                                    "predictions and distillation sources (no final head, not evaluated); the other "
                                    "models give them their own head (trained and evaluated, not reported as main)."))
@click.option("--model", type=click.Choice(MODEL_NAMES), default="medusa", show_default=True,
              help="Architecture (ufl.models.MODELS); medusa-no-sfa, medusa-no-msa and medusa-no-ip are Medusa's "
                   "ablations: no shared feature attention, an HRNet head instead of the multi-scale attention head, "
                   "no initial predictions (no deep supervision).")
@backbone_option()
@pretrained_option
@data_root_option
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="The dataset's own folder (overrides DATA_ROOT/NYUD_MT or PASCAL_MT).")
@click.option("--out", type=click.Path(file_okay=False), default="runs/medusa", show_default=True,
              help="Run folder: checkpoint.json, weights, log.jsonl.")
@click.option("--size", default=None, callback=parse_size,
              help="Training/validation size HxW or N for NxN (default: NYUD 480x640, PASCAL 512x512).")
@click.option("--epochs", type=click.IntRange(1), default=DEFAULTS.pretrain_epochs, show_default=True, help="Epochs.")
@click.option("--batch-size", type=click.IntRange(1), default=DEFAULTS.batch_size, show_default=True,
              help="Batch size per process.")
@optimizer_options()
@click.option("--val-every", type=click.IntRange(1), default=DEFAULTS.val_every, show_default=True,
              help="Validate every k epochs (and after the last).")
@eval_resolution_option
@click.option("--no-augment", is_flag=True, help="Turn off the reference augmentations.")
@click.option("--no-amp", is_flag=True, help="Full precision on CUDA (AMP is on by default there).")
@precision_option("training and validation", "AMP on a GPU (bf16 where supported, else fp16), fp32 on the CPU")
@click.option("--workers", type=click.IntRange(0), default=None, help="DataLoader workers (default: by device).")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where its checkpoint stopped.")
@click.option("--log-dir", type=click.Path(file_okay=False), default=None,
              help="Write TensorBoard events (loss per step and epoch, val metrics) to this folder "
                   "(needs the tensorboard extra: pip install 'ufl[tensorboard]').")
@device_option
@seed_option
@threads_option
@json_option
def pretrain_cmd(config, dataset, tasks, aux, model, backbone, pretrained, data_root, root, out, size, epochs,
                 batch_size, lr, weight_decay, val_every, eval_resolution, no_augment, no_amp, precision, workers, resume,
                 log_dir, device, seed, as_json) -> None:
    """Train a backbone and task heads jointly (the reference schedule is the default).

    Writes a checkpoint after every epoch (safetensors + checkpoint.json); `ufl init --checkpoint OUT`
    turns it into a workspace. Runs under `torchrun --nproc_per_node N -m ufl pretrain ...` with
    DistributedDataParallel (gloo on CPU, nccl on GPU).
    """
    from .. import distributed
    from ..models.backbone import resolve_pretrained
    from ..provenance import UNREACHABLE
    from ..training.callbacks import TensorBoardLog, format_metrics, require_tensorboard
    from ..training.pretrain import PretrainConfig, pretrain

    if log_dir:
        require_tensorboard()  # a missing tensorboard package fails now, not after the data loads
    weights = resolve_pretrained(pretrained, backbone) if not resume else None
    unreachable = not resume and pretrained.lower() == "auto" and weights is None
    if size is None and f"{dataset}_size" in config:  # the file's working size of this dataset
        size = config[f"{dataset}_size"]
    settings = PretrainConfig(out=out, dataset=dataset, tasks=tasks, aux=aux, model=model, backbone=backbone,
                              pretrained=weights, init_note=UNREACHABLE if unreachable else None,
                              data_root=data_root, root=root, size=size, epochs=epochs, batch_size=batch_size,
                              lr=lr, weight_decay=weight_decay,
                              poly_power=config.get("poly_power", DEFAULTS.poly_power), val_every=val_every,
                              device=device, amp=not no_amp, precision=precision, workers=workers, seed=seed,
                              resume=resume, augment=not no_augment, eval_resolution=eval_resolution)
    try:
        result = pretrain(settings, callbacks=[TensorBoardLog(log_dir)] if log_dir else ())
        show = distributed.is_main()
    finally:
        distributed.shutdown()
    if show and as_json:
        echo_json({"checkpoint": str(result.run_dir), "metrics": result.metrics, "history": result.history})
    elif show:
        click.echo(f"checkpoint: {result.run_dir}")
        if result.metrics:
            click.echo(f"validation: {format_metrics(result.metrics)}")
