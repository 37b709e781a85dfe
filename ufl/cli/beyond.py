"""``ufl probe``, ``ufl export`` and ``ufl serve``: transferability before training, one ONNX graph, an
HTTP server; each parses options, calls one function of the Python API, and prints."""

from __future__ import annotations

import click

from .base import (FiniteFloat, device_option, echo_json, json_option, list_option_help, main,
                   parse_task_names, seed_option, threads_option, workspace_option)


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
@json_option
@seed_option
@threads_option
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
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(format_probe(result))


# -- export ---------------------------------------------------------------------------------------
@main.command("export")
@workspace_option
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The ONNX file to write (*.onnx).")
@click.option("--tasks", multiple=True, callback=parse_task_names,
              help=list_option_help("Registered tasks to include (default: every registered task)."))
@click.option("--dynamic", is_flag=True, help="Symbolic batch and image size (sides multiples of 32).")
@click.option("--check", type=click.IntRange(0), default=4, show_default=True,
              help="Val images to compare onnxruntime with PyTorch on (0: no check).")
@json_option
@threads_option
def export_cmd(workspace, out, tasks, dynamic, check, as_json) -> None:
    """Write the frozen backbone and the chosen heads as one ONNX graph.

    Input `images` (B, 3, H, W) RGB in [0, 1]; one output per task, named after it (logits at the
    input size; one backbone pass feeds every head). The command runs the graph with onnxruntime on
    the first val images and fails unless every output is within 1e-4 (relative to max(1, |output|))
    of PyTorch. Every head is exported in float32, whatever precision it was registered with
    (`--precision bf16` heads then differ from `ufl predict` by bf16 rounding).
    """
    from ..export import TOLERANCE, export_onnx
    from ..workspace import Workspace

    result = export_onnx(Workspace(workspace), out, tasks=tasks or None, dynamic=dynamic, check=check)
    if as_json:
        echo_json(result.to_dict())
        return
    h, w = result.size
    shape = "dynamic batch and size" if dynamic else f"{h}x{w}"
    click.echo(f"wrote {result.path} ({result.bytes / 1e6:.1f} MB; {shape}; outputs: {', '.join(result.tasks)}; "
               f"{result.seconds:.1f} s)")
    if result.check_images:
        for task in result.tasks:
            click.echo(f"  {task}: max |onnx - torch| = {result.max_abs_diff[task]:.2e} "
                       f"({result.max_rel_diff[task]:.2e} relative) <= {TOLERANCE:g}: ok")
        click.echo(f"checked on {result.check_images} val image(s) with onnxruntime: passed")
    else:
        click.echo("not checked against PyTorch (--check 0)")


# -- serve ----------------------------------------------------------------------------------------
@main.command("serve")
@workspace_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Loopback address to listen on (127.0.0.1, ::1 or localhost only: there is no authentication).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port.")
@click.option("--max-batch", type=click.IntRange(1), default=8, show_default=True,
              help="Most concurrent requests run as one batch.")
@click.option("--max-wait-ms", type=FiniteFloat(0), default=10.0, show_default=True,
              help="How long the first request of a batch waits for more.")
@click.option("--poll", type=FiniteFloat(0.05), default=0.5, show_default=True,
              help="Seconds between checks of the manifest for added or removed tasks.")
@device_option
@threads_option
def serve_cmd(workspace, host, port, max_batch, max_wait_ms, poll, device) -> None:
    """Serve every registered task over HTTP: the backbone runs once per image, every head on it.

    \b
    GET  /tasks                    JSON naming every registered task
    POST /predict (form: image)    JSON keyed by task name (?format=png|array, ?tasks=a,b)
    Tasks added with `ufl add-task` while it runs are served without a restart. Stop with Ctrl-C.
    """
    from ..serve import check_loopback, serve
    from ..workspace import Workspace

    check_loopback(host)
    serve(Workspace(workspace), host=host, port=port, device=device, max_batch=max_batch,
          max_wait=max_wait_ms / 1000, poll=poll)
