"""The strategies of ``ufl continual``, by name: ufl's frozen backbone and avalanche's fine-tuning ones.

Every strategy is an avalanche template built by a factory in :data:`STRATEGIES`; in every one the
heads of earlier tasks are frozen once their experience ends (:class:`~.plugins.FrozenLearnedHeads`),
so the strategies differ only in how they treat the shared backbone.
"""

from __future__ import annotations

from typing import Callable, Sequence

from avalanche.training import EWC, Naive
from avalanche.training.templates import SupervisedTemplate

from ..errors import UflError
from ..registry import Registry
from .plugins import CopyingSynapticIntelligence, DenseFeatureDistillation, FrozenLearnedHeads

__all__ = ["DEFAULT_STRATEGIES", "STRATEGIES", "parse_strategies"]

DEFAULT_STRATEGIES: tuple[str, ...] = ("frozen", "naive", "ewc", "lwf")

#: ``factory(model, optimizer, criterion, evaluator, config, common) -> avalanche strategy``;
#: ``common`` holds the keyword arguments every strategy takes (mini-batch sizes, epochs, device).
STRATEGIES: Registry[Callable[..., SupervisedTemplate]] = Registry("strategy")


@STRATEGIES.register("frozen")
def _frozen(model, optimizer, criterion, evaluator, config, common):
    model.backbone.freeze()
    return Naive(model=model, optimizer=optimizer, criterion=criterion, evaluator=evaluator,
                 plugins=[FrozenLearnedHeads(frozen_backbone=True)], **common)


@STRATEGIES.register("naive")
def _naive(model, optimizer, criterion, evaluator, config, common):
    return Naive(model=model, optimizer=optimizer, criterion=criterion, evaluator=evaluator,
                 plugins=[FrozenLearnedHeads()], **common)


@STRATEGIES.register("ewc")
def _ewc(model, optimizer, criterion, evaluator, config, common):
    return EWC(model=model, optimizer=optimizer, criterion=criterion, evaluator=evaluator,
               ewc_lambda=config.ewc_lambda, mode="separate", plugins=[FrozenLearnedHeads()], **common)


@STRATEGIES.register("lwf")
def _lwf(model, optimizer, criterion, evaluator, config, common):
    return Naive(model=model, optimizer=optimizer, criterion=criterion, evaluator=evaluator,
                 plugins=[FrozenLearnedHeads(), DenseFeatureDistillation(alpha=config.distill_alpha)], **common)


@STRATEGIES.register("si")
def _si(model, optimizer, criterion, evaluator, config, common):
    return Naive(model=model, optimizer=optimizer, criterion=criterion, evaluator=evaluator,
                 plugins=[FrozenLearnedHeads(), CopyingSynapticIntelligence(si_lambda=config.si_lambda)], **common)


def parse_strategies(names: Sequence[str]) -> list[str]:
    """Check strategy names (an unknown one lists the known ones; no duplicates, at least one)."""
    if not names:
        raise UflError(f"no strategy given; choose from: {', '.join(STRATEGIES.names())}")
    for name in names:
        STRATEGIES.get(name)
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if duplicates:
        raise UflError(f"strategy {duplicates[0]!r} is listed twice")
    return list(names)

