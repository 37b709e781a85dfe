"""Procedural NYUD-like and PASCAL-like multi-task data, written in the official on-disk formats.

``make_synthetic(out)`` writes ``out/NYUD_MT/`` and ``out/PASCAL_MT/`` exactly as the public MTI-Net
archives unpack (DESIGN.md section 4), so that the real loaders, and any other reader of those
formats, read them. Scenes are built from simple 3D primitives and rendered by the numpy ray caster
of :mod:`ufl.synthetic.render`; every label is derived from the same ray hits as the RGB image, so
depth, normals, classes, instance edges, person parts and saliency agree with each other and are
all visible in the image.

NYUD-like scenes: indoor rooms (bedroom, living room, office, kitchen, bathroom) with furniture of
the NYUD-40 classes, a Kinect-like camera (intrinsics of NYUD-v2 scaled to the image), depth in
0.5..10 m with realistic holes (glass, mirrors, dark screens, the projector's shadow band beside
near objects, out of range).
PASCAL-like scenes: outdoors (sky, a ground plane, trees, buildings, ...), articulated persons
made of the 24 PASCAL-Part person parts (none in about a third of the images, one in a third,
several overlapping in the rest), and other VOC objects (vehicles, animals, furniture, bottles,
monitors, plants).

File formats written (ID = image id):

NYUD_MT/
  gt_sets/{train,val}.txt        one id per line
  images/ID.jpg                  RGB, size x round(size * 4 / 3), JPEG quality 95
  segmentation/ID.png            uint8 'L': 0 unlabeled, k = NYUD-40 class k (1..40)
  depth/ID.npy                   float32 (H, W) metres, 0 = missing
  normals/ID.npy                 float32 (H, W, 3) unit camera-frame normals, 0 where depth is missing
  edge/ID.npy                    float32 (H, W) {0, 1}: thinned instance and depth boundaries
PASCAL_MT/
  ImageSets/Context/{train,val}.txt    ids like 2008_000123
  ImageSets/Parts/{train,val}.txt      JSON {id: [VOC class of each object of human_parts/ID.mat]}
  JPEGImages/ID.jpg                    RGB, height x width in size x [size, 4/3 size], either orientation
  semseg/VOC12/ID.png                  'P' with the VOC palette: 0..20, 255 = void band on object outlines
  pascal-context/trainval/ID.mat       'LabelMap' uint16 (H, W), PASCAL-Context ids 1..459, no 0
  human_parts/ID.mat                   'anno' struct (imname, objects(class, class_ind, mask, parts(part_name, mask)))
  sal_distill/ID.png                   'L': 255 salient (the largest visible VOC object), 0 not
  normals_distill/ID.png               RGB v = round((n + 1) * 255 / 2), camera-frame normals everywhere
                                       (the loader keeps them on the Context classes shared with NYUD
                                       only, as MTI-Net's: persons, chairs, tables, vehicles, screens,
                                       bottles, ...; sky, ground, grass, trees and buildings are
                                       invalid: about 12 % of the pixels are valid at 96 px)

Camera-frame normals follow NYUD-v2 and ufl's transforms: x right, y down (image rows), z towards
the viewer (a wall facing the camera is (0, 0, 1), the floor seen from a level camera (0, -1, 0)).
The renderer itself works with y up; :func:`_render` converts.
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import scipy.io
from scipy.ndimage import binary_dilation
from PIL import Image
from skimage.morphology import disk, thin
from skimage.segmentation import find_boundaries
from tqdm.auto import tqdm

from ..errors import DataError, UflError
from ..datasets.catalog import NYUD_CLASSES, VOC_CLASSES, voc_palette
from .render import (Box, Camera, Capsule, Cylinder, Ellipsoid, Material, Plane, Rect, Shape, cast,
                     rot_x, rot_y, rot_z, shade, sphere)

__all__ = [
    "make_synthetic", "is_synthetic", "SYNTHETIC_MARKER", "nyud_intrinsics", "render_nyud_sample", "render_pascal_sample",
    "VOC_TO_CONTEXT", "CONTEXT_IDS", "PERSON_PARTS", "MAX_NYUD_PERSONS",
]

# -- class tables ---------------------------------------------------------------------------------
#: Stored NYUD label of each class name: class k of the catalogue is stored as k + 1 (0 = unlabeled).
_NYU = {name: k for k, name in enumerate(NYUD_CLASSES, start=1)}

_VOC = {name: k for k, name in enumerate(VOC_CLASSES)}

#: PASCAL-Context id of each VOC class (MTI-Net's pascal_context.py CONTEXT_CATEGORY_LABELS).
VOC_TO_CONTEXT = (0, 2, 23, 25, 31, 34, 45, 59, 65, 72, 98, 397, 113, 207, 258, 284, 308, 347, 368, 416, 427)

#: PASCAL-Context (459 classes) ids of the background "stuff" used here (MTI-Net's
#: data/db_info/context_classes.json).
CONTEXT_IDS = {
    "building": 44, "fence": 144, "grass": 187, "ground": 189, "mountain": 259, "pole": 303, "road": 324,
    "rock": 326, "sand": 334, "sign": 355, "sky": 360, "snow": 366, "tree": 420, "water": 445,
}

#: The 24 PASCAL-Part person part names ('l' / 'r' = the person's own left / right).
PERSON_PARTS = (
    "head", "hair", "lear", "rear", "leye", "reye", "lebrow", "rebrow", "nose", "mouth", "neck", "torso",
    "luarm", "ruarm", "llarm", "rlarm", "lhand", "rhand", "luleg", "ruleg", "llleg", "rlleg", "lfoot", "rfoot",
)

# NYUD-v2 RGB intrinsics at 640 x 480 (Silberman et al.'s toolbox, camera_params.m).
_NYUD_FX, _NYUD_FY, _NYUD_CX, _NYUD_CY = 518.8579, 519.4696, 325.5824, 253.7362
_KINECT_BASELINE = 0.075  # metres between the Kinect's IR projector and IR camera
_KINECT_RANGE = (0.5, 10.0)  # metres: nearer or farther reads 0 (no measurement)


def nyud_intrinsics(height: int, width: int) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` in pixels of the synthetic NYUD camera: NYUD-v2's scaled to the image."""
    return (_NYUD_FX * width / 640, _NYUD_FY * height / 480, _NYUD_CX * width / 640, _NYUD_CY * height / 480)


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
    """Per-pixel result of rendering a scene (see :func:`_render`)."""

    rgb: np.ndarray          # (H, W, 3) uint8
    depth: np.ndarray        # (H, W) float64 z-depth, inf where nothing was hit
    normals: np.ndarray      # (H, W, 3) float64 camera-frame unit normals, 0 where nothing was hit
    thing: np.ndarray        # (H, W) int64 index into scene.things, -1 where nothing was hit
    shape: np.ndarray        # (H, W) int64 index of the primitive hit, -1 where nothing was hit
    part: np.ndarray         # (H, W) object array: part name of the primitive hit, or None


def _render(scene: Scene, rng: np.random.Generator, noise: float = 0.012) -> Rendered:
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
def _color(rng: np.random.Generator, base: Sequence[float], jitter: float = 0.08) -> tuple[float, float, float]:
    """An instance's colour: a 0..255 base colour with brightness and hue jitter, as 0..1 floats."""
    c = np.asarray(base, dtype=np.float64) / 255.0 * rng.uniform(1 - jitter, 1 + jitter)
    c = c + rng.normal(0.0, jitter / 3, 3)
    return tuple(float(v) for v in np.clip(c, 0.0, 1.0))


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _mat(rng: np.random.Generator, base: Sequence[float], pattern: str = "plain",
         color2: Sequence[float] | None = None, scale: float = 0.2, axis: Sequence[float] = (0.0, 1.0, 0.0),
         dark: float = 0.65, jitter: float = 0.08) -> Material:
    """A material from a base colour; the pattern's second colour is ``color2`` or a darker shade."""
    c1 = _color(rng, base, jitter)
    c2 = _color(rng, color2, jitter) if color2 is not None else tuple(v * dark for v in c1)
    return Material(c1, c2, pattern, scale * rng.uniform(0.85, 1.15), tuple(axis), float(rng.uniform()))


_SKIN = [(255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 32)]
_HAIR = [(20, 15, 10), (60, 40, 25), (110, 75, 40), (190, 150, 90), (150, 60, 30), (120, 120, 120)]
_CLOTH = [(200, 30, 30), (30, 60, 160), (30, 120, 50), (230, 200, 40), (240, 240, 235), (30, 30, 35),
          (120, 60, 140), (230, 120, 30), (90, 150, 200), (150, 150, 150), (170, 90, 90)]
_TROUSERS = [(40, 50, 90), (30, 30, 30), (110, 100, 80), (70, 70, 75), (150, 130, 100), (60, 80, 130)]
_WOOD = [(150, 100, 60), (120, 80, 45), (180, 140, 90), (95, 60, 35), (200, 170, 130)]
_PAINT = [(235, 230, 215), (220, 225, 230), (205, 220, 200), (240, 222, 200), (215, 205, 228), (245, 245, 240)]
_FABRIC = [(120, 40, 40), (60, 70, 110), (80, 110, 80), (150, 140, 120), (60, 60, 60), (170, 150, 110), (110, 70, 110)]
_METAL = [(190, 190, 195), (120, 120, 125), (60, 60, 65)]


# -- a person (shared by both domains) ------------------------------------------------------------
def _limb_dir(forward: float, sideways: float, side: float) -> np.ndarray:
    """Unit direction of a limb hanging down, swung ``forward`` (radians, towards +z) and
    ``sideways`` (away from the body on ``side`` = +1 for the person's left, +x)."""
    return rot_x(-forward) @ rot_z(side * sideways) @ np.array([0.0, -1.0, 0.0])


def _pose(rng: np.random.Generator) -> dict[str, float]:
    """Joint angles (radians) of a random pose: standing, walking, running, waving, arms out."""
    kind = _pick(rng, ["stand", "walk", "run", "wave", "arms_out"])
    a = dict(l_sh=rng.uniform(-0.2, 0.3), r_sh=rng.uniform(-0.2, 0.3), l_ab=rng.uniform(0.05, 0.25),
             r_ab=rng.uniform(0.05, 0.25), l_el=rng.uniform(0.0, 0.4), r_el=rng.uniform(0.0, 0.4),
             l_hip=rng.uniform(-0.1, 0.1), r_hip=rng.uniform(-0.1, 0.1), l_kn=rng.uniform(0.0, 0.15),
             r_kn=rng.uniform(0.0, 0.15), l_hab=rng.uniform(0.0, 0.1), r_hab=rng.uniform(0.0, 0.1),
             head_yaw=rng.uniform(-0.5, 0.5), head_pitch=rng.uniform(-0.2, 0.2))
    if kind in ("walk", "run"):
        amp = rng.uniform(0.3, 0.6) if kind == "walk" else rng.uniform(0.6, 1.0)
        s = _pick(rng, [-1.0, 1.0])
        a.update(l_sh=s * amp, r_sh=-s * amp, l_hip=-s * amp * 0.8, r_hip=s * amp * 0.8,
                 l_el=rng.uniform(0.2, 1.2), r_el=rng.uniform(0.2, 1.2),
                 l_kn=rng.uniform(0.1, 0.4 + amp), r_kn=rng.uniform(0.1, 0.3))
    elif kind == "wave":
        side = _pick(rng, ["l", "r"])
        a.update({f"{side}_ab": rng.uniform(1.8, 2.8), f"{side}_el": rng.uniform(0.3, 1.4),
                  f"{side}_sh": rng.uniform(-0.3, 0.3)})
    elif kind == "arms_out":
        a.update(l_ab=rng.uniform(1.1, 1.6), r_ab=rng.uniform(1.1, 1.6), l_sh=rng.uniform(-0.2, 0.4),
                 r_sh=rng.uniform(-0.2, 0.4))
    return a


