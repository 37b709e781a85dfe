"""Workspace commands: init, cache-features, add-task, evaluate, list-tasks, remove-task.

Each parses options, calls one method of :class:`ufl.workspace.Workspace`, and prints.
"""

from __future__ import annotations

import json

import click

from ..cfg import DEFAULTS
from .base import (check_task_names, config_option, device_option, echo_json, eval_resolution_option, json_option,
                   list_option_help, main, optimizer_options, parse_names, parse_size, parse_task_names, precision_option,
                   pretrained_option, seed_option, threads_option, workspace_option)


def _note(ws) -> None:
    """One line on stderr when the backbone is random-init or trained only on generated data."""
    note = ws.backbone_note()
    if note:
        click.echo(f"ufl: note: {note}", err=True)


def _dataset_name_option(f):
    return click.option("--dataset-name", default=None, metavar="NAME",
                        help="Folder datasets: the workspace's name for this one (default: the one cached from "
                             "--root, else a new one named after its folder, else the only one).")(f)


def _data_options(f):
    f = click.option("--size", default=None, callback=parse_size,
                     help="Input size HxW (or N for NxN) of the cached features (default: what the workspace already uses "
                          "for the dataset, else NYUD 480x640, PASCAL 512x512).")(f)
    f = click.option("--root", type=click.Path(file_okay=False), default=None,
                     help="The dataset's own folder (overrides DATA_ROOT/NYUD_MT or PASCAL_MT; required for folder).")(f)
    f = click.option("--data-root", type=click.Path(file_okay=False), default=None, envvar="UFL_DATA_ROOT",
                     show_envvar=True,
                     help="Folder holding NYUD_MT/ and PASCAL_MT/ (default: the folder the workspace used "
                          "before for the dataset, else ./data).")(f)
    return f


# -- init -----------------------------------------------------------------------------------------
@main.command("init")
@workspace_option
@click.option("--checkpoint", type=click.Path(), default=None,
              help="A `ufl pretrain` run folder: its backbone, frozen, and (Medusa) its tasks registered.")
@click.option("--backbone", default=None, help="A timm backbone name instead of a checkpoint (no tasks).")
@pretrained_option
@click.option("--no-register", is_flag=True, help="With --checkpoint: take only the backbone, register no task.")
@_data_options
@device_option
@threads_option
@json_option
def init_cmd(workspace, checkpoint, backbone, pretrained, no_register, data_root, root, size, device, as_json) -> None:
    """Make a workspace from a pretraining checkpoint or a bare backbone.

    With a Medusa checkpoint, its tasks (e.g. NYUD semseg, depth, normals, edges) are registered with
    their heads, and their val metrics are measured through the workspace's NYUD val cache.
    """
    from ..models.backbone import resolve_pretrained
    from ..provenance import UNREACHABLE
    from ..workspace import Workspace

    if (checkpoint is None) == (backbone is None):
        raise click.UsageError("give exactly one of --checkpoint RUN or --backbone NAME")
    if checkpoint is not None:
        ws = Workspace.from_checkpoint(workspace, checkpoint, register=not no_register, data_root=data_root,
                                       root=root, device=device)
    else:
        weights = resolve_pretrained(pretrained, backbone)
        unreachable = pretrained.lower() == "auto" and weights is None
        ws = Workspace.from_backbone(workspace, backbone, weights, init_note=UNREACHABLE if unreachable else None)
    if as_json:
        echo_json({"workspace": str(ws.root), "fingerprint": ws.fingerprint, "tasks": ws.tasks,
                   "backbone": ws.read()["backbone"]})
        return
    click.echo(f"workspace: {ws.root} (backbone fingerprint {ws.fingerprint[:12]}, "
               f"{len(ws.tasks)} task(s): {', '.join(ws.tasks) or 'none'})")


