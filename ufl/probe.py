"""``ufl probe``: how well will a task do on this backbone, estimated in seconds before training a head.

From a dataset's cached train features (no backbone pass), pixels are subsampled (a fixed number per
image, only where the target is valid) and each scale's feature vector at those pixels is scored
with **LogME** (You, Liu, Wang, Long, "LogME: Practical Assessment of Pre-trained Models for
Transfer Learning", ICML 2021): the log marginal likelihood (evidence) per sample of a Bayesian
linear regression from the features to the target, with the prior and noise precisions (alpha,
beta) set by the paper's closed-form fixed-point iteration. Higher is better; it needs no training,
no learning rate and no validation split.

Targets per kind: segmentation labels one-hot (the score is averaged over the classes present in
the sample, as LogME does for classification); saliency and edges their 0/1 value; depth (metres)
and normals (3 components) standardised. Features are standardised per channel over the sampled
pixels. Every scale is scored alone, and all four together ("all": the concatenation a Medusa head
attends over); the scale with the best evidence is the one the task would rely on.

The result is stored in ``WORKSPACE/probes/TASK-DATASET.json`` (atomic write).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from feature_cache import FeatureCacheReader

from .errors import CacheError, SpecError
from .io import write_json
from .kinds.base import standardise
from .taskspec import TaskSpec, resolve_spec

__all__ = ["logme", "probe_task", "ProbeResult", "sample_pixels", "probe_targets", "probe_path", "format_probe"]

#: Pixels sampled per image and images read, by default (a few thousand rows: a second per scale).
DEFAULT_PIXELS_PER_IMAGE = 64
DEFAULT_IMAGES = 128


def logme(features: torch.Tensor, targets: torch.Tensor, max_iterations: int = 100, tol: float = 1e-5
          ) -> float:
    """LogME: mean over target columns of the log evidence per sample, (1/n) log p(y | F, alpha*, beta*).

    Args:
        features: (n, D) feature matrix F.
        targets: (n,) or (n, K) real targets (K columns are scored independently and averaged).
        max_iterations, tol: the fixed-point iteration of alpha and beta (Algorithm 2 of the paper)
            stops when both change by less than ``tol`` relatively.

    Model: w ~ N(0, alpha^-1 I), y = F w + N(0, beta^-1). With F = U S V^T (thin SVD, k = min(n, D)
    singular values s_i) and z = U^T y the posterior mean is m = V (beta s z / (alpha + beta s^2)),
    and ``log p(y) = D/2 log alpha + n/2 log beta - n/2 log 2 pi - beta/2 |F m - y|^2 - alpha/2 |m|^2
    - 1/2 log det(alpha I + beta F^T F)``. Computed in float64.
    """
    f = features.detach().to(torch.float64)
    y = targets.detach().to(torch.float64)
    if y.ndim == 1:
        y = y[:, None]
    n, dim = f.shape
    if n < 2 or y.shape[0] != n:
        raise ValueError(f"LogME needs at least 2 rows and as many targets as features, got F {tuple(f.shape)}, "
                         f"y {tuple(y.shape)}")
    u, s, _ = torch.linalg.svd(f, full_matrices=False)
    sigma = s ** 2  # eigenvalues of F^T F (k of them; the other D - k are 0)
    scores = []
    for column in y.T:
        z = u.T @ column
        outside = float(column @ column - z @ z)  # |y|^2 outside the span of F
        alpha, beta = 1.0, 1.0
        for _ in range(max_iterations):
            gamma = float((beta * sigma / (alpha + beta * sigma)).sum())
            m2 = float((beta ** 2 * sigma * z ** 2 / (alpha + beta * sigma) ** 2).sum())
            res2 = float(((alpha * z / (alpha + beta * sigma)) ** 2).sum()) + outside
            new_alpha = gamma / max(m2, 1e-300)
            new_beta = (n - gamma) / max(res2, 1e-300)
            done = abs(new_alpha - alpha) / alpha < tol and abs(new_beta - beta) / beta < tol
            alpha, beta = new_alpha, new_beta
            if done:
                break
        m2 = float((beta ** 2 * sigma * z ** 2 / (alpha + beta * sigma) ** 2).sum())
        res2 = float(((alpha * z / (alpha + beta * sigma)) ** 2).sum()) + outside
        logdet = float(torch.log(alpha + beta * sigma).sum()) + (dim - len(sigma)) * math.log(alpha)
        evidence = (dim / 2 * math.log(alpha) + n / 2 * math.log(beta) - n / 2 * math.log(2 * math.pi)
                    - beta / 2 * res2 - alpha / 2 * m2 - logdet / 2)
        scores.append(evidence / n)
    return float(np.mean(scores))


def probe_targets(spec: TaskSpec, target: np.ndarray, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """A task's decoded target of one image -> (valid (H, W) bool, values (H, W, K) float64), by its
    kind (:meth:`ufl.kinds.Kind.probe_targets`).

    Segmentation: one-hot over the task's classes (ignore 255 invalid); saliency/edges: the 0/1 map
    (255 invalid); depth: metres (0 invalid); normals: the 3 components (zero vector invalid).
    """
    return spec.info.probe_targets(target, spec.out_channels(dataset))


def sample_pixels(valid: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` distinct valid pixels (rows, cols), uniformly without replacement."""
    rows, cols = np.nonzero(valid)
    if len(rows) > count:
        keep = rng.choice(len(rows), size=count, replace=False)
        rows, cols = rows[keep], cols[keep]
    return rows, cols