def _person(rng: np.random.Generator, label: int, context: int = 0, height: float | None = None) -> Model:
    """An articulated person of primitives carrying the 24 PASCAL-Part part names.

    Segment lengths in units of body height H follow Drillis & Contini's anthropometric table
    (1966, as in Winter, "Biomechanics and Motor Control of Human Movement"): upper arm 0.186 H,
    forearm 0.146 H, thigh 0.245 H, shank 0.246 H. Head sphere, ellipsoid torso, capsule limbs,
    sphere hands, ellipsoid feet; local +z is the direction the person faces. 15% are children.
    """
    H = height if height is not None else (rng.uniform(1.0, 1.35) if rng.uniform() < 0.15 else rng.uniform(1.5, 1.9))
    a = _pose(rng)
    skin = _mat(rng, _pick(rng, _SKIN), jitter=0.05)
    hair = _mat(rng, _pick(rng, _HAIR), "noise", scale=0.03, dark=0.75)
    shirt_pattern = _pick(rng, ["plain", "plain", "stripes", "noise"])
    shirt = _mat(rng, _pick(rng, _CLOTH), shirt_pattern, color2=_pick(rng, _CLOTH), scale=0.08)
    trousers = _mat(rng, _pick(rng, _TROUSERS), "noise", scale=0.1, dark=0.8)
    shoes = _mat(rng, _pick(rng, [(30, 30, 30), (90, 50, 30), (230, 230, 230), (150, 30, 30)]))
    dark = Material((0.05, 0.05, 0.06))
    lips = _mat(rng, (170, 80, 80), jitter=0.05)
    sleeve = _pick(rng, ["long", "short", "short", "none"])
    upper_arm_mat = skin if sleeve == "none" else shirt
    lower_arm_mat = shirt if sleeve == "long" else skin
    shin_mat = skin if rng.uniform() < 0.2 else trousers  # shorts

    # Joints (metres, person frame, before lifting the feet onto the ground).
    hip_y, shoulder_y, head_y, head_r = 0.53 * H, 0.82 * H, 0.935 * H, 0.062 * H
    joints, pieces = {}, []
    for side, s in (("l", 1.0), ("r", -1.0)):
        hip = np.array([s * 0.055 * H, hip_y, 0.0])
        knee = hip + 0.245 * H * _limb_dir(a[f"{side}_hip"], a[f"{side}_hab"], s)
        ankle = knee + 0.246 * H * _limb_dir(a[f"{side}_hip"] - a[f"{side}_kn"], a[f"{side}_hab"], s)
        shoulder = np.array([s * 0.12 * H, shoulder_y, 0.0])
        elbow = shoulder + 0.186 * H * _limb_dir(a[f"{side}_sh"], a[f"{side}_ab"], s)
        wrist = elbow + 0.146 * H * _limb_dir(a[f"{side}_sh"] + a[f"{side}_el"], a[f"{side}_ab"], s)
        joints[side] = (hip, knee, ankle, shoulder, elbow, wrist)
    foot_ry = 0.022 * H
    lift = -min(joints["l"][2][1], joints["r"][2][1]) + foot_ry + 0.01 * H
    up = np.array([0.0, lift, 0.0])

    for side, s in (("l", 1.0), ("r", -1.0)):
        hip, knee, ankle, shoulder, elbow, wrist = (j + up for j in joints[side])
        hand_dir = (wrist - elbow) / np.linalg.norm(wrist - elbow)
        pieces += [
            Piece(Capsule(hip, knee, 0.045 * H), trousers, f"{side}uleg"),
            Piece(Capsule(knee, ankle, 0.033 * H), shin_mat, f"{side}lleg"),
            Piece(Ellipsoid(ankle + np.array([0.0, -0.01 * H, 0.035 * H]), (0.03 * H, foot_ry, 0.06 * H)), shoes,
                  f"{side}foot"),
            Piece(Capsule(shoulder, elbow, 0.028 * H), upper_arm_mat, f"{side}uarm"),
            Piece(Capsule(elbow, wrist, 0.023 * H), lower_arm_mat, f"{side}larm"),
            Piece(sphere(wrist + 0.03 * H * hand_dir, 0.027 * H), skin, f"{side}hand"),
        ]
    torso_c = np.array([0.0, (hip_y + shoulder_y) / 2 + 0.01 * H, 0.0]) + up
    pieces.append(Piece(Ellipsoid(torso_c, (0.115 * H, (shoulder_y - hip_y) / 2 + 0.04 * H, 0.065 * H)), shirt,
                        "torso"))
    head_c = np.array([0.0, head_y, 0.0]) + up
    pieces.append(Piece(Capsule(np.array([0.0, shoulder_y - 0.02 * H, 0.0]) + up, head_c - [0.0, 0.5 * head_r, 0.0],
                                0.028 * H), skin, "neck"))
    pieces.append(Piece(sphere(head_c, head_r), skin, "head"))

    # Face features in a head frame turned by the head's yaw and pitch.
    head_rot = rot_y(a["head_yaw"]) @ rot_x(a["head_pitch"])

    def at(x: float, y: float, z: float) -> np.ndarray:
        return head_c + head_rot @ (head_r * np.array([x, y, z]))

    if rng.uniform() > 0.1:  # 10% are bald
        pieces.append(Piece(Ellipsoid(at(0.0, 0.22, -0.15), (1.06 * head_r, 0.95 * head_r, 1.06 * head_r), head_rot),
                            hair, "hair"))
    for side, s in (("l", 1.0), ("r", -1.0)):
        pieces += [
            Piece(sphere(at(s * 0.98, 0.0, -0.05), 0.25 * head_r), skin, f"{side}ear"),
            Piece(sphere(at(s * 0.33, 0.18, 0.9), 0.13 * head_r), dark, f"{side}eye"),
            Piece(Capsule(at(s * 0.18, 0.42, 0.9), at(s * 0.5, 0.4, 0.8), 0.06 * head_r), Material(hair.color2),
                  f"{side}ebrow"),
        ]
    pieces += [Piece(Ellipsoid(at(0.0, -0.05, 1.0), (0.12 * head_r, 0.18 * head_r, 0.15 * head_r), head_rot), skin,
                     "nose"),
               Piece(Capsule(at(-0.25, -0.45, 0.86), at(0.25, -0.45, 0.86), 0.07 * head_r), lips, "mouth")]
    return Model([Thing(label, pieces, context)], (0.5 * H, H, 0.35 * H))


# -- NYUD-like rooms ------------------------------------------------------------------------------
def _on_floor_box(size: Sequence[float], y0: float = 0.0, z: float = 0.0, x: float = 0.0) -> Box:
    """A box of full ``size`` (w, h, d) standing at height ``y0`` centred at (x, ., z)."""
    w, h, d = size
    return Box((x, y0 + h / 2, z), (w / 2, h / 2, d / 2))


def _legs(w: float, d: float, h: float, thickness: float, mat: Material, inset: float = 0.03) -> list[Piece]:
    """Four vertical box legs under a w x d top at height h."""
    xs, zs = w / 2 - inset - thickness / 2, d / 2 - inset - thickness / 2
    return [Piece(_on_floor_box((thickness, h, thickness), 0.0, sz * zs, sx * xs), mat)
            for sx in (-1, 1) for sz in (-1, 1)]


def _small_items(rng: np.random.Generator, top_y: float, w: float, d: float, n: int) -> list[Thing]:
    """Props standing on a surface at height ``top_y``: books, paper, boxes, bottles, vases."""
    things = []
    for _ in range(n):
        x, z = rng.uniform(-w / 2 + 0.1, w / 2 - 0.1), rng.uniform(-d / 2 + 0.08, d / 2 - 0.08)
        kind = _pick(rng, ["books", "paper", "box", "otherprop", "otherprop"])
        if kind == "books":
            size = (rng.uniform(0.15, 0.3), rng.uniform(0.04, 0.15), rng.uniform(0.15, 0.25))
            mat = _mat(rng, _pick(rng, _CLOTH), "stripes", color2=_pick(rng, _CLOTH), scale=0.05)
            things.append(Thing(_NYU["books"], [Piece(_on_floor_box(size, top_y, z, x), mat)]))
        elif kind == "paper":
            size = (0.21, 0.004, 0.3)
            things.append(Thing(_NYU["paper"],
                                [Piece(_on_floor_box(size, top_y, z, x), _mat(rng, (245, 245, 240), jitter=0.03))]))
        elif kind == "box":
            size = tuple(rng.uniform(0.15, 0.35, 3))
            things.append(Thing(_NYU["box"],
                                [Piece(_on_floor_box(size, top_y, z, x),
                                       _mat(rng, (170, 130, 85), "noise", scale=0.1, dark=0.85))]))
        else:
            r, h = rng.uniform(0.03, 0.08), rng.uniform(0.08, 0.3)
            if rng.uniform() < 0.6:
                shape = Cylinder((x, top_y, z), (x, top_y + h, z), r)
            else:
                shape = sphere((x, top_y + r, z), r)
            things.append(Thing(_NYU["otherprop"], [Piece(shape, _mat(rng, _pick(rng, _CLOTH + _METAL)))]))
    return things


def _bed(rng):
    w, d = rng.uniform(1.0, 1.9), rng.uniform(1.9, 2.2)
    frame = _mat(rng, _pick(rng, _WOOD), "stripes", scale=0.06, axis=(1, 0, 0.2), dark=0.8)
    sheet = _mat(rng, _pick(rng, [(240, 240, 235), (200, 210, 230), (230, 215, 200)]), jitter=0.04)
    blanket = _mat(rng, _pick(rng, _FABRIC), _pick(rng, ["plain", "checker", "stripes", "noise"]),
                   color2=_pick(rng, _FABRIC), scale=0.25)
    pieces = [Piece(_on_floor_box((w, 0.3, d)), frame),
              Piece(_on_floor_box((w - 0.04, 0.22, d - 0.06), 0.3), sheet),
              Piece(_on_floor_box((w + 0.02, 0.16, d * 0.62), 0.38, d * 0.19), blanket),
              Piece(_on_floor_box((w, rng.uniform(0.8, 1.1), 0.06), 0.0, -d / 2 + 0.03), frame)]
    things = [Thing(_NYU["bed"], pieces)]
    pillow = _mat(rng, _pick(rng, [(245, 245, 240), (230, 220, 200)] + _FABRIC), jitter=0.05)
    n = 2 if w > 1.3 else 1
    for i in range(n):
        x = (i - (n - 1) / 2) * w / n
        things.append(Thing(_NYU["pillow"],
                            [Piece(Ellipsoid((x, 0.6, -d / 2 + 0.3), (min(0.3, w / n / 2 - 0.04), 0.08, 0.18)),
                                   pillow)]))
    if rng.uniform() < 0.4:
        heap = Ellipsoid((rng.uniform(-w / 3, w / 3), 0.56, d * 0.2), (0.25, 0.05, 0.2), rot_y(rng.uniform(0, 3)))
        things.append(Thing(_NYU["clothes"], [Piece(heap, _mat(rng, _pick(rng, _CLOTH), "noise", scale=0.1))]))
    return Model(things, (w, 1.0, d))


def _lamp(rng, y0: float = 0.0, floor: bool = False) -> Thing:
    h = rng.uniform(1.4, 1.7) if floor else rng.uniform(0.35, 0.55)
    metal = _mat(rng, _pick(rng, _METAL))
    shade_mat = _mat(rng, _pick(rng, [(245, 235, 200), (230, 230, 225), (200, 160, 110)]))
    r = 0.2 if floor else 0.13
    return Thing(_NYU["lamp"], [Piece(Cylinder((0, y0, 0), (0, y0 + 0.03, 0), r * 0.8), metal),
                                Piece(Capsule((0, y0, 0), (0, y0 + h * 0.75, 0), 0.015), metal),
                                Piece(Cylinder((0, y0 + h * 0.7, 0), (0, y0 + h, 0), r), shade_mat)])


def _night_stand(rng):
    w, h, d = rng.uniform(0.4, 0.55), rng.uniform(0.45, 0.65), rng.uniform(0.35, 0.45)
    things = [Thing(_NYU["night stand"],
                    [Piece(_on_floor_box((w, h, d)), _mat(rng, _pick(rng, _WOOD), "stripes", scale=0.18, dark=0.75))])]
    if rng.uniform() < 0.7:
        things.append(_lamp(rng, h))
    return Model(things, (w, h, d))


def _dresser(rng):
    w, h, d = rng.uniform(0.8, 1.5), rng.uniform(0.8, 1.2), rng.uniform(0.4, 0.55)
    things = [Thing(_NYU["dresser"],
                    [Piece(_on_floor_box((w, h, d)), _mat(rng, _pick(rng, _WOOD), "stripes", scale=0.22, dark=0.6))])]
    things += _small_items(rng, h, w, d, int(rng.integers(0, 3)))
    return Model(things, (w, h, d))


def _cabinet(rng):
    w, h, d = rng.uniform(0.6, 1.6), rng.uniform(0.7, 2.0), rng.uniform(0.4, 0.6)
    mat = _mat(rng, _pick(rng, _WOOD + [(235, 235, 230)]), "stripes", scale=rng.uniform(0.35, 0.6), axis=(1, 0, 0),
               dark=0.7)
    things = [Thing(_NYU["cabinet"], [Piece(_on_floor_box((w, h, d)), mat)])]
    if h < 1.2 and rng.uniform() < 0.5:  # a television on a low cabinet
        tw = min(w, rng.uniform(0.7, 1.2))
        things.append(_television(rng, tw, h, 0.0))
    return Model(things, (w, h, d))