# -- cache-features -------------------------------------------------------------------------------
@main.command("cache-features")
@workspace_option
@click.option("--dataset", type=click.Choice(["pascal", "nyud", "folder"]), required=True, help="Dataset to cache.")
@_dataset_name_option
@_data_options
@click.option("--split", "splits", multiple=True, default=("train,val",), show_default=True, callback=parse_names,
              help=list_option_help("Split(s) to cache."))
@click.option("--views", type=click.IntRange(1), default=1, show_default=True,
              help="Views per training image: the original, its flip, then random reference augmentations "
                   "(val is always cached once).")
@click.option("--spec", "spec_files", multiple=True, callback=parse_names,
              help=list_option_help("Folder datasets: the task spec YAML of each task whose targets to store; on a "
                                    "cached dataset, a new task's targets are added beside its caches."))
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True, help="Images per forward pass.")
@click.option("--workers", type=click.IntRange(0), default=None, help="DataLoader workers (default: by device).")
@click.option("--lanes", type=click.IntRange(1), default=None,
              help="CPU: batches decoded and run through the backbone side by side, each lane on an equal share of "
                   "--threads (one lane decodes while another computes). Default: 2 on a CPU, 1 on CUDA.")
@click.option("--compression", type=click.Choice(["none", "lzf", "gzip", "zstd", "blosc"]), default="none",
              show_default=True, help="Lossless compression of the HDF5 datasets (zstd/blosc via hdf5plugin).")
@click.option("--float32", "float32", is_flag=True, help="Store features in float32 instead of float16.")
@click.option("--overwrite", is_flag=True,
              help="Rebuild existing caches (the old ones stay until the new ones are complete).")
@click.option("--force", is_flag=True,
              help="With --overwrite: rebuild even the val cache registered tasks were evaluated on "
                   "(re-register them after a change of --size).")
@device_option
@seed_option
@threads_option
@json_option
def cache_features_cmd(workspace, dataset, dataset_name, data_root, root, size, splits, views, spec_files, batch_size,
                       workers, lanes, compression, float32, overwrite, force, device, seed, as_json) -> None:
    """Run the frozen backbone over every image of each split and store the features in HDF5.

    Resumable: run it again after an interruption and it continues where it stopped. Runs sharded
    under `torchrun --nproc_per_node N -m ufl cache-features ...` (one shard per process, joined).
    """
    from .. import distributed
    from ..taskspec import load_spec
    from ..workspace import Workspace

    ws = Workspace(workspace)
    specs = [load_spec(p) for p in spec_files] or None
    try:
        results = ws.cache_features(dataset, list(dict.fromkeys(splits)), data_root=data_root, root=root, size=size,
                                    views=views, specs=specs, device=device, batch_size=batch_size, workers=workers,
                                    overwrite=overwrite, storage="float32" if float32 else "float16",
                                    compression=None if compression == "none" else compression, seed=seed,
                                    force=force, dataset_name=dataset_name, lanes=lanes)
        show = distributed.is_main()
    finally:
        distributed.shutdown()
    if show and as_json:
        echo_json({"caches": [{"key": r.key, "path": str(r.path), "rows": r.rows, "written": r.written,
                               "seconds": r.seconds, "skipped": r.skipped, "targets_added": r.added}
                              for r in results]})
    elif show:
        for r in results:
            status = "already cached" if r.skipped else f"{r.written} rows in {r.seconds:.1f} s " \
                                                        f"({r.images_per_second:.1f} images/s)"
            if r.added:
                status += f"; targets added for {', '.join(r.added)}"
            click.echo(f"{r.key}: {r.path} ({r.rows} rows; {status})")


# -- add-task -------------------------------------------------------------------------------------
#: The protocol keys (ufl/cfg/default.yaml) that ``--config`` sets options of, by option.
ADD_TASK_KEYS = {"head_epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "weight_decay": "weight_decay",
                 "views": "views", "seed": "seed"}


