"""The scene model of the generator: pieces, things, models, scenes; rendering a scene; looks.

A :class:`Scene` is a camera, a list of :class:`Thing` (one labelled instance each, made of
:class:`Piece` primitives with a material and an optional PASCAL-Part part name), a light and a
background. :func:`render_scene` ray-casts it with :mod:`ufl.synthetic.render`, so that every label
map (classes, instances, parts, edges, depth, normals) comes from the same hits as the RGB image.

Camera-frame normals follow NYUD-v2 and ufl's transforms: x right, y down (image rows), z towards
the viewer (a wall facing the camera is (0, 0, 1), the floor seen from a level camera (0, -1, 0)).
The renderer itself works with y up; :func:`render_scene` converts.

Looks: :func:`look` makes a jittered :class:`~ufl.synthetic.render.Material` from a base colour of
one of the palettes (``SKIN``, ``HAIR``, ``CLOTH``, ``TROUSERS``, ``WOOD``, ``PAINT``, ``FABRIC``,
``METAL``; 0..255 RGB); :func:`pick` draws one option. Every random choice draws from the
generator given, in a fixed order, so a seed gives the same scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .render import Box, Camera, Material, Shape, cast, rot_y, shade

__all__ = [
    "Piece", "Thing", "Model", "Scene", "Rendered", "render_scene", "color", "pick", "look", "on_floor_box",
    "SKIN", "HAIR", "CLOTH", "TROUSERS", "WOOD", "PAINT", "FABRIC", "METAL",
]


# -- scene model ----------------------------------------------------------------------------------
@dataclass
class Piece:
    """One primitive of an object, with its look and (PASCAL-Part) part name."""

    shape: Shape
    material: Material
    part: str | None = None


@dataclass
class Thing:
    """One instance: its class (NYUD-40 or VOC), PASCAL-Context class, pieces.

    ``dropout`` is the probability that a Kinect reads no depth on it (glass, mirrors, screens).
    """

    label: int
    pieces: list[Piece]
    context: int = 0
    dropout: float = 0.0


@dataclass
class Model:
    """Things built in a local frame: origin on the floor, +z the front, footprint ``size``
    = (width along x, height, depth along z) centred on the origin."""

    things: list[Thing]
    size: tuple[float, float, float]

    def placed(self, position: Sequence[float], yaw: float) -> list[Thing]:
        """The things turned by ``yaw`` about the vertical axis and moved to ``position``."""
        rotation, translation = rot_y(yaw), np.asarray(position, dtype=np.float64)
        return [Thing(t.label, [Piece(p.shape.transformed(rotation, translation), p.material, p.part)
                                for p in t.pieces], t.context, t.dropout) for t in self.things]


@dataclass
class Scene:
    camera: Camera
    things: list[Thing]
    light: np.ndarray
    ambient: float
    background: Callable[[np.ndarray], np.ndarray]
    falloff: float = 0.0


@dataclass
class Rendered:
    """Per-pixel result of rendering a scene (see :func:`render_scene`)."""

    rgb: np.ndarray          # (H, W, 3) uint8
    depth: np.ndarray        # (H, W) float64 z-depth, inf where nothing was hit
    normals: np.ndarray      # (H, W, 3) float64 camera-frame unit normals, 0 where nothing was hit
    thing: np.ndarray        # (H, W) int64 index into scene.things, -1 where nothing was hit
    shape: np.ndarray        # (H, W) int64 index of the primitive hit, -1 where nothing was hit
    part: np.ndarray         # (H, W) object array: part name of the primitive hit, or None


def render_scene(scene: Scene, rng: np.random.Generator, noise: float = 0.012) -> Rendered:
    """Ray-cast and shade a scene; add mild sensor noise to the RGB image."""
    pieces = [(k, p) for k, t in enumerate(scene.things) for p in t.pieces]
    hits = cast(scene.camera, [p.shape for _, p in pieces])
    rgb = shade(scene.camera, hits, [p.material for _, p in pieces], scene.light, scene.ambient,
                scene.background, scene.falloff)
    rgb = np.clip(rgb + rng.normal(0.0, noise, rgb.shape), 0.0, 1.0)
    thing_of = np.array([k for k, _ in pieces] + [-1])
    part_of = np.array([p.part for _, p in pieces] + [None], dtype=object)
    # The renderer's camera frame has y up; the files (like NYUD-v2 and ufl's transforms) use x right,
    # y down (image rows), z towards the camera.
    normals = scene.camera.to_camera(hits.normal) * np.array([1.0, -1.0, 1.0])
    return Rendered((rgb * 255 + 0.5).astype(np.uint8), hits.depth, normals, thing_of[hits.index], hits.index,
                    part_of[hits.index])


# -- looks ----------------------------------------------------------------------------------------
def color(rng: np.random.Generator, base: Sequence[float], jitter: float = 0.08) -> tuple[float, float, float]:
    """An instance's colour: a 0..255 base colour with brightness and hue jitter, as 0..1 floats."""
    c = np.asarray(base, dtype=np.float64) / 255.0 * rng.uniform(1 - jitter, 1 + jitter)
    c = c + rng.normal(0.0, jitter / 3, 3)
    return tuple(float(v) for v in np.clip(c, 0.0, 1.0))


def pick(rng: np.random.Generator, options: Sequence):
    """One of ``options``, uniformly (one ``rng.integers`` draw)."""
    return options[int(rng.integers(len(options)))]


def look(rng: np.random.Generator, base: Sequence[float], pattern: str = "plain",
         color2: Sequence[float] | None = None, scale: float = 0.2, axis: Sequence[float] = (0.0, 1.0, 0.0),
         dark: float = 0.65, jitter: float = 0.08) -> Material:
    """A material from a base colour; the pattern's second colour is ``color2`` or a darker shade."""
    c1 = color(rng, base, jitter)
    c2 = color(rng, color2, jitter) if color2 is not None else tuple(v * dark for v in c1)
    return Material(c1, c2, pattern, scale * rng.uniform(0.85, 1.15), tuple(axis), float(rng.uniform()))


SKIN = [(255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 32)]
HAIR = [(20, 15, 10), (60, 40, 25), (110, 75, 40), (190, 150, 90), (150, 60, 30), (120, 120, 120)]
CLOTH = [(200, 30, 30), (30, 60, 160), (30, 120, 50), (230, 200, 40), (240, 240, 235), (30, 30, 35),
          (120, 60, 140), (230, 120, 30), (90, 150, 200), (150, 150, 150), (170, 90, 90)]
TROUSERS = [(40, 50, 90), (30, 30, 30), (110, 100, 80), (70, 70, 75), (150, 130, 100), (60, 80, 130)]
WOOD = [(150, 100, 60), (120, 80, 45), (180, 140, 90), (95, 60, 35), (200, 170, 130)]
PAINT = [(235, 230, 215), (220, 225, 230), (205, 220, 200), (240, 222, 200), (215, 205, 228), (245, 245, 240)]
FABRIC = [(120, 40, 40), (60, 70, 110), (80, 110, 80), (150, 140, 120), (60, 60, 60), (170, 150, 110), (110, 70, 110)]
METAL = [(190, 190, 195), (120, 120, 125), (60, 60, 65)]


# -- geometry -------------------------------------------------------------------------------------
def on_floor_box(size: Sequence[float], y0: float = 0.0, z: float = 0.0, x: float = 0.0) -> Box:
    """A box of full ``size`` (w, h, d) standing at height ``y0`` centred at (x, ., z)."""
    w, h, d = size
    return Box((x, y0 + h / 2, z), (w / 2, h / 2, d / 2))
