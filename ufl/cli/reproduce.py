"""``ufl reproduce``: the poster's MTL and UFL tables, on real data or generated data."""

from __future__ import annotations

import json

import click

from .base import device_option, main, parse_names, threads_option

#: The poster's systems in its order (the same as ``ufl.reproduce.DEFAULT_MODELS``; kept here so
#: that the CLI does not import torch to show its help).
DEFAULT_MODELS = ("st", "mt-baseline", "mtan", "pad-net", "mti-net", "medusa")


def _seeds(ctx, param, value):
    try:
        seeds = [int(v) for v in parse_names(ctx, param, value)]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 0,1,2, got {value!r}") from None
    if not seeds:
        raise click.BadParameter("give at least one seed")
    return seeds


@main.command("reproduce")
@click.option("--data-root", type=click.Path(file_okay=False), envvar="UFL_DATA_ROOT", default="data",
              show_default=True, show_envvar=True, help="Folder holding NYUD_MT/ and PASCAL_MT/.")
@click.option("--models", default=",".join(DEFAULT_MODELS), show_default=True, callback=parse_names,
              help="Comma-separated systems of the poster: st (single-task), mt-baseline, mtan, pad-net, mti-net, "
                   "medusa.")
@click.option("--preset", type=click.Choice(["paper", "quick"]), default="quick", show_default=True,
              help="paper: the reference protocol (GPU); quick: sized for a 2-core CPU on synthetic data.")
@click.option("--seeds", default="0", show_default=True, callback=_seeds,
              help="Comma-separated seeds; several give mean and standard deviation.")
@click.option("--out", type=click.Path(file_okay=False), default="reproduce", show_default=True,
              help="Folder of the steps, tables.md, results.json and figure.png (re-run to resume).")
@click.option("--backbone", default="hrnet_w18_small_v2", show_default=True, help="timm backbone of every model.")
@click.option("--backbones", default=None, callback=parse_names,
              help="Comma-separated timm backbones (e.g. vit_small_patch14_dinov2) frozen as they come, without NYUD "
                   "training: one more UFL row each (parts and saliency heads on PASCAL).")
@click.option("--pretrain-epochs", type=click.IntRange(1), default=None, help="Override the preset's pretraining epochs.")
@click.option("--head-epochs", type=click.IntRange(1), default=None, help="Override the preset's head epochs.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@device_option
@threads_option
def reproduce_cmd(data_root, models, preset, seeds, out, backbone, backbones, pretrain_epochs, head_epochs, as_json,
                  device) -> None:
    """Run the poster's two experiments end to end and print both tables.

    MTL on NYUD (each model with and without normals+edges as auxiliary tasks, as the poster's 10
    rows; single-task references for Delta_m) and UFL on PASCAL (parts and saliency heads on each
    model's frozen NYUD backbone, the poster's 5 rows), every value beside the poster's figure.
    Finished steps are not redone: run it again to resume.
    """
    from ..io import json_safe
    from ..reproduce import ReproduceConfig, reproduce

    result = reproduce(ReproduceConfig(data_root=data_root, out=out, models=models, preset=preset, seeds=seeds,
                                       backbone=backbone, device=device, pretrain_epochs=pretrain_epochs,
                                       head_epochs=head_epochs, backbones=backbones))
    if as_json:
        click.echo(json.dumps(json_safe({k: v for k, v in result.items() if k != "markdown"})))
    else:
        click.echo(result["markdown"])
        click.echo(f"\nsaved: {result['files']['tables']}, {result['files']['json']}, {result['files']['figure']}")
