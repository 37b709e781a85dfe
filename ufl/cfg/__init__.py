"""The training protocol in one place: ``default.yaml`` and the presets that override it.

``ufl/cfg/default.yaml`` holds the reference schedule (DESIGN.md section 6: backbone, initial
weights, Adam, lr, weight decay, poly power, batch size, epochs, sizes, views, ``reproduce``'s
systems); each other ``ufl/cfg/NAME.yaml`` is the preset ``NAME`` of ``ufl reproduce --preset`` and
names only the keys in which it differs. Both are read into one frozen dataclass, :class:`Preset`;
the option defaults of the training commands (``ufl pretrain``, ``add-task``, ``continual``,
``reproduce``), :class:`ufl.training.pretrain.PretrainConfig`, :class:`ufl.workspace.HeadTrainingConfig`
and ``ufl.reproduce.PRESETS`` take their values from :data:`DEFAULTS` and :func:`load_preset`.

A user's ``--config FILE`` is a YAML mapping of the same keys (any subset), read and checked by
:func:`read_config`; the command line overrides the file, the file the defaults (or the preset).
Bad files (missing, not a mapping, an unknown key, a value of the wrong type or out of range)
raise :class:`ConfigError`, shown by the CLI as one line.

This module imports only the standard library, PyYAML and :mod:`ufl.errors` (``ufl --help`` reads
it without importing torch).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import UflError

__all__ = ["Preset", "DEFAULTS", "ConfigError", "KEYS", "load_preset", "preset_names", "read_config",
           "check_overrides"]


class ConfigError(UflError):
    """A preset or ``--config`` file is missing, malformed, or has an unknown key or a bad value."""


@dataclass(frozen=True)
class Preset:
    """One complete protocol: ``default.yaml``, overridden by a preset file and a ``--config`` file.

    Every field except ``name`` is a YAML key (see ``ufl/cfg/default.yaml`` for the values and
    what each means). Sizes are ``(H, W)`` in pixels; learning rate and weight decay are Adam's;
    the learning rate decays per epoch as ``lr * (1 - epoch / epochs) ** poly_power``.
    """

    #: The preset's file name without ``.yaml`` (``default`` for the reference schedule).
    name: str
    backbone: str
    pretrained: str
    optimizer: str
    lr: float
    weight_decay: float
    poly_power: float
    batch_size: int
    seed: int
    pretrain_epochs: int
    head_epochs: int
    #: Epochs of ``reproduce``'s oracle (PASCAL, backbone unfrozen); ``None``: ``head_epochs``. A
    #: trained backbone costs far more per epoch than a head on cached features, so a preset whose
    #: heads need many epochs gives the oracle its own.
    oracle_epochs: int | None
    continual_epochs: int
    val_every: int
    nyud_size: tuple[int, int]
    pascal_size: tuple[int, int]
    #: Cached views per PASCAL training image (original, flip, then random augmentations).
    views: int
    #: The systems ``reproduce`` runs when ``--models`` is not given.
    models: tuple[str, ...]
    #: The PASCAL tasks of the UFL rows (a Medusa head each on every frozen backbone).
    ufl_tasks: tuple[str, ...]
    #: Pretrain only the NYUD runs that UFL rows freeze (no MTL-only runs).
    ufl_only: bool
    #: The ``ufl make-synthetic`` options of the generated data the preset is sized for ("": any).
    synthetic: str

    def __post_init__(self):
        for key in KEYS:
            problem = _problem(key, getattr(self, key))
            if problem:
                raise ConfigError(f"preset {self.name!r}: {key} {problem}")

    def size(self, dataset: str) -> tuple[int, int] | None:
        """The working size of ``dataset`` (``nyud`` / ``pascal``; ``None`` for any other)."""
        return {"nyud": self.nyud_size, "pascal": self.pascal_size}.get(dataset)

    def override(self, changes: Mapping[str, Any], where: str = "overrides") -> "Preset":
        """A copy with ``changes`` (YAML keys, checked like a ``--config`` file's by
        :func:`check_overrides`; ``where`` names their source in errors)."""
        return dataclasses.replace(self, **check_overrides(changes, where))


#: The YAML keys (every field of :class:`Preset` but ``name``), in ``default.yaml``'s order.
KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Preset) if f.name != "name")
_HINTS = typing.get_type_hints(Preset)


def _problem(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` (of the right type) for ``key``, or ``None``."""
    if key in ("batch_size", "pretrain_epochs", "head_epochs", "continual_epochs", "val_every", "views") or \
            (key == "oracle_epochs" and value is not None):
        return None if value >= 1 else f"must be at least 1, got {value}"
    if key == "lr":
        return None if value > 0 else f"must be positive, got {value}"
    if key in ("weight_decay", "poly_power"):
        return None if value >= 0 else f"must not be negative, got {value}"
    if key == "optimizer":
        return None if value == "adam" else f"must be adam (the only one implemented), got {value!r}"
    if key in ("nyud_size", "pascal_size"):
        return None if min(value) >= 32 else f"must be two sides HxW of at least 32 pixels, got {list(value)}"
    if key == "backbone":
        return None if value else "must be a timm model name, got ''"
    return None


