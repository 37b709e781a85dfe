"""``ufl profile``: parameters and inference GFLOPs of Medusa and its baselines against the task count."""

from __future__ import annotations

import json

import click

from ..model_names import MODEL_NAMES
from .base import backbone_option, list_option_help, main, parse_names, parse_size, threads_option


def _int_list(ctx, param, value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 1,2,4,8, got {value!r}") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"expected positive task counts like 1,2,4,8, got {value!r}")
    return counts


@main.command("profile")
@click.option("--tasks", "task_counts", default="1,2,4,8", show_default=True, callback=_int_list,
              help="Task counts to profile (NYUD semseg, depth, normals, edges, then 8-class tasks).")
@backbone_option("timm backbone name.")
@click.option("--size", default="480x640", show_default=True, callback=parse_size, help="Input size HxW.")
@click.option("--models", default="medusa,mt-baseline,mti-net", show_default=True, callback=parse_names,
              help=f"Comma-separated model names ({', '.join(MODEL_NAMES)}).")
@click.option("--aux", default=(), multiple=True, callback=parse_names,
              help=list_option_help("Auxiliary tasks, e.g. normals,edges (the +N,E setting): pad-net and mti-net "
                                    "build them without a final head, the other models with their own head."))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@threads_option
def profile_cmd(task_counts: list[int], backbone: str, size: tuple[int, int], models: list[str],
                aux: list[str], as_json: bool) -> None:
    """Parameters and inference GFLOPs (batch 1; a multiply-add counts 2 FLOPs) per model and task count.

    Medusa grows linearly with the number of tasks, MTI-Net quadratically. Each model is counted as
    built for the setting: with --aux, PAD-Net's and MTI-Net's auxiliary tasks have no final head.
    """
    from ..profile import format_table, profile_models

    result = profile_models(task_counts=task_counts, backbone=backbone, size=size, models=models, aux=aux)
    click.echo(json.dumps(result) if as_json else format_table(result))
