"""ufl: universal feature learning with Medusa.

One multi-scale backbone is trained multi-task (Medusa), frozen, and its features cached; new
dense-prediction tasks are added one at a time by training a small attention head each.

The main entry points, importable from here (loaded on first use, so ``import ufl`` stays light)::

    from ufl import Workspace, HeadTrainingConfig     # init, cache-features, add-task, evaluate, predict
    from ufl import PretrainConfig, pretrain          # multi-task pretraining
    from ufl import make_synthetic                    # generated NYUD_MT/ + PASCAL_MT/
"""

from importlib import import_module

from .errors import UflError

__version__ = "0.1.0"

_LAZY = {
    **dict.fromkeys(("TaskSpec", "builtin_specs", "get_spec", "load_spec"), "ufl.taskspec"),  # yaml: not for --help
    "Workspace": "ufl.workspace",
    "HeadTrainingConfig": "ufl.workspace",
    "PretrainConfig": "ufl.training.pretrain",
    "pretrain": "ufl.training.pretrain",
    "make_synthetic": "ufl.synthetic",
}

__all__ = ["UflError", "TaskSpec", "builtin_specs", "get_spec", "load_spec", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ufl' has no attribute {name!r}")