def _convert(key: str, value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` of field ``key``; :class:`ValueError` with the reason if it is not."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if args and type(None) in args:  # X | None
        if value is None:
            return None
        return _convert(key, value, next(a for a in args if a is not type(None)))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(key, v, args[0]) for v in value)
        if len(value) != len(args):
            raise ValueError(f"a list of {len(args)} values, got {list(value)!r}")
        return tuple(_convert(key, v, a) for v, a in zip(value, args))
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"an integer, got {value!r}")
        return value
    if hint is float:
        # NOTE: PyYAML reads 1e-4 (no dot) as a string; a string that is a number is taken as one.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or \
                value in (float("inf"), float("-inf")):
            raise ValueError(f"a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"a string, got {value!r}")
        return value
    raise TypeError(f"no conversion for {hint!r}")  # a field type this module does not handle


def check_overrides(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` (YAML keys of :class:`Preset`) checked and converted (lists to tuples, ints to
    floats where a float is meant); :class:`ConfigError` naming ``where`` for an unknown key, a
    value of the wrong type or out of range."""
    out = {}
    for key, value in values.items():
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}; {hint}the keys are those of ufl/cfg/default.yaml: "
                              f"{', '.join(KEYS)}")
        try:
            out[key] = _convert(key, value, _HINTS[key])
        except ValueError as e:
            raise ConfigError(f"{where}: {key} must be {e}") from None
        problem = _problem(key, out[key])
        if problem:
            raise ConfigError(f"{where}: {key} {problem}")
    return out


def _read_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({' '.join(str(e).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values (key: value per line), got "
                          f"{type(data).__name__}")
    return check_overrides(data, where)


@lru_cache(maxsize=None)
def _preset_file(name: str) -> dict[str, Any]:
    path = resources.files(__package__) / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(preset_names())}")
    return _read_yaml(path.read_text(encoding="utf-8"), f"ufl/cfg/{name}.yaml")


def preset_names() -> tuple[str, ...]:
    """The presets shipped in ``ufl/cfg/`` (every ``NAME.yaml`` but ``default.yaml``), sorted."""
    return tuple(sorted(p.name[:-5] for p in resources.files(__package__).iterdir()
                        if p.name.endswith(".yaml") and p.name != "default.yaml"))


def load_preset(name: str = "default") -> Preset:
    """``default.yaml`` overridden by ``NAME.yaml`` (``default``: the reference schedule itself)."""
    base = _preset_file("default")
    missing = [k for k in KEYS if k not in base]
    if missing:
        raise ConfigError(f"ufl/cfg/default.yaml: missing key(s) {', '.join(missing)}")
    values = {**base, **(_preset_file(name) if name != "default" else {})}
    return Preset(name=name, **values)


def read_config(path: str | Path) -> dict[str, Any]:
    """The keys of a user's ``--config`` YAML file, checked (:func:`check_overrides`)."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise ConfigError(f"config file {path} {what}; give a YAML file of keys from ufl/cfg/default.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is unreadable ({e}); give a YAML text file") from None
    return _read_yaml(text, f"config file {path}")


#: The reference schedule (``ufl/cfg/default.yaml``).
DEFAULTS: Preset = load_preset("default")
