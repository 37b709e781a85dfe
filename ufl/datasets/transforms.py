"""Geometric transforms over sample dicts, treating each target by its modality.

A sample is the dict a dataset returns (``ufl.datasets.base``). Each target is transformed by its
modality (:class:`ufl.kinds.Modality`: its ``fill`` and its ``flipped`` / ``warped`` / ``resized``
hooks), named as a dataset's ``.modalities`` gives them (:data:`ufl.kinds.MODALITIES`); the
built-in ones:

=========  =========================  ================  ========================================
modality   resampling                 out-of-view fill  values
=========  =========================  ================  ========================================
(image)    bilinear (antialiased      0                 float RGB in [0, 1]
           when resizing down)
label      nearest                    255 (ignore)      int64 class indices kept as they are
binary     nearest                    255 (ignore)      float {0, 1, 255} kept as they are
depth      nearest                    0 (invalid)       divided by the zoom factor
normals    nearest                    0 (invalid)       x negated by a flip; x, y rotated with the
                                                        image; re-normalised to unit length
=========  =========================  ================  ========================================

A *view* is one set of geometric parameters applied in this order (as MTI-Net's pipeline:
``RandomHorizontalFlip``, ``ScaleNRotate``, ``FixedResize``):

1. ``flip``: horizontal mirror;
2. ``scale``, ``angle``: one affine map about the image centre, same output size: ``scale > 1``
   zooms in (the centre ``1/scale`` of the image fills the frame; depth is divided by ``scale``, as if
   the camera moved closer), ``scale < 1`` zooms out (the border is out of view); ``angle`` in degrees,
   counter-clockwise;
3. ``size``: resize to ``(H, W)``.

:func:`apply_view` applies given parameters deterministically (the feature cache stores augmented
views and their parameters, and transforms targets identically); the random transforms draw the
parameters (from a ``torch.Generator`` or torch's global RNG, so seeded runs reproduce), apply them
through the same functions, and record them in ``sample["meta"]`` as floats ``"flip"`` (0 or 1),
``"scale"`` and ``"angle"`` (identity values when a transform of this module did not set them).
:func:`build_transforms` gives the reference augmentations of DESIGN.md section 6.

Normals are camera-frame unit vectors with x to the right, y down the image and z towards the
camera: NYU Depth v2's convention (its normal maps put "red to the right, green downwards, blue
towards the camera", as the 2D-3D-S paper quotes it), which the distilled PASCAL normals inherit.

NOTE: the rotation of the normals' x, y components is MTI-Net's: its ``ScaleNRotate`` rotates them
with the image through ``arctan2(n_x, n_y)``, the same in-plane rotation as
:func:`ufl.kinds.normals.rotate_normals` for y pointing down. Data with y pointing up would need the
opposite angle.

NOTE: MTI-Net fills out-of-view pixels with 0 for every target (class 0 = background for
segmentation); here labels and binary maps are filled with 255 (ignored), depth and normals with 0
(invalid), so zoomed-out borders are never learnt as background. Its image and normals use bicubic
resampling, depth bilinear; here all targets use nearest, so no invalid (0) depth or normals values
are blended into valid ones, and the image uses bilinear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torchvision.transforms.v2 import functional as TF

from ..cfg import DEFAULTS
from ..kinds import MODALITIES, Modality

__all__ = [
    "View",
    "hflip",
    "scale_rotate",
    "resize",
    "apply_view",
    "RandomHorizontalFlip",
    "RandomScaleRotate",
    "Resize",
    "Compose",
    "Recipe",
    "RECIPES",
    "draw_value",
    "build_transforms",
]

_RESERVED = ("image", "id", "meta")
_NEAREST = TF.InterpolationMode.NEAREST
_NEAREST_EXACT = TF.InterpolationMode.NEAREST_EXACT  # pixel-centre aligned, as PIL and scikit-image
_BILINEAR = TF.InterpolationMode.BILINEAR


@dataclass(frozen=True)
class View:
    """Geometric parameters of one view (see the module docstring for their meaning and order)."""

    flip: bool = False
    scale: float = 1.0
    angle: float = 0.0

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> "View":
        """The view recorded in a sample's ``meta`` (identity for missing entries)."""
        return cls(flip=bool(float(meta.get("flip", 0.0))), scale=float(meta.get("scale", 1.0)),
                   angle=float(meta.get("angle", 0.0)))

    def to_meta(self) -> dict[str, float]:
        return {"flip": float(self.flip), "scale": float(self.scale), "angle": float(self.angle)}