def _television(rng, w: float, y0: float, z: float) -> Thing:
    h = w * 0.58
    case = _mat(rng, (25, 25, 28), jitter=0.05)
    screen = _mat(rng, _pick(rng, [(20, 30, 60), (40, 40, 45), (60, 90, 130)]), "noise", color2=(90, 130, 170),
                  scale=0.15)
    return Thing(_NYU["television"], [Piece(_on_floor_box((0.2, 0.04, 0.15), y0, z), case),
                                      Piece(_on_floor_box((w, h, 0.05), y0 + 0.06, z), case),
                                      Piece(Rect((0, y0 + 0.06 + h / 2, z + 0.026), (1, 0, 0), (0, 1, 0),
                                                 w / 2 - 0.025, h / 2 - 0.025), screen)],
                 dropout=0.3)


def _bookshelf(rng):
    w, h, d = rng.uniform(0.6, 1.4), rng.uniform(1.2, 2.1), rng.uniform(0.28, 0.4)
    wood = _mat(rng, _pick(rng, _WOOD + [(240, 240, 235)]), "stripes", scale=0.1, axis=(0, 0, 1), dark=0.85)
    pieces = [Piece(_on_floor_box((w, h, 0.02), 0.0, -d / 2 + 0.01), wood)]
    pieces += [Piece(_on_floor_box((0.03, h, d), 0.0, 0.0, s * (w / 2 - 0.015)), wood) for s in (-1, 1)]
    n_shelves = max(2, int(h / 0.38))
    books = []
    for i in range(n_shelves + 1):
        y = i * (h - 0.03) / n_shelves
        pieces.append(Piece(_on_floor_box((w, 0.03, d), y), wood))
        if i < n_shelves and rng.uniform() < 0.85:
            bw = rng.uniform(0.4, 1.0) * (w - 0.06)
            bh = rng.uniform(0.18, 0.3)
            books.append(Piece(_on_floor_box((bw, bh, d * 0.8), y + 0.03, 0.0,
                                             rng.uniform(-1, 1) * (w - 0.06 - bw) / 2),
                               _mat(rng, _pick(rng, _CLOTH), "stripes", color2=_pick(rng, _CLOTH), scale=0.045,
                                    axis=(1, 0, 0))))
    things = [Thing(_NYU["bookshelf"], pieces)]
    if books:
        things.append(Thing(_NYU["books"], books))
    return Model(things, (w, h, d))


def _shelves(rng):
    w, h, d = rng.uniform(0.6, 1.2), rng.uniform(0.9, 1.8), rng.uniform(0.3, 0.45)
    metal = _mat(rng, _pick(rng, _METAL + _WOOD))
    pieces = [Piece(_on_floor_box((0.03, h, 0.03), 0.0, sz * (d / 2 - 0.015), sx * (w / 2 - 0.015)), metal)
              for sx in (-1, 1) for sz in (-1, 1)]
    n = max(2, int(h / 0.4))
    things = []
    for i in range(n + 1):
        y = 0.1 + i * (h - 0.13) / n
        pieces.append(Piece(_on_floor_box((w, 0.025, d), y), metal))
        if i < n:
            things += _small_items(rng, y + 0.025, w, d, int(rng.integers(0, 3)))
    return Model([Thing(_NYU["shelves"], pieces)] + things, (w, h, d))


def _chair(rng, label: int = _NYU["chair"]):
    w, d, seat = rng.uniform(0.42, 0.55), rng.uniform(0.42, 0.55), rng.uniform(0.42, 0.5)
    mat = _mat(rng, _pick(rng, _WOOD + _FABRIC + _METAL))
    pieces = [Piece(_on_floor_box((w, 0.05, d), seat), mat),
              Piece(_on_floor_box((w, rng.uniform(0.35, 0.55), 0.04), seat + 0.05, -d / 2 + 0.02), mat)]
    pieces += _legs(w, d, seat, 0.035, mat, 0.0)
    return Model([Thing(label, pieces)], (w, seat + 0.5, d))


def _table(rng, label: int = _NYU["table"], items: bool = True):
    w, d = rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0)
    h = rng.uniform(0.4, 0.5) if rng.uniform() < 0.3 else rng.uniform(0.7, 0.78)  # coffee or dining table
    top = _mat(rng, _pick(rng, _WOOD + [(240, 240, 240), (60, 60, 60)]), "stripes", scale=0.07, axis=(0.2, 0, 1),
               dark=0.85)
    pieces = [Piece(_on_floor_box((w, 0.04, d), h - 0.04), top)] + _legs(w, d, h - 0.04, 0.05, top)
    things = [Thing(label, pieces)]
    if items:
        things += _small_items(rng, h, w, d, int(rng.integers(0, 4)))
    return Model(things, (w, h, d))


def _desk(rng):
    model = _table(rng, _NYU["desk"], items=False)
    w, h, d = model.size
    things = model.things
    mat = things[0].pieces[0].material
    drawers = _on_floor_box((0.4, h - 0.04, d - 0.04), 0.0, 0.0, w / 2 - 0.22)
    things[0].pieces.append(Piece(drawers, mat))
    if rng.uniform() < 0.7:  # a monitor (labelled television, as NYUD-40 maps monitors)
        things.append(_television(rng, rng.uniform(0.4, 0.6), h, -d / 4))
    things += _small_items(rng, h, w, d, int(rng.integers(1, 4)))
    return Model(things, (w, h, d))


def _sofa(rng):
    w, d = rng.uniform(1.4, 2.4), rng.uniform(0.8, 0.95)
    fabric = _mat(rng, _pick(rng, _FABRIC), "noise", scale=0.15, dark=0.85)
    pieces = [Piece(_on_floor_box((w, 0.42, d)), fabric),
              Piece(_on_floor_box((w, 0.45, 0.2), 0.42, -d / 2 + 0.1), fabric)]
    pieces += [Piece(_on_floor_box((0.18, 0.22, d), 0.42, 0.0, s * (w / 2 - 0.09)), fabric) for s in (-1, 1)]
    things = [Thing(_NYU["sofa"], pieces)]
    for _ in range(int(rng.integers(0, 3))):
        x = rng.uniform(-w / 2 + 0.4, w / 2 - 0.4)
        cushion = Ellipsoid((x, 0.62, -d / 2 + 0.28), (0.2, 0.18, 0.07), rot_x(-0.3))
        cover = _mat(rng, _pick(rng, _FABRIC + _CLOTH), "checker", scale=0.08)
        things.append(Thing(_NYU["pillow"], [Piece(cushion, cover)]))
    return Model(things, (w, 0.87, d))


def _counter(rng):
    w, d = rng.uniform(1.2, 2.8), rng.uniform(0.55, 0.65)
    cab = _mat(rng, _pick(rng, _WOOD + [(235, 235, 230)]), "stripes", scale=0.5, axis=(1, 0, 0), dark=0.7)
    top = _mat(rng, _pick(rng, [(60, 60, 60), (200, 195, 185), (150, 140, 130)]), "noise", scale=0.05, dark=0.8)
    things = [Thing(_NYU["cabinet"], [Piece(_on_floor_box((w, 0.86, d - 0.03)), cab)]),
              Thing(_NYU["counter"], [Piece(_on_floor_box((w + 0.02, 0.04, d), 0.86, 0.01), top)])]
    if rng.uniform() < 0.6:
        basin = _on_floor_box((0.5, 0.03, 0.4), 0.88, 0.0, rng.uniform(-w / 4, w / 4))
        things.append(Thing(_NYU["sink"], [Piece(basin, _mat(rng, (210, 210, 215), jitter=0.03))]))
    if rng.uniform() < 0.7:  # wall cabinets
        things.append(Thing(_NYU["cabinet"], [Piece(_on_floor_box((w, 0.7, 0.35), 1.45, -d / 2 + 0.175), cab)]))
    things += _small_items(rng, 0.9, w, d * 0.8, int(rng.integers(0, 3)))
    return Model(things, (w, 2.15, d))


def _refrigerator(rng):
    w, h, d = rng.uniform(0.6, 0.9), rng.uniform(1.6, 1.9), rng.uniform(0.6, 0.75)
    mat = _mat(rng, _pick(rng, [(235, 235, 235), (190, 190, 195)]), "stripes", scale=h * 0.9, axis=(0, 1, 0), dark=0.8,
               jitter=0.03)
    handle = Capsule((w / 2 - 0.08, h * 0.45, d / 2 + 0.03), (w / 2 - 0.08, h * 0.75, d / 2 + 0.03), 0.015)
    return Model([Thing(_NYU["refrigerator"], [Piece(_on_floor_box((w, h, d)), mat),
                                                 Piece(handle, _mat(rng, _pick(rng, _METAL)))])], (w, h, d))


def _toilet(rng):
    white = _mat(rng, (240, 240, 240), jitter=0.02)
    return Model([Thing(_NYU["toilet"], [Piece(_on_floor_box((0.4, 0.4, 0.18), 0.35, -0.25), white),
                                         Piece(Ellipsoid((0, 0.3, 0.05), (0.19, 0.12, 0.28)), white),
                                         Piece(Cylinder((0, 0, 0.0), (0, 0.3, 0.0), 0.13), white)])],
                 (0.42, 0.75, 0.68))


def _bathtub(rng):
    w, d = rng.uniform(1.5, 1.75), rng.uniform(0.7, 0.8)
    white = _mat(rng, (240, 240, 238), jitter=0.02)
    things = [Thing(_NYU["bathtub"], [Piece(_on_floor_box((w, 0.55, d)), white)])]
    if rng.uniform() < 0.7:
        curtain = _mat(rng, _pick(rng, _CLOTH), "stripes", color2=(240, 240, 240), scale=0.12, axis=(1, 0, 0))
        things.append(Thing(_NYU["shower curtain"],
                            [Piece(_on_floor_box((w * rng.uniform(0.4, 0.9), 1.4, 0.02), 0.6, d / 2), curtain)]))
    return Model(things, (w, 2.0, d))


def _sink_vanity(rng):
    w, d = rng.uniform(0.6, 1.0), rng.uniform(0.45, 0.55)
    things = [Thing(_NYU["cabinet"],
                    [Piece(_on_floor_box((w, 0.8, d)), _mat(rng, _pick(rng, _WOOD + [(235, 235, 230)])))]),
              Thing(_NYU["sink"],
                    [Piece(_on_floor_box((w * 0.7, 0.08, d * 0.8), 0.8), _mat(rng, (240, 240, 240), jitter=0.02))])]
    if rng.uniform() < 0.6:
        things.append(Thing(_NYU["towel"], [Piece(_on_floor_box((0.3, 0.45, 0.03), 0.35, d / 2 + 0.02, w / 4),
                                                  _mat(rng, _pick(rng, _CLOTH), "stripes", scale=0.1))]))
    return Model(things, (w, 0.9, d))


def _floor_mat(rng):
    w, d = rng.uniform(0.6, 2.0), rng.uniform(0.5, 1.4)
    mat = _mat(rng, _pick(rng, _FABRIC + _CLOTH), _pick(rng, ["checker", "stripes", "noise"]),
               color2=_pick(rng, _FABRIC), scale=0.2, axis=(1, 0, 0))
    return Model([Thing(_NYU["floor mat"], [Piece(_on_floor_box((w, 0.012, d)), mat)])], (w, 0.012, d))


def _floor_clutter(rng):
    kind = _pick(rng, ["box", "bag", "otherfurniture", "unlabeled", "clothes"])
    s = rng.uniform(0.3, 0.6, 3)
    if kind == "box":
        n = int(rng.integers(1, 3))
        mat = _mat(rng, (170, 130, 85), "noise", scale=0.1, dark=0.85)
        stack, y = [], 0.0
        for i in range(n):  # a stack of smaller and smaller boxes
            size = s * (1 - 0.2 * i)
            stack.append(Piece(_on_floor_box(size, y), mat))
            y += size[1]
        return Model([Thing(_NYU["box"], stack)], (s[0], y, s[2]))
    if kind == "bag":
        bag = Ellipsoid((0, s[1] * 0.45, 0), (s[0] / 2, s[1] * 0.45, s[2] / 3))
        return Model([Thing(_NYU["bag"], [Piece(bag, _mat(rng, _pick(rng, _CLOTH + _TROUSERS), "noise", scale=0.1))])],
                     (s[0], s[1], s[2]))
    if kind == "otherfurniture":  # a stool or a side table
        mat = _mat(rng, _pick(rng, _WOOD + _METAL))
        return Model([Thing(_NYU["otherfurniture"], [Piece(Cylinder((0, 0, 0), (0, s[1] + 0.1, 0), s[0] / 2), mat)])],
                     (s[0], s[1] + 0.1, s[0]))
    if kind == "clothes":
        cloth = _mat(rng, _pick(rng, _CLOTH), "noise", scale=0.08)
        return Model([Thing(_NYU["clothes"], [Piece(Ellipsoid((0, 0.06, 0), (s[0] / 2, 0.06, s[2] / 2)), cloth)])],
                     (s[0], 0.12, s[2]))
    # unlabeled clutter (NYUD leaves some objects unannotated: label 0)
    lump = Ellipsoid((0, s[1] / 2, 0), s / 2)
    return Model([Thing(0, [Piece(lump, _mat(rng, _pick(rng, _CLOTH + _METAL), "noise", scale=0.1))])], tuple(s))


