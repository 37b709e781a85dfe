"""``ufl demo``: synthetic data -> pretrain -> init -> cache -> add two tasks -> evaluate."""

from __future__ import annotations

import click

from .base import config_option, device_option, echo_json, json_option, main, parse_size, seed_option, threads_option


@main.command("demo")
@config_option({"pretrain_epochs": "pretrain_epochs", "head_epochs": "head_epochs", "seed": "seed"},
               "batch_size, lr, views (the demo's own otherwise: 8, 1e-3, 2)")
@click.option("--out", type=click.Path(file_okay=False), default="ufl-demo", show_default=True,
              help="Folder for the data, the checkpoint, the workspace and the results (must be new).")
@click.option("--size", default="96x128", show_default=True, callback=parse_size,
              help="HxW of the NYUD-like training images (N for NxN), multiples of 32 from 64 to 512; the "
                   "generated images are H high and PASCAL-like features are cached at HxH.")
@click.option("--train", type=click.IntRange(4), default=96, show_default=True, help="Training images per dataset.")
@click.option("--val", type=click.IntRange(2), default=24, show_default=True, help="Validation images per dataset.")
@click.option("--pretrain-epochs", type=click.IntRange(1), default=24, show_default=True,
              help="Epochs of Medusa pretraining on the NYUD-like data.")
@click.option("--head-epochs", type=click.IntRange(1), default=30, show_default=True,
              help="Epochs of each new head on cached PASCAL-like features.")
@device_option
@seed_option
@threads_option
@json_option
def demo_cmd(config, out, size, train, val, pretrain_epochs, head_epochs, device, seed, as_json) -> None:
    """Run the whole pipeline on generated data and print the results table.

    make-synthetic -> pretrain Medusa (NYUD-like: semseg, depth, aux normals, edges) -> init ->
    cache-features (PASCAL-like) -> add-task human_parts -> add-task saliency -> evaluate. Minutes
    on a laptop CPU; leaves OUT/data and OUT/workspace to keep working with.
    """
    from ..demo import DemoConfig, format_results, run_demo

    height, width = size
    if height % 32 or width % 32 or not (64 <= height <= 512 and 64 <= width <= 512):
        raise click.BadParameter(f"both sides must be multiples of 32 (the backbone's stride) from 64 to 512, "
                                 f"got {height}x{width}", param_hint="--size")
    results = run_demo(DemoConfig(out=out, size=height, width=width, train=train, val=val,
                                  pretrain_epochs=pretrain_epochs, head_epochs=head_epochs, device=device, seed=seed,
                                  **{k: config[k] for k in ("batch_size", "lr", "views") if k in config}))
    if as_json:
        echo_json(results)
        return
    click.echo(format_results(results))
    click.echo(f"\nresults: {out}/results.json, chart: {out}/evaluate.png, predictions: "
               f"{out}/visualize-nyud.png and {out}/visualize-pascal.png; keep going with "
               f"`ufl add-task normals --dataset pascal --workspace {out}/workspace` (PASCAL normals, "
               f"registered as pascal_normals beside NYUD's; every other task stays bit-identical), then "
               f"`ufl evaluate --all-tasks --workspace {out}/workspace`")
