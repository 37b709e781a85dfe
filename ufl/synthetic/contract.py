"""What the generator promises, importable without numpy (the CLI reads it when it starts).

- :data:`SYNTHETIC_MARKER`: the file :func:`ufl.synthetic.make_synthetic` writes into each dataset
  folder it generates, and :func:`is_synthetic` to test for it (pretrain's provenance record and
  ``ufl list-tasks`` warn about backbones trained on generated data).
- :data:`MAX_NYUD_PERSONS`: the upper bound of the ``nyud_persons`` option (``--nyud-persons``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SYNTHETIC_MARKER", "is_synthetic", "MAX_NYUD_PERSONS"]

SYNTHETIC_MARKER = "UFL_SYNTHETIC.json"
"""File ``make_synthetic`` writes into each dataset folder it generates (JSON: generator, size, counts, seed;
``nyud_persons`` in NYUD_MT's when that option was given)."""


def is_synthetic(root: str | os.PathLike | None) -> bool:
    """Whether the dataset folder ``root`` was written by :func:`ufl.synthetic.make_synthetic` (holds its marker)."""
    return root is not None and (Path(root) / SYNTHETIC_MARKER).is_file()


#: Upper bound of ``nyud_persons`` (more would not fit in the generated rooms anyway); an int, so that
#: messages (click's range ``0<=x<=6``) print it as 6.
MAX_NYUD_PERSONS = 6
