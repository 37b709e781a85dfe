"""The package's import graph runs only downwards (README "Development": the layers of ``ufl/``).

Every import of a ``ufl`` module, at the top of a file or inside a function, is read from the source
with :mod:`ast`; a module may import its own layer or a lower one, never a higher one, and never a
``_private`` name of another module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ufl

ROOT = Path(ufl.__file__).parent

LAYERS = [
    # leaf utilities
    {"errors", "io", "tensors", "labels", "vectors", "images", "colours", "registry", "runtime", "cfg",
     "checkpoint", "evalcache", "distributed", "model_names", "tables", "evidence"},
    # task vocabulary
    {"kinds", "metrics", "taskspec", "outputs", "losses"},
    # data and models
    {"datasets", "synthetic", "provenance", "models", "trivial"},
    # pipelines
    {"training", "evaluation", "workspace", "continual", "viz", "reproduce", "probe", "serve", "export",
     "foundation", "profile", "demo"},
    # interface
    {"cli", "__main__"},
]
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}


def _imports(path: Path, module: str):
    """(line, imported module, imported names) of every ``ufl`` import in ``path``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "ufl" or target.startswith("ufl."):
                yield node.lineno, target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ufl."):
                    yield node.lineno, alias.name, []


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield path, ".".join(parts)


def test_every_top_level_module_has_a_layer():
    tops = {_top(module) for _, module in _modules()} - {""}
    assert tops <= set(LAYER), f"give these a layer in LAYERS: {sorted(tops - set(LAYER))}"


def test_imports_run_only_downwards_and_take_no_private_names():
    upward, private = [], []
    for path, module in _modules():
        here = _top(module)
        for line, target, names in _imports(path, module):
            there = _top(target)
            if here and there and LAYER[there] > LAYER[here]:
                upward.append(f"{module}:{line} imports {target} (layer {LAYER[there]} > {LAYER[here]})")
            if target != module:
                private += [f"{module}:{line} imports {target}.{n}" for n in names
                            if n.startswith("_") and not n.startswith("__")]
    assert not upward, "\n".join(upward)
    assert not private, "\n".join(private)
