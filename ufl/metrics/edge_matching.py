"""Edge matching: the per-image counts of :class:`~ufl.metrics.EdgeMetric`, the seeding that makes
pyEdgeEval's matcher reproducible, and the process pool that matches images in parallel.

One image's counts at every threshold (:func:`match_image`) come from pyEdgeEval's
``correspond_pixels`` (the BSDS one-to-one matcher), reseeded before every call
(``_SeededMatcher``), in this process or in a pool of worker processes shared by every
:class:`~ufl.metrics.EdgeMetric` of the process (:func:`edge_pool_context` says how the workers
start). :func:`counting_code` is the digest of this counting code and of the libraries it calls,
part of the key of cached counts (:class:`ufl.evalcache.CountCache`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import inspect
import multiprocessing
import os
import sys
import threading
import warnings
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np
from pyEdgeEval._lib import correspond_pixels
from skimage.morphology import thin

__all__ = ["match_image", "counting_code", "edge_pool_context"]


class _SeededMatcher:
    """pyEdgeEval's ``correspond_pixels`` made reproducible.

    The BSDS matcher (``match.cc``) joins the edge pixels to random "outlier" nodes (6 per node,
    drawn from a global generator that the C++ library seeds from the clock when loaded), so the
    same maps can match one pixel more or less from run to run. Before each call the generator
    (the exported ``Random::rand``) is reseeded with a constant through ``Random::reseed``, so the
    result depends on the two maps only. If a build lacks these symbols, matching still works
    and a warning says that results may vary by a pixel between runs.
    """

    SEED = 1  # any non-zero value (0 means "seed from the clock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reseed = None
        try:
            library = ctypes.CDLL(sys.modules["pyEdgeEval._lib.correspond_pixels"].__file__)
            generator = ctypes.addressof(ctypes.c_char.in_dll(library, "_ZN6Random4randE"))
            reseed = library._ZN6Random6reseedEm  # Random::reseed(unsigned long), `this` first
            reseed.argtypes, reseed.restype = [ctypes.c_void_p, ctypes.c_uint64], None
            self._reseed = lambda: reseed(generator, self.SEED)
        except (KeyError, AttributeError, OSError, ValueError):
            warnings.warn("pyEdgeEval's matcher cannot be seeded in this build: edge counts may differ "
                          "by a pixel between runs", RuntimeWarning, stacklevel=2)

    def __call__(self, predicted: np.ndarray, edges: np.ndarray, max_dist: float):
        with self._lock:  # the generator is global to the process
            if self._reseed is not None:
                self._reseed()
            return correspond_pixels(predicted, edges, max_dist=max_dist)


_MATCHER: _SeededMatcher | None = None


def _match_pixels(predicted: np.ndarray, edges: np.ndarray, max_dist: float):
    """(match of each predicted pixel, match of each edge pixel, cost, outlier cost)."""
    global _MATCHER
    if _MATCHER is None:
        _MATCHER = _SeededMatcher()
    return _MATCHER(predicted, edges, max_dist)


def _edge_image_counts(thresholds: np.ndarray, max_dist: float, pred: np.ndarray, edges: np.ndarray,
                       valid: np.ndarray, thin_predictions: bool = True) -> dict[str, np.ndarray]:
    """Per-threshold (count_r, sum_r, count_p, sum_p) of one (H, W) image (see :class:`EdgeMetric`);
    a module-level function so that worker processes can run it."""
    k = thresholds.size
    counts = {name: np.zeros(k, np.int64) for name in ("count_r", "sum_r", "count_p", "sum_p")}
    counts["sum_r"][:] = edges.sum()
    previous, previous_counts = None, (0, 0, 0)
    for i, t in enumerate(thresholds):
        binary = pred >= max(np.finfo(np.float64).eps, t)  # edgesEvalImg: E >= max(eps, thrs(k))
        if previous is not None and np.array_equal(binary, previous):
            matched_r, matched_p, total_p = previous_counts  # same map, same counts
        else:
            matched_r, matched_p, total_p = _edge_match(binary, edges, valid, max_dist, thin_predictions)
        counts["count_r"][i], counts["count_p"][i], counts["sum_p"][i] = matched_r, matched_p, total_p
        previous, previous_counts = binary, (matched_r, matched_p, total_p)
    return counts


def _edge_match(binary: np.ndarray, edges: np.ndarray, valid: np.ndarray, max_dist: float,
                thin_predictions: bool = True) -> tuple[int, int, int]:
    """(matched ground truth, matched prediction, predicted pixels) for one binary map."""
    if not binary.any():
        return 0, 0, 0
    predicted = (thin(binary) if thin_predictions else binary) & valid
    if not edges.any() or not predicted.any():
        return 0, 0, int(predicted.sum())  # nothing to match: every prediction is a false positive
    match_pred, match_gt, _, _ = _match_pixels(predicted, edges, max_dist)
    return int((match_gt > 0).sum()), int((match_pred > 0).sum()), int(predicted.sum())


@functools.lru_cache(maxsize=None)
def counting_code(functions=(_edge_image_counts, _edge_match)) -> str:
    """Digest of the per-image edge counting code and of the libraries it calls (matcher,
    thinning): a cached count is only reused by the code that made it."""
    import pyEdgeEval
    import skimage

    h = hashlib.sha256(f"{getattr(pyEdgeEval, '__version__', '?')}|{skimage.__version__}|".encode())
    for function in functions:
        try:
            h.update(inspect.getsource(function).encode())
        except (OSError, TypeError):  # no source (e.g. a frozen build): the byte code instead
            h.update(function.__code__.co_code)
    return h.hexdigest()


_EDGE_POOLS: dict[int, ProcessPoolExecutor] = {}


def _forget_matcher() -> None:
    global _MATCHER
    _MATCHER = None  # a forked child makes its own (the parent's lock may have been held at the fork)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_matcher)


def edge_pool_context() -> multiprocessing.context.BaseContext:
    """How the edge-matching workers start: ``fork`` on Linux, else ``spawn``.

    NOTE: not spawn (nor forkserver) where fork is safe: both start each worker by importing the
    user's ``__main__`` again, so a plain script (no ``if __name__ == "__main__":`` guard, as the
    README's Python API snippet) re-runs itself in every worker and the pool breaks
    (``BrokenProcessPool``). A forked worker runs only :func:`_edge_image_counts`: numpy,
    scikit-image's thinning and pyEdgeEval's C++ matcher (no OpenMP, no torch, no CUDA), so the
    parent's OpenMP or CUDA state and threads are never used in it (pyEdgeEval's own pools fork
    too). macOS and Windows spawn: there a script that evaluates edges with workers needs the
    ``__main__`` guard, or ``workers=0``.
    """
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _edge_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool shared by every EdgeMetric of this process with this many workers (started
    as :func:`edge_pool_context` says)."""
    if workers not in _EDGE_POOLS:
        _EDGE_POOLS[workers] = ProcessPoolExecutor(workers, mp_context=edge_pool_context())
    return _EDGE_POOLS[workers]


