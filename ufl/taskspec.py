"""Task specs: what a dense-prediction task is, declared in YAML.

A task spec names the task's *kind* (which fixes the target format, the loss family, the metric
and how logits become predictions), its output channels and loss weight per dataset, and the
headline metric with its direction (used for Delta_m). The built-in catalogue lives in the
top-level ``tasks`` package; a user's task is a YAML file of the same form::

    name: road                      # lower-case letters, digits and _
    kind: segmentation              # segmentation | depth | normals | edges | saliency
    description: Road segmentation  # optional
    channels: 3                     # an int (any dataset) or {dataset: int}
    loss:
      name: cross_entropy           # optional; the kind's default otherwise
      weight: 1.0                   # an float or {dataset: float}; default 1.0
    metric:
      name: mIoU                    # optional; the kind's headline metric otherwise
    target:                         # optional, folder datasets: where the targets are
      folder: road                  # default: the task name
      format: png                   # png | npy; default png

A kind is an object of :mod:`ufl.kinds` (segmentation, depth, normals, edges, saliency, or one
registered with :func:`ufl.kinds.register_kind`); its module docstring tables the built-in kinds'
target conventions, default losses and headline metrics. A spec's metric direction defaults to
the one :data:`ufl.metrics.METRIC_DIRECTIONS` gives for its metric.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import SpecError
from .kinds import KINDS, Kind, get_kind
from .labels import IGNORE_INDEX

__all__ = ["TaskSpec", "KINDS", "IGNORE_INDEX", "load_spec", "builtin_specs", "get_spec", "resolve_spec",
           "TASK_NAME", "check_task_name"]

ANY_DATASET = "*"

TASK_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
"""A task name: a lower-case letter, then up to 63 lower-case letters, digits or '_' (it names
files, HDF5 datasets and manifest keys; ``\\Z``, not ``$``, so a trailing newline is refused)."""


def check_task_name(name: Any, what: str = "task name") -> str:
    """``name`` when it is a valid :data:`TASK_NAME`, else a :class:`SpecError` naming ``what``."""
    if not isinstance(name, str) or not TASK_NAME.match(name):
        raise SpecError(f"{what} {name!r} is invalid: use 1 to 64 lower-case letters, digits and '_', "
                        f"starting with a letter (e.g. road_2)")
    return name


_TOP_KEYS = {"name", "kind", "description", "channels", "loss", "metric", "target"}
_LOSS_KEYS = {"name", "weight", "pos_weight"}
_METRIC_KEYS = {"name", "higher_is_better"}
_TARGET_KEYS = {"folder", "format"}


@dataclass(frozen=True)
class TaskSpec:
    """One task, as declared in its YAML spec (see the module docstring for the form)."""

    name: str
    kind: str
    channels: Mapping[str, int]
    loss: str
    loss_weight: Mapping[str, float]
    metric: str
    higher_is_better: bool
    description: str = ""
    pos_weight: float | str | None = None
    target_folder: str | None = None
    target_format: str = "png"
    source: str = field(default="", compare=False)

    # -- per-dataset values -------------------------------------------------------------------
    @property
    def info(self) -> Kind:
        """The task's kind object (:mod:`ufl.kinds`)."""
        return get_kind(self.kind)

    @property
    def modality(self) -> str:
        """The name of the kind's target modality (what a dataset's ``.modalities`` gives)."""
        return self.info.modality.name

    def datasets(self) -> list[str]:
        """Datasets this task is defined on (``["*"]`` for any)."""
        return sorted(self.channels)

    def supports(self, dataset: str) -> bool:
        """Whether the task is defined on ``dataset``: listed there, for any dataset, or of a kind
        whose output is fixed (depth, normals, edges and saliency fit any data that has targets)."""
        return dataset in self.channels or ANY_DATASET in self.channels or self.info.fixed_channels is not None

    def out_channels(self, dataset: str) -> int:
        """Number of output channels of the task's head on ``dataset``."""
        if self.info.fixed_channels is not None:
            return self.info.fixed_channels
        return int(self._lookup(self.channels, dataset, "channels"))

    def weight(self, dataset: str) -> float:
        """Loss weight of the task on ``dataset`` (DESIGN.md section 6).

        A fixed-output task on a dataset it does not list (e.g. built-in edges on a folder
        dataset) takes the weight it has everywhere else, when that weight is the same everywhere.
        """
        weights = set(self.loss_weight.values())
        if (dataset not in self.loss_weight and ANY_DATASET not in self.loss_weight
                and self.info.fixed_channels is not None and len(weights) == 1):
            return float(weights.pop())
        return float(self._lookup(self.loss_weight, dataset, "loss weight"))

    def _lookup(self, table: Mapping[str, Any], dataset: str, what: str):
        if dataset in table:
            return table[dataset]
        if ANY_DATASET in table:
            return table[ANY_DATASET]
        raise SpecError(
            f"task {self.name!r} has no {what} for dataset {dataset!r} (it is defined for: "
            f"{', '.join(sorted(table))}); pick one of those datasets or give a --spec that covers it"
        )

    # -- conversions --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The spec as a plain dict in the YAML form (round-trips through :meth:`from_dict`)."""
        loss: dict[str, Any] = {"name": self.loss, "weight": dict(self.loss_weight)}
        if self.pos_weight is not None:
            loss["pos_weight"] = self.pos_weight
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "channels": dict(self.channels),
            "loss": loss,
            "metric": {"name": self.metric, "higher_is_better": self.higher_is_better},
        }
        if self.target_folder is not None or self.target_format != "png":
            out["target"] = {"folder": self.target_folder or self.name, "format": self.target_format}
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "TaskSpec":
        """Validate a spec dict; every problem is a :class:`SpecError` naming ``source``."""

        def fail(msg: str) -> SpecError:
            return SpecError(f"task spec {source}: {msg}")

        if not isinstance(data, Mapping):
            raise fail("must be a mapping of keys (name, kind, channels, ...)")
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise fail(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
        for key in ("name", "kind", "channels"):
            if key not in data:
                raise fail(f"missing required key {key!r}")

        name = data["name"]
        if not isinstance(name, str) or not TASK_NAME.match(name):
            raise fail(f"name {name!r} must be 1 to 64 lower-case letters, digits and '_' (starting with a letter)")
        kind = data["kind"]
        if not isinstance(kind, str) or kind not in KINDS:
            raise fail(f"kind {kind!r} is not one of {sorted(KINDS)} (ufl.kinds.register_kind adds one)")
        info = KINDS[kind]

        channels = _per_dataset(data["channels"], "channels", fail)
        for ds, c in channels.items():
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                raise fail(f"channels for {ds!r} must be a positive integer, got {c!r}")
            problem = info.check_channels(c)
            if problem:
                raise fail(f"{problem} for {ds!r}")

        loss = _section(data, "loss", _LOSS_KEYS, "name, weight", fail)
        loss_name = loss.get("name", info.default_loss)
        if loss_name not in info.losses:
            raise fail(f"loss {loss_name!r} does not fit a {kind} task; use one of {list(info.losses)}")
        weight = _per_dataset(loss.get("weight", 1.0), "loss weight", fail)
        for ds, w in weight.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w < math.inf:
                raise fail(f"loss weight for {ds!r} must be a positive number (finite), got {w!r}")
        missing = set(channels) - set(weight) - {ANY_DATASET}
        if missing and ANY_DATASET not in weight:
            raise fail(f"loss weight missing for dataset(s) {sorted(missing)}")
        pos_weight = loss.get("pos_weight")
        if pos_weight is not None:
            if loss_name != "balanced_bce":
                raise fail("'pos_weight' applies to the balanced_bce loss only")
            if pos_weight != "batch" and (isinstance(pos_weight, bool) or not isinstance(pos_weight, (int, float))
                                          or not 0 < pos_weight < 1):
                raise fail(f"pos_weight must be in (0, 1) or 'batch', got {pos_weight!r}")
        elif loss_name == "balanced_bce":
            pos_weight = "batch"

        metric = _section(data, "metric", _METRIC_KEYS, "name, higher_is_better", fail)
        metric_name = metric.get("name", info.headline)
        if metric_name not in info.metric_keys:
            raise fail(f"metric {metric_name!r} is not reported for a {kind} task; use one of {list(info.metric_keys)}")
        higher = metric["higher_is_better"] if "higher_is_better" in metric else info.direction(metric_name)
        if not isinstance(higher, bool):
            raise fail(f"metric.higher_is_better must be true or false, got {higher!r}")

        target = _section(data, "target", _TARGET_KEYS, "folder, format", fail)
        fmt = target.get("format", "png")
        if fmt not in ("png", "npy"):
            raise fail(f"target.format must be 'png' or 'npy', got {fmt!r}")
        folder = target.get("folder")
        if folder is not None and (not isinstance(folder, str) or not folder or "/" in folder or folder.startswith(".")):
            raise fail(f"target.folder must be a plain folder name, got {folder!r}")

        description = data.get("description", "")
        if not isinstance(description, str):
            raise fail("description must be a string")

        return cls(
            name=name, kind=kind, channels=channels, loss=loss_name, loss_weight=weight,
            metric=metric_name, higher_is_better=higher, description=description,
            pos_weight=pos_weight, target_folder=folder, target_format=fmt, source=source,
        )


def _section(data: Mapping, key: str, allowed: set[str], shown: str, fail) -> Mapping:
    """The optional mapping ``data[key]`` (``{}`` when absent), refusing keys outside ``allowed``."""
    section = data.get(key) or {}
    if not isinstance(section, Mapping):
        raise fail(f"'{key}' must be a mapping ({shown})")
    unknown = set(section) - allowed
    if unknown:
        raise fail(f"unknown {key} key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return section


def _per_dataset(value: Any, what: str, fail) -> dict[str, Any]:
    """``3`` -> ``{"*": 3}``; ``{nyud: 40}`` -> ``{"nyud": 40}``."""
    if isinstance(value, Mapping):
        if not value:
            raise fail(f"{what} must not be empty")
        for key in value:
            if not isinstance(key, str):
                raise fail(f"{what} keys must be dataset names, got {key!r}")
        return dict(value)
    return {ANY_DATASET: value}


def load_spec(path: str | Path) -> TaskSpec:
    """Read and validate a task spec YAML file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"task spec file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"task spec {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    return TaskSpec.from_dict(data, source=str(path))


_BUILTIN: dict[str, TaskSpec] | None = None


def builtin_specs() -> dict[str, TaskSpec]:
    """The catalogue of built-in tasks, by name."""
    global _BUILTIN
    if _BUILTIN is None:
        from tasks import spec_files

        specs = {}
        for name, path in sorted(spec_files().items()):
            spec = load_spec(path)
            if spec.name != name:
                raise SpecError(f"task spec {path}: name {spec.name!r} differs from the file name")
            specs[name] = spec
        _BUILTIN = specs
    return dict(_BUILTIN)


def get_spec(name: str) -> TaskSpec:
    """A built-in task by name; an unknown name lists the known ones."""
    specs = builtin_specs()
    if name not in specs:
        raise SpecError(f"unknown task {name!r}; known tasks: {', '.join(sorted(specs))} "
                        f"(or describe your own with --spec FILE.yaml)")
    return specs[name]


def resolve_spec(name: str | None = None, spec_file: str | Path | None = None) -> TaskSpec:
    """The spec for a CLI request: a user's ``--spec`` file, else the built-in task ``name``."""
    if spec_file is not None:
        spec = load_spec(spec_file)
        if name is not None and spec.name != name:
            raise SpecError(f"task spec {spec_file} names task {spec.name!r}, not {name!r}")
        return spec
    if name is None:
        raise SpecError("give a task name or --spec FILE.yaml")
    return get_spec(name)
