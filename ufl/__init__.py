"""ufl: universal feature learning with Medusa.

One multi-scale backbone is trained multi-task (Medusa), frozen, and its features cached; new
dense-prediction tasks are added one at a time by training a small attention head each.
"""

from .errors import UflError
from .taskspec import TaskSpec, builtin_specs, get_spec, load_spec

__version__ = "0.1.0"

__all__ = ["UflError", "TaskSpec", "builtin_specs", "get_spec", "load_spec", "__version__"]
