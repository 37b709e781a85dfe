"""Command-line interface: ``ufl <command>``; see ``ufl --help``."""

from .base import main

# Each module adds its commands to ``main``; keep this list sorted by the pipeline's order.
from . import demo  # noqa: F401,E402  demo
from . import data  # noqa: F401,E402  make-synthetic
from . import train  # noqa: F401,E402  pretrain
from . import workspace  # noqa: F401,E402  init, cache-features, add-task, evaluate, list-tasks, remove-task, ...
from . import continual  # noqa: F401,E402  continual
from . import reproduce  # noqa: F401,E402  reproduce
from . import profile  # noqa: F401,E402  profile
from . import beyond  # noqa: F401,E402  probe, export, serve
from . import doctor  # noqa: F401,E402  doctor, register-rescued

__all__ = ["main"]
