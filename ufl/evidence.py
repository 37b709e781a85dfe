"""Claims decided by paired statistics over seeds, and their figure.

``ufl reproduce`` runs every model with the same seeds, and a seed fixes everything a model does
not choose itself: the random init of the backbone (``seed_everything(seed)`` before it is built,
so the pretrained models start from exactly the random control's weights), the data order (the
loaders' generators are seeded by the seed alone), the cached PASCAL views and the heads' init.
Two models' results for one seed are therefore a *pair*, and a claim "A beats B" is judged on the
per-seed differences d_i = A_i - B_i, not on two means:

    mean d,  95 % interval  mean d +- t(0.975, n - 1) * sd(d) / sqrt(n)   (Student t, sd with ddof 1)

and decided by the interval against the claim's threshold (0 for "beats", -1 for "within one
point", ...): **held** when the whole interval lies above it, **not held** when it lies below,
**undecided** when it contains the threshold, or with fewer than two seeds (no interval).
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["paired_interval", "verdict", "Claim", "decide", "claims_markdown", "claims_figure"]


def paired_interval(differences: Sequence[float], confidence: float = 0.95) -> tuple[float, tuple[float, float] | None]:
    """Mean of the per-seed paired differences and its two-sided Student-t interval.

    Returns ``(mean, (lo, hi))``; the interval is ``None`` with fewer than two differences. Equal
    differences give a zero-width interval.
    """
    from scipy import stats

    d = np.asarray([float(x) for x in differences], dtype=np.float64)
    if d.size == 0:
        raise ValueError("paired_interval: no differences")
    mean = float(d.mean())
    if d.size < 2:
        return mean, None
    half = float(stats.t.ppf(0.5 + confidence / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return mean, (mean - half, mean + half)


def verdict(interval: tuple[float, float] | None, threshold: float = 0.0) -> str:
    """``held`` (interval above ``threshold``), ``not held`` (below) or ``undecided``."""
    if interval is None:
        return "undecided"
    lo, hi = interval
    if lo > threshold:
        return "held"
    if hi < threshold:
        return "not held"
    return "undecided"


@dataclass(frozen=True)
class Claim:
    """One claim: ``difference(seed)`` is the per-seed paired difference oriented so that larger
    supports the claim (``None`` where a seed lacks a result), decided against ``threshold``."""

    claim: str
    difference: Callable[[int], float | None]
    threshold: float = 0.0
    unit: str = ""


def decide(claim: Claim, seeds: Sequence[int]) -> dict[str, Any]:
    """``{"claim", "verdict", "mean", "ci95", "seeds", "differences", "threshold", "unit", "held"}``;
    ``held`` is ``verdict == "held"`` (the key earlier versions had)."""
    used, values = [], []
    for seed in seeds:
        value = claim.difference(seed)
        if value is not None:
            used.append(int(seed))
            values.append(float(value))
    if not values:
        return {"claim": claim.claim, "verdict": "undecided", "mean": None, "ci95": None, "seeds": [],
                "differences": [], "threshold": claim.threshold, "unit": claim.unit, "held": False}
    mean, interval = paired_interval(values)
    result = verdict(interval, claim.threshold)
    return {"claim": claim.claim, "verdict": result, "mean": mean, "ci95": list(interval) if interval else None,
            "seeds": used, "differences": values, "threshold": claim.threshold, "unit": claim.unit,
            "held": result == "held"}


def claims_markdown(claims: Sequence[Mapping[str, Any]]) -> str:
    """One line per claim: verdict, mean paired difference and its 95 % interval."""
    lines = []
    for c in claims:
        if c["mean"] is None:
            lines.append(f"- **{c['verdict']}**: {c['claim']} (no seed has both results)")
            continue
        unit = f" {c['unit']}" if c["unit"] else ""
        if not c["seeds"]:  # a fact of the models (e.g. parameter counts): no seed, no interval
            lines.append(f"- **{c['verdict']}**: {c['claim']} — {c['mean']:+.2f}{unit}, threshold {c['threshold']:+g}")
            continue
        interval = ("no interval with one seed" if c["ci95"] is None else
                    f"95 % CI [{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}]")
        lines.append(f"- **{c['verdict']}**: {c['claim']} — paired difference {c['mean']:+.2f}{unit}, {interval}, "
                     f"threshold {c['threshold']:+g}, seeds {', '.join(map(str, c['seeds']))}")
    return "\n".join(lines)


def claims_figure(claims: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """The per-seed paired differences of every claim with a seed (dots), their mean and 95 %
    interval (bar), and the threshold (dashed): one row per claim, each on its own scale. Returns
    the PNG's path, or None when no claim has a difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    shown = [c for c in claims if c["differences"] and c["seeds"]]
    if not shown:
        return None
    colours = {"held": "tab:green", "not held": "tab:red", "undecided": "tab:gray"}
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 1.25 * len(shown) + 0.8), squeeze=False)
    for ax, c in zip(axes[:, 0], shown):
        ax.axvline(c["threshold"], color="black", linestyle="--", linewidth=0.8)
        ax.scatter(c["differences"], np.zeros(len(c["differences"])), s=14, color="black", zorder=3)
        if c["ci95"] is not None:
            lo, hi = c["ci95"]
            ax.errorbar([c["mean"]], [0.0], xerr=[[c["mean"] - lo], [hi - c["mean"]]], fmt="o",
                        color=colours[c["verdict"]], capsize=4, zorder=2)
        ax.set_yticks([])
        ax.set_title(textwrap.fill(f"{c['verdict']}: {c['claim']}", 130), fontsize=7, loc="left")
        ax.set_xlabel(c["unit"], fontsize=7, labelpad=1)
        ax.tick_params(axis="x", labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