# -- per-modality functional ops ---------------------------------------------------------------
def _targets(sample: Mapping[str, Any], modalities: Mapping[str, str | Modality]):
    """Yield ``(key, Modality)`` for each target tensor of ``sample`` (``modalities`` maps a key to a
    modality name of :data:`ufl.kinds.MODALITIES` or a :class:`~ufl.kinds.Modality`); an unknown
    tensor key raises."""
    for key, value in sample.items():
        if key in _RESERVED or not isinstance(value, torch.Tensor):
            continue
        modality = modalities.get(key)
        if isinstance(modality, str):
            modality = MODALITIES.get(modality, modality)
        if isinstance(modality, Modality):
            yield key, modality
        else:
            raise ValueError(f"sample entry {key!r} has no known modality (got {modality!r}); pass "
                             f"modalities={{{key!r}: one of {tuple(MODALITIES)}}}")


def _as_3d(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    return (x[None], True) if x.ndim == 2 else (x, False)


def _meta(sample: dict[str, Any], **values: float) -> dict[str, Any]:
    """A copy of ``sample["meta"]`` with identity view entries filled in and ``values`` set."""
    meta = dict(sample.get("meta", {}))
    for key, identity in View().to_meta().items():
        meta.setdefault(key, identity)
    meta.update({k: float(v) for k, v in values.items()})
    return meta


def hflip(sample: Mapping[str, Any], modalities: Mapping[str, str]) -> dict[str, Any]:
    """Mirror the image and every target horizontally; the normals' x component is negated."""
    out = dict(sample)
    if "image" in out:
        out["image"] = TF.horizontal_flip(sample["image"])
    for key, modality in _targets(sample, modalities):
        out[key] = modality.flipped(sample[key].flip(-1))
    return out


def scale_rotate(sample: Mapping[str, Any], modalities: Mapping[str, str], scale: float = 1.0,
                 angle: float = 0.0) -> dict[str, Any]:
    """Zoom by ``scale`` and rotate by ``angle`` degrees (counter-clockwise) about the image centre.

    The output keeps the input size. Depth is divided by ``scale``; the normals' x, y components
    are rotated with the image; out-of-view pixels get each modality's fill.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    out = dict(sample)
    if scale == 1.0 and angle == 0.0:
        return out

    def warp(x: torch.Tensor, interpolation, fill: float) -> torch.Tensor:
        x3, squeezed = _as_3d(x)
        # NOTE: torchvision's affine() turns clockwise for a positive angle (its rotate() and
        # OpenCV's getRotationMatrix2D, which MTI-Net uses, turn counter-clockwise): negate it.
        y = TF.affine(x3, angle=-float(angle), translate=[0.0, 0.0], scale=float(scale), shear=[0.0, 0.0],
                      interpolation=interpolation, fill=[fill])
        return y[0] if squeezed else y

    if "image" in out:
        out["image"] = warp(sample["image"], _BILINEAR, 0.0).clamp_(0.0, 1.0)
    for key, modality in _targets(sample, modalities):
        out[key] = modality.warped(warp(sample[key], _NEAREST, modality.fill), scale, angle)
    return out


def resize(sample: Mapping[str, Any], modalities: Mapping[str, str], size: Sequence[int] | int) -> dict[str, Any]:
    """Resize the image (bilinear, antialiased) and every target (nearest) to ``size`` = ``(H, W)``.

    Label values are kept (nearest never invents a class); normals are re-normalised.
    """
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    out = dict(sample)
    if "image" in out and tuple(sample["image"].shape[-2:]) != (height, width):
        out["image"] = TF.resize(sample["image"], [height, width], interpolation=_BILINEAR,
                                 antialias=True).clamp_(0.0, 1.0)
    for key, modality in _targets(sample, modalities):
        x = sample[key]
        if tuple(x.shape[-2:]) == (height, width):
            continue
        x3, squeezed = _as_3d(x)
        y = TF.resize(x3, [height, width], interpolation=_NEAREST_EXACT)
        out[key] = modality.resized(y[0] if squeezed else y)
    return out


def apply_view(sample: Mapping[str, Any], flip: bool = False, scale: float = 1.0, angle: float = 0.0,
               size: Sequence[int] | int | None = None, *, modalities: Mapping[str, str]) -> dict[str, Any]:
    """Apply one view deterministically: flip, then zoom/rotate, then resize to ``size`` (if given).

    The same functions the random transforms use, in the same order, so a view recorded in
    ``meta`` (:meth:`View.from_meta`) reproduces the augmented sample exactly. Records the view
    in ``meta``. Works on samples without an image (targets only).
    """
    out = hflip(sample, modalities) if flip else dict(sample)
    out = scale_rotate(out, modalities, scale=scale, angle=angle)
    if size is not None:
        out = resize(out, modalities, size)
    out["meta"] = _meta(out, flip=float(bool(flip)), scale=scale, angle=angle)
    return out


# -- random and fixed transforms ---------------------------------------------------------------
def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()


def draw_value(values: Sequence[float], generator: torch.Generator | None) -> float:
    """A tuple ``(low, high)`` is a range (uniform); a list is a set of choices (as MTI-Net's)."""
    if isinstance(values, tuple):
        return _uniform(float(values[0]), float(values[1]), generator)
    return float(values[torch.randint(len(values), (), generator=generator).item()])


class RandomHorizontalFlip:
    """Flip the sample with probability ``p`` (normals' x negated); records ``meta["flip"]``.

    Args:
        modalities: ``{target key: modality}`` (a dataset's ``.modalities``).
        p: flip probability.
        generator: draw from this generator; ``None`` = torch's global RNG (which DataLoader
            workers seed differently, so prefer it with ``num_workers > 0``).
    """

    def __init__(self, modalities: Mapping[str, str], p: float = 0.5, generator: torch.Generator | None = None):
        self.modalities = dict(modalities)
        self.p = p
        self.generator = generator

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        flip = torch.rand((), generator=self.generator, dtype=torch.float64).item() < self.p
        out = hflip(sample, self.modalities) if flip else dict(sample)
        out["meta"] = _meta(out, flip=float(flip))
        return out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomScaleRotate:
    """Zoom and rotate about the centre by random amounts; records ``meta["scale"]`` and ``meta["angle"]``.

    Args:
        modalities: ``{target key: modality}``.
        scales: ``(low, high)`` tuple for a uniform range, or a list of choices (e.g. NYUD's
            ``[1.0, 1.2, 1.5]``).
        angles: same, in degrees (e.g. PASCAL's ``(-20, 20)``).
        generator: as for :class:`RandomHorizontalFlip`.
    """

    def __init__(self, modalities: Mapping[str, str], scales: Sequence[float] = (0.75, 1.25),
                 angles: Sequence[float] = (-20.0, 20.0), generator: torch.Generator | None = None):
        for name, values in (("scales", scales), ("angles", angles)):
            if not isinstance(values, (tuple, list)) or not values or (isinstance(values, tuple) and len(values) != 2):
                raise ValueError(f"{name} must be a (low, high) tuple or a non-empty list of choices, got {values!r}")
        self.modalities = dict(modalities)
        self.scales = scales
        self.angles = angles
        self.generator = generator

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        scale = draw_value(self.scales, self.generator)
        angle = draw_value(self.angles, self.generator)
        out = scale_rotate(sample, self.modalities, scale=scale, angle=angle)
        out["meta"] = _meta(out, scale=scale, angle=angle)
        return out

    def __repr__(self) -> str:
        return f"RandomScaleRotate(scales={self.scales}, angles={self.angles})"


class Resize:
    """Resize the image (bilinear, antialiased) and targets (nearest) to ``size`` = ``(H, W)``."""

    def __init__(self, modalities: Mapping[str, str], size: Sequence[int] | int):
        self.modalities = dict(modalities)
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        return resize(sample, self.modalities, self.size)

    def __repr__(self) -> str:
        return f"Resize(size={self.size})"


class Compose:
    """Apply transforms over a sample dict in order (an empty list is the identity).

    NOTE: not ``torchvision.transforms.v2.Compose``, which refuses an empty list (an evaluation
    pipeline at the images' own size has no step).
    """

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        for transform in self.transforms:
            out = transform(out)
        return out

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])" if inner else "Compose([])"