@main.command("add-task")
@config_option(ADD_TASK_KEYS, "poly_power")
@workspace_option
@click.argument("name", required=False, callback=check_task_names)
@click.option("--dataset", type=click.Choice(["pascal", "nyud", "folder"]), default=None,
              help="Dataset to train on (default: PASCAL when the task has it, else the task's first dataset).")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False), default=None,
              help="Your own task spec (YAML); NAME may then be omitted.")
@_dataset_name_option
@click.option("--epochs", type=click.IntRange(1), default=DEFAULTS.head_epochs, show_default=True,
              help="Training epochs.")
@click.option("--batch-size", type=click.IntRange(1), default=DEFAULTS.batch_size, show_default=True,
              help="Batch size.")
@optimizer_options()
@click.option("--val-every", type=click.IntRange(1), default=None,
              help="Validate every k epochs (default: 5 times per run).")
@click.option("--views", type=click.IntRange(1), default=None,
              help="Train on the cache with this many views (default: the one with most views; 1 if caching now).")
@click.option("--replace", is_flag=True, help="Train again and replace a task that is already registered.")
@click.option("--as", "register_as", default=None, metavar="NAME", callback=check_task_names,
              help="Register under this name (default: the task's, or DATASET_TASK when the task is "
                   "registered for another dataset, e.g. pascal_semseg beside NYUD's semseg).")
@click.option("--workers", type=click.IntRange(0), default=None,
              help="DataLoader workers reading the cache (default: none when it fits in RAM, else by device).")
@click.option("--log-dir", type=click.Path(file_okay=False), default=None,
              help="Write TensorBoard events (loss per step and epoch, val metrics) to this folder "
                   "(needs the tensorboard extra: pip install 'ufl[tensorboard]').")
@precision_option("the head, in training and in every evaluation of it (recorded with the task)",
                  "AMP training on a GPU, float32 on the CPU; evaluation in float32")
@eval_resolution_option
@_data_options
@device_option
@seed_option
@threads_option
@json_option
def add_task_cmd(config, workspace, name, dataset, spec_file, dataset_name, epochs, batch_size, lr, weight_decay,
                 val_every, views, replace, register_as, workers, log_dir, precision, eval_resolution, data_root, root,
                 size, device, seed, as_json) -> None:
    """Train a Medusa head for a task on cached features and register it.

    NAME is a built-in task (semseg, depth, normals, edges, human_parts, saliency) or your own with
    --spec. Caches the dataset first when needed. Earlier tasks keep their exact predictions.
    """
    from ..training.callbacks import TensorBoardLog, require_tensorboard
    from ..workspace import HeadTrainingConfig, Workspace

    if name is None and spec_file is None:
        raise click.UsageError("give a task NAME or --spec FILE.yaml")
    ws = Workspace(workspace)
    training = HeadTrainingConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                                  val_every=val_every, precision=precision,
                                  poly_power=config.get("poly_power", DEFAULTS.poly_power))
    if log_dir:
        require_tensorboard()  # a missing tensorboard package fails now, not after caching
    result = ws.add_task(name, spec_file=spec_file, dataset=dataset, config=training, views=views, replace=replace,
                         device=device, workers=workers, data_root=data_root, root=root, size=size,
                         register_as=register_as, callbacks=[TensorBoardLog(log_dir)] if log_dir else (),
                         dataset_name=dataset_name, eval_resolution=eval_resolution)
    if as_json:
        echo_json({"name": result.name, "dataset": result.dataset, "metrics": result.metrics,
                   "seconds": result.seconds, "history": result.history})
        return
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
    click.echo(f"registered {result.name} on {result.dataset} ({result.seconds:.1f} s): {metrics}")


# -- evaluate -------------------------------------------------------------------------------------
@main.command("evaluate")
@workspace_option
@click.option("--all-tasks", is_flag=True, help="Evaluate every registered task.")
@click.option("--task", "tasks", multiple=True, callback=parse_task_names,
              help=list_option_help("Task(s) to evaluate."))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the documented contract).")