def _submit_edge_image(workers: int, *args) -> Future:
    """Queue one image's matching in the pool (which may fork a worker now)."""
    with warnings.catch_warnings():
        # Python >= 3.12 warns at every fork of a process with threads (torch's, a DataLoader's);
        # the forked worker never uses them (see edge_pool_context).
        warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks",
                                category=DeprecationWarning)
        return _edge_pool(workers).submit(_edge_image_counts, *args)



def match_image(thresholds: np.ndarray, max_dist: float, pred: np.ndarray, edges: np.ndarray, valid: np.ndarray,
                thin_predictions: bool = True, workers: int = 0) -> tuple[list[np.ndarray] | None, list]:
    """Match one (H, W) image at every threshold: ``(groups, parts)``.

    ``workers=0``: matched now, in this process; ``groups`` is None and ``parts`` one dict of
    per-threshold counts (count_r, sum_r, count_p, sum_p: (K,) int64). ``workers=N > 0``: the
    thresholds in N interleaved groups (low thresholds, dense maps, cost most, so a few images
    fill the pool too), each queued in the shared pool of N workers; ``groups`` holds each group's
    threshold indices and ``parts`` its :class:`~concurrent.futures.Future` (of such a dict over
    the group's thresholds).
    """
    if not workers:
        return None, [_edge_image_counts(thresholds, max_dist, pred, edges, valid, thin_predictions)]
    groups = [np.arange(j, thresholds.size, workers) for j in range(min(workers, thresholds.size))]
    return groups, [_submit_edge_image(workers, thresholds[g], max_dist, pred, edges, valid, thin_predictions)
                    for g in groups]