def _column(rng):
    w = rng.uniform(0.3, 0.5)
    pillar = Piece(_on_floor_box((w, 3.2, w)), _mat(rng, _pick(rng, _PAINT), jitter=0.04))
    return Model([Thing(_NYU["otherstructure"], [pillar])], (w, 3.2, w))


def _floor_lamp(rng):
    return Model([_lamp(rng, floor=True)], (0.4, 1.7, 0.4))


def _standing_person(rng):
    return _person(rng, _NYU["person"])


# Room types: (furniture against walls, furniture in the middle); entries are (builder, min, max).
_ROOMS = {
    "bedroom": ([(_bed, 1, 1), (_night_stand, 0, 2), (_dresser, 0, 1), (_cabinet, 0, 1), (_bookshelf, 0, 1)],
                [(_floor_mat, 0, 1), (_floor_clutter, 0, 2), (_chair, 0, 1)]),
    "living_room": ([(_sofa, 1, 2), (_cabinet, 0, 1), (_bookshelf, 0, 1), (_shelves, 0, 1)],
                    [(_table, 1, 1), (_chair, 0, 2), (_floor_mat, 0, 1), (_floor_clutter, 0, 2),
                     (_floor_lamp, 0, 1), (_standing_person, 0, 1)]),
    "office": ([(_desk, 1, 2), (_shelves, 0, 1), (_cabinet, 0, 2), (_bookshelf, 0, 1)],
               [(_chair, 1, 3), (_floor_clutter, 0, 3), (_standing_person, 0, 1), (_column, 0, 1)]),
    "kitchen": ([(_counter, 1, 2), (_refrigerator, 0, 1), (_cabinet, 0, 1)],
                [(_table, 0, 1), (_chair, 0, 3), (_floor_clutter, 0, 2), (_floor_mat, 0, 1)]),
    "bathroom": ([(_toilet, 1, 1), (_bathtub, 0, 1), (_sink_vanity, 1, 1), (_cabinet, 0, 1)],
                 [(_floor_mat, 0, 1), (_floor_clutter, 0, 1)]),
}


class _Layout:
    """Non-overlapping footprints (axis-aligned rectangles on the floor) in a room."""

    def __init__(self, width: float, depth: float, camera_xz: tuple[float, float]):
        self.width, self.depth = width, depth
        cx, cz = camera_xz
        self.rects = [(cx - 0.6, cx + 0.6, cz - 0.8, 10.0)]  # keep the space around the camera free

    def _free(self, x0, x1, z0, z1) -> bool:
        return all(x1 <= a or x0 >= b or z1 <= c or z0 >= d for a, b, c, d in self.rects)

    def against_wall(self, rng, w: float, d: float, walls: Sequence[str] = ("back", "left", "right")):
        """(position, yaw) for a footprint w x d with its back against a wall, or None."""
        W, D = self.width, self.depth
        for _ in range(25):
            wall = _pick(rng, walls)
            if wall == "back":
                x = rng.uniform(-W / 2 + w / 2, W / 2 - w / 2) if W > w else 0.0
                rect, pos, yaw = (x - w / 2, x + w / 2, -D, -D + d), (x, 0.0, -D + d / 2 + 0.005), 0.0
            else:
                s = -1.0 if wall == "left" else 1.0
                z = rng.uniform(-D + w / 2, -1.2)
                edge = s * W / 2
                rect = (min(edge, edge - s * d), max(edge, edge - s * d), z - w / 2, z + w / 2)
                pos, yaw = (edge - s * (d / 2 + 0.005), 0.0, z), -s * math.pi / 2
            if rect[0] >= -W / 2 - 1e-9 and rect[1] <= W / 2 + 1e-9 and rect[2] >= -D and self._free(*rect):
                self.rects.append(rect)
                return pos, yaw
        return None

    def in_middle(self, rng, w: float, d: float):
        """(position, yaw) for a footprint w x d somewhere on the free floor, or None."""
        W, D = self.width, self.depth
        r = math.hypot(w, d) / 2
        for _ in range(25):
            if W / 2 - r <= -W / 2 + r or -D + r >= -1.0:
                return None
            x, z = rng.uniform(-W / 2 + r, W / 2 - r), rng.uniform(-D + r, -1.0)
            rect = (x - r, x + r, z - r, z + r)
            if self._free(*rect):
                self.rects.append(rect)
                return (x, 0.0, z), rng.uniform(-math.pi, math.pi)
        return None


