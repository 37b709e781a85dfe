"""Running ``ufl continual``: every strategy over the same stream, from the same backbone and seed."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from avalanche.core import SupervisedPlugin
from avalanche.logging import InteractiveLogger, TextLogger
from avalanche.training.plugins import EvaluationPlugin

from ..checkpoint import load_checkpoint
from ..errors import UflError
from ..models import Backbone
from ..runtime import cudnn_exact, loader_kwargs, resolve_device, seed_everything
from .config import ContinualConfig
from .metrics import HeadlineExperienceForgetting, HeadlineScorePluginMetric, HeadlineStreamForgetting, per_experience
from .model import ContinualMedusa
from .plugins import TaskCriterion
from .strategies import STRATEGIES, parse_strategies
from .stream import ContinualTask, build_benchmark, parse_tasks

__all__ = ["starting_backbone", "run_continual", "format_results"]

log = logging.getLogger(__name__)


class _StderrInteractiveLogger(InteractiveLogger):
    """avalanche's InteractiveLogger (progress bars, metrics) on stderr, so stdout keeps the results."""

    def __init__(self):
        super().__init__()
        self.file = sys.stderr

    @property
    def _progress(self):
        if self._pbar is None:
            from tqdm import tqdm

            self._pbar = tqdm(leave=False, position=0, file=sys.stderr, dynamic_ncols=True,
                              disable=None)  # None: drawn only on a terminal, not into a redirected log
        return self._pbar


def _loggers(config: ContinualConfig, strategy: str, stack: contextlib.ExitStack) -> list:
    loggers: list = []
    if config.progress:
        loggers.append(_StderrInteractiveLogger())
    if config.log_dir is not None:
        log_dir = Path(config.log_dir)
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            log_file = stack.enter_context(open(log_dir / f"{strategy}.log", "w"))
        except OSError as e:
            raise UflError(f"cannot write the log in {log_dir} ({e.strerror or e}); "
                           f"choose another --log-dir") from None
        loggers.append(TextLogger(log_file))
        if config.tensorboard:
            from avalanche.logging import TensorboardLogger

            tensorboard = TensorboardLogger(log_dir / "tensorboard" / strategy)
            stack.callback(tensorboard.writer.close)
            loggers.append(tensorboard)
    return loggers


def starting_backbone(config: ContinualConfig) -> Backbone:
    """The backbone every strategy starts from: a ``ufl pretrain`` checkpoint's (its ``backbone.*``
    weights and its backbone config) when ``config.checkpoint`` is set, else ``config.backbone``."""
    if config.checkpoint is None:
        return Backbone(config.backbone, pretrained=config.pretrained)
    checkpoint = load_checkpoint(config.checkpoint)
    if "backbone" not in checkpoint.meta:
        raise UflError(f"checkpoint {checkpoint.path} records no backbone config; use a `ufl pretrain` run folder")
    backbone = Backbone.from_config(checkpoint.meta["backbone"])
    prefix = "backbone."
    state = {k[len(prefix):]: v for k, v in checkpoint.model_state.items() if k.startswith(prefix)}
    if not state:
        raise UflError(f"checkpoint {checkpoint.path} holds no backbone weights (no 'backbone.*' keys); "
                       f"use a `ufl pretrain` run folder")
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UflError(f"checkpoint {checkpoint.path}: its backbone weights do not match its backbone config "
                       f"({str(e).splitlines()[0]})") from None
    return backbone


