"""``ufl probe``, ``ufl export`` and ``ufl serve``: transferability before training, one ONNX graph, an
HTTP server; each parses options, calls one function of the Python API, and prints."""

from __future__ import annotations

import json

import click

from .base import device_option, main, parse_names, seed_option, workspace_option


# -- probe ----------------------------------------------------------------------------------------
@main.command("probe")
@workspace_option
@click.argument("name", required=False)
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False), default=None,
              help="Your own task spec (YAML); NAME may then be omitted.")
@click.option("--dataset", type=click.Choice(["pascal", "nyud", "folder"]), default=None,
              help="Dataset whose cache to read (default: PASCAL when the task has it, else its first dataset).")
@click.option("--split", default="train", show_default=True, help="Cached split to read.")
@click.option("--images", type=click.IntRange(1), default=128, show_default=True, help="Cache rows to read at most.")
@click.option("--pixels", "pixels_per_image", type=click.IntRange(1), default=64, show_default=True,
              help="Valid pixels sampled per image.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@seed_option
def probe_cmd(workspace, name, spec_file, dataset, split, images, pixels_per_image, as_json, seed) -> None:
    """Estimate, in seconds and without training, how well a task will do on this backbone.

    Scores each scale of the cached features (and all four together) with LogME, the evidence of a
    Bayesian linear regression from the features to the task's target at subsampled pixels (higher
    is better), names the scale the task would rely on, and stores the result in
    WORKSPACE/probes/TASK-DATASET.json. Needs the dataset's cache (`ufl cache-features`).
    """
    from ..probe import format_probe, probe_task
    from ..workspace import Workspace

    if name is None and spec_file is None:
        raise click.UsageError("give a task NAME or --spec FILE.yaml")
    result = probe_task(Workspace(workspace), name, spec_file=spec_file, dataset=dataset, split=split, images=images,
                        pixels_per_image=pixels_per_image, seed=seed)
    click.echo(json.dumps(result.to_dict()) if as_json else format_probe(result))
