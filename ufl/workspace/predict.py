"""``ufl predict`` and ``ufl visualize``: registered heads on new images, as viewable PNGs.

``predict`` runs the frozen backbone and the heads on image files and writes, per image and task,
a colour-mapped PNG (labels through the dataset palette, depth through a colour map, normals as
RGB, saliency and edges in grey), optionally the Medusa attention maps per scale (SFA and MSA),
and a panel figure of all of them. ``visualize`` does the same on a dataset's val images with
their ground truth beside the predictions, like the poster's qualitative panel.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..evaluation import postprocess
from ..outputs import recorded_activation
from ..images import read_image
from ..kinds import get_kind
from ..runtime import resolve_device
from ..viz import as_rgb, attention_images, colorize, prediction_grids, save_png
from .cache import dataset_specs, open_split, resolve_data
from .folders import expand_datasets
from .views import ViewDataset

__all__ = ["predict", "visualize", "image_files", "IMAGE_SUFFIXES", "load_heads", "apply_heads"]

log = logging.getLogger(__name__)


def _task_groups(ws, tasks: Sequence[str] | None) -> dict[tuple[int, int], list[str]]:
    """Registered tasks grouped by the input size they were trained at (one backbone pass each)."""
    names = list(ws.tasks) if tasks is None else list(tasks)
    if not names:
        from ..errors import WorkspaceError

        raise WorkspaceError(f"no tasks registered in {ws.root}; add one with `ufl add-task NAME`")
    groups: dict[tuple[int, int], list[str]] = {}
    for name in names:
        size = tuple(ws.task(name)["eval"]["size"])
        groups.setdefault(size, []).append(name)
    return groups


def load_heads(ws, names: Sequence[str], device) -> dict[str, tuple]:
    """``{task: (head on device, spec, dataset, precision, output activation)}``, read (and
    hash-checked) once for many images; each head runs in the precision it was registered with (its
    record's ``precision``) and its raw output goes through the activation it was trained with
    (:func:`ufl.outputs.recorded_activation`)."""
    from .evaluate import head_precision

    return {name: (ws.head(name, device), ws.spec(name), ws.task(name)["dataset"],
                   head_precision(ws.task(name).get("precision"), torch.device(device)),
                   recorded_activation(ws.task(name)))
            for name in names}


@torch.no_grad()
def _run_heads(ws, heads: dict[str, tuple], images: torch.Tensor, device, attention: bool) -> dict[str, dict]:
    """Backbone once, then each head of :func:`load_heads` (:func:`apply_heads`): ``{task: {"pred":
    postprocessed (B, ...), "attention": ..., "kind", "dataset", "classes", "target": the spec's target
    name}}``."""
    features = ws.backbone(device)(images.to(device))
    return apply_heads(heads, features, tuple(images.shape[-2:]), attention)


@torch.no_grad()
def apply_heads(heads: dict[str, tuple], features, size: tuple[int, int], attention: bool = False) -> dict[str, dict]:
    """Each head of :func:`load_heads` on the backbone's ``features`` (of a batch of images at
    ``size``), in its recorded precision and through its recorded activation: the one path of
    ``ufl predict``, ``ufl visualize`` and ``ufl serve``; returns what :func:`_run_heads` does."""
    out = {}
    for name, (head, spec, dataset, precision, activation) in heads.items():
        with precision.autocast():
            result = head(features, out_size=size, return_attention=attention)
        maps = result.get("attention")
        if maps is not None:  # float32 for the pictures, whatever the head's autocast computed them in
            maps = {"sfa": [m.float() for m in maps["sfa"]], "msa": maps["msa"].float()}
        out[name] = {"pred": postprocess(spec.kind, result["out"], activation).cpu(), "attention": maps,
                     "kind": spec.kind, "dataset": dataset, "classes": spec.out_channels(dataset),
                     "target": spec.name}
    return out


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
"""Files of a folder given to :func:`predict` that are read as images (case-insensitive)."""


def image_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """``paths`` with each folder replaced by its image files (:data:`IMAGE_SUFFIXES`, sorted by name,
    not recursive); a folder without images is a :class:`~ufl.errors.DataError`."""
    from ..errors import DataError

    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}); give image files "
                                f"or a folder of them")
            files.extend(found)
        else:
            files.append(path)
    return list(dict.fromkeys(files))


def predict(ws, images: Sequence[str | os.PathLike], out: str | os.PathLike, *, tasks: Sequence[str] | None = None,
            attention: bool = False, raw: bool = False, device: str = "auto") -> dict[str, dict[str, Path]]:
    """Predict ``tasks`` (default: all registered) on image files (a folder: each image in it); write
    PNGs under ``out/<image stem>/`` (see :func:`output_names` for images that share a stem:
    ``a/x.jpg`` and ``b/x.png`` go to ``out/a_x/`` and ``out/b_x/``, never both to ``out/x/``; a
    file given twice is predicted once).

    Each image is resized to the size the tasks were trained at, and the predictions are resized
    back to the image's own size. With ``attention`` the per-scale SFA and MSA maps are written
    too; with ``raw`` the predictions also as ``.npy`` (labels, metres, unit normals, probabilities).
    Returns ``{image: {task: png, ..., "panel": png}}``.
    """
    device = resolve_device(device)
    out = Path(out)
    groups = {size: load_heads(ws, names, device) for size, names in _task_groups(ws, tasks).items()}
    written: dict[str, dict[str, Path]] = {}
    scales = len(ws.read()["backbone"]["channels"])
    for file, name in output_names(image_files(images)).items():
        rgb = read_image(file)
        height, width = rgb.shape[:2]
        image = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255)[None]
        folder = out / name
        record: dict[str, Path] = {}
        rows = []
        for size, heads in groups.items():
            resized = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
            for name, result in _run_heads(ws, heads, resized, device, attention).items():
                pred = get_kind(result["kind"]).resize_prediction(result["pred"][0], (height, width))
                png = colorize(result["kind"], pred, dataset=result["dataset"], task=result["target"],
                               num_classes=result["classes"])
                record[name] = save_png(png, folder / f"{name}.png")
                if raw:
                    np.save(folder / f"{name}.npy", pred.squeeze(0).numpy() if pred.ndim == 3 and
                            pred.shape[0] == 1 else pred.numpy())
                maps = None
                if attention:
                    images_ = attention_images(result["attention"], rgb, index=0)
                    maps = images_["sfa"] + images_["msa"] + images_["msa_argmax"]
                    for maps_name, pictures in images_.items():
                        for s, picture in enumerate(pictures):
                            suffix = "" if maps_name == "msa_argmax" else f"_s{s}"
                            save_png(picture, folder / f"{name}_{maps_name}{suffix}.png")
                rows.append({"task": name, "pred": pred, "kind": result["kind"], "dataset": result["dataset"],
                             "target": result["target"], "num_classes": result["classes"], "attention": maps,
                             "attention_labels": _attention_labels(scales) if maps else None})
        record["panel"] = prediction_grids([{"image": rgb, "rows": rows, "name": file.name}], folder / "panel.png")
        written[str(file)] = record
        log.debug("%s: %d task(s) -> %s", file, len(rows), folder)  # the CLI prints the result
    return written


def output_names(images: Sequence[str | os.PathLike]) -> dict[Path, str]:
    """``{image file: its output folder name}``: the file's stem, unless another image has the same
    one; then the stem prefixed by as many parent folders as it takes (``a/x.jpg``, ``b/x.png`` ->
    ``a_x``, ``b_x``), and for files of one folder the name with its suffix (``x_jpg``, ``x_png``).
    The same file given twice (by any path) is listed once; names that stay ambiguous are refused."""
    files: dict[Path, Path] = {}
    for image in images:
        files.setdefault(Path(image).resolve(), Path(image))

    def candidates(path: Path) -> list[str]:
        parents = [p.name for p in path.parents if p.name]
        names = []
        for leaf in (path.stem, path.name.replace(".", "_")):
            names += ["_".join([*reversed(parents[:depth]), leaf]) for depth in range(len(parents) + 1)]
        return names

    options = {resolved: candidates(resolved) for resolved in files}
    level = dict.fromkeys(files, 0)
    while True:
        current = {r: options[r][min(level[r], len(options[r]) - 1)] for r in files}
        by_name: dict[str, list[Path]] = {}
        for resolved, name in current.items():
            by_name.setdefault(name, []).append(resolved)
        clashes = [group for group in by_name.values() if len(group) > 1]
        if not clashes:
            return {files[r]: name for r, name in current.items()}
        if all(level[r] >= len(options[r]) - 1 for group in clashes for r in group):
            from ..errors import WorkspaceError

            raise WorkspaceError(f"images {', '.join(str(files[r]) for r in clashes[0])} would share the output "
                                 f"folder {current[clashes[0][0]]!r}; rename one or predict them in separate runs")
        for group in clashes:
            for resolved in group:
                level[resolved] += 1


def _attention_labels(scales: int) -> list[str]:
    return ([f"SFA s{s}" for s in range(scales)] + [f"MSA s{s}" for s in range(scales)] + ["MSA argmax"])


@torch.no_grad()
def visualize(ws, out: str | os.PathLike, *, datasets: Sequence[str] | None = None, num: int = 4,
              attention: bool = True, device: str = "auto") -> list[Path]:
    """A panel per dataset (``out/visualize-DATASET.png``): ``num`` val images with, per registered
    task of that dataset, ground truth, prediction and (optionally) the attention maps."""
    device = resolve_device(device)
    out = Path(out)
    by_dataset: dict[str, list[str]] = {}
    for name, record in ws.tasks.items():
        by_dataset.setdefault(record["dataset"], []).append(name)
    if datasets:  # "folder": every folder dataset
        by_dataset = {d: by_dataset.get(d, []) for d in expand_datasets(ws, datasets)}
    paths = []
    scales = len(ws.read()["backbone"]["channels"])
    for dataset, names in by_dataset.items():
        if not names:
            log.info("no task registered on %s: nothing to visualise", dataset)
            continue
        folder, size = resolve_data(ws, dataset, None, None, tuple(ws.task(names[0])["eval"]["size"]))
        rows = ViewDataset(open_split(ws, dataset, "val", folder, dataset_specs(ws, dataset, None)), 1, size)
        heads = load_heads(ws, names, device)
        samples = []
        for index in range(min(num, len(rows))):
            sample = rows[index]
            results = _run_heads(ws, heads, sample["image"][None], device, attention)
            sample_rows = []
            for name, result in results.items():
                maps = None
                if attention:
                    images_ = attention_images(result["attention"], sample["image"], index=0)
                    maps = images_["sfa"] + images_["msa"] + images_["msa_argmax"]
                sample_rows.append({"task": name, "gt": sample[result["target"]], "pred": result["pred"][0],
                                    "kind": result["kind"], "dataset": dataset, "num_classes": result["classes"],
                                    "target": result["target"], "attention": maps,
                                    "attention_labels": _attention_labels(scales) if maps else None})
            samples.append({"image": as_rgb(sample["image"]), "rows": sample_rows, "name": sample["id"]})
        paths.append(prediction_grids(samples, out / f"visualize-{dataset}.png",
                                      title=f"{dataset} val: ground truth, prediction, attention"))
    return paths
