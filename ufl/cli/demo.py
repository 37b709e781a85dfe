"""``ufl demo``: synthetic data -> pretrain -> init -> cache -> add two tasks -> evaluate."""

from __future__ import annotations

import click

from .base import device_option, main, seed_option


@main.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="ufl-demo", show_default=True,
              help="Folder for the data, the checkpoint, the workspace and the results (must be new).")
@click.option("--size", type=click.IntRange(64, 512), default=96, show_default=True,
              help="Image height in pixels (NYUD-like images are 4:3; multiples of 32).")
@click.option("--train", type=click.IntRange(4), default=96, show_default=True, help="Training images per dataset.")
@click.option("--val", type=click.IntRange(2), default=24, show_default=True, help="Validation images per dataset.")
@click.option("--pretrain-epochs", type=click.IntRange(1), default=24, show_default=True,
              help="Epochs of Medusa pretraining on the NYUD-like data.")
@click.option("--head-epochs", type=click.IntRange(1), default=30, show_default=True,
              help="Epochs of each new head on cached PASCAL-like features.")
@device_option
@seed_option
def demo_cmd(out, size, train, val, pretrain_epochs, head_epochs, device, seed) -> None:
    """Run the whole pipeline on generated data and print the results table.

    make-synthetic -> pretrain Medusa (NYUD-like: semseg, depth, aux normals, edges) -> init ->
    cache-features (PASCAL-like) -> add-task human_parts -> add-task saliency -> evaluate. Minutes
    on a laptop CPU; leaves OUT/data and OUT/workspace to keep working with.
    """
    from ..demo import DemoConfig, format_results, run_demo

    if size % 32:
        raise click.BadParameter(f"--size must be a multiple of 32 (the backbone's stride), got {size}")
    results = run_demo(DemoConfig(out=out, size=size, train=train, val=val, pretrain_epochs=pretrain_epochs,
                                  head_epochs=head_epochs, device=device, seed=seed))
    click.echo(format_results(results))
    click.echo(f"\nresults: {out}/results.json, chart: {out}/evaluate.png; keep going with "
               f"`ufl add-task normals --dataset pascal --workspace {out}/workspace` (PASCAL normals, "
               f"registered as pascal_normals beside NYUD's; every other task stays bit-identical), then "
               f"`ufl evaluate --all-tasks --workspace {out}/workspace`")
