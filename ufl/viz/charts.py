"""Charts of results: bars per task (:func:`bar_chart`), bars per task and model with error bars
(:func:`grouped_bars`, ``ufl reproduce``) and small multiples with one axis per unit
(:func:`unit_figure`, ``ufl evaluate --plot``), each value written on its bar."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..kinds import get_kind
from ..colours import TAB10
from .files import FIGURE_DPI, png_path, save_figure

__all__ = ["bar_chart", "grouped_bars", "metric_unit", "unit_figure", "unit_chart"]


def _format_value(value: float, like: float | None = None) -> str:
    """3-4 significant figures, as the results tables print them (37.48, 0.545, 123.4); with
    ``like``, as many decimals as ``like`` gets (a std printed as its mean: 52.24±0.30)."""
    if not math.isfinite(value):
        return "n/a"
    scale = abs(value if like is None else like)
    decimals = 1 if scale >= 100 else 2 if scale >= 1 else 3
    return f"{value:.{decimals}f}"


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _direction(higher_is_better: Mapping[str, bool] | None, task: str) -> str:
    """`` (↑)`` / `` (↓)`` after a task name when its direction is known (DejaVu Sans has both)."""
    if not higher_is_better or task not in higher_is_better:
        return ""
    return " (\u2191)" if higher_is_better[task] else " (\u2193)"


def _mean_std(value: Any, where: str) -> tuple[float, float | None]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{where}: expected a value or (mean, std), got {value!r}")
        return _number(value[0], where), _number(value[1], where)
    return _number(value, where), None


def _draw_bars(ax, bars: Mapping[int, tuple[float, float | None]], colours: list) -> None:
    """Bars at x = key with height mean, black error bars where a std is given, and the value (and
    ±std) written above each bar (below a negative one)."""
    x = list(bars)
    means = [m for m, _ in bars.values()]
    ax.bar(x, np.nan_to_num(means), color=colours)
    with_std = [(xi, m, s) for xi, (m, s) in bars.items() if s is not None and math.isfinite(m)]
    if with_std:  # only where a std is given: no zero-height caps on the others
        xs, ms, ss = zip(*with_std)
        ax.errorbar(xs, ms, yerr=ss, fmt="none", ecolor="black", capsize=3, linewidth=1)
    for xi, (m, s) in bars.items():
        finite = math.isfinite(m)
        label = _format_value(m) + (f"\u00b1{_format_value(s, like=m)}" if s is not None and finite else "")
        end = (m + (s or 0.0) * (1 if m >= 0 else -1)) if finite else 0.0  # the error bar's end
        ax.annotate(label, (xi, end), xytext=(0, 2 if end >= 0 else -2), textcoords="offset points",
                    ha="center", va="bottom" if end >= 0 else "top", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.margins(y=0.18)


def bar_chart(values: Mapping[str, float], path: str | os.PathLike, *, ylabel: str = "headline metric",
              title: str | None = None, higher_is_better: Mapping[str, bool] | None = None,
              dpi: int = FIGURE_DPI) -> Path:
    """One bar per task (e.g. the headline metric of ``ufl evaluate``), its value written on it.

    Args:
        values: ``{task: value}``; NaN is drawn as an empty bar labelled ``n/a``.
        path: the ``.png`` file to write (atomically).
        ylabel, title: axis label and figure title.
        higher_is_better: ``{task: bool}``: an arrow after each task name shows the direction
            (the tasks' metrics differ in unit and direction, e.g. mIoU % up, rmse m down).

    Returns:
        ``path``.
    """
    path = png_path(path)
    if not values:
        raise ValueError("bar_chart needs at least one task value")
    tasks = [str(t) for t in values]
    heights = [_number(v, f"bar_chart value of {t!r}") for t, v in values.items()]
    fig = Figure(figsize=(max(4.0, 1.2 * len(tasks) + 1.5), 3.6), layout="constrained")
    ax = fig.add_subplot()
    colours = [np.asarray(TAB10[i % len(TAB10)]) / 255 for i in range(len(tasks))]
    _draw_bars(ax, {i: (h, None) for i, h in enumerate(heights)}, colours)
    ax.set_xticks(range(len(tasks)), [t + _direction(higher_is_better, t) for t in tasks], fontsize=9)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return save_figure(fig, path, dpi)


def grouped_bars(table: Mapping[str, Mapping[str, Any]], path: str | os.PathLike, *, title: str | None = None,
                 ylabels: Mapping[str, str] | None = None, higher_is_better: Mapping[str, bool] | None = None,
                 dpi: int = FIGURE_DPI) -> Path:
    """Bars per task and model (e.g. ``ufl reproduce``: Medusa vs MTI-Net vs single-task), one
    subplot per task since the tasks' metrics have different units.

    Args:
        table: ``{task: {model: value or (mean, std)}}``; a std draws an error bar. A model absent
            from a task leaves its slot empty; each model keeps one colour across subplots.
        path: the ``.png`` file to write (atomically).
        title: the figure's title.
        ylabels: ``{task: axis label}`` (e.g. ``"mIoU (%)"``).
        higher_is_better: ``{task: bool}``: an arrow after each subplot's task name.

    Returns:
        ``path``.
    """
    path = png_path(path)
    if not table or not any(table.values()):
        raise ValueError("grouped_bars needs at least one task with one model value")
    models: list[str] = []
    for task, row in table.items():
        if not isinstance(row, Mapping):
            raise ValueError(f"grouped_bars: table[{task!r}] must be a dict {{model: value}}, got {row!r}")
        models.extend(str(m) for m in row if str(m) not in models)
    colour = {m: np.asarray(TAB10[i % len(TAB10)]) / 255 for i, m in enumerate(models)}

    fig = Figure(figsize=(max(4.0, len(table) * (0.7 * len(models) + 1.2)), 3.8), layout="constrained")
    axes = fig.subplots(1, len(table), squeeze=False)[0]
    for ax, (task, row) in zip(axes, table.items()):
        bars = {models.index(str(m)): _mean_std(v, f"grouped_bars {task}/{m}") for m, v in row.items()}
        _draw_bars(ax, bars, [colour[models[i]] for i in bars])
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{task}{_direction(higher_is_better, str(task))}", fontsize=10)
        if ylabels and task in ylabels:
            ax.set_ylabel(ylabels[task], fontsize=9)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi)


def metric_unit(kind: str, metric: str) -> str:
    """The axis a metric of a task kind is drawn on (:meth:`ufl.kinds.Kind.metric_unit`):
    ``"score (%)"`` (mIoU, odsF, maxF, normals' within-x° shares), ``"metres"`` (depth rmse),
    ``"log metres"`` (depth log_rmse) or ``"degrees"`` (normals' angles)."""
    return get_kind(kind).metric_unit(metric)


def unit_figure(table: Mapping[str, Mapping[str, Mapping[str, Any]]], *, title: str | None = None,
                higher_is_better: Mapping[str, bool] | None = None) -> Figure:
    """Small multiples: one axis per unit, bars per task and series (e.g. ufl against the trivial
    predictor), so mIoU, metres and degrees never share an axis.

    Args:
        table: ``{unit: {task: {series: value}}}`` (see :func:`metric_unit` for the units); NaN or
            a missing series leaves its slot empty. Each series keeps one colour across axes, and
            a legend names them.
        title: the figure's title.
        higher_is_better: ``{task: bool}``: an arrow after each task's name.
    """
    if not table or not any(table.values()):
        raise ValueError("unit_figure needs at least one unit with one task")
    series: list[str] = []
    for unit, tasks in table.items():
        for task, values in tasks.items():
            if not isinstance(values, Mapping):
                raise ValueError(f"unit_figure: table[{unit!r}][{task!r}] must be a dict {{series: value}}")
            series.extend(str(s) for s in values if str(s) not in series)
    colour = {s: np.asarray(TAB10[i % len(TAB10)]) / 255 for i, s in enumerate(series)}
    width = 0.8 / max(len(series), 1)
    fig = Figure(figsize=(max(4.0, sum(1.0 + 0.9 * len(t) for t in table.values()) + 0.5), 3.8),
                 layout="constrained")
    axes = fig.subplots(1, len(table), squeeze=False)[0]
    for ax, (unit, tasks) in zip(axes, table.items()):
        for j, name in enumerate(series):
            bars = {}
            for i, values in enumerate(tasks.values()):
                if name in values and values[name] is not None:
                    bars[i + (j - (len(series) - 1) / 2) * width] = (_number(values[name], f"{unit}/{name}"), None)
            if bars:
                xs = list(bars)
                means = [m for m, _ in bars.values()]
                ax.bar(xs, np.nan_to_num(means), width=width, color=[colour[name]] * len(xs), label=name)
                for x, m in zip(xs, means):
                    ax.annotate(_format_value(m), (x, m if math.isfinite(m) else 0.0), xytext=(0, 2),
                                textcoords="offset points", ha="center", va="bottom", fontsize=7)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.margins(y=0.18)
        ax.set_xlim(-0.6, len(tasks) - 0.4)
        ax.set_xticks(range(len(tasks)), [t + _direction(higher_is_better, t) for t in tasks], fontsize=8,
                      rotation=20 if len(tasks) > 2 else 0)
        ax.set_ylabel(unit, fontsize=9)
        ax.set_title(unit, fontsize=10)
    fig.legend(handles=[Patch(color=colour[s], label=s) for s in series],
               loc="outside lower center", ncols=len(series), fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def unit_chart(table: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | os.PathLike, *,
               title: str | None = None, higher_is_better: Mapping[str, bool] | None = None,
               dpi: int = FIGURE_DPI) -> Path:
    """Write :func:`unit_figure` to ``path`` (a ``.png``, atomically); returns ``path``."""
    path = png_path(path)
    return save_figure(unit_figure(table, title=title, higher_is_better=higher_is_better), path, dpi)