# -- the reference pipelines -------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """A dataset's reference augmentation (DESIGN.md section 6): flip, then zoom/rotate, then resize.

    ``scales`` / ``angles``: a ``(low, high)`` tuple (uniform) or a list of choices; ``size``: the
    training and evaluation resolution ``(H, W)`` (``None``: keep the images' own size).
    """

    size: tuple[int, int] | None
    scales: Sequence[float]
    angles: Sequence[float]
    flip: bool = True


RECIPES: dict[str, Recipe] = {
    # MTI-Net NYUD: flip, ScaleNRotate(rots=[0], scales=[1.0, 1.2, 1.5]), 480x640 (ufl/cfg/default.yaml).
    "nyud": Recipe(size=DEFAULTS.nyud_size, scales=[1.0, 1.2, 1.5], angles=[0.0]),
    # MTI-Net PASCAL: flip, ScaleNRotate(rots=(-20, 20), scales=(.75, 1.25)), 512x512 (ufl/cfg/default.yaml).
    "pascal": Recipe(size=DEFAULTS.pascal_size, scales=(0.75, 1.25), angles=(-20.0, 20.0)),
    # A user's folder: flips only (pass augment=False for tasks whose classes are not left-right
    # symmetric), images kept at their size unless a size is given.
    "folder": Recipe(size=None, scales=[1.0], angles=[0.0]),
}


def build_transforms(dataset, train: bool, size: Sequence[int] | int | None = None,
                     modalities: Mapping[str, str] | None = None, augment: bool = True,
                     generator: torch.Generator | None = None) -> Compose:
    """The reference pipeline of a dataset (DESIGN.md section 6).

    Args:
        dataset: a dataset name (``"nyud"``, ``"pascal"``, ``"folder"``; another name gets the
            folder recipe) or a dataset object (its name and ``.modalities`` are used).
        train: training pipeline (augmentations, then resize) or evaluation (resize only).
        size: output ``(H, W)`` (or one int for a square), overriding the recipe's (e.g.
            ``(96, 128)`` for small runs).
        modalities: ``{target key: modality}``; default: the dataset object's ``.modalities``.
        augment: ``False`` gives the evaluation pipeline even when ``train`` is true.
        generator: RNG of the random transforms (``None``: torch's global RNG).

    Returns:
        A :class:`Compose` over sample dicts.
    """
    if isinstance(dataset, str):
        name = dataset
    else:
        name = type(dataset).name
        if modalities is None:
            modalities = dataset.modalities
    if modalities is None:
        raise ValueError("build_transforms needs the targets' modalities (pass a dataset object or modalities=)")
    recipe = RECIPES.get(name, RECIPES["folder"])
    if size is None:
        size = recipe.size
    steps: list = []
    if train and augment:
        if recipe.flip:
            steps.append(RandomHorizontalFlip(modalities, generator=generator))
        if list(recipe.scales) != [1.0] or list(recipe.angles) != [0.0]:
            steps.append(RandomScaleRotate(modalities, scales=recipe.scales, angles=recipe.angles, generator=generator))
    if size is not None:
        steps.append(Resize(modalities, size))
    return Compose(steps)
