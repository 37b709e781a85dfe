"""The built-in task catalogue: one declarative YAML spec per task, shipped as package data.

``ufl.taskspec`` reads these files; a user's own task is a YAML file of the same form
(``ufl add-task NAME --spec my_task.yaml``).
"""

from importlib import resources
from pathlib import Path

__all__ = ["spec_files"]


def spec_files() -> dict[str, Path]:
    """Map each built-in task name to its YAML file."""
    folder = resources.files(__name__)
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}
