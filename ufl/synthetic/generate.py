"""``make_synthetic``: render NYUD-like and PASCAL-like samples and write the two datasets.

``make_synthetic(out)`` writes ``out/NYUD_MT/`` and ``out/PASCAL_MT/`` exactly as the public MTI-Net
archives unpack (DESIGN.md section 4; the files are listed in :mod:`ufl.synthetic.formats`). Image
i of dataset j (0 = NYUD, 1 = PASCAL) draws from its own generator, ``SeedSequence([seed, j, i])``,
so the files depend on the seed only, not on the number of worker processes. Each dataset is
written into a hidden temporary folder and renamed into place when complete.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError, UflError
from .contract import MAX_NYUD_PERSONS
from .formats import image_ids, make_folders, write_marker, write_nyud_sample, write_pascal_sample, write_splits
from .indoor import render_nyud_sample
from .outdoor import render_pascal_sample

__all__ = ["make_synthetic"]


def _write_nyud(root: Path, image_id: str, seed: int, index: int, size: int, persons: float | None = None) -> None:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, index]))
    write_nyud_sample(root, image_id, render_nyud_sample(rng, size, int(round(size * 4 / 3)), persons))


def _write_pascal(root: Path, image_id: str, seed: int, index: int, size: int) -> list[int]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, index]))
    return write_pascal_sample(root, image_id, render_pascal_sample(rng, size))


def _job(args: tuple) -> list[int] | None:
    """Render and write one image (a top-level function so that worker processes can run it)."""
    dataset, root, image_id, seed, index, size, persons = args
    if dataset == "NYUD_MT":
        _write_nyud(root, image_id, seed, index, size, persons)
        return None
    return _write_pascal(root, image_id, seed, index, size)


def _run(jobs: list[tuple], workers: int) -> Iterator[list[int] | None]:
    """Results of :func:`_job` over ``jobs``, in order, from ``workers`` processes (1: this one).

    Every image seeds its own generator, so the files do not depend on the worker count.
    """
    if workers == 1:
        yield from map(_job, jobs)
        return
    with multiprocessing.get_context().Pool(workers) as pool:
        yield from pool.imap(_job, jobs, chunksize=4)


def _write_dataset(out: Path, dataset: str, size: int, n_train: int, n_val: int, seed: int, workers: int,
                   progress: bool, nyud_persons: float | None = None) -> Path:
    """Write one dataset into a hidden temporary sibling folder and rename it into place when complete."""
    final = out / dataset
    tmp = out / f".{dataset}.{secrets.token_hex(4)}.partial"  # hidden; mkdir (unlike mkdtemp) honours the umask
    tmp.mkdir()
    try:
        make_folders(tmp, dataset)
        ids = image_ids(dataset, n_train + n_val)
        splits = {"train": ids[:n_train], "val": ids[n_train:]}
        jobs = [(dataset, tmp, image_id, seed, i, size, nyud_persons) for i, image_id in enumerate(ids)]
        results = list(tqdm(_run(jobs, workers), total=len(jobs), desc=dataset, unit="img",
                            disable=None if progress else True))  # None: only on a terminal
        write_splits(tmp, dataset, splits, dict(zip(ids, results)))
        write_marker(tmp, dataset, size, n_train, n_val, seed, nyud_persons)
        try:
            os.rename(tmp, final)
        except OSError:
            if final.exists():  # written by someone else meanwhile
                raise DataError(f"{final} appeared while it was being generated; remove it or choose another "
                                f"--out") from None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def make_synthetic(out: str | os.PathLike, size: int = 96, n_train: int = 64, n_val: int = 32, seed: int = 0,
                   *, workers: int = 1, progress: bool = True, nyud_persons: float | None = None) -> dict[str, Path]:
    """Write synthetic ``out/NYUD_MT/`` and ``out/PASCAL_MT/`` in the public MTI-Net formats.

    Args:
        out: folder to write into (created if missing); it must not already hold either dataset.
        size: image height in pixels (NYUD-like images are size x round(4/3 size); PASCAL-like
            images have one side ``size`` and the other up to 4/3 of it).
        n_train, n_val: images per split, for each dataset.
        seed: the same seed gives byte-identical files; image i of dataset j draws from
            ``SeedSequence([seed, j, i])``, so files do not depend on ``workers``.
        workers: processes rendering in parallel (1 = in this process).
        progress: show a tqdm progress bar per dataset.
        nyud_persons: the relatedness knob between the two datasets: the mean number of standing
            persons per NYUD-like room (Poisson, in every room type, 0..6). Persons are the same
            articulated models that carry the 24 PASCAL-Part parts in the PASCAL-like scenes (NYUD
            label ``person``), so more of them make NYUD pretraining share more with PASCAL's
            human parts (and its salient foreground, mostly persons); 0 removes them. None (the
            default) keeps the room types' own persons (0..1 in living rooms and offices) and
            gives the same files as before this option existed. PASCAL_MT is not affected.

    Returns:
        ``{"NYUD_MT": path, "PASCAL_MT": path}``.

    Raises:
        UflError: bad arguments. DataError: ``out`` is a file or already holds a dataset.
    """
    if size < 32:
        raise UflError(f"image size {size} is too small; use --size 32 or more")
    if n_train < 1 or n_val < 1:
        raise UflError(f"need at least one training and one validation image (got {n_train} and {n_val})")
    if seed < 0:
        raise UflError(f"seed {seed} is negative; use a seed >= 0")
    if nyud_persons is not None:
        nyud_persons = float(nyud_persons)
        if not 0.0 <= nyud_persons <= MAX_NYUD_PERSONS:  # also rejects NaN
            raise UflError(f"--nyud-persons {nyud_persons:g} is out of range; use a mean number of persons per "
                           f"room from 0 to {MAX_NYUD_PERSONS:g} (or leave it out for the default rooms)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"output folder {out} is a file; choose another --out")
    for dataset in ("NYUD_MT", "PASCAL_MT"):
        if (out / dataset).exists():
            raise DataError(f"{out / dataset} already exists; remove it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return {dataset: _write_dataset(out, dataset, size, n_train, n_val, seed, max(1, int(workers)), progress,
                                    nyud_persons)
            for dataset in ("NYUD_MT", "PASCAL_MT")}