def _wall_frame(wall: str, width: float, depth: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(origin at the wall's middle on the floor, inward normal, wall length) of a room wall."""
    if wall == "back":
        return np.array([0.0, 0.0, -depth]), np.array([0.0, 0.0, 1.0]), width
    s = -1.0 if wall == "left" else 1.0
    return np.array([s * width / 2, 0.0, -depth / 2]), np.array([-s, 0.0, 0.0]), depth


def _wall_decor(rng, room: str, width: float, depth: float, height: float) -> list[Thing]:
    """Windows (with curtains or blinds), doors, pictures, whiteboards, mirrors, towels and one
    unlabeled wall fixture, placed without overlap on the back and side walls."""
    kinds = ["window", "window", "picture", "picture", "door"]
    kinds += {"office": ["whiteboard", "picture"], "bathroom": ["mirror", "towel"], "bedroom": ["mirror", "picture"],
              "kitchen": ["window"], "living_room": ["picture", "window"]}[room]
    kinds = [k for k in kinds if rng.uniform() < 0.6] + ["fixture"]
    taken: dict[str, list[tuple[float, float, float, float]]] = {"back": [], "left": [], "right": []}
    things = []
    for kind in kinds:
        w, h, y0 = {"window": (rng.uniform(0.8, 1.6), rng.uniform(1.0, 1.4), rng.uniform(0.8, 1.1)),
                    "picture": (rng.uniform(0.3, 0.9), rng.uniform(0.25, 0.7), rng.uniform(1.2, 1.6)),
                    "door": (rng.uniform(0.8, 0.95), rng.uniform(2.0, 2.1), 0.0),
                    "whiteboard": (rng.uniform(1.2, 2.0), rng.uniform(0.9, 1.2), rng.uniform(0.9, 1.1)),
                    "mirror": (rng.uniform(0.4, 0.8), rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.3)),
                    "towel": (rng.uniform(0.3, 0.5), rng.uniform(0.5, 0.8), rng.uniform(0.9, 1.2)),
                    "fixture": (rng.uniform(0.15, 0.3), rng.uniform(0.1, 0.2), rng.uniform(0.3, 2.0))}[kind]
        for _ in range(10):
            wall = _pick(rng, ["back", "back", "left", "right"])
            origin, normal, length = _wall_frame(wall, width, depth)
            along = np.cross([0.0, 1.0, 0.0], normal)  # wall's horizontal axis (to the right, seen from inside)
            margin = 0.5 if kind in ("window", "door") else 0.3
            if length - 2 * margin < w or y0 + h > height - 0.05:
                continue
            u = rng.uniform(-length / 2 + margin + w / 2, length / 2 - margin - w / 2)
            if wall != "back" and origin[2] + u * along[2] > -1.0:  # too near the camera's front wall
                continue
            box = (u - w / 2 - 0.1, u + w / 2 + 0.1, y0, y0 + h)
            if any(not (box[1] <= a or box[0] >= b or box[3] <= c or box[2] >= d) for a, b, c, d in taken[wall]):
                continue
            taken[wall].append(box)
            center = origin + u * along + np.array([0.0, y0 + h / 2, 0.0])
            things += _decor_thing(rng, kind, center, normal, along, w, h)
            break
    return things


def _decor_thing(rng, kind: str, center: np.ndarray, normal: np.ndarray, along: np.ndarray, w: float,
                 h: float) -> list[Thing]:
    """The things of one wall decoration of size w x h centred at ``center`` on a wall with inward
    ``normal`` and horizontal axis ``along``; flat parts are rectangles a few mm off the wall."""
    up = np.array([0.0, 1.0, 0.0])

    def rect(offset: float, hw: float, hh: float, dy: float = 0.0, dx: float = 0.0) -> Rect:
        return Rect(center + offset * normal + dy * up + dx * along, along, up, hw, hh)

    if kind == "window":
        sky = _mat(rng, _pick(rng, [(200, 225, 245), (225, 235, 240), (170, 200, 230)]), "noise",
                   color2=(250, 250, 250), scale=0.4)
        frame = _mat(rng, _pick(rng, [(245, 245, 245)] + _WOOD), jitter=0.03)
        things = [Thing(_NYU["window"], [Piece(rect(0.012, w / 2 - 0.05, h / 2 - 0.05), sky),
                                         Piece(rect(0.006, w / 2, h / 2), frame)], dropout=0.85)]
        cover = rng.uniform()
        if cover < 0.35:
            fabric = _mat(rng, _pick(rng, _FABRIC + _CLOTH), "stripes", scale=0.1, axis=tuple(along), dark=0.75)
            for s in (-1, 1):
                cw = rng.uniform(0.25, 0.45)
                drape = Box(center + 0.05 * normal + s * (w / 2 + cw / 2 - 0.15) * along + 0.15 * up,
                            (cw / 2, h / 2 + 0.3, 0.03), np.column_stack([along, up, normal]))
                things.append(Thing(_NYU["curtain"], [Piece(drape, fabric)]))
        elif cover < 0.55:
            slats = _mat(rng, _pick(rng, [(235, 235, 230), (200, 180, 150)]), "stripes", scale=0.05, axis=(0, 1, 0),
                         dark=0.8)
            bh = h * rng.uniform(0.4, 1.0)
            things.append(Thing(_NYU["blinds"], [Piece(rect(0.02, w / 2, bh / 2, dy=(h - bh) / 2), slats)]))
        return things
    if kind == "picture":
        art = _mat(rng, _pick(rng, _CLOTH + _FABRIC), "noise", color2=_pick(rng, _CLOTH), scale=0.12)
        frame = _mat(rng, _pick(rng, _WOOD + [(30, 30, 30), (200, 170, 60)]))
        return [Thing(_NYU["picture"],
                      [Piece(rect(0.012, w / 2 - 0.03, h / 2 - 0.03), art), Piece(rect(0.006, w / 2, h / 2), frame)])]
    if kind == "door":
        wood = _mat(rng, _pick(rng, _WOOD + [(240, 240, 235)]), "stripes", scale=0.08, axis=(0, 1, 0), dark=0.85)
        knob = sphere(center + 0.04 * normal + (w / 2 - 0.1) * along - 0.05 * up, 0.03)
        return [Thing(_NYU["door"], [Piece(rect(0.008, w / 2, h / 2), wood), Piece(knob, _mat(rng, (200, 180, 80)))])]
    if kind == "whiteboard":
        board = Piece(rect(0.015, w / 2 - 0.03, h / 2 - 0.03), _mat(rng, (248, 248, 248), jitter=0.02))
        return [Thing(_NYU["whiteboard"], [board, Piece(rect(0.008, w / 2, h / 2), _mat(rng, _METAL[0]))])]
    if kind == "mirror":
        glass = _mat(rng, (180, 190, 200), "noise", color2=(120, 130, 140), scale=0.3)
        return [Thing(_NYU["mirror"], [Piece(rect(0.01, w / 2, h / 2), glass)], dropout=0.9)]
    if kind == "towel":
        cloth = _mat(rng, _pick(rng, _CLOTH), "stripes", color2=(240, 240, 240), scale=0.15)
        hanging = Box(center + 0.03 * normal, (w / 2, h / 2, 0.02), np.column_stack([along, up, normal]))
        return [Thing(_NYU["towel"], [Piece(hanging, cloth)])]
    # an air vent / switch plate / thermostat: left unlabeled, as NYUD annotators did with small fixtures
    grille = _mat(rng, (200, 200, 200), "stripes", scale=0.03, axis=(0, 1, 0), dark=0.6)
    return [Thing(0, [Piece(rect(0.01, w / 2, h / 2), grille)])]


def _nyud_scene(rng: np.random.Generator, height: int, width: int, persons: float | None = None) -> Scene:
    """A random furnished room seen by a Kinect-like camera near its front wall.

    ``persons``: None keeps the room types' own persons (0..1 standing in living rooms and offices,
    none elsewhere); a number makes every room draw Poisson(``persons``) standing persons, placed
    in the middle of the room before the other free-standing furniture (so they usually fit).
    """
    room = _pick(rng, list(_ROOMS))
    W = rng.uniform(3.0, 6.0) if room != "bathroom" else rng.uniform(2.2, 3.5)
    D = rng.uniform(3.5, 8.0) if room != "bathroom" else rng.uniform(3.0, 4.5)
    ceiling = rng.uniform(2.4, 3.0)
    cam_x, cam_z = rng.uniform(-0.25, 0.25) * W, rng.uniform(-0.3, 0.0)
    fx, fy, cx, cy = nyud_intrinsics(height, width)
    camera = Camera.looking(height, width, fx, fy, (cam_x, rng.uniform(1.1, 1.7), cam_z),
                            yaw=rng.uniform(-0.45, 0.45), pitch=rng.uniform(-0.42, -0.1), cx=cx, cy=cy)

    paint = _pick(rng, _PAINT)
    floor_look = _pick(rng, ["wood", "tile", "carpet"])
    floor_mat = {"wood": _mat(rng, _pick(rng, _WOOD), "stripes", scale=0.15, axis=(1, 0, 0.1), dark=0.75),
                 "tile": _mat(rng, _pick(rng, [(220, 215, 205), (180, 180, 180), (150, 110, 80)]), "checker",
                              scale=0.4, dark=0.8),
                 "carpet": _mat(rng, _pick(rng, _FABRIC + [(170, 160, 140)]), "noise", scale=0.3,
                                dark=0.85)}[floor_look]
    things = [Thing(_NYU["floor"], [Piece(Plane((0, 0, 0), (0, 1, 0)), floor_mat)]),
              Thing(_NYU["ceiling"],
                    [Piece(Plane((0, ceiling, 0), (0, -1, 0)), _mat(rng, (245, 245, 242), jitter=0.02))])]
    for point, normal in (((0, 0, -D), (0, 0, 1)), ((-W / 2, 0, 0), (1, 0, 0)), ((W / 2, 0, 0), (-1, 0, 0)),
                          ((0, 0, 0.6), (0, 0, -1))):
        things.append(Thing(_NYU["wall"], [Piece(Plane(point, normal), _mat(rng, paint, jitter=0.03))]))
    if rng.uniform() < 0.5:  # a ceiling light
        lx, lz = rng.uniform(-W / 4, W / 4), -D * rng.uniform(0.3, 0.7)
        things.append(Thing(_NYU["otherprop"],
                            [Piece(Cylinder((lx, ceiling - 0.04, lz), (lx, ceiling, lz), 0.2),
                                   Material((1.0, 1.0, 0.95)))]))
    things += _wall_decor(rng, room, W, D, ceiling)

    layout = _Layout(W, D, (cam_x, cam_z))
    walls, middle = _ROOMS[room]
    if persons is not None:  # the relatedness knob: persons carry the PASCAL-Part parts
        n_persons = int(rng.poisson(persons))
        middle = [(_standing_person, n_persons, n_persons)] + [m for m in middle if m[0] is not _standing_person]
    for builders, place in ((walls, layout.against_wall), (middle, layout.in_middle)):
        for builder, lo, hi in builders:
            for _ in range(int(rng.integers(lo, hi + 1))):
                model = builder(rng)
                spot = place(rng, model.size[0], model.size[2])
                if spot is not None:
                    things += model.placed(*spot)

    light = np.array([rng.uniform(-0.6, 0.6), 1.0, rng.uniform(-0.2, 0.9)])
    return Scene(camera, things, light, rng.uniform(0.35, 0.55), lambda d: np.zeros((len(d), 3)),
                 rng.uniform(0.005, 0.02))


def _kinect_depth(rng: np.random.Generator, depth: np.ndarray, thing: np.ndarray, things: Sequence[Thing],
                  fx: float) -> np.ndarray:
    """Depth as a Kinect reads it: 0 (missing) out of range, on glass / mirrors / dark screens
    (per object, with its ``dropout`` probability), and in the projector's shadow.

    NOTE: the shadow: the IR projector sits ``_KINECT_BASELINE`` to one side of the IR camera, so
    the surface just beside a near object's edge is lit by no pattern. A pixel at depth z is in
    the shadow of a nearer pixel k columns to its right (depth z') when k < fx * b * (1/z' - 1/z)
    (the disparity difference), which gives the band of zeros on the left of near objects seen
    in raw NYUD-v2 depth. Registered to the RGB camera, the depth camera's view also misses a
    thin band along the image's left border (1..3 % of the width here).
    """
    out = np.where(np.isfinite(depth), depth, 0.0)
    missing = (out < _KINECT_RANGE[0]) | (out > _KINECT_RANGE[1])
    missing[:, :max(1, int(round(depth.shape[1] * rng.uniform(0.01, 0.03))))] = True
    for k, t in enumerate(things):
        if t.dropout > 0 and rng.uniform() < t.dropout:
            missing |= thing == k
    inv = 1.0 / np.where(out > 0, out, np.inf)
    shift = fx * _KINECT_BASELINE
    for k in range(1, int(math.ceil(shift / _KINECT_RANGE[0])) + 1):
        missing[:, :-k] |= k < shift * (inv[:, k:] - inv[:, :-k])
    out[missing] = 0.0
    return out


def _instance_edges(instances: np.ndarray, shapes: np.ndarray, depth: np.ndarray, jump: float = 0.05) -> np.ndarray:
    """(H, W) bool one-pixel boundaries: between instances, and at depth discontinuities between
    two primitives of one instance (a chair's back in front of its seat), thinned to one pixel."""
    boundary = find_boundaries(instances, connectivity=1, mode="thick")
    depth = np.where(np.isfinite(depth), depth, 1e6)
    for a, b, sa, sb in ((depth[:, :-1], depth[:, 1:], shapes[:, :-1], shapes[:, 1:]),
                         (depth[:-1], depth[1:], shapes[:-1], shapes[1:])):
        step = (np.abs(a - b) > jump * np.minimum(a, b)) & (sa != sb)
        if a.shape[1] != depth.shape[1]:  # horizontal neighbours
            boundary[:, :-1] |= step
            boundary[:, 1:] |= step
        else:
            boundary[:-1] |= step
            boundary[1:] |= step
    return thin(boundary)


def render_nyud_sample(rng: np.random.Generator, height: int, width: int,
                       persons: float | None = None) -> dict[str, np.ndarray]:
    """One NYUD-like sample as arrays, in the conventions of the NYUD_MT files.

    Returns ``image`` (H, W, 3) uint8, ``segmentation`` (H, W) uint8 (0 unlabeled, 1..40),
    ``depth`` (H, W) float32 metres (0 missing), ``normals`` (H, W, 3) float32 unit camera-frame
    (0 where depth is missing), ``edge`` (H, W) float32 {0, 1}, and ``instances`` (H, W) int64
    (an id per object; not written to disk). ``persons``: mean standing persons per room (see
    :func:`_nyud_scene`; None = the room types' own).
    """
    scene = _nyud_scene(rng, height, width, persons)
    r = _render(scene, rng)
    labels = np.array([t.label for t in scene.things] + [0], dtype=np.uint8)
    depth = _kinect_depth(rng, r.depth, r.thing, scene.things, scene.camera.fx)
    normals = np.where((depth > 0)[..., None], r.normals, 0.0)
    edge = _instance_edges(r.thing, r.shape, r.depth)
    return {"image": r.rgb, "segmentation": labels[r.thing], "depth": depth.astype(np.float32),
            "normals": normals.astype(np.float32), "edge": edge.astype(np.float32), "instances": r.thing}


# -- PASCAL-like outdoor scenes -------------------------------------------------------------------
def _voc(label: str, pieces: list[Piece]) -> Thing:
    return Thing(_VOC[label], pieces, VOC_TO_CONTEXT[_VOC[label]])


def _wheel(center: Sequence[float], radius: float, width: float, mat: Material, part: str | None = None) -> Piece:
    c = np.asarray(center, dtype=np.float64)
    return Piece(Cylinder(c - [width / 2, 0, 0], c + [width / 2, 0, 0], radius), mat, part)


def _car(rng):
    L, W = rng.uniform(3.8, 4.7), rng.uniform(1.6, 1.85)
    paint = _mat(rng, _pick(rng, _CLOTH + _METAL), jitter=0.06)
    glass = _mat(rng, (50, 60, 75), "noise", color2=(120, 140, 160), scale=0.4)
    tyre = Material((0.06, 0.06, 0.06))
    pieces = [Piece(_on_floor_box((W, 0.75, L), 0.28), paint),
              Piece(_on_floor_box((W * 0.86, 0.45, L * 0.5), 1.03, -L * 0.05), glass, "window_1"),
              Piece(_on_floor_box((W * 0.9, 0.04, L * 0.48), 1.48, -L * 0.05), paint, "roofside")]
    pieces += [_wheel((s * (W / 2 - 0.08), 0.32, f * L * 0.32), 0.32, 0.22, tyre, f"wheel_{i + 1}")
               for i, (s, f) in enumerate([(-1, 1), (1, 1), (-1, -1), (1, -1)])]
    lamp = Material((1.0, 0.95, 0.8))
    pieces += [Piece(sphere((s * W * 0.35, 0.8, L / 2), 0.08), lamp, f"headlight_{i + 1}")
               for i, s in enumerate((-1, 1))]
    return Model([_voc("car", pieces)], (W, 1.5, L))


def _bus(rng, label: str = "bus"):
    L, W, H = (rng.uniform(9, 12), 2.5, rng.uniform(2.9, 3.3)) if label == "bus" else (rng.uniform(14, 20), 3.0, 3.6)
    paint = _mat(rng, _pick(rng, [(220, 40, 30), (240, 200, 40), (240, 240, 240), (40, 90, 170), (40, 130, 60)]),
                 jitter=0.05)
    glass = _mat(rng, (40, 50, 60), "stripes", color2=(110, 130, 150), scale=1.2, axis=(0, 0, 1))
    tyre = Material((0.06, 0.06, 0.06))
    pieces = [Piece(_on_floor_box((W, H - 0.35, L), 0.35), paint),
              Piece(_on_floor_box((W + 0.02, 0.9, L * 0.92), H * 0.5, 0.0), glass)]
    if label == "train":
        pieces.append(Piece(Ellipsoid((0, H * 0.55, L / 2), (W / 2, H * 0.45, 1.5)), paint))
    else:
        pieces += [_wheel((s * (W / 2 - 0.1), 0.5, f * L * 0.33), 0.5, 0.3, tyre) for s in (-1, 1) for f in (-1, 1)]
    return Model([_voc(label, pieces)], (W, H, L))


def _aeroplane(rng):
    L = rng.uniform(20, 40)
    paint = _mat(rng, _pick(rng, [(240, 240, 240), (200, 200, 210), (240, 240, 230)]), jitter=0.03)
    tail = _mat(rng, _pick(rng, _CLOTH))
    r = L * 0.06
    pieces = [Piece(Ellipsoid((0, r, 0), (r, r, L / 2)), paint, "body"),
              Piece(Box((L * 0.3, r * 0.8, 0), (L * 0.3, r * 0.1, L * 0.07), rot_y(0.25)), paint, "lwing"),  # swept
              Piece(Box((-L * 0.3, r * 0.8, 0), (L * 0.3, r * 0.1, L * 0.07), rot_y(-0.25)), paint, "rwing"),
              Piece(Box((0, r * 2.4, -L * 0.44), (r * 0.1, r * 1.4, L * 0.05)), tail, "tail"),
              Piece(Box((0, r * 1.2, -L * 0.45), (L * 0.12, r * 0.08, L * 0.04)), paint, "stern")]
    pieces += [Piece(Cylinder((s * L * 0.18, r * 0.3, L * 0.04), (s * L * 0.18, r * 0.3, -L * 0.06), r * 0.35),
                     _mat(rng, _METAL[1]), f"engine_{i + 1}") for i, s in enumerate((-1, 1))]
    return Model([_voc("aeroplane", pieces)], (L * 0.9, r * 4, L))


def _bicycle(rng, motor: bool = False):
    R = 0.32 if motor else 0.34
    metal = _mat(rng, _pick(rng, _CLOTH + _METAL))
    tyre = _mat(rng, (25, 25, 25), "noise", color2=(90, 90, 90), scale=0.1)
    w = 0.12 if motor else 0.04
    rear, front = np.array([0, R, -0.52]), np.array([0, R, 0.52])
    seat, bar = np.array([0, 0.9, -0.2]), np.array([0, 1.0, 0.42])
    pieces = [_wheel(rear, R, w, tyre, "bwheel"), _wheel(front, R, w, tyre, "fwheel")]
    if motor:
        pieces += [Piece(Ellipsoid((0, 0.6, 0), (0.2, 0.22, 0.45)), metal),
                   Piece(sphere(bar + [0, -0.1, 0.08], 0.09), Material((1.0, 0.95, 0.8)), "headlight_1")]
    else:
        bracket = np.array([0, 0.3, 0.0])
        tubes = ((rear, seat), (bracket, seat), (bracket, bar - [0, 0.12, 0.06]),
                 (seat + [0, -0.05, 0], bar - [0, 0.1, 0.05]), (front, bar), (rear, bracket))
        pieces += [Piece(Capsule(a, b, 0.02), metal) for a, b in tubes]
    pieces += [Piece(Ellipsoid(seat + [0, 0.04, 0], (0.08 if not motor else 0.18, 0.03, 0.14 if not motor else 0.3)),
                     Material((0.08, 0.08, 0.08)), "saddle"),
               Piece(Capsule(bar - [0.28, 0, 0], bar + [0.28, 0, 0], 0.02), _mat(rng, _METAL[2]), "handlebar")]
    return Model([_voc("motorbike" if motor else "bicycle", pieces)], (0.6, 1.1, 1.8))


def _boat(rng):
    L = rng.uniform(4, 9)
    hull = _mat(rng, _pick(rng, [(240, 240, 240), (180, 40, 40), (40, 60, 120), (150, 100, 60)]), jitter=0.05)
    pieces = [Piece(Ellipsoid((0, 0.1, 0), (L * 0.18, 0.6, L / 2)), hull),
              Piece(_on_floor_box((L * 0.2, 0.8, L * 0.3), 0.5, -L * 0.1), _mat(rng, (235, 235, 235)))]
    if rng.uniform() < 0.5:
        pieces.append(Piece(Capsule((0, 0.5, L * 0.1), (0, 0.5 + L * 0.8, L * 0.1), 0.05), _mat(rng, _WOOD[0])))
    return Model([_voc("boat", pieces)], (L * 0.36, 1.3, L))


def _quadruped(rng, label: str):
    """Cat, dog, sheep, cow or horse: ellipsoid body, capsule legs / neck / tail, sphere head."""
    L, Ht, coat, coat2, pattern = {
        "cat": (rng.uniform(0.4, 0.5), 0.3,
                _pick(rng, [(120, 120, 120), (220, 140, 60), (40, 40, 40), (230, 225, 215)]), (60, 60, 60), "stripes"),
        "dog": (rng.uniform(0.6, 1.0), rng.uniform(0.45, 0.7),
                _pick(rng, [(140, 90, 50), (40, 35, 30), (210, 170, 100), (235, 230, 220)]), (60, 40, 25), "noise"),
        "sheep": (rng.uniform(1.0, 1.2), 0.8, (235, 230, 215), (200, 195, 180), "noise"),
        "cow": (rng.uniform(1.8, 2.2), 1.4, _pick(rng, [(30, 30, 30), (120, 70, 40)]), (245, 245, 240), "noise"),
        "horse": (rng.uniform(1.9, 2.3), 1.6, _pick(rng, [(120, 70, 35), (60, 40, 25), (200, 190, 180), (30, 25, 20)]),
                  (30, 25, 20), "noise"),
    }[label]
    body = _mat(rng, coat, pattern, color2=coat2, scale=0.12 if label == "cat" else 0.5 if label == "cow" else 0.15)
    face = body if label != "sheep" else _mat(rng, (50, 45, 40))
    leg_len = Ht * (0.55 if label == "horse" else 0.45)
    ry, rz = Ht * 0.22, L / 2
    rx = ry * (0.8 if label in ("cow", "sheep") else 0.7)
    by = leg_len + ry * 0.7
    pieces = [Piece(Ellipsoid((0, by, 0), (rx, ry, rz)), body, "torso")]
    swing = rng.uniform(-0.4, 0.4)
    for side, s in (("l", 1.0), ("r", -1.0)):
        for end, f, sw in (("f", 1.0, swing), ("b", -1.0, -swing)):  # front and back legs
            top = np.array([s * rx * 0.55, by - ry * 0.3, f * rz * 0.7])
            foot = top + leg_len * np.array([0.0, -math.cos(sw), math.sin(sw)]) + [0, ry * 0.3 - 0.02, 0]
            name = f"{side}{end}leg" if label in ("cat", "dog") else f"{side}{end}uleg"  # PASCAL-Part names
            pieces.append(Piece(Capsule(top, foot, rx * 0.22), face if label == "sheep" else body, name))
    head_r = ry * (0.75 if label == "cat" else 0.55)
    neck_top = np.array([0.0, by + ry * (1.6 if label == "horse" else 0.9), rz + head_r * 0.3])
    pieces += [Piece(Capsule((0, by + ry * 0.3, rz * 0.7), neck_top, head_r * 0.6), body, "neck"),
               Piece(sphere(neck_top, head_r), face, "head"),
               Piece(Ellipsoid(neck_top + [0, -head_r * 0.3, head_r * 0.9],
                               (head_r * 0.5, head_r * 0.45, head_r * 0.6)), face, "muzzle"),
               Piece(Capsule((0, by + ry * 0.3, -rz * 0.95), (0, by - ry * (0.2 if label == "cat" else 1.2), -rz * 1.3),
                             rx * (0.12 if label != "sheep" else 0.2)), body, "tail")]
    pieces += [Piece(sphere(neck_top + [s * head_r * 0.55, head_r * 0.8, -head_r * 0.1], head_r * 0.3), face,
                     f"{side}ear")
               for side, s in (("l", 1.0), ("r", -1.0))]
    pieces += [Piece(sphere(neck_top + [s * head_r * 0.4, head_r * 0.25, head_r * 0.85], head_r * 0.12),
                     Material((0.03, 0.03, 0.03)), f"{side}eye")
               for side, s in (("l", 1.0), ("r", -1.0))]
    return Model([_voc(label, pieces)], (2 * rx, Ht + head_r, L + head_r * 2))


def _bird(rng):
    s = rng.uniform(0.12, 0.25)
    feathers = _mat(rng, _pick(rng, [(90, 70, 50), (40, 40, 40), (230, 230, 230), (200, 60, 40), (60, 90, 160)]),
                    "noise", scale=0.05)
    pieces = [Piece(Ellipsoid((0, s * 0.9, 0), (s * 0.45, s * 0.45, s * 0.8)), feathers, "torso"),
              Piece(sphere((0, s * 1.4, s * 0.7), s * 0.3), feathers, "head"),
              Piece(Ellipsoid((0, s * 1.35, s * 1.05), (s * 0.08, s * 0.08, s * 0.2)), _mat(rng, (230, 170, 40)),
                    "beak"),
              Piece(Ellipsoid((0, s * 1.0, -s * 0.9), (s * 0.25, s * 0.05, s * 0.4)), feathers, "tail")]
    pieces += [Piece(Capsule((sd * s * 0.15, s * 0.6, 0), (sd * s * 0.15, 0.0, 0), s * 0.03),
                     _mat(rng, (200, 150, 60)), f"{side}leg")
               for side, sd in (("l", 1.0), ("r", -1.0))]
    return Model([_voc("bird", pieces)], (s, s * 1.7, s * 2))


def _voc_chair(rng):
    model = _chair(rng, _VOC["chair"])
    model.things[0].context = VOC_TO_CONTEXT[_VOC["chair"]]
    return model


def _bottle(rng) -> Thing:
    r, h = rng.uniform(0.03, 0.045), rng.uniform(0.18, 0.3)
    glass = _mat(rng, _pick(rng, [(40, 110, 50), (110, 60, 20), (190, 210, 220), (30, 60, 140)]), "stripes",
                 color2=(240, 235, 220), scale=h * 2, axis=(0, 1, 0), dark=0.7)  # a label band
    cap = _mat(rng, _pick(rng, _CLOTH))
    return _voc("bottle", [Piece(Cylinder((0, 0, 0), (0, h * 0.7, 0), r), glass, "body"),
                           Piece(Ellipsoid((0, h * 0.7, 0), (r, h * 0.12, r)), glass, "body"),
                           Piece(Cylinder((0, h * 0.7, 0), (0, h * 0.95, 0), r * 0.38), glass, "body"),
                           Piece(Cylinder((0, h * 0.95, 0), (0, h, 0), r * 0.42), cap, "cap")])


def _tvmonitor(rng) -> Thing:
    w = rng.uniform(0.4, 0.7)
    h = w * rng.uniform(0.6, 0.75)
    case = _mat(rng, _pick(rng, [(25, 25, 28), (200, 200, 200)]), jitter=0.05)
    screen = _mat(rng, _pick(rng, _CLOTH), "noise", color2=_pick(rng, _CLOTH), scale=0.08)
    panel = Rect((0, 0.12 + h / 2, 0.026), (1, 0, 0), (0, 1, 0), w / 2 - 0.02, h / 2 - 0.02)
    return _voc("tvmonitor", [Piece(_on_floor_box((0.2, 0.02, 0.15)), case),  # foot, neck, casing, screen
                              Piece(_on_floor_box((0.05, 0.12, 0.03), 0.02, -0.02), case),
                              Piece(_on_floor_box((w, h, 0.05), 0.12), case),
                              Piece(panel, screen, "screen")])


def _pottedplant(rng) -> Thing:
    r = rng.uniform(0.1, 0.2)
    pot = _mat(rng, _pick(rng, [(180, 90, 50), (240, 240, 235), (60, 60, 60)]), jitter=0.05)
    leaves = _mat(rng, _pick(rng, [(40, 120, 40), (70, 140, 50), (30, 90, 40)]), "noise", color2=(20, 60, 20),
                  scale=0.05)
    pieces = [Piece(Cylinder((0, 0, 0), (0, r * 1.5, 0), r), pot, "pot")]
    for _ in range(int(rng.integers(1, 4))):
        c = (rng.uniform(-r, r), r * 1.5 + rng.uniform(r, 3 * r), rng.uniform(-r, r))
        pieces.append(Piece(Ellipsoid(c, rng.uniform(r, 2.2 * r, 3)), leaves, "plant"))
    return _voc("pottedplant", pieces)


def _with_support(rng, make_item: Callable[[np.random.Generator], Thing], table_p: float = 0.7) -> Model:
    """A small object (bottle, monitor, plant) alone on the ground or on a dining table."""
    item = make_item(rng)
    if rng.uniform() > table_p:
        return Model([item], (0.4, 0.5, 0.4))
    table = _table(rng, _VOC["diningtable"], items=False)
    table.things[0].context = VOC_TO_CONTEXT[_VOC["diningtable"]]
    w, h, d = table.size
    spot = (rng.uniform(-w / 4, w / 4), h, rng.uniform(-d / 4, d / 4))
    lifted = Model([item], (0, 0, 0)).placed(spot, rng.uniform(-0.5, 0.5))
    return Model(table.things + lifted, (w, h + 0.5, d))


def _voc_sofa(rng):
    model = _sofa(rng)
    fabric = model.things[0].pieces[0].material
    cushions = [Piece(p.shape, fabric) for t in model.things[1:] for p in t.pieces]  # VOC's sofa includes them
    return Model([_voc("sofa", model.things[0].pieces + cushions)], model.size)


def _voc_table(rng):
    model = _table(rng, _VOC["diningtable"], items=False)
    model.things[0].context = VOC_TO_CONTEXT[_VOC["diningtable"]]
    if rng.uniform() < 0.6:
        w, h, d = model.size
        for _ in range(int(rng.integers(1, 3))):
            bottle = Model([_bottle(rng)], (0, 0, 0))
            model.things += bottle.placed((rng.uniform(-w / 3, w / 3), h, rng.uniform(-d / 3, d / 3)), 0.0)
    return model


# Builders of the VOC foreground classes other than person (class name -> model builder).
_VOC_BUILDERS: dict[str, Callable[[np.random.Generator], Model]] = {
    "aeroplane": _aeroplane, "bicycle": _bicycle, "bird": _bird, "boat": _boat,
    "bottle": lambda rng: _with_support(rng, _bottle), "bus": _bus, "car": _car,
    "cat": lambda rng: _quadruped(rng, "cat"), "chair": _voc_chair, "cow": lambda rng: _quadruped(rng, "cow"),
    "diningtable": _voc_table, "dog": lambda rng: _quadruped(rng, "dog"), "horse": lambda rng: _quadruped(rng, "horse"),
    "motorbike": lambda rng: _bicycle(rng, motor=True),
    "pottedplant": lambda rng: _with_support(rng, _pottedplant, 0.3),
    "sheep": lambda rng: _quadruped(rng, "sheep"), "sofa": _voc_sofa, "train": lambda rng: _bus(rng, "train"),
    "tvmonitor": lambda rng: _with_support(rng, _tvmonitor, 0.85),
}


# Classes whose models are long along their front axis: shown from the side, as photographers do.
_SIDE_VIEW = frozenset({"aeroplane", "bicycle", "boat", "bus", "car", "cat", "cow", "dog", "horse", "motorbike",
                        "sheep", "train"})


def _stuff(label: str, pieces: list[Piece]) -> Thing:
    """A background (VOC 0) region with its PASCAL-Context class."""
    return Thing(0, pieces, CONTEXT_IDS[label])


def _background(rng, ground: str, far: float) -> list[Thing]:
    """The ground plane and background stuff: trees, buildings, a mountain, fences, rocks, signs.

    ``far`` (metres) is where the background starts, beyond the foreground objects.
    """
    looks = {"grass": ((70, 130, 50), "noise", 0.8), "ground": ((140, 110, 80), "noise", 0.6),
             "road": ((90, 90, 95), "noise", 0.3), "sand": ((215, 195, 150), "noise", 0.7),
             "snow": ((240, 242, 248), "noise", 1.5), "water": ((50, 90, 130), "stripes", 0.8)}
    base, pattern, scale = looks[ground]
    surface = _mat(rng, base, pattern, scale=scale, axis=(0.1, 0, 1), dark=0.8)
    things = [_stuff(ground, [Piece(Plane((0, 0, 0), (0, 1, 0)), surface)])]
    if rng.uniform() < 0.4:
        center = (rng.uniform(-300, 300), 0, -rng.uniform(500, 900))
        hill = Ellipsoid(center, (rng.uniform(300, 600), rng.uniform(80, 200), 150))
        rock = _mat(rng, _pick(rng, [(110, 120, 140), (90, 110, 90)]), "noise", scale=60)
        things.append(_stuff("mountain", [Piece(hill, rock)]))
    for _ in range(int(rng.integers(0, 4))):
        w, h = rng.uniform(8, 30), rng.uniform(6, 25)
        block = Box((rng.uniform(-40, 40), h / 2, -far - rng.uniform(10, 50)), (w / 2, h / 2, rng.uniform(4, 8)),
                    rot_y(rng.uniform(-0.5, 0.5)))
        facade = _mat(rng, _pick(rng, [(180, 160, 140), (150, 80, 60), (200, 200, 195), (120, 120, 130)]), "checker",
                      color2=(60, 70, 90), scale=1.6)  # the checker's dark cells read as windows
        things.append(_stuff("building", [Piece(block, facade)]))
    for _ in range(int(rng.integers(0, 5))):
        x, z, h = rng.uniform(-25, 25), -far - rng.uniform(0, 30), rng.uniform(2, 4)
        crown = _mat(rng, _pick(rng, [(50, 110, 40), (70, 130, 50), (40, 90, 35), (140, 120, 40)]), "noise",
                     scale=0.6, dark=0.6)
        trunk = Cylinder((x, 0, z), (x, h, z), rng.uniform(0.15, 0.35))
        things.append(_stuff("tree", [Piece(trunk, _mat(rng, (90, 65, 40))),
                                      Piece(Ellipsoid((x, h + 1.0, z), rng.uniform(1.2, 2.5, 3)), crown)]))
    if ground != "water" and rng.uniform() < 0.3:
        z, w = -far * rng.uniform(0.8, 1.2), rng.uniform(6, 20)
        boards = _mat(rng, _pick(rng, _WOOD + [(240, 240, 240)]), "stripes", scale=0.25, axis=(1, 0, 0), dark=0.5)
        things.append(_stuff("fence", [Piece(Box((rng.uniform(-5, 5), 0.6, z), (w / 2, 0.6, 0.03)), boards)]))
    if ground != "water" and rng.uniform() < 0.3:
        for _ in range(int(rng.integers(1, 3))):
            boulder = Ellipsoid((rng.uniform(-8, 8), 0.0, -rng.uniform(4, far)), rng.uniform(0.3, 1.0, 3))
            things.append(_stuff("rock", [Piece(boulder, _mat(rng, (130, 125, 120), "noise", scale=0.3))]))
    if ground in ("road", "ground", "grass") and rng.uniform() < 0.25:
        x, z = rng.uniform(-6, 6), -rng.uniform(6, far)
        plate = _mat(rng, _pick(rng, [(30, 90, 170), (200, 30, 30), (240, 200, 30)]))
        things += [_stuff("pole", [Piece(Cylinder((x, 0, z), (x, 2.6, z), 0.04), _mat(rng, _METAL[1]))]),
                   _stuff("sign", [Piece(Box((x, 2.6, z + 0.05), (0.4, 0.3, 0.02)), plate)])]
    return things


def _sky(rng) -> Callable[[np.ndarray], np.ndarray]:
    """Sky colour by ray elevation, with soft clouds."""
    horizon = np.array(_color(rng, _pick(rng, [(200, 215, 235), (225, 225, 225), (240, 210, 180)]), 0.05))
    zenith = np.array(_color(rng, _pick(rng, [(70, 120, 200), (150, 160, 175), (100, 140, 210)]), 0.05))
    cloudiness, phase = rng.uniform(0.0, 0.8), rng.uniform(0, 2 * np.pi, 3)

    def sky(dirs: np.ndarray) -> np.ndarray:
        d = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        t = np.clip(d[:, 1] * 2.5, 0.0, 1.0)[:, None]
        rgb = horizon * (1 - t) + zenith * t
        cloud = (np.sin(9 * d[:, 0] + phase[0]) * np.sin(13 * d[:, 1] + phase[1])
                 * np.sin(7 * d[:, 2] + 11 * d[:, 0] + phase[2]))
        c = np.clip(cloud * 2.0 - 0.2, 0.0, 1.0)[:, None] * cloudiness
        return rgb * (1 - c) + 0.95 * c

    return sky


def _pascal_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(height, width): ``size`` x [size, 4/3 size], portrait for about a quarter of the images."""
    long = int(round(size * rng.uniform(1.0, 4 / 3)))
    return (long, size) if rng.uniform() < 0.25 else (size, long)


def _pascal_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """An outdoor photo: sky, ground, background stuff, persons and other VOC objects."""
    n_persons = _pick(rng, [0, 1, int(rng.integers(2, 5))])  # a third without persons
    land = [c for c in _VOC_BUILDERS if c != "boat"]
    if n_persons == 0:
        main = _pick(rng, list(_VOC_BUILDERS))
        company = ["boat", "bird"] if main == "boat" else land
        other_classes = [main] + [_pick(rng, company) for _ in range(int(rng.integers(0, 3)))]
    else:
        company = [c for c in land if c not in ("aeroplane", "train")]
        other_classes = [_pick(rng, company) for _ in range(int(rng.integers(0, 3)))]
    main_is_person = n_persons > 0 and (not other_classes or rng.uniform() < 0.6)
    lands = ["grass", "grass", "ground", "road", "sand", "snow"]
    ground = "water" if other_classes[:1] == ["boat"] else _pick(rng, lands)

    # Foreground models in placing order: the main object first (it sets the camera).
    models: list[tuple[str, Model]] = []
    if main_is_person:
        models += [("person", _person(rng, _VOC["person"], VOC_TO_CONTEXT[_VOC["person"]])) for _ in range(n_persons)]
        models += [(c, _VOC_BUILDERS[c](rng)) for c in other_classes]
    else:
        models += [(c, _VOC_BUILDERS[c](rng)) for c in other_classes]
        models += [("person", _person(rng, _VOC["person"], VOC_TO_CONTEXT[_VOC["person"]])) for _ in range(n_persons)]

    fov = rng.uniform(np.radians(45), np.radians(65))
    f = max(height, width) / 2 / math.tan(fov / 2)
    main_name, main = models[0]
    w, h, d = main.size
    extent = max(h, 0.6 * max(w, d))
    fraction = rng.uniform(0.35, 0.8)
    dist = max(extent * f / (fraction * min(height, width)), max(w, d) / 2 + 0.5)
    lift = rng.uniform(20, 60) if main_name == "aeroplane" and rng.uniform() < 0.6 else (
        rng.uniform(0.5, 2.5) if main_name == "bird" and rng.uniform() < 0.4 else 0.0)
    if h < 3:  # eye level near the object's height (low for cats and bottles)
        cam_h = float(np.clip(h * rng.uniform(0.5, 1.2) + rng.uniform(0.1, 0.5), 0.3, 1.9))
    else:
        cam_h = rng.uniform(1.4, 1.9)
    pitch = math.atan2(lift + h / 2 - cam_h, dist) + rng.uniform(-0.06, 0.06)
    camera = Camera.looking(height, width, f, f, (0.0, cam_h, 0.0), yaw=0.0, pitch=pitch)

    things = _background(rng, ground, far=max(dist * 2.5, 15.0))
    placed: list[tuple[float, float, float]] = []  # (x, z, radius) of footprints
    group = None
    for k, (name, model) in enumerate(models):
        w, h, d = model.size
        radius = max(w, d) / 2
        for _ in range(20):
            if k == 0:
                z = -dist
                x = rng.uniform(-0.25, 0.25) * dist * width / f
            elif name == "person" and group is not None:  # persons stand in a loose group, overlapping
                x, z = group[0] + rng.uniform(-0.9, 0.9), group[1] + rng.uniform(-1.0, 1.0)
            else:
                z = -dist * rng.uniform(0.7, 2.5)
                x = rng.uniform(-0.5, 0.5) * -z * width / f
            if k == 0 or all(math.hypot(x - px, z - pz) > 0.6 * (radius + pr) for px, pz, pr in placed):
                break
        if name == "person" and group is None:
            group = (x, z)
        placed.append((x, z, radius))
        to_camera = math.atan2(-x, -z)  # yaw that turns the model's front (+z) towards the camera
        if name == "person":  # mostly facing the camera, sometimes seen from behind
            yaw = to_camera + (rng.uniform(-0.8, 0.8) if rng.uniform() < 0.85 else math.pi + rng.uniform(-0.5, 0.5))
        elif name in _SIDE_VIEW:  # long vehicles and animals: mostly seen from the side
            yaw = to_camera + _pick(rng, [-1.0, 1.0]) * math.pi / 2 + rng.uniform(-0.7, 0.7)
        else:
            yaw = to_camera + rng.uniform(-0.6, 0.6)
        y = lift if k == 0 else 0.0
        things += model.placed((x, y, z), yaw)

    sun = np.array([rng.uniform(-1, 1), rng.uniform(0.4, 1.2), rng.uniform(-0.2, 1.0)])
    return Scene(camera, things, sun, rng.uniform(0.3, 0.5), _sky(rng))


def _void_band(instances: np.ndarray, size: int) -> np.ndarray:
    """(H, W) bool: VOC's 'void' outline of every object (about 1 px at 128 px, 5 px at 500 px)."""
    band = find_boundaries(instances, connectivity=1, mode="inner", background=0)
    radius = size // 200
    if radius:
        band = binary_dilation(band, structure=disk(radius))
    return band


def render_pascal_sample(rng: np.random.Generator, size: int) -> dict:
    """One PASCAL-like sample, in the conventions of the PASCAL_MT files.

    Returns ``image`` (H, W, 3) uint8; ``semseg`` (H, W) uint8 (VOC 0..20, 255 void band);
    ``context`` (H, W) uint16 (1..459); ``objects``: list of dicts ``class_ind``, ``name``,
    ``mask`` (H, W) uint8, ``parts`` list of (name, (H, W) uint8 mask), one per visible VOC object;
    ``saliency`` (H, W) uint8 {0, 255}; ``normals`` (H, W, 3) float64 unit camera-frame.
    """
    height, width = _pascal_size(rng, size)
    scene = _pascal_scene(rng, height, width)
    r = _render(scene, rng)

    voc_of = np.array([t.label for t in scene.things] + [0], dtype=np.uint8)
    context_of = np.array([t.context for t in scene.things] + [CONTEXT_IDS["sky"]], dtype=np.uint16)
    fg = np.array([t.label > 0 for t in scene.things] + [False])
    instances = np.where(fg[r.thing], r.thing + 1, 0)
    semseg = voc_of[r.thing]
    semseg[_void_band(instances, size)] = 255

    objects = []
    for k, t in enumerate(scene.things):
        if t.label == 0:
            continue
        mask = r.thing == k
        if not mask.any():
            continue  # fully hidden or out of view: not annotated
        parts = []
        for name in dict.fromkeys(p.part for p in t.pieces if p.part):
            part_mask = mask & (r.part == name)
            if part_mask.any():
                parts.append((name, part_mask.astype(np.uint8)))
        objects.append({"class_ind": t.label, "name": VOC_CLASSES[t.label], "mask": mask.astype(np.uint8),
                        "parts": parts})

    saliency = np.zeros((height, width), dtype=np.uint8)
    if objects:
        salient = max(objects, key=lambda o: int(o["mask"].sum()))
        saliency[salient["mask"] > 0] = 255
    normals = np.where(r.thing[..., None] >= 0, r.normals, np.array([0.0, 0.0, 1.0]))  # sky faces the camera
    return {"image": r.rgb, "semseg": semseg, "context": context_of[r.thing], "objects": objects,
            "saliency": saliency, "normals": normals}


# -- file formats ---------------------------------------------------------------------------------
_MAT_DESCRIPTION = b"MATLAB 5.0 MAT-file, written by ufl make-synthetic"
_PNG_PALETTE = [value for rgb in voc_palette(256) for value in rgb]  # PIL's flat 768-entry form; 255 -> (224, 224, 192)


def _write_mat(path: Path, variables: dict) -> None:
    """scipy.io.savemat with a fixed header text.

    NOTE: savemat stamps the creation time into the 116-byte header text; it is replaced by a
    fixed text (space padded, as MATLAB pads) so the same seed gives byte-identical files.
    """
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, do_compression=True)
    raw = bytearray(buffer.getvalue())
    raw[:116] = _MAT_DESCRIPTION.ljust(116, b" ")
    path.write_bytes(bytes(raw))


