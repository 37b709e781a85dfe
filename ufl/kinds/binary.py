"""What edges and saliency share: a binary map per image.

Target: ``(1, H, W)`` float32 in {0, 1}, 255 = ignore. Head: 1 logit; loss ``balanced_bce``
(the positive weight of the batch, or a fixed ``pos_weight``); prediction the sigmoid probability.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import DataError
from ..labels import IGNORE_INDEX
from .base import Kind, Modality, single_channel_map

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["BinaryModality", "BinaryMapKind", "to_binary_target"]

#: The positive rate of the trivial predictor is kept in [PRIOR_EPS, 1 - PRIOR_EPS] (finite logits).
PRIOR_EPS = 1e-4


class BinaryModality(Modality):
    """{0, 1} maps: nearest resampling keeps them, out-of-view pixels are 255 (ignored)."""

    name = "binary"
    fill = float(IGNORE_INDEX)
    exact_integers = True


class BinaryMapKind(Kind):
    """A kind whose target is a binary map (the base of :class:`~ufl.kinds.edges.EdgesKind` and
    :class:`~ufl.kinds.saliency.SaliencyKind`)."""

    modality = BinaryModality()
    losses = ("balanced_bce",)
    fixed_channels = 1

    def target_layout(self, channels: int, size: Sequence[int]) -> tuple[tuple[int, ...], str, str]:
        """``(1, H, W)`` uint8 (0, 1, 255); decoded float32."""
        return (1, *size), "uint8", "float32"

    def decode_file(self, path: Path, fmt: str, channels: int, what: str) -> torch.Tensor:
        from ..images import read_npy, read_png

        if fmt == "npy":
            return to_binary_target(read_npy(path, what), path, what)
        return to_binary_target(read_png(path, what, channels=1, allow_16bit=False) > 127, path, what)

    def valid(self, target: torch.Tensor) -> torch.Tensor:
        return target != IGNORE_INDEX

    def postprocess(self, logits: torch.Tensor, activation: str | None = None) -> torch.Tensor:
        """Probabilities ``(B, 1, H, W)`` (the sigmoid)."""
        import torch

        return torch.sigmoid(logits.float())

    def prior_statistics(self, target: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        valid = self.valid(target)
        return target[valid].double().sum(), valid.sum()

    def prior_logits(self, value: torch.Tensor, batch: int, channels: int, size: Sequence[int]) -> torch.Tensor:
        """The positive rate as a probability (its logit)."""
        import torch

        return torch.logit(value.clamp(PRIOR_EPS, 1 - PRIOR_EPS)).view(1, 1, 1, 1).expand(batch, 1, *size).float()

    def probe_targets(self, target: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """The 0/1 value ``(H, W, 1)``; 255 invalid."""
        import numpy as np

        values = np.asarray(target, dtype=np.float64)[0]
        return values != IGNORE_INDEX, values[..., None]

    def probe_columns(self, values: np.ndarray) -> np.ndarray:
        """The 0/1 values as they are."""
        return values

    def colorize(self, array: Any, *, valid: Any = None, classes: Any = None, value_range: Any = None) -> np.ndarray:
        """Probabilities in grey (0 black, 1 white); 255 (ignore) dark red."""
        from ..colours import colorize_probabilities

        return colorize_probabilities(array, self.name, valid)

    def colour_key(self, gt: Any, pred: Any, *, classes: Any = None, value_range: Any = None) -> list[dict[str, Any]]:
        """A grey colour bar of probabilities."""
        from ..colours import probability_key

        return probability_key()


def to_binary_target(arr: np.ndarray, path: Path | str, what: str = "binary map") -> torch.Tensor:
    """A binary map ``(H, W)`` with values {0, 1, 255 = ignore} -> float32 ``(1, H, W)``."""
    import numpy as np
    import torch

    values = single_channel_map(np.asarray(arr), path, what)
    if values.dtype == np.bool_:
        values = values.astype(np.uint8)
    if not np.issubdtype(values.dtype, np.number) or not np.isfinite(values).all():
        raise DataError(f"{what} {path} holds non-numeric or non-finite values; 0, 1 or {IGNORE_INDEX} expected")
    bad = (values != 0) & (values != 1) & (values != IGNORE_INDEX)
    if bad.any():
        raise DataError(f"{what} {path} holds value {values[bad][0].item():g}; a binary map holds 0, 1 or "
                        f"{IGNORE_INDEX} (ignore)")
    return torch.from_numpy(values.astype(np.float32))[None]