@click.option("--all-metrics", is_flag=True,
              help="Show every metric of each task (and per-class IoU for segmentation), not just the headline.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG of each task's headline metric beside the trivial predictor's, one panel per "
                   "unit (mIoU/F %, metres, degrees).")
@click.option("--references", type=click.Path(dir_okay=False), default=None,
              help="JSON {task: value or {metric: value}} of single-task references, for Delta_m.")
@click.option("--online", is_flag=True, help="Compute features through the backbone even when a cache exists.")
@click.option("--no-cache", "no_cache", is_flag=True,
              help="Recompute every task's metrics and edge counts, neither reading nor writing WORKSPACE/eval-cache "
                   "(by default an unchanged task's metrics are read from it: same head file, val cache, protocol "
                   "and code).")
@device_option
@threads_option
def evaluate_cmd(workspace, all_tasks, tasks, as_json, all_metrics, plot, references, online, no_cache,
                 device) -> None:
    """Evaluate registered tasks on their own dataset's val split (NYUD tasks on NYUD, PASCAL tasks
    on PASCAL), from the cache when present, else online.

    `drift` is the largest change of a task's metrics since it was registered: 0, since the backbone
    and every other head are frozen and each task is evaluated as it was registered (on the CPU
    with the registration's thread count). A task registered on a GPU and evaluated on the CPU
    differs by float rounding.

    Results are kept in WORKSPACE/eval-cache/: a task whose head file, val cache, evaluation
    protocol and evaluation code are unchanged gets its stored metrics without running its head
    (`--no-cache` recomputes everything).
    """
    from ..io import read_json
    from ..tables import text_table
    from ..workspace import Workspace

    if all_tasks == bool(tasks):
        raise click.UsageError("give --all-tasks or --task NAME")
    ws = Workspace(workspace)
    _note(ws)
    refs = read_json(references, what="references file") if references else None
    result = ws.evaluate(None if all_tasks else list(tasks), device=device, references=refs,
                         online=True if online else None, all_metrics=all_metrics, cache=not no_cache)
    data = result.to_dict()
    if plot:
        from ..workspace.evaluate import plot_evaluation

        plot_evaluation(ws, data, plot, title=f"ufl evaluate ({ws.root})")
    if as_json:
        click.echo(json.dumps(data))
        return
    rows = []
    for name, r in data["tasks"].items():
        spec = ws.spec(name)
        rows.append([name, r["dataset"], spec.metric, r["metrics"].get(spec.metric),
                     r["registered"].get(spec.metric), r["drift"]])
    click.echo(text_table(["task", "dataset", "metric", "value", "registered", "drift"], rows))
    if all_metrics:
        from ..workspace.evaluate import format_all_metrics

        click.echo("\n" + format_all_metrics(data))
    if data["delta_m"] is not None:
        click.echo(f"Delta_m vs references: {data['delta_m']:+.2f} %")
    reused = [name for name, hit in result.cached.items() if hit]
    if reused:
        click.echo(f"read from the eval cache (unchanged since last evaluated): {', '.join(reused)}; "
                   f"--no-cache recomputes")
    if plot:
        click.echo(f"plot: {plot}")


# -- list-tasks / remove-task ---------------------------------------------------------------------
@main.command("list-tasks")
@workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print the task records as JSON.")
def list_tasks_cmd(workspace, as_json) -> None:
    """List the registered tasks: dataset, kind, headline metric at registration, where they came from."""
    from ..tables import text_table
    from ..workspace import Workspace

    ws = Workspace(workspace)
    _note(ws)
    tasks = ws.tasks
    if as_json:
        click.echo(json.dumps(tasks))
        return
    if not tasks:
        click.echo(f"no tasks registered in {ws.root}; add one with `ufl add-task NAME`")
        return
    rows = []
    for name, record in tasks.items():
        spec = ws.spec(name)
        kind = spec.kind if spec.name in (name, spec.kind) else f"{spec.kind} ({spec.name})"
        rows.append([name, record["dataset"], kind, spec.metric, record["registered"].get(spec.metric),
                     record.get("source", ""), record.get("registered_at", "")])
    click.echo(text_table(["task", "dataset", "kind", "metric", "value", "source", "registered"], rows))


