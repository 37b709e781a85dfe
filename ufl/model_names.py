"""The names of the registered models, without importing torch (the CLI's ``--model`` choices).

``ufl.cli`` must import neither torch nor timm (``ufl --help`` and ``ufl list-tasks`` stay fast), and
``ufl.models.MODELS`` lives beside the models, which need torch. This tuple is what the CLI offers;
``ufl.models`` checks at import that ``MODELS`` registers exactly these names, so the
two cannot drift apart.
"""

from __future__ import annotations

__all__ = ["MODEL_NAMES"]

#: Every model of ``ufl.models.MODELS``: Medusa, its three ablations (issue 12), the baselines.
MODEL_NAMES: tuple[str, ...] = ("medusa", "medusa-no-sfa", "medusa-no-msa", "medusa-no-ip", "mt-baseline",
                                "single-task", "mtan", "pad-net", "mti-net")
