"""``ufl reproduce``: the poster's MTL and UFL tables, on real data or generated data."""

from __future__ import annotations

import json

import click

from ..cfg import DEFAULTS, load_preset, preset_names
from .base import config_option, data_root_option, device_option, main, parse_names, threads_option

#: The poster's systems in its order and the two controls (``models`` of ufl/cfg/default.yaml).
DEFAULT_MODELS = DEFAULTS.models
#: Every ``--models`` name (``ufl.reproduce.SYSTEMS``; spelt out so that the CLI does not import torch to
#: show its help) and every ``--preset`` (``ufl/cfg/NAME.yaml``).
SYSTEM_NAMES = DEFAULT_MODELS[:6] + ("medusa-no-sfa", "medusa-no-msa", "medusa-no-ip") + DEFAULT_MODELS[6:]
PRESET_NAMES = preset_names()


def _seeds(ctx, param, value):
    try:
        seeds = [int(v) for v in parse_names(ctx, param, value)]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 0,1,2, got {value!r}") from None
    if not seeds:
        raise click.BadParameter("give at least one seed")
    return seeds


@main.command("reproduce")
@config_option({}, "every key but seed (see --seeds), applied on top of the preset")
@data_root_option
@click.option("--models", default=None, callback=parse_names,
              help="Comma-separated systems: the poster's st (single-task), mt-baseline, mtan, pad-net, mti-net, "
                   "medusa; the Medusa ablations medusa-no-sfa, medusa-no-msa, medusa-no-ip; the controls random "
                   "(frozen random-init backbone: the floor) and oracle (PASCAL single-task models, backbone "
                   f"trained: the ceiling).  [default: the preset's; paper, quick: {','.join(DEFAULT_MODELS)}; "
                   "transfer: medusa, the ablations and the controls]")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default="quick", show_default=True,
              help="paper: the reference protocol (GPU); quick: the poster's tables sized for a 2-core CPU on "
                   f"`ufl make-synthetic {load_preset('quick').synthetic}` data; transfer: does pretraining "
                   "transfer? (Medusa, its ablations, floor and ceiling, normals as a third PASCAL task, on "
                   f"`ufl make-synthetic {load_preset('transfer').synthetic}` data).")
@click.option("--seeds", default="0", show_default=True, callback=_seeds,
              help="Comma-separated seeds; several give mean and standard deviation, and each claim a paired "
                   "95 % interval.")
@click.option("--out", type=click.Path(file_okay=False), default="reproduce", show_default=True,
              help="Folder of the steps, tables.md, results.json, figure.png and claims.png (re-run to resume).")
@click.option("--backbone", default=None,
              help=f"timm backbone of every model.  [default: the preset's, {DEFAULTS.backbone}]")
@click.option("--backbones", default=None, callback=parse_names,
              help="Comma-separated timm backbones (e.g. vit_small_patch14_dinov2) frozen as they come, without NYUD "
                   "training: one more UFL row each (parts and saliency heads on PASCAL).")
@click.option("--pretrain-epochs", type=click.IntRange(1), default=None, help="Override the preset's pretraining epochs.")
@click.option("--head-epochs", type=click.IntRange(1), default=None, help="Override the preset's head epochs.")
@click.option("--oracle-epochs", type=click.IntRange(1), default=None,
              help="Override the preset's epochs of the oracle's PASCAL trainings (backbone unfrozen; presets without "
                   "their own train the oracle for the head epochs).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@device_option
@threads_option
def reproduce_cmd(config, data_root, models, preset, seeds, out, backbone, backbones, pretrain_epochs, head_epochs,
                  oracle_epochs, as_json, device) -> None:
    """Run the poster's two experiments end to end and print both tables.

    MTL on NYUD (each model with and without normals+edges as auxiliary tasks, as the poster's 10
    rows; single-task references for Delta_m) and UFL on PASCAL (parts and saliency heads on each
    model's frozen NYUD backbone, the poster's 5 rows, and the random-init floor and PASCAL-trained
    ceiling), every value beside the poster's figure. Each claim is decided on the per-seed paired
    differences with a 95 % t-interval (held / not held / undecided). Finished steps are not
    redone: run it again to resume.
    """
    from ..io import json_safe
    from ..reproduce import ReproduceConfig, reproduce

    result = reproduce(ReproduceConfig(data_root=data_root, out=out, models=models or None, preset=preset, seeds=seeds,
                                       backbone=backbone, device=device, pretrain_epochs=pretrain_epochs,
                                       head_epochs=head_epochs, oracle_epochs=oracle_epochs, backbones=backbones,
                                       overrides=config))
    if as_json:
        click.echo(json.dumps(json_safe({k: v for k, v in result.items() if k != "markdown"})))
    else:
        click.echo(result["markdown"])
        saved = [result["files"][k] for k in ("tables", "json", "figure", "claims") if result["files"].get(k)]
        click.echo(f"\nsaved: {', '.join(saved)}")