@main.command("remove-task")
@workspace_option
@click.argument("name")
@click.option("--keep-file", is_flag=True,
              help="Only unregister the task; leave its head file (e.g. one that no longer matches its hash).")
@json_option
def remove_task_cmd(workspace, name, keep_file, as_json) -> None:
    """Unregister a task and delete its head; every other task is untouched.

    The head file is deleted only when it lies in the workspace's heads/ folder and matches its
    recorded hash; the task stays registered when the file cannot be deleted. With --json: one object
    {"task", "file" (the head file deleted, or null), "kept_file" (with --keep-file: the head file
    left in place, or null)}.
    """
    from ..workspace import Workspace

    removed = Workspace(workspace).remove_task(name, keep_file=keep_file)
    if as_json:
        echo_json(removed)
        return
    click.echo(f"removed {name}")


# -- predict / visualize --------------------------------------------------------------------------
@main.command("predict")
@workspace_option
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--all-tasks", is_flag=True, help="Predict every registered task.")
@click.option("--task", "tasks", multiple=True, callback=parse_task_names,
              help=list_option_help("Task(s) to predict."))
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder (one subfolder per image).")
@click.option("--attention", is_flag=True, help="Also write the Medusa attention maps per scale (SFA and MSA).")
@click.option("--raw", is_flag=True, help="Also write the raw predictions as .npy.")
@device_option
@threads_option
@json_option
def predict_cmd(workspace, images, all_tasks, tasks, out, attention, raw, device, as_json) -> None:
    """Run the backbone and registered heads on image files (or every image of a folder: .jpg, .jpeg,
    .png, .bmp, .tif, .tiff, .webp); write viewable PNGs per task.

    Labels use the dataset palette, depth a colour map, normals RGB, saliency and edges grey;
    OUT/<image>/panel.png shows them together.
    """
    from ..workspace import Workspace

    if all_tasks == bool(tasks):
        raise click.UsageError("give --all-tasks or --task NAME")
    ws = Workspace(workspace)
    _note(ws)
    written = ws.predict(images, out, tasks=None if all_tasks else list(tasks), attention=attention, raw=raw,
                         device=device)
    if as_json:
        echo_json({"images": {image: {k: str(v) for k, v in files.items()} for image, files in written.items()}})
        return
    for image, files in written.items():
        click.echo(f"{image}: {files['panel'].parent}")


@main.command("visualize")
@workspace_option
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--dataset", "datasets", multiple=True, callback=parse_names,
              help=list_option_help("Dataset(s) to show: nyud, pascal, folder (every folder dataset) or a folder "
                                    "dataset's name (default: every dataset with a registered task)."))
@click.option("--num", type=click.IntRange(1), default=4, show_default=True, help="Val images per dataset.")
@click.option("--no-attention", is_flag=True, help="Leave out the attention maps.")
@device_option
@threads_option
@json_option
def visualize_cmd(workspace, out, datasets, num, no_attention, device, as_json) -> None:
    """A PNG panel per dataset: val images with ground truth, prediction and the Medusa attention
    maps (SFA per scale, MSA weights per scale, and which scale wins where) for each task."""
    from ..workspace import Workspace

    unknown = [d for d in datasets if d not in ("nyud", "pascal", "folder")]
    if unknown:
        raise click.BadParameter(f"unknown dataset(s) {', '.join(unknown)}; use nyud, pascal or folder",
                                 param_hint="--dataset")
    paths = Workspace(workspace).visualize(out, datasets=list(datasets) or None, num=num,
                                           attention=not no_attention, device=device)
    if as_json:
        echo_json({"files": [str(p) for p in paths]})
        return
    for path in paths:
        click.echo(str(path))
