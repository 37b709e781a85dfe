"""``ufl reproduce``'s facts and settings: the systems of the poster, its figures, the presets, the run's config.

The presets are ``ufl/cfg/NAME.yaml`` (each overriding ``ufl/cfg/default.yaml``, read into
:class:`ufl.cfg.Preset`); :data:`PRESETS` holds them by name. :class:`ReproduceConfig` picks one and
applies a ``--config`` file's keys (``overrides``) and the command line's epochs on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..cfg import DEFAULTS, Preset, check_overrides, load_preset, preset_names
from ..errors import UflError

__all__ = ["Preset", "PRESETS", "System", "SYSTEMS", "DEFAULT_MODELS", "MODEL_INFO", "POSTER", "POSTER_MODELS",
           "CONTROLS", "ABLATIONS", "MAIN_TASKS", "AUX_TASKS", "ReproduceConfig", "mtl_key"]

#: The poster's six systems, in its order, the two controls every preset but ``transfer`` runs by
#: default, and Medusa's ablations (``transfer``'s systems).
POSTER_MODELS = ("st", "mt-baseline", "mtan", "pad-net", "mti-net", "medusa")
CONTROLS = ("random", "oracle")
ABLATIONS = ("medusa-no-sfa", "medusa-no-msa", "medusa-no-ip")

#: Every preset of ``ufl/cfg/`` (``paper``, ``quick``, ``transfer``): see the comments in its YAML file.
PRESETS: dict[str, Preset] = {name: load_preset(name) for name in preset_names()}


@dataclass(frozen=True)
class System:
    """One system of the poster's tables and how ``reproduce`` runs it.

    ``key`` is the ``--models`` name (the registered model name, except ``st``: one single-task
    model per main task); ``mtl`` the N+E settings of its MTL rows (``None``: the single-task pair,
    no N+E column); ``ufl_source`` the NYUD run whose frozen backbone its UFL row uses (``None``: no
    UFL row).
    """

    key: str
    name: str
    head: str
    model: str
    mtl: tuple[bool | None, ...]
    ufl_source: str | None
    #: ``"random"`` / ``"oracle"`` for the controls (no NYUD run; see :mod:`ufl.reproduce`).
    control: str | None = None

    def runs(self) -> list[tuple[str, str, list[str], list[str]]]:
        """The NYUD pretraining runs: ``(run key, step name, tasks, aux)`` each."""
        if self.mtl == (None,):
            return [(f"{self.key}-{t}", f"{self.key}-{t}", [t], []) for t in MAIN_TASKS]
        return [(f"{self.key}+ne" if ne else self.key, f"{self.key}-ne" if ne else self.key, list(MAIN_TASKS),
                 list(AUX_TASKS) if ne else []) for ne in self.mtl]


#: NYUD's main tasks (the MTL table's columns) and the "+N,E" auxiliary tasks.
MAIN_TASKS = ("semseg", "depth")
AUX_TASKS = ("normals", "edges")

#: Every system of the poster's two tables, in the poster's order. Heads as built here: PAD-Net
#: follows MTI-Net's code (Bottleneck heads on HRNet's fused features, the poster says HRHead).
#: NOTE: the poster's MTL table has no "MT baseline +N,E" row, so the MT baseline is pretrained on
#: semseg + depth only and that backbone is its UFL row's; every other multi-task UFL row freezes
#: the model's +N,E backbone, the single-task row the semseg model's.
SYSTEMS: dict[str, System] = {s.key: s for s in (
    System("st", "ST baseline", "HRNet head", "single-task", (None,), "st-semseg"),
    System("mt-baseline", "MT baseline", "HRNet head", "mt-baseline", (False,), "mt-baseline"),
    System("mtan", "MTAN", "DeepLab-v3+", "mtan", (False, True), "mtan+ne"),
    System("pad-net", "PAD-Net", "Bottleneck (ref. code)", "pad-net", (False, True), None),
    System("mti-net", "MTI-Net", "HRNet head", "mti-net", (False, True), "mti-net+ne"),
    System("medusa", "Medusa", "MSA", "medusa", (False, True), "medusa+ne"),
    System("medusa-no-sfa", "Medusa w/o SFA", "MSA", "medusa-no-sfa", (True,), "medusa-no-sfa+ne"),
    System("medusa-no-msa", "Medusa w/o MSA", "HRNet head", "medusa-no-msa", (True,), "medusa-no-msa+ne"),
    System("medusa-no-ip", "Medusa w/o IP", "MSA", "medusa-no-ip", (True,), "medusa-no-ip+ne"),
    System("random", "Random init (floor)", "-", "medusa", (), None, control="random"),
    System("oracle", "PASCAL oracle (ceiling)", "-", "medusa", (), None, control="oracle"),
)}
DEFAULT_MODELS = DEFAULTS.models

#: Display name and head description per model key (kept for callers of earlier versions).
MODEL_INFO: dict[str, tuple[str, str]] = {k: (s.name, s.head) for k, s in SYSTEMS.items()}

#: The poster's figures (HRNet-18; DESIGN.md section 6), every row of both tables. MTL rows are
#: keyed by NYUD run (``model`` without, ``model+ne`` with normals and edges; ``st`` the single-task
#: pair): seg mIoU %, depth RMSE m, Delta_m %. UFL rows by model: parts mIoU %, saliency maxF %,
#: Delta_m on PASCAL %.
POSTER: dict[str, dict[str, dict[str, float]]] = {
    "mtl": {
        "st": {"seg": 34.57, "depth": 0.606, "delta_m": 0.00},
        "mt-baseline": {"seg": 33.21, "depth": 0.614, "delta_m": -2.63},
        "mtan": {"seg": 35.25, "depth": 0.581, "delta_m": 3.02},
        "mtan+ne": {"seg": 36.19, "depth": 0.567, "delta_m": 5.57},
        "pad-net": {"seg": 34.39, "depth": 0.617, "delta_m": -1.23},
        "pad-net+ne": {"seg": 35.46, "depth": 0.604, "delta_m": 1.43},
        "mti-net": {"seg": 36.94, "depth": 0.559, "delta_m": 7.26},
        "mti-net+ne": {"seg": 37.40, "depth": 0.540, "delta_m": 9.48},
        "medusa": {"seg": 36.99, "depth": 0.573, "delta_m": 6.19},
        "medusa+ne": {"seg": 37.48, "depth": 0.545, "delta_m": 9.24},
    },
    "ufl": {
        "st": {"parts": 48.73, "sal": 56.44, "delta_m_pascal": 0.00},
        "mt-baseline": {"parts": 36.13, "sal": 51.96, "delta_m_pascal": -12.93},
        "mtan": {"parts": 47.37, "sal": 57.84, "delta_m_pascal": 4.26},
        "mti-net": {"parts": 51.50, "sal": 60.19, "delta_m_pascal": 10.76},
        "medusa": {"parts": 52.24, "sal": 61.91, "delta_m_pascal": 13.18},
    },
}



def mtl_key(model: str, ne: bool | None) -> str:
    """The NYUD run key of an MTL row (``st`` for the single-task pair)."""
    return model if ne is None or not ne else f"{model}+ne"



@dataclass
class ReproduceConfig:
    """One ``ufl reproduce`` run. The schedule is the preset's (``ufl/cfg/PRESET.yaml``), overridden by
    ``overrides`` (YAML keys of :class:`ufl.cfg.Preset`: a ``--config`` file's), then by the epochs
    given here (:attr:`schedule`)."""

    data_root: str = "data"
    out: str = "reproduce"
    #: Systems to run (``SYSTEMS`` keys); ``None``: the schedule's (``models``).
    models: Sequence[str] | None = None
    preset: str = "quick"
    seeds: Sequence[int] = (0,)
    #: timm backbone of every model; ``None``: the schedule's (``backbone``).
    backbone: str | None = None
    device: str = "auto"
    pretrain_epochs: int | None = None
    head_epochs: int | None = None
    #: Override of the preset's oracle epochs (:attr:`Preset.oracle_epochs`).
    oracle_epochs: int | None = None
    progress: bool = True
    #: timm backbones frozen as they come (no NYUD training) for extra UFL rows (ufl.foundation).
    backbones: Sequence[str] = ()
    #: YAML keys of :class:`ufl.cfg.Preset` applied on top of the preset (a ``--config`` file's).
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise UflError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        self.overrides = check_overrides(self.overrides, "reproduce overrides")
        base = PRESETS[self.preset].override(self.overrides, "reproduce overrides")
        self.backbone = base.backbone if self.backbone is None else self.backbone
        self.models = tuple(base.models if self.models is None else self.models)
        unknown = [m for m in self.models if m not in SYSTEMS]
        if unknown:
            raise UflError(f"unknown model(s) {unknown}; choose from {', '.join(SYSTEMS)}")
        if len(set(self.models)) != len(self.models):
            raise UflError(f"a model is named twice in {list(self.models)}")
        if not self.seeds:
            raise UflError("give at least one seed")
        import timm

        unknown = [b for b in self.backbones if not timm.is_model(b)]
        if unknown:
            raise UflError(f"unknown backbone(s) {unknown} in --backbones; use timm model names, e.g. "
                           f"vit_small_patch14_dinov2")

    @property
    def schedule(self) -> Preset:
        """The preset with ``overrides``, this run's backbone and the epochs given here."""
        changes = {k: v for k, v in (("pretrain_epochs", self.pretrain_epochs), ("head_epochs", self.head_epochs),
                                     ("oracle_epochs", self.oracle_epochs)) if v is not None}
        return PRESETS[self.preset].override({**self.overrides, "backbone": self.backbone, **changes}, "reproduce overrides")