def _parts_struct(image_id: str, objects: Sequence[dict]) -> np.ndarray:
    """The PASCAL-Part 'anno' struct: anno.imname, anno.objects(i).{class, class_ind, mask, parts},
    parts(j).{part_name, mask}; loadmat indexes it as anno[0][0][1][0][i][1|2|3]."""
    part_dtype = [("part_name", "O"), ("mask", "O")]
    objects_arr = np.empty((1, len(objects)), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")])
    for i, obj in enumerate(objects):
        if obj["parts"]:
            parts = np.empty((1, len(obj["parts"])), dtype=part_dtype)
            for j, (name, mask) in enumerate(obj["parts"]):
                parts[0, j] = (name, mask)
        else:
            parts = np.empty((0, 0), dtype=part_dtype)  # MATLAB's 0x0 struct: len() == 0
        objects_arr[0, i] = (obj["name"], np.array([[obj["class_ind"]]], dtype=np.uint8), obj["mask"], parts)
    anno = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (image_id, objects_arr)
    return anno


def _save_png(path: Path, array: np.ndarray, palette: list[int] | None = None) -> None:
    """Save uint8 (H, W) as 'L' (or 'P' with ``palette``) or (H, W, 3) as 'RGB' PNG."""
    if palette is not None:
        image = Image.frombytes("P", (array.shape[1], array.shape[0]), np.ascontiguousarray(array).tobytes())
        image.putpalette(palette)
    else:
        image = Image.fromarray(np.ascontiguousarray(array))
    image.save(path, format="PNG")


def _save_jpeg(path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb).save(path, format="JPEG", quality=95)


_NYUD_DIRS = ("gt_sets", "images", "segmentation", "depth", "normals", "edge")
_PASCAL_DIRS = ("ImageSets/Context", "ImageSets/Parts", "JPEGImages", "semseg/VOC12", "pascal-context/trainval",
                "human_parts", "sal_distill", "normals_distill")


def _write_nyud(root: Path, image_id: str, seed: int, index: int, size: int, persons: float | None = None) -> None:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, index]))
    s = render_nyud_sample(rng, size, int(round(size * 4 / 3)), persons)
    _save_jpeg(root / "images" / f"{image_id}.jpg", s["image"])
    _save_png(root / "segmentation" / f"{image_id}.png", s["segmentation"])
    np.save(root / "depth" / f"{image_id}.npy", s["depth"])
    np.save(root / "normals" / f"{image_id}.npy", s["normals"])
    np.save(root / "edge" / f"{image_id}.npy", s["edge"])