def _run_strategy(name: str, start: Backbone, tasks: Sequence[ContinualTask], config: ContinualConfig,
                  device: torch.device, workers: int, plugins: Sequence[SupervisedPlugin] = ()) -> dict[str, Any]:
    """Train strategy ``name`` over the stream; return its final metrics, forgetting and matrix."""
    seed_everything(config.seed)
    benchmark = build_benchmark(tasks, config.data_root, config.size, config.augment, config.seed)
    model = ContinualMedusa(copy.deepcopy(start), {t.label: t.out_channels for t in tasks}, seed=config.seed,
                            head_options=config.head_options)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    criterion = TaskCriterion(tasks)
    common = dict(train_mb_size=config.batch_size, eval_mb_size=config.batch_size, train_epochs=config.epochs,
                  device=device, eval_every=-1)
    matrix: list[list[float | None]] = []
    with contextlib.ExitStack() as stack:
        loggers = _loggers(config, name, stack)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "No loggers specified")  # quiet, and no --log-dir: on purpose
            evaluator = EvaluationPlugin(HeadlineScorePluginMetric(tasks), HeadlineExperienceForgetting(tasks),
                                         HeadlineStreamForgetting(tasks), loggers=loggers)
        strategy = STRATEGIES.get(name)(model, optimizer, criterion, evaluator, config, common)
        strategy.plugins.extend(plugins)
        log.info("strategy %s: %d experience(s), %d epoch(s) each, device %s", name, len(tasks), config.epochs,
                 device)
        for i, experience in enumerate(benchmark.train_stream):
            # The same global RNG state (shuffling) at each experience, whatever earlier ones consumed.
            seed_everything(config.seed + i)
            strategy.train(experience, num_workers=workers)
            results = strategy.eval(benchmark.test_stream[: i + 1], num_workers=workers)
            scores = per_experience(results, "Headline")
            matrix.append([scores.get(j) if j <= i else None for j in range(len(tasks))])
    forgotten = per_experience(results, "HeadlineForgetting")
    final = {t.key: matrix[-1][t.label] for t in tasks}
    # The last task was learnt by the last experience: nothing can have been forgotten yet.
    forgetting = {t.key: forgotten.get(t.label, math.nan) if t.label < len(tasks) - 1 else 0.0 for t in tasks}
    model.to("cpu")
    return {"final": final, "forgetting": forgetting, "matrix": matrix, "model": model}


def run_continual(config: ContinualConfig, keep_models: bool = False,
                  plugins: Sequence[SupervisedPlugin] = ()) -> dict[str, Any]:
    """Run every strategy of ``config`` over the task stream; return the comparison.

    Returns ``{"strategies": {NAME: {"final": {task: headline metric at the end}, "forgetting": {task:
    drop of its headline metric from just after it was learnt to the end, positive = worse},
    "matrix": [[headline of task j after experience i, None before task j is learnt]]}}, "tasks":
    [task keys in stream order], "metric": {task: headline metric name}}``. Values that the metric
    cannot compute (no valid pixel) are NaN. With ``keep_models`` each strategy's entry also holds
    its trained :class:`ContinualMedusa` under ``"model"`` (on the CPU). ``plugins``: extra avalanche
    plugins that join every strategy after its own (the same instances, one strategy after the
    other), e.g. to record the weights after each experience.
    """
    strategies = parse_strategies(config.strategies)
    tasks = parse_tasks(config.tasks)
    # Check the data of every task before any training (missing folders and files fail here).
    build_benchmark(tasks, config.data_root, config.size, augment=False, seed=config.seed)
    device = resolve_device(config.device)
    seed_everything(config.seed)  # a randomly initialised backbone is the same for a seed
    start = starting_backbone(config)
    if config.size is not None and any(s % start.size_divisor for s in config.size):
        raise UflError(f"--size {config.size[0]}x{config.size[1]}: backbone {start.name} needs sides divisible by "
                       f"{start.size_divisor}")
    workers = config.workers if config.workers is not None else loader_kwargs(device)["num_workers"]
    out: dict[str, Any] = {"strategies": {}, "tasks": [t.key for t in tasks],
                           "metric": {t.key: t.metric for t in tasks}}
    with cudnn_exact():
        for name in strategies:
            result = _run_strategy(name, start, tasks, config, device, workers, plugins)
            if not keep_models:
                del result["model"]
            out["strategies"][name] = result
    return out


def format_results(results: Mapping[str, Any]) -> str:
    """A readable table per strategy: each task's metric at the end and its forgetting."""
    width = max(len(t) for t in results["tasks"]) + 2
    lines = []
    for name, result in results["strategies"].items():
        lines.append(f"strategy {name}")
        lines.append(f"  {'task':<{width}}{'metric':<10}{'final':>10}{'forgetting':>12}")
        for task in results["tasks"]:
            lines.append(f"  {task:<{width}}{results['metric'][task]:<10}{_number(result['final'][task]):>10}"
                         f"{_number(result['forgetting'][task]):>12}")
        lines.append("")
    lines.append("forgetting: drop of a task's metric from just after it was learnt to the end (positive = worse)")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"