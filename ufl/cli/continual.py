"""``ufl continual``: continual task addition, ufl's frozen backbone against avalanche's strategies."""

from __future__ import annotations

import json

import click
from click.core import ParameterSource

from ..cfg import DEFAULTS
from ..errors import UflError
from .base import (FiniteFloat, backbone_option, config_option, data_root_option, device_option, main,
                   optimizer_options, parse_names, parse_size, pretrained_option, seed_option, threads_option)

# The defaults of ufl.continual, spelt out so that `ufl --help` does not import avalanche.
DEFAULT_TASKS = "nyud:semseg,nyud:depth,pascal:human_parts,pascal:saliency"
DEFAULT_STRATEGIES = "frozen,naive,ewc,lwf"
#: The protocol keys (ufl/cfg/default.yaml) that ``--config`` sets options of, by option.
CONTINUAL_KEYS = {"backbone": "backbone", "pretrained": "pretrained", "continual_epochs": "epochs",
                  "batch_size": "batch_size", "lr": "lr", "weight_decay": "weight_decay", "seed": "seed"}


@main.command("continual")
@config_option(CONTINUAL_KEYS)
@data_root_option
@click.option("--strategies", default=DEFAULT_STRATEGIES, show_default=True, callback=parse_names,
              help="Comma-separated strategies: frozen (ufl: frozen backbone, new heads only), naive, ewc, "
                   "lwf (feature distillation), si.")
@click.option("--tasks", default=DEFAULT_TASKS, show_default=True, callback=parse_names,
              help="The stream, one experience per DATASET:TASK, in order.")
@click.option("--checkpoint", type=click.Path(), default=None,
              help="Start from the backbone of this `ufl pretrain` run folder.")
@backbone_option("timm backbone to start from when no --checkpoint is given.")
@pretrained_option
@click.option("--epochs", type=click.IntRange(1), default=DEFAULTS.continual_epochs, show_default=True,
              help="Epochs per experience.")
@click.option("--batch-size", type=click.IntRange(1), default=DEFAULTS.batch_size, show_default=True,
              help="Batch size.")
@optimizer_options("constant")
@click.option("--size", default=None, callback=parse_size,
              help="Image size HxW for every task (default: NYUD 480x640, PASCAL 512x512).")
@click.option("--no-augment", is_flag=True, help="Turn off the reference training augmentations.")
@click.option("--ewc-lambda", type=FiniteFloat(min=0), default=None,
              help="EWC penalty weight (default: the API's, see `ufl.continual.ContinualConfig`).")
@click.option("--si-lambda", type=FiniteFloat(min=0), default=None, help="Synaptic Intelligence penalty weight.")
@click.option("--distill-alpha", type=FiniteFloat(min=0), default=None,
              help="Weight of lwf's feature distillation loss.")
@click.option("--workers", type=click.IntRange(0), default=None, help="DataLoader workers (default: by device).")
@device_option
@seed_option
@threads_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object on stdout.")
@click.option("--log-dir", type=click.Path(file_okay=False), default=None,
              help="Write avalanche's text log per strategy to DIR/STRATEGY.log.")
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard events to LOG_DIR/tensorboard/STRATEGY.")
@click.option("--quiet", is_flag=True, help="No progress bars or per-experience metrics on stderr.")
@click.pass_context
def continual_cmd(ctx, config, data_root, strategies, tasks, checkpoint, backbone, pretrained, epochs, batch_size, lr,
                  weight_decay, size, no_augment, ewc_lambda, si_lambda, distill_alpha, workers, device, seed,
                  as_json, log_dir, tensorboard, quiet) -> None:
    """Add tasks one by one and measure forgetting: ufl's frozen backbone vs avalanche's strategies.

    Builds an avalanche stream with one experience per task (its train split to learn, its val split
    to evaluate, its own Medusa head) and runs every strategy over it from the same starting backbone
    with the same seed. After each experience every task seen so far is evaluated on its headline
    metric. Prints, per strategy, each task's metric at the end and its forgetting: the drop from
    just after it was learnt to the end, positive = worse (after - end for mIoU/maxF, end - after
    for rmse). With frozen, forgetting is exactly 0.
    """
    from ..continual import ContinualConfig, format_results, parse_strategies, parse_tasks, run_continual
    from ..io import json_safe
    from ..models.backbone import resolve_pretrained

    parse_strategies(strategies)  # bad names fail before the backbone is looked for
    parse_tasks(tasks)

    if checkpoint is not None:
        given = [f"--{name}" for name in ("backbone", "pretrained")
                 if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)]
        if given:
            raise UflError(f"--checkpoint sets the backbone; drop {' and '.join(given)}")
    overrides = {k: v for k, v in (("ewc_lambda", ewc_lambda), ("si_lambda", si_lambda),
                                   ("distill_alpha", distill_alpha)) if v is not None}
    config = ContinualConfig(
        data_root=data_root, strategies=strategies, tasks=tasks, checkpoint=checkpoint, backbone=backbone,
        pretrained=resolve_pretrained(pretrained, backbone) if checkpoint is None else None, epochs=epochs,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, size=size, augment=not no_augment,
        device=device, workers=workers, seed=seed, log_dir=log_dir, tensorboard=tensorboard, progress=not quiet,
        **overrides)
    results = run_continual(config)
    if as_json:
        click.echo(json.dumps(json_safe(results), indent=2))
    else:
        click.echo(format_results(results))
