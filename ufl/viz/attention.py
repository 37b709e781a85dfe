"""Pictures of Medusa's attention: SFA masks and MSA scale weights as heatmaps over the input, and
the keys that explain them."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..colours import HEATMAP_CMAP, SCALE_COLOURS, apply_cmap, as_rgb

__all__ = ["blend", "attention_images", "attention_keys"]


def blend(image: Any, overlay: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """``(1 - alpha) * image + alpha * overlay``, both ``(H, W, 3)``, as uint8."""
    base = as_rgb(image).astype(np.float64)
    if base.shape != overlay.shape:
        raise ValueError(f"cannot blend an overlay of shape {overlay.shape} over an image of shape {base.shape}")
    return np.rint((1 - alpha) * base + alpha * overlay.astype(np.float64)).astype(np.uint8)


def _one_sample(x: Any, name: str, index: int | None) -> torch.Tensor:
    """(C, H, W) or (B, C, H, W) -> (C, H, W) float tensor on the CPU."""
    t = x.detach().cpu().float() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if t.ndim == 4:
        if index is None and t.shape[0] != 1:
            raise ValueError(f"attention {name} holds a batch of {t.shape[0]} samples; pass index=i to pick one")
        t = t[0 if index is None else index]
    if t.ndim != 3 or t.numel() == 0:
        raise ValueError(f"attention {name} must be (C, H, W) or (B, C, H, W), got shape {tuple(t.shape)}")
    return t


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) -> (C, H, W) numpy, bilinear (align_corners=False, as the heads resize)."""
    if tuple(maps.shape[-2:]) != size:
        maps = F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]
    return maps.numpy().astype(np.float64)


def attention_images(attention: Mapping[str, Any], image: Any = None, *, index: int | None = None,
                     size: tuple[int, int] | None = None, alpha: float = 0.6) -> dict[str, list[np.ndarray]]:
    """Heatmaps of one sample's Medusa attention (``MedusaHead(..., return_attention=True)``).

    Args:
        attention: ``{"sfa": [per-scale masks (B, C_s, H_s, W_s) in (0, 1)], "msa": (B, S, H_0, W_0)
            softmax weights over the S scales}`` (or a head output holding it under
            ``"attention"``); the batch dimension may be absent. Either key may be missing.
        image: optional input image (any :func:`as_rgb` layout); the heatmaps are drawn at its size
            and blended over it with weight ``alpha``.
        index: which sample of a batch (required when B > 1).
        size: ``(H, W)`` of the heatmaps without an image (default: the MSA / finest SFA size).

    Returns:
        ``{"sfa": [S heatmaps], "msa": [S heatmaps], "msa_argmax": [1 map]}``, each ``(H, W, 3)``
        uint8, finest scale first:

        * ``sfa``: each scale's mask averaged over channels, upsampled bilinearly, in
          :data:`HEATMAP_CMAP`. NOTE: stretched per map between its min and max, since averaged
          sigmoid masks crowd around mid-grey and a fixed [0, 1] scale would hide their structure.
        * ``msa``: each scale's weight on the fixed [0, 1] scale (the weights are comparable: they
          sum to 1 over scales at every pixel).
        * ``msa_argmax``: the scale with the largest weight at each pixel, in :data:`SCALE_COLOURS`.
    """
    if "attention" in attention and "sfa" not in attention and "msa" not in attention:
        attention = attention["attention"]
    unknown = set(attention) - {"sfa", "msa"}
    if unknown or not attention:
        raise ValueError(f"attention must be a dict with keys 'sfa' and/or 'msa', got keys {sorted(attention)}")
    sfa = [_one_sample(m, f"sfa[{s}]", index) for s, m in enumerate(attention.get("sfa") or [])]
    msa = _one_sample(attention["msa"], "msa", index) if attention.get("msa") is not None else None
    if msa is not None and sfa and msa.shape[0] != len(sfa):
        raise ValueError(f"attention msa weighs {msa.shape[0]} scales but sfa has {len(sfa)}")
    if msa is not None and msa.shape[0] > len(SCALE_COLOURS):
        raise ValueError(f"at most {len(SCALE_COLOURS)} scales can be coloured, got {msa.shape[0]}")

    rgb = as_rgb(image) if image is not None else None
    if rgb is not None:
        size = rgb.shape[:2]
    elif size is None:
        size = tuple(msa.shape[-2:]) if msa is not None else tuple(sfa[0].shape[-2:])
    size = (int(size[0]), int(size[1]))

    def finish(overlay: np.ndarray) -> np.ndarray:
        return blend(rgb, overlay, alpha) if rgb is not None else overlay

    out: dict[str, list[np.ndarray]] = {}
    if sfa:
        out["sfa"] = []
        for mask in sfa:
            mean = mask.mean(0, keepdim=True)
            # The range of the scale's own map (bilinear upsampling cannot leave it); a flat map
            # stays flat instead of stretching float rounding noise of the upsampling to full range.
            lo, hi = float(mean.min()), float(mean.max())
            mean = _upsample(mean, size)[0]
            stretched = (mean - lo) / (hi - lo) if hi - lo > 1e-6 else np.zeros_like(mean)
            out["sfa"].append(finish(apply_cmap(HEATMAP_CMAP, stretched)))
    if msa is not None:
        weights = _upsample(msa, size)
        out["msa"] = [finish(apply_cmap(HEATMAP_CMAP, w)) for w in weights]
        winner = weights.argmax(0)
        out["msa_argmax"] = [finish(np.asarray(SCALE_COLOURS, dtype=np.uint8)[winner])]
    return out


def attention_keys(labels: Sequence[str], scales: int) -> list[dict[str, Any]]:
    """Keys of a line of attention maps, from their labels' conventions (``SFA ...``, ``MSA s..``,
    ``MSA argmax``, as :func:`attention_images` names them in ``ufl predict`` / ``visualize``)."""
    keys: list[dict[str, Any]] = []
    if any(label.startswith("SFA") for label in labels):
        keys.append({"type": "colorbar", "cmap": HEATMAP_CMAP, "range": (0.0, 1.0), "ticks": {0.0: "low", 1.0: "high"},
                     "label": "SFA mask (per map)"})
    if any(label.startswith("MSA") and "argmax" not in label for label in labels):
        keys.append({"type": "colorbar", "cmap": HEATMAP_CMAP, "range": (0.0, 1.0), "label": "MSA weight"})
    if any("argmax" in label for label in labels):
        keys.append({"type": "legend", "title": "winning scale",
                     "entries": [(f"s{s}" + (" (finest)" if s == 0 else ""), SCALE_COLOURS[s])
                                 for s in range(max(1, scales))]})
    return keys

