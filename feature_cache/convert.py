"""What a caller passes to :meth:`FeatureCacheWriter.write`, checked and converted to the arrays stored.

Everything is validated here, before the file is touched: shapes against the cache's layout,
target values against their stored dtype (:func:`cast_checked`), features for NaN and inf
(:func:`all_finite`); float32 features for a float16 cache are divided, per row and scale, by the
power of two that float16 needs (see :mod:`feature_cache.format`): one max and one min per row
(:func:`feature_cache.format.row_extremes`) give both that power and the check for NaN and inf.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from . import format as fmt
from .errors import FeatureCacheError, LayoutMismatchError
from .format import CacheLayout, TargetSpec

__all__ = ["ArrayLike", "as_numpy", "stored_features", "stored_targets", "stored_view_params", "cast_checked",
           "all_finite"]

ArrayLike = Any  # np.ndarray | torch.Tensor | nested sequences


def as_numpy(x: ArrayLike) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array (no copy when already numpy on CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16:  # numpy has no bfloat16
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def stored_features(features: Sequence[ArrayLike], layout: CacheLayout, batch: int, path: Any
                    ) -> tuple[list[np.ndarray], np.ndarray]:
    """B rows of features (one (B, C_s, H_s, W_s) array or tensor per scale) as the arrays to
    store per scale and the (B, S) float32 powers of two they were divided by (see
    :meth:`FeatureCacheWriter.write`); ``path`` names the cache in errors."""
    if len(features) != len(layout.scales):
        raise LayoutMismatchError(
            f"{len(features)} feature scales given, cache {path} has {len(layout.scales)}")
    stored_dtype = np.dtype(layout.dtype)
    out, scales = [], np.ones((batch, len(layout.scales)), np.float32)
    for s, (x, shape) in enumerate(zip(features, layout.scales)):
        arr = as_numpy(x)  # bfloat16 as float32
        if arr.shape != (batch, *shape):
            raise LayoutMismatchError(
                f"features of scale {s} have shape {arr.shape}, cache {path} expects {(batch, *shape)}")
        if arr.dtype.kind != "f":
            raise LayoutMismatchError(f"features of scale {s} have dtype {arr.dtype}, not a float type")
        if arr.dtype == stored_dtype:
            if not all_finite(arr):
                raise FeatureCacheError(
                    f"features of scale {s} hold NaN or inf values; check the backbone"
                    + (" (already float16: pass float32 features, which the cache scales to "
                       "fit float16)" if stored_dtype == np.float16 else ""))
            out.append(np.ascontiguousarray(arr))
            continue
        if stored_dtype == np.float16:
            arr32 = arr.astype(np.float32, copy=False)
            high, low = fmt.row_extremes(arr32)  # one max and one min per row give both checks below
            if not (np.isfinite(high).all() and np.isfinite(low).all()):
                raise FeatureCacheError(f"features of scale {s} hold NaN or inf values; check the backbone")
            row_scale = fmt.scales_for_peaks(np.maximum(high, -low))
            if (row_scale != 1).any():
                arr32 = arr32 / row_scale.reshape(-1, *([1] * len(shape)))
                scales[:, s] = row_scale
            # torch's float32 -> float16 cast is vectorised (numpy's is ~50x slower here)
            out.append(torch.from_numpy(np.ascontiguousarray(arr32)).to(torch.float16).numpy())
        else:
            with np.errstate(over="ignore"):
                stored = np.ascontiguousarray(arr.astype(stored_dtype))
            if not all_finite(stored):
                raise FeatureCacheError(
                    f"features of scale {s} hold NaN or inf values or overflow {stored_dtype}; "
                    "check the backbone")
            out.append(stored)
    return out, scales


def stored_targets(targets: Mapping[str, ArrayLike], layout: CacheLayout, batch: int, path: Any
                   ) -> dict[str, np.ndarray | list[np.ndarray]]:
    """Every task's targets in its stored dtype: a (B, *shape) array, or a list of B (*shape)
    rows where the caller gave a list (or tuple) of rows; values that do not fit are refused."""
    missing = set(layout.targets) - set(targets)
    unknown = set(targets) - set(layout.targets)
    if missing or unknown:
        raise LayoutMismatchError(
            f"targets for cache {path} must be exactly {sorted(layout.targets)}; "
            f"missing {sorted(missing)}, unknown {sorted(unknown)}")
    return {task: _stored_target(task, spec, targets[task], batch, path) for task, spec in layout.targets.items()}


def _stored_target(task: str, spec: TargetSpec, value: ArrayLike, batch: int, path: Any
                   ) -> np.ndarray | list[np.ndarray]:
    """One task's B rows, given as one batch or as a list of rows (kept apart), checked and cast."""
    rows = isinstance(value, (list, tuple))
    if rows and len(value) != batch:
        raise LayoutMismatchError(f"targets of {task!r} have {len(value)} rows, cache {path} expects {batch}")
    arrays = [as_numpy(v) for v in value] if rows else [as_numpy(value)]
    expected = tuple(spec.shape) if rows else (batch, *spec.shape)
    bad = next((a.shape for a in arrays if a.shape != expected), None)
    if bad is not None:
        which = f"a row of the targets of {task!r} has" if rows else f"targets of {task!r} have"
        raise LayoutMismatchError(f"{which} shape {bad}, cache {path} expects {expected}")
    stored = [cast_checked(a, np.dtype(spec.dtype), f"targets of {task!r}") for a in arrays]
    return stored if rows else stored[0]


def stored_view_params(view_params: ArrayLike | None, layout: CacheLayout, batch: int, path: Any) -> np.ndarray:
    """(B, K) float32 view parameters ((B, 0) for a cache without any)."""
    k = len(layout.view_param_names)
    if view_params is None:
        if k:
            raise FeatureCacheError(
                f"cache {path} stores view parameters {list(layout.view_param_names)}; pass view_params")
        return np.zeros((batch, 0), np.float32)
    arr = as_numpy(view_params).astype(np.float32)
    if arr.shape != (batch, k):
        raise LayoutMismatchError(f"view_params have shape {arr.shape}, cache {path} expects {(batch, k)}")
    return arr


def cast_checked(arr: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """Cast to the stored dtype, refusing values that would not survive the cast."""
    with np.errstate(over="ignore", invalid="ignore"):  # detected below, with a clearer message
        out = arr.astype(dtype, copy=False)
    if out is arr:
        return out
    if dtype.kind in "biu":
        if not np.array_equal(out.astype(arr.dtype), arr):
            raise LayoutMismatchError(
                f"{what} do not fit the stored dtype {dtype} (values {arr.min()}..{arr.max()}); "
                "store a wider dtype")
    elif not np.array_equal(np.isfinite(out), np.isfinite(arr)):
        raise LayoutMismatchError(f"{what} overflow the stored dtype {dtype}; store float32")
    return out


def all_finite(arr: np.ndarray) -> bool:
    """Whether ``arr`` holds no NaN/inf, without a float pass for float16 (numpy's float16 math is
    slow): a float16 is finite iff its exponent bits are not all ones."""
    if arr.dtype == np.float16:
        bits = arr.view(np.uint16)
        return bits.size == 0 or int((bits & 0x7C00).max()) != 0x7C00
    if arr.size == 0:
        return True
    with np.errstate(invalid="ignore"):
        return bool(np.isfinite(arr.max()) and np.isfinite(arr.min()))