def _write_pascal(root: Path, image_id: str, seed: int, index: int, size: int) -> list[int]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, index]))
    s = render_pascal_sample(rng, size)
    _save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", s["image"])
    _save_png(root / "semseg" / "VOC12" / f"{image_id}.png", s["semseg"], _PNG_PALETTE)
    _write_mat(root / "pascal-context" / "trainval" / f"{image_id}.mat", {"LabelMap": s["context"]})
    _write_mat(root / "human_parts" / f"{image_id}.mat", {"anno": _parts_struct(image_id, s["objects"])})
    _save_png(root / "sal_distill" / f"{image_id}.png", s["saliency"])
    encoded = np.clip(np.round((s["normals"] + 1.0) * 255.0 / 2.0), 0, 255).astype(np.uint8)
    _save_png(root / "normals_distill" / f"{image_id}.png", encoded)
    return [o["class_ind"] for o in s["objects"]]


def _parts_json(ids: Sequence[str], classes: dict[str, list[int]]) -> str:
    """``ImageSets/Parts/SPLIT.txt``: a JSON object, one ``"id": [classes]`` entry per line (the
    layout MTI-Net's preprocessing writes)."""
    return "{\n" + ",\n".join(f"\t{json.dumps(i)}: {json.dumps(classes[i])}" for i in ids) + "\n}\n"


