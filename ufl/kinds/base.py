"""The two base classes of a task kind: :class:`Modality` (how its targets move under the
geometric transforms) and :class:`Kind` (everything else the pipeline needs to know about it).

A kind is one object; every layer asks it instead of branching on its name:

=========================  =====================================================================
who                        asks the kind for
=========================  =====================================================================
``ufl.taskspec``           allowed and default loss, metric keys, headline metric, channel rules
``ufl.datasets``           :attr:`Kind.modality` (the transforms), :meth:`Kind.decode_file`
                           (a folder dataset's target files)
``ufl.workspace.cache``    :meth:`Kind.target_layout` (the stored shape and dtype)
``ufl.losses``             :meth:`Kind.activate` (the output activation before the loss)
``ufl.evaluation``         :meth:`Kind.postprocess`, :meth:`Kind.build_metric`,
                           :meth:`Kind.metric_options`
``ufl.workspace.predict``  :meth:`Kind.resize_prediction`
``ufl.trivial``            :meth:`Kind.prior_statistics`, :meth:`Kind.prior_value`,
                           :meth:`Kind.prior_logits`
``ufl.training.priors``    :meth:`Kind.output_prior`, :meth:`Kind.inverse`
``ufl.probe``              :meth:`Kind.probe_targets`, :meth:`Kind.probe_columns`
``ufl.viz``                :meth:`Kind.colorize`, :meth:`Kind.colour_range`,
                           :meth:`Kind.colour_key`, :meth:`Kind.metric_unit`
=========================  =====================================================================

The defaults here are those of a dense regression map without invalid values and without an
output activation; a subclass overrides what differs. "Higher is better" is never stated here:
it is read from :data:`ufl.metrics.METRIC_DIRECTIONS`, the one table of metric directions.

NOTE: the package imports neither torch nor NumPy (nor the metrics) at import time: a task spec is
read through it by light commands (``ufl list-tasks``, ``--help``), which must stay fast. The
methods import what they use when first called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..errors import DataError, SpecError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..metrics import Metric
    from ..colours import ClassColours

__all__ = ["Modality", "Kind", "single_channel_map", "standardise"]


class Modality:
    """How a target of ``(C, H, W)`` (or ``(H, W)``) moves with the image (``ufl.datasets.transforms``).

    Every target is resampled by nearest neighbour (no invalid value is blended into valid ones);
    out-of-view pixels get :attr:`fill`. The hooks below fix the values after each geometric step.

    Attributes:
        name: the name a dataset's ``.modalities`` gives (``label``, ``binary``, ``depth``, ``normals``).
        fill: value of out-of-view pixels after a zoom out or a rotation.
        exact_integers: the values are integers in 0..255 that nearest-neighbour warps keep exactly,
            so a cache storing them as uint8 may cast them right after decoding.
    """

    name: str = ""
    fill: float = 0.0
    exact_integers: bool = False

    def flipped(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` after a horizontal mirror of the image (the pixels are already mirrored)."""
        return x

    def warped(self, x: torch.Tensor, scale: float, angle: float) -> torch.Tensor:
        """``x`` after a zoom by ``scale`` and a counter-clockwise rotation by ``angle`` degrees
        about the image centre (the pixels are already moved)."""
        return x

    def resized(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` after a nearest-neighbour resize (the pixels are already resampled)."""
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Kind:
    """A task kind: the target convention and what turns a head's raw output into predictions.

    Class attributes (a subclass sets them):
        name: the ``kind:`` of a task spec.
        modality: the :class:`Modality` of its targets.
        losses: the loss names (:data:`ufl.losses.LOSSES`) a spec may choose; the first is the default.
        metric_keys: the keys its metric reports; ``headline`` (one of them) is the default
            ``metric:`` of a spec and the number Delta_m compares.
        metric: the :class:`ufl.metrics.Metric` class of the kind (the built-in kinds import it on
            first use, as a property).
        fixed_channels: the head's output channels when the kind fixes them (depth 1, normals 3),
            else ``None`` (the spec gives them per dataset).
        activation: the output activation a head of this kind is trained with now
            (:mod:`ufl.outputs`); ``"identity"`` for none.
        activations: every activation name :meth:`activate` knows (a head's record names one:
            heads trained before a kind gained its activation keep ``"identity"``).
    """

    name: str = ""
    modality: Modality = Modality()
    losses: tuple[str, ...] = ()
    metric_keys: tuple[str, ...] = ()
    headline: str = ""
    metric: type[Metric] | None = None
    fixed_channels: int | None = None
    activation: str = "identity"
    activations: tuple[str, ...] = ("identity",)
    #: The metric matches each image on its own and can spread that over processes (edges): only
    #: then does :func:`ufl.evaluation.make_metric` work out how many it may use.
    matches_per_image: bool = False

    # -- spec rules ---------------------------------------------------------------------------
    @property
    def default_loss(self) -> str:
        """The loss a spec without ``loss.name`` gets."""
        return self.losses[0]

    @property
    def higher_is_better(self) -> bool:
        """The direction of the headline metric (from :data:`ufl.metrics.METRIC_DIRECTIONS`)."""
        return self.direction(self.headline)

    def direction(self, metric: str) -> bool:
        """Whether a larger ``metric`` (one of :attr:`metric_keys`) is better."""
        from ..metrics import METRIC_DIRECTIONS

        if metric not in METRIC_DIRECTIONS:
            raise SpecError(f"metric {metric!r} of task kind {self.name!r} has no direction; add it to "
                            f"ufl.metrics.METRIC_DIRECTIONS (True when higher is better)")
        return bool(METRIC_DIRECTIONS[metric])

    def check_channels(self, channels: int) -> str | None:
        """Why ``channels`` (>= 1) output channels do not fit this kind (a sentence), or ``None``;
        here: a kind with :attr:`fixed_channels` takes exactly those."""
        if self.fixed_channels is not None and channels != self.fixed_channels:
            return f"a {self.name} task has {self.fixed_channels} output channel(s), got {channels}"
        return None

    def check(self, directions: bool = True) -> None:
        """Raise a :class:`SpecError` when the class attributes contradict each other, or (with
        ``directions``) when a metric key has no direction (at registration)."""
        if not self.name or not self.losses or self.headline not in self.metric_keys:
            raise SpecError(f"task kind {self.name!r}: needs a name, at least one loss and a headline among "
                            f"its metric keys {list(self.metric_keys)}")
        if not self.modality.name:
            raise SpecError(f"task kind {self.name!r}: its modality has no name")
        if directions:
            for key in self.metric_keys:
                self.direction(key)

    # -- data ---------------------------------------------------------------------------------
    def target_layout(self, channels: int, size: Sequence[int]) -> tuple[tuple[int, ...], str, str]:
        """How a feature cache stores a target at ``size`` = ``(H, W)``: ``(shape, stored dtype,
        decoded dtype)``; here ``(C, H, W)`` float32."""
        return (channels, *size), "float32", "float32"

    def decode_file(self, path: Path, fmt: str, channels: int, what: str) -> torch.Tensor:
        """A folder dataset's target file (``fmt``: ``png`` or ``npy``) -> the kind's target tensor.

        Here: ``npy`` only, a float array ``(C, H, W)`` or ``(H, W, C)`` with ``C = channels``
        -> float32 ``(C, H, W)``.
        """
        import numpy as np
        import torch

        from ..images import read_npy

        if fmt != "npy":
            raise DataError(f"{what} {path}: a {self.name} target is read from .npy only (target.format: npy)")
        arr = np.asarray(read_npy(path, what))
        if arr.ndim == 3 and arr.shape[-1] == channels and arr.shape[0] != channels:
            arr = np.moveaxis(arr, -1, 0)
        if arr.ndim == 2 and channels == 1:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[0] != channels or not np.issubdtype(arr.dtype, np.number):
            raise DataError(f"{what} {path} has shape {tuple(arr.shape)} ({arr.dtype}); a numeric ({channels}, H, W) "
                            f"or (H, W, {channels}) array is expected")
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise DataError(f"{what} {path} holds NaN or infinite values")
        return torch.from_numpy(np.ascontiguousarray(arr))

    def valid(self, target: torch.Tensor) -> torch.Tensor:
        """Which pixels of a target batch ``(B, C, H, W)`` are annotated: ``(B, 1, H, W)`` bool."""
        import torch

        return torch.ones_like(target[:, :1], dtype=torch.bool)

    # -- outputs ------------------------------------------------------------------------------
    def activate(self, x: torch.Tensor, activation: str | None = None) -> torch.Tensor:
        """The kind's quantity from a raw output ``x`` (any shape) through ``activation`` (a name of
        :attr:`activations`; ``None``: :attr:`activation`). Here: ``x`` unchanged."""
        return x

    def inverse(self, value: float) -> float:
        """The raw output whose :meth:`activate` is ``value`` (to start a bias at a prior)."""
        return float(value)

    def postprocess(self, logits: torch.Tensor, activation: str | None = None) -> torch.Tensor:
        """A head's raw output ``(B, C, H, W)`` -> what the kind's metric takes (float32)."""
        return self.activate(logits.float(), activation)

    def resize_prediction(self, pred: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """One post-processed prediction ``(C, h, w)`` at ``size`` = ``(H, W)``: bilinear,
        ``align_corners=False``."""
        from ..tensors import resize

        return resize(pred[None].float(), size)[0]

    # -- metric -------------------------------------------------------------------------------
    def metric_options(self, dataset: str) -> dict[str, Any]:
        """Keyword arguments of the metric that the benchmark of ``dataset`` fixes (none here)."""
        return {}

    def build_metric(self, channels: int, options: Mapping[str, Any] | None = None, *, workers: int = 0,
                     cache: Any = None, thresholds: int | None = None) -> Metric:
        """The kind's metric accumulator for a head of ``channels`` outputs, with ``options``.

        ``workers``, ``cache`` and ``thresholds`` serve metrics that match each image on its own
        (:attr:`matches_per_image`; edges: processes, a folder of per-image counts, the number of
        thresholds); others ignore them.
        """
        if self.metric is None:
            raise SpecError(f"task kind {self.name!r} names no metric class (its 'metric' attribute)")
        return self.metric.build(channels, **dict(options or {}))

    # -- priors -------------------------------------------------------------------------------
    def prior_statistics(self, target: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum, count) of the valid values of a target batch (the trivial predictor's fit);
        here the per-channel sum over valid pixels and their count."""
        valid = self.valid(target)
        return (target * valid).double().sum(dim=(0, 2, 3)), valid.sum()

    def prior_value(self, total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """The constant prediction from the pooled :meth:`prior_statistics`: here the mean."""
        return total / count.clamp(min=1)

    def prior_logits(self, value: torch.Tensor, batch: int, channels: int, size: Sequence[int]) -> torch.Tensor:
        """The raw output ``(B, C, H, W)`` whose :meth:`postprocess` is the constant ``value``."""
        import torch

        raw = torch.tensor([self.inverse(float(v)) for v in value.reshape(-1)], device=value.device)
        return raw.view(1, -1, 1, 1).expand(batch, channels, *size).float()

    def output_prior(self, target: torch.Tensor) -> float | None:
        """Where a prediction bias starts (the kind's quantity, e.g. the mean depth of a batch),
        or ``None``: the head starts at zero (here)."""
        return None

    # -- probe --------------------------------------------------------------------------------
    def probe_targets(self, target: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """One decoded target ``(C, H, W)`` -> (valid ``(H, W)`` bool, values ``(H, W, K)`` float64)
        for LogME (:mod:`ufl.probe`); here every pixel, the C components."""
        import numpy as np

        target = np.asarray(target, dtype=np.float64)
        return np.ones(target.shape[-2:], dtype=bool), np.moveaxis(target, 0, -1)

    def probe_columns(self, values: np.ndarray) -> np.ndarray:
        """The sampled targets ``(n, K)`` as LogME scores them: here standardised per column."""
        return standardise(values)

    # -- pictures (colours from the leaf ufl.colours, imported on use so that reading a spec loads no matplotlib) ----
    def colorize(self, array: Any, *, valid: Any = None, classes: Callable[[], ClassColours] | None = None,
                 value_range: tuple[float, float] | None = None) -> np.ndarray:
        """One map of this kind (a target, or a :meth:`postprocess`-ed prediction, batch index
        removed; array or tensor) -> ``(H, W, 3)`` uint8 RGB, with the colours of
        :mod:`ufl.colours`. ``valid``: optional ``(H, W)`` bool mask, pixels outside it drawn as
        invalid; ``classes``: returns the palette of a label map's classes; ``value_range``: the
        values at the two ends of a continuous colour map (None: the map's own range). Here: no
        colours (a ValueError); a kind that is drawn overrides it."""
        raise ValueError(f"task kind {self.name!r} has no colours: give its class a colorize method "
                         f"(ufl.kinds.Kind.colorize) to draw its maps")

    def colour_range(self, gt: Any, pred: Any) -> tuple[float, float] | None:
        """The ``value_range`` that colours a ground truth (may be None) and its prediction on one
        scale in a figure, so that their colours compare; here None (a fixed scale)."""
        return None

    def colour_key(self, gt: Any, pred: Any, *, classes: Callable[[], ClassColours] | None = None,
                   value_range: tuple[float, float] | None = None) -> list[dict[str, Any]]:
        """The key of the colours of ``gt`` (may be None) and ``pred``, drawn with ``classes`` and
        ``value_range``: ``[{"type": "legend" | "colorbar" | "image", ...}]`` as the key cell of a
        prediction figure draws them (:mod:`ufl.colours`); here none."""
        return []

    def metric_unit(self, metric: str) -> str:
        """The axis a metric of this kind (one of :attr:`metric_keys`) is drawn on in a chart; here
        ``"score (%)"``."""
        return "score (%)"

    def __repr__(self) -> str:
        return f"<task kind {self.name!r}>"


def single_channel_map(arr: np.ndarray, path: Path | str, what: str) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1)`` or ``(1, H, W)`` -> ``(H, W)``; anything else is a :class:`DataError`."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise DataError(f"{what} {path} has shape {tuple(arr.shape)}; a single-channel HxW map is expected")
    return arr


def standardise(x: np.ndarray) -> np.ndarray:
    """Columns of ``(n, K)`` to zero mean and unit standard deviation (at least 1e-6)."""
    import numpy as np

    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
