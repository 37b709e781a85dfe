"""``ufl make-synthetic``: procedural NYUD-like and PASCAL-like data in the official formats."""

from __future__ import annotations

import click

from ..synthetic.contract import MAX_NYUD_PERSONS
from .base import FiniteFloat, echo_json, json_option, main


@main.command("make-synthetic")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Folder to write NYUD_MT/ and PASCAL_MT/ into.")
@click.option("--size", type=click.IntRange(32, 1024), default=96, show_default=True,
              help="Image height in pixels (NYUD-like images are 4:3, PASCAL-like vary).")
@click.option("--train", "n_train", type=click.IntRange(1), default=64, show_default=True,
              help="Training images per dataset.")
@click.option("--val", "n_val", type=click.IntRange(1), default=32, show_default=True,
              help="Validation images per dataset.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same files).")
@click.option("--nyud-persons", type=FiniteFloat(0, MAX_NYUD_PERSONS), default=None,
              help=f"Relatedness knob: mean standing persons per NYUD-like room (0..{MAX_NYUD_PERSONS}, in "
                   "every room type). Persons carry PASCAL's 24 body parts, so more of them make NYUD "
                   "pretraining share more with the PASCAL tasks; 0 removes them. Default: the rooms' own "
                   "(0..1 in living rooms and offices), the same files as without this option.")
@json_option
def make_synthetic_cmd(out: str, size: int, n_train: int, n_val: int, seed: int, nyud_persons: float | None,
                       as_json: bool) -> None:
    """Write synthetic NYUD_MT/ and PASCAL_MT/ in exactly the public on-disk formats.

    Scenes are rendered by ray casting simple 3D primitives, so RGB, depth, normals, semantic
    classes, edges, person parts and saliency are consistent with each other. NYUD-like scenes are
    indoor rooms with furniture; PASCAL-like scenes are outdoor, with persons and other objects.
    """
    from ..synthetic import make_synthetic

    paths = make_synthetic(out, size=size, n_train=n_train, n_val=n_val, seed=seed, nyud_persons=nyud_persons)
    if as_json:
        echo_json({name: str(path) for name, path in paths.items()})
        return
    for name, path in paths.items():
        click.echo(f"{name}: {path}")