def _job(args: tuple) -> list[int] | None:
    """Render and write one image (a top-level function so that worker processes can run it)."""
    dataset, root, image_id, seed, index, size, persons = args
    if dataset == "NYUD_MT":
        _write_nyud(root, image_id, seed, index, size, persons)
        return None
    return _write_pascal(root, image_id, seed, index, size)


def _run(jobs: list[tuple], workers: int) -> Iterator[list[int] | None]:
    """Results of :func:`_job` over ``jobs``, in order, from ``workers`` processes (1: this one).

    Every image seeds its own generator, so the files do not depend on the worker count.
    """
    if workers == 1:
        yield from map(_job, jobs)
        return
    with multiprocessing.get_context().Pool(workers) as pool:
        yield from pool.imap(_job, jobs, chunksize=4)


def _image_ids(dataset: str, n: int) -> list[str]:
    if dataset == "NYUD_MT":
        return [f"{i + 1:06d}" for i in range(n)]
    return [f"{2008 + i % 4}_{i + 1:06d}" for i in range(n)]  # PASCAL VOC style: year_number


def _write_dataset(out: Path, dataset: str, size: int, n_train: int, n_val: int, seed: int, workers: int,
                   progress: bool, nyud_persons: float | None = None) -> Path:
    """Write one dataset into a hidden temporary sibling folder and rename it into place when complete."""
    final = out / dataset
    tmp = out / f".{dataset}.{secrets.token_hex(4)}.partial"  # hidden; mkdir (unlike mkdtemp) honours the umask
    tmp.mkdir()
    try:
        for sub in _NYUD_DIRS if dataset == "NYUD_MT" else _PASCAL_DIRS:
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        ids = _image_ids(dataset, n_train + n_val)
        splits = {"train": ids[:n_train], "val": ids[n_train:]}
        jobs = [(dataset, tmp, image_id, seed, i, size, nyud_persons) for i, image_id in enumerate(ids)]
        results = list(tqdm(_run(jobs, workers), total=len(jobs), desc=dataset, unit="img",
                            disable=None if progress else True))  # None: only on a terminal
        if dataset == "NYUD_MT":
            for split, split_ids in splits.items():
                (tmp / "gt_sets" / f"{split}.txt").write_text("".join(f"{i}\n" for i in split_ids))
        else:
            classes = dict(zip(ids, results))
            for split, split_ids in splits.items():
                (tmp / "ImageSets" / "Context" / f"{split}.txt").write_text("".join(f"{i}\n" for i in split_ids))
                (tmp / "ImageSets" / "Parts" / f"{split}.txt").write_text(_parts_json(split_ids, classes))
        # The marker that tells ufl (pretrain's provenance record, `ufl list-tasks`) the data is generated.
        marker = {"generator": "ufl make-synthetic", "dataset": dataset, "size": size, "train": n_train,
                  "val": n_val, "seed": seed}
        if dataset == "NYUD_MT" and nyud_persons is not None:  # absent = the default rooms (files as before)
            marker["nyud_persons"] = nyud_persons
        (tmp / SYNTHETIC_MARKER).write_text(json.dumps(marker, sort_keys=True) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if final.exists():  # written by someone else meanwhile
                raise DataError(f"{final} appeared while it was being generated; remove it or choose another "
                                f"--out") from None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


SYNTHETIC_MARKER = "UFL_SYNTHETIC.json"
"""File ``make_synthetic`` writes into each dataset folder it generates (JSON: generator, size, counts, seed;
``nyud_persons`` in NYUD_MT's when that option was given)."""


def is_synthetic(root: str | os.PathLike | None) -> bool:
    """Whether the dataset folder ``root`` was written by :func:`make_synthetic` (holds its marker)."""
    return root is not None and (Path(root) / SYNTHETIC_MARKER).is_file()


#: Upper bound of ``nyud_persons`` (more would not fit in the generated rooms anyway).
MAX_NYUD_PERSONS = 6.0


def make_synthetic(out: str | os.PathLike, size: int = 96, n_train: int = 64, n_val: int = 32, seed: int = 0,
                   *, workers: int = 1, progress: bool = True, nyud_persons: float | None = None) -> dict[str, Path]:
    """Write synthetic ``out/NYUD_MT/`` and ``out/PASCAL_MT/`` in the public MTI-Net formats.

    Args:
        out: folder to write into (created if missing); it must not already hold either dataset.
        size: image height in pixels (NYUD-like images are size x round(4/3 size); PASCAL-like
            images have one side ``size`` and the other up to 4/3 of it).
        n_train, n_val: images per split, for each dataset.
        seed: the same seed gives byte-identical files; image i of dataset j draws from
            ``SeedSequence([seed, j, i])``, so files do not depend on ``workers``.
        workers: processes rendering in parallel (1 = in this process).
        progress: show a tqdm progress bar per dataset.
        nyud_persons: the relatedness knob between the two datasets: the mean number of standing
            persons per NYUD-like room (Poisson, in every room type, 0..6). Persons are the same
            articulated models that carry the 24 PASCAL-Part parts in the PASCAL-like scenes (NYUD
            label ``person``), so more of them make NYUD pretraining share more with PASCAL's
            human parts (and its salient foreground, mostly persons); 0 removes them. None (the
            default) keeps the room types' own persons (0..1 in living rooms and offices) and
            gives the same files as before this option existed. PASCAL_MT is not affected.

    Returns:
        ``{"NYUD_MT": path, "PASCAL_MT": path}``.

    Raises:
        UflError: bad arguments. DataError: ``out`` is a file or already holds a dataset.
    """
    if size < 32:
        raise UflError(f"image size {size} is too small; use --size 32 or more")
    if n_train < 1 or n_val < 1:
        raise UflError(f"need at least one training and one validation image (got {n_train} and {n_val})")
    if seed < 0:
        raise UflError(f"seed {seed} is negative; use a seed >= 0")
    if nyud_persons is not None:
        nyud_persons = float(nyud_persons)
        if not 0.0 <= nyud_persons <= MAX_NYUD_PERSONS:  # also rejects NaN
            raise UflError(f"--nyud-persons {nyud_persons:g} is out of range; use a mean number of persons per "
                           f"room from 0 to {MAX_NYUD_PERSONS:g} (or leave it out for the default rooms)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"output folder {out} is a file; choose another --out")
    for dataset in ("NYUD_MT", "PASCAL_MT"):
        if (out / dataset).exists():
            raise DataError(f"{out / dataset} already exists; remove it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return {dataset: _write_dataset(out, dataset, size, n_train, n_val, seed, max(1, int(workers)), progress,
                                    nyud_persons)
            for dataset in ("NYUD_MT", "PASCAL_MT")}
