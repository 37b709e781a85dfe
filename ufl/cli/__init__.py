"""Command-line interface: ``ufl <command>``; see ``ufl --help``."""

from .base import main

# Each module adds its commands to ``main``; keep this list sorted by the pipeline's order.
from . import data  # noqa: F401,E402  make-synthetic
from . import train  # noqa: F401,E402  pretrain
from . import profile  # noqa: F401,E402  profile
from . import workspace  # noqa: F401,E402  init, cache-features, add-task, evaluate, list-tasks, remove-task
from . import continual  # noqa: F401,E402  continual

__all__ = ["main"]
