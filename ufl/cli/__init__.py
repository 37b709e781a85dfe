"""Command-line interface: ``ufl <command>``; see ``ufl --help``."""

from .base import main

# Each module adds its commands to ``main``; keep this list sorted by the pipeline's order.
from . import data  # noqa: F401,E402  make-synthetic
from . import train  # noqa: F401,E402  pretrain
from . import profile  # noqa: F401,E402  profile

__all__ = ["main"]