@dataclass
class ProbeResult:
    """Per-scale LogME of one task on one backbone's cached features (higher is better)."""

    task: str
    dataset: str
    kind: str
    scales: list[dict[str, Any]]
    all: float
    relies_on: int
    pixels: int
    images: int
    cache: str
    fingerprint: str
    seconds: float
    method: str = "LogME (You et al., ICML 2021), evidence per sample"
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """The task's score: LogME of all scales together."""
        return self.all

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_task(ws, name: str | None = None, *, spec_file: str | Path | None = None, dataset: str | None = None,
               split: str = "train", images: int = DEFAULT_IMAGES, pixels_per_image: int = DEFAULT_PIXELS_PER_IMAGE,
               seed: int = 0, store: bool = True) -> ProbeResult:
    """Score task ``name`` (built-in, or ``spec_file``'s) on the workspace's cached ``split`` features.

    Reads ``images`` cache rows (chosen with ``seed``; all when fewer) and ``pixels_per_image`` valid
    pixels of each; each pixel takes the feature vector of the cell covering it at every scale.
    Needs a cache of the dataset holding the task's targets (``ufl cache-features``). Returns a
    :class:`ProbeResult` and, with ``store``, writes it to ``WORKSPACE/probes/TASK-DATASET.json``.
    """
    from .workspace.folders import resolve_dataset
    from .workspace.heads import default_dataset
    from .workspace.targets import cached_tasks, target_path

    spec = resolve_spec(name, spec_file)
    dataset = resolve_dataset(ws, dataset or default_dataset(spec))  # "folder": the only folder dataset
    if not spec.supports(dataset):
        raise SpecError(f"task {spec.name!r} is not defined on dataset {dataset!r} (it is defined on: "
                        f"{', '.join(spec.datasets())})")
    record = ws.find_cache(dataset, split)
    if record is None:
        raise CacheError(f"no {dataset}/{split} feature cache in workspace {ws.root}; run "
                         f"`ufl cache-features --dataset {dataset} --split {split}` first")
    if spec.name not in cached_tasks(record):
        raise CacheError(f"the {dataset}/{split} cache ({ws.root / record['file']}) holds no targets for "
                         f"{spec.name!r}; add them with `ufl cache-features` (and --spec for a folder dataset)")
    if images < 1 or pixels_per_image < 1:
        raise SpecError(f"probe needs at least 1 image and 1 pixel per image, got {images} and {pixels_per_image}")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    feats: list[list[np.ndarray]] = []
    values: list[np.ndarray] = []
    # a task added to a folder dataset later has its targets in a file beside the cache
    side = target_path(ws, record, spec.name) if spec.name not in record["tasks"] else None
    with FeatureCacheReader(ws.cache_path(record), ws.fingerprint) as reader, \
            (FeatureCacheReader(side, ws.fingerprint) if side else contextlib.nullcontext(reader)) as labels:
        rows = np.arange(len(reader))
        if len(rows) > images:
            rows = np.sort(rng.choice(rows, size=images, replace=False))
        strides = list(ws.read()["backbone"]["strides"])
        channels = [int(c) for c, _, _ in reader.scales]
        for row in rows:
            valid, target = probe_targets(spec, labels.targets(int(row), [spec.name])[spec.name], dataset)
            ys, xs = sample_pixels(valid, pixels_per_image, rng)
            if not len(ys):
                continue
            height, width = valid.shape
            per_scale = []
            for f in reader.features(int(row)):
                _, h, w = f.shape
                per_scale.append(np.asarray(f[:, ys * h // height, xs * w // width], dtype=np.float64).T)
            feats.append(per_scale)
            values.append(target[ys, xs])
    if not values or sum(len(v) for v in values) < 2:
        raise CacheError(f"the {dataset}/{split} cache has fewer than 2 valid pixels for {spec.name!r}; nothing to probe")
    y = spec.info.probe_columns(np.concatenate(values))  # e.g. the classes present; regression standardised
    scale_features = [standardise(np.concatenate([f[s] for f in feats])) for s in range(len(channels))]
    target = torch.from_numpy(y)
    scores = [logme(torch.from_numpy(f), target) for f in scale_features]
    together = logme(torch.from_numpy(np.concatenate(scale_features, axis=1)), target)
    result = ProbeResult(
        task=spec.name, dataset=dataset, kind=spec.kind,
        scales=[{"scale": i, "stride": int(s), "channels": c, "logme": v}
                for i, (s, c, v) in enumerate(zip(strides, channels, scores))],
        all=together, relies_on=int(np.argmax(scores)), pixels=len(y), images=len(values),
        cache=ws.cache_key(dataset, split, record["views"]), fingerprint=ws.fingerprint,
        seconds=round(time.perf_counter() - started, 3),
        settings={"split": split, "images": images, "pixels_per_image": pixels_per_image, "seed": seed})
    if store:
        write_json(probe_path(ws, spec.name, dataset), result.to_dict())
    return result


def probe_path(ws, task: str, dataset: str) -> Path:
    """Where :func:`probe_task` stores a result: ``WORKSPACE/probes/TASK-DATASET.json``."""
    return ws.root / "probes" / f"{task}-{dataset}.json"


def format_probe(result: ProbeResult) -> str:
    """The per-scale table ``ufl probe`` prints."""
    lines = [f"probe {result.task} on {result.dataset} ({result.kind}; {result.pixels} pixels of {result.images} "
             f"images from {result.cache}; {result.seconds:.1f} s)",
             f"{'scale':<7}{'stride':>7}{'channels':>10}{'LogME':>10}"]
    for s in result.scales:
        mark = "  <- relies on" if s["scale"] == result.relies_on else ""
        lines.append(f"{s['scale']:<7}{s['stride']:>7}{s['channels']:>10}{s['logme']:>10.4f}{mark}")
    lines.append(f"{'all':<7}{'':>7}{sum(s['channels'] for s in result.scales):>10}{result.all:>10.4f}")
    lines.append(f"score (LogME, all scales; higher is better): {result.all:.4f}; "
                 f"best single scale: {result.relies_on} (stride {result.scales[result.relies_on]['stride']})")
    return "\n".join(lines)
