"""PASCAL-like samples: outdoor photos of persons and the other VOC objects.

Sky, a ground plane and background stuff (trees, buildings, a mountain, fences, rocks, signs),
articulated persons made of the 24 PASCAL-Part person parts (none in about a third of the
images, one in a third, several overlapping in the rest), and other VOC objects (vehicles,
animals, furniture, bottles, monitors, plants). :func:`render_pascal_sample` returns one sample as
arrays in the conventions of the PASCAL_MT files (:mod:`ufl.synthetic.formats` writes them).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy.ndimage import binary_dilation
from skimage.morphology import disk
from skimage.segmentation import find_boundaries

from ..datasets.catalog import VOC_CLASSES
from . import furniture
from .person import person_model
from .render import Box, Camera, Capsule, Cylinder, Ellipsoid, Material, Plane, Rect, rot_y, sphere
from .scene import CLOTH, METAL, WOOD, Model, Piece, Scene, Thing, color, look, on_floor_box, pick, render_scene

__all__ = ["VOC_TO_CONTEXT", "CONTEXT_IDS", "render_pascal_sample"]

_VOC = {name: k for k, name in enumerate(VOC_CLASSES)}

#: PASCAL-Context id of each VOC class (MTI-Net's pascal_context.py CONTEXT_CATEGORY_LABELS).
VOC_TO_CONTEXT = (0, 2, 23, 25, 31, 34, 45, 59, 65, 72, 98, 397, 113, 207, 258, 284, 308, 347, 368, 416, 427)

#: PASCAL-Context (459 classes) ids of the background "stuff" used here (MTI-Net's
#: data/db_info/context_classes.json).
CONTEXT_IDS = {
    "building": 44, "fence": 144, "grass": 187, "ground": 189, "mountain": 259, "pole": 303, "road": 324,
    "rock": 326, "sand": 334, "sign": 355, "sky": 360, "snow": 366, "tree": 420, "water": 445,
}


def _voc(label: str, pieces: list[Piece]) -> Thing:
    return Thing(_VOC[label], pieces, VOC_TO_CONTEXT[_VOC[label]])


def _wheel(center: Sequence[float], radius: float, width: float, mat: Material, part: str | None = None) -> Piece:
    c = np.asarray(center, dtype=np.float64)
    return Piece(Cylinder(c - [width / 2, 0, 0], c + [width / 2, 0, 0], radius), mat, part)


def _car(rng):
    L, W = rng.uniform(3.8, 4.7), rng.uniform(1.6, 1.85)
    paint = look(rng, pick(rng, CLOTH + METAL), jitter=0.06)
    glass = look(rng, (50, 60, 75), "noise", color2=(120, 140, 160), scale=0.4)
    tyre = Material((0.06, 0.06, 0.06))
    pieces = [Piece(on_floor_box((W, 0.75, L), 0.28), paint),
              Piece(on_floor_box((W * 0.86, 0.45, L * 0.5), 1.03, -L * 0.05), glass, "window_1"),
              Piece(on_floor_box((W * 0.9, 0.04, L * 0.48), 1.48, -L * 0.05), paint, "roofside")]
    pieces += [_wheel((s * (W / 2 - 0.08), 0.32, f * L * 0.32), 0.32, 0.22, tyre, f"wheel_{i + 1}")
               for i, (s, f) in enumerate([(-1, 1), (1, 1), (-1, -1), (1, -1)])]
    lamp = Material((1.0, 0.95, 0.8))
    pieces += [Piece(sphere((s * W * 0.35, 0.8, L / 2), 0.08), lamp, f"headlight_{i + 1}")
               for i, s in enumerate((-1, 1))]
    return Model([_voc("car", pieces)], (W, 1.5, L))


def _bus(rng, label: str = "bus"):
    L, W, H = (rng.uniform(9, 12), 2.5, rng.uniform(2.9, 3.3)) if label == "bus" else (rng.uniform(14, 20), 3.0, 3.6)
    paint = look(rng, pick(rng, [(220, 40, 30), (240, 200, 40), (240, 240, 240), (40, 90, 170), (40, 130, 60)]),
                 jitter=0.05)
    glass = look(rng, (40, 50, 60), "stripes", color2=(110, 130, 150), scale=1.2, axis=(0, 0, 1))
    tyre = Material((0.06, 0.06, 0.06))
    pieces = [Piece(on_floor_box((W, H - 0.35, L), 0.35), paint),
              Piece(on_floor_box((W + 0.02, 0.9, L * 0.92), H * 0.5, 0.0), glass)]
    if label == "train":
        pieces.append(Piece(Ellipsoid((0, H * 0.55, L / 2), (W / 2, H * 0.45, 1.5)), paint))
    else:
        pieces += [_wheel((s * (W / 2 - 0.1), 0.5, f * L * 0.33), 0.5, 0.3, tyre) for s in (-1, 1) for f in (-1, 1)]
    return Model([_voc(label, pieces)], (W, H, L))


def _aeroplane(rng):
    L = rng.uniform(20, 40)
    paint = look(rng, pick(rng, [(240, 240, 240), (200, 200, 210), (240, 240, 230)]), jitter=0.03)
    tail = look(rng, pick(rng, CLOTH))
    r = L * 0.06
    pieces = [Piece(Ellipsoid((0, r, 0), (r, r, L / 2)), paint, "body"),
              Piece(Box((L * 0.3, r * 0.8, 0), (L * 0.3, r * 0.1, L * 0.07), rot_y(0.25)), paint, "lwing"),  # swept
              Piece(Box((-L * 0.3, r * 0.8, 0), (L * 0.3, r * 0.1, L * 0.07), rot_y(-0.25)), paint, "rwing"),
              Piece(Box((0, r * 2.4, -L * 0.44), (r * 0.1, r * 1.4, L * 0.05)), tail, "tail"),
              Piece(Box((0, r * 1.2, -L * 0.45), (L * 0.12, r * 0.08, L * 0.04)), paint, "stern")]
    pieces += [Piece(Cylinder((s * L * 0.18, r * 0.3, L * 0.04), (s * L * 0.18, r * 0.3, -L * 0.06), r * 0.35),
                     look(rng, METAL[1]), f"engine_{i + 1}") for i, s in enumerate((-1, 1))]
    return Model([_voc("aeroplane", pieces)], (L * 0.9, r * 4, L))


def _bicycle(rng, motor: bool = False):
    R = 0.32 if motor else 0.34
    metal = look(rng, pick(rng, CLOTH + METAL))
    tyre = look(rng, (25, 25, 25), "noise", color2=(90, 90, 90), scale=0.1)
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
               Piece(Capsule(bar - [0.28, 0, 0], bar + [0.28, 0, 0], 0.02), look(rng, METAL[2]), "handlebar")]
    return Model([_voc("motorbike" if motor else "bicycle", pieces)], (0.6, 1.1, 1.8))


def _boat(rng):
    L = rng.uniform(4, 9)
    hull = look(rng, pick(rng, [(240, 240, 240), (180, 40, 40), (40, 60, 120), (150, 100, 60)]), jitter=0.05)
    pieces = [Piece(Ellipsoid((0, 0.1, 0), (L * 0.18, 0.6, L / 2)), hull),
              Piece(on_floor_box((L * 0.2, 0.8, L * 0.3), 0.5, -L * 0.1), look(rng, (235, 235, 235)))]
    if rng.uniform() < 0.5:
        pieces.append(Piece(Capsule((0, 0.5, L * 0.1), (0, 0.5 + L * 0.8, L * 0.1), 0.05), look(rng, WOOD[0])))
    return Model([_voc("boat", pieces)], (L * 0.36, 1.3, L))


def _quadruped(rng, label: str):
    """Cat, dog, sheep, cow or horse: ellipsoid body, capsule legs / neck / tail, sphere head."""
    L, Ht, coat, coat2, pattern = {
        "cat": (rng.uniform(0.4, 0.5), 0.3,
                pick(rng, [(120, 120, 120), (220, 140, 60), (40, 40, 40), (230, 225, 215)]), (60, 60, 60), "stripes"),
        "dog": (rng.uniform(0.6, 1.0), rng.uniform(0.45, 0.7),
                pick(rng, [(140, 90, 50), (40, 35, 30), (210, 170, 100), (235, 230, 220)]), (60, 40, 25), "noise"),
        "sheep": (rng.uniform(1.0, 1.2), 0.8, (235, 230, 215), (200, 195, 180), "noise"),
        "cow": (rng.uniform(1.8, 2.2), 1.4, pick(rng, [(30, 30, 30), (120, 70, 40)]), (245, 245, 240), "noise"),
        "horse": (rng.uniform(1.9, 2.3), 1.6, pick(rng, [(120, 70, 35), (60, 40, 25), (200, 190, 180), (30, 25, 20)]),
                  (30, 25, 20), "noise"),
    }[label]
    body = look(rng, coat, pattern, color2=coat2, scale=0.12 if label == "cat" else 0.5 if label == "cow" else 0.15)
    face = body if label != "sheep" else look(rng, (50, 45, 40))
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
    feathers = look(rng, pick(rng, [(90, 70, 50), (40, 40, 40), (230, 230, 230), (200, 60, 40), (60, 90, 160)]),
                    "noise", scale=0.05)
    pieces = [Piece(Ellipsoid((0, s * 0.9, 0), (s * 0.45, s * 0.45, s * 0.8)), feathers, "torso"),
              Piece(sphere((0, s * 1.4, s * 0.7), s * 0.3), feathers, "head"),
              Piece(Ellipsoid((0, s * 1.35, s * 1.05), (s * 0.08, s * 0.08, s * 0.2)), look(rng, (230, 170, 40)),
                    "beak"),
              Piece(Ellipsoid((0, s * 1.0, -s * 0.9), (s * 0.25, s * 0.05, s * 0.4)), feathers, "tail")]
    pieces += [Piece(Capsule((sd * s * 0.15, s * 0.6, 0), (sd * s * 0.15, 0.0, 0), s * 0.03),
                     look(rng, (200, 150, 60)), f"{side}leg")
               for side, sd in (("l", 1.0), ("r", -1.0))]
    return Model([_voc("bird", pieces)], (s, s * 1.7, s * 2))


def _voc_person(rng):
    return person_model(rng, _VOC["person"], VOC_TO_CONTEXT[_VOC["person"]])


def _voc_chair(rng):
    model = furniture.chair(rng, _VOC["chair"])
    model.things[0].context = VOC_TO_CONTEXT[_VOC["chair"]]
    return model


def _bottle(rng) -> Thing:
    r, h = rng.uniform(0.03, 0.045), rng.uniform(0.18, 0.3)
    glass = look(rng, pick(rng, [(40, 110, 50), (110, 60, 20), (190, 210, 220), (30, 60, 140)]), "stripes",
                 color2=(240, 235, 220), scale=h * 2, axis=(0, 1, 0), dark=0.7)  # a label band
    cap = look(rng, pick(rng, CLOTH))
    return _voc("bottle", [Piece(Cylinder((0, 0, 0), (0, h * 0.7, 0), r), glass, "body"),
                           Piece(Ellipsoid((0, h * 0.7, 0), (r, h * 0.12, r)), glass, "body"),
                           Piece(Cylinder((0, h * 0.7, 0), (0, h * 0.95, 0), r * 0.38), glass, "body"),
                           Piece(Cylinder((0, h * 0.95, 0), (0, h, 0), r * 0.42), cap, "cap")])


def _tvmonitor(rng) -> Thing:
    w = rng.uniform(0.4, 0.7)
    h = w * rng.uniform(0.6, 0.75)
    case = look(rng, pick(rng, [(25, 25, 28), (200, 200, 200)]), jitter=0.05)
    screen = look(rng, pick(rng, CLOTH), "noise", color2=pick(rng, CLOTH), scale=0.08)
    panel = Rect((0, 0.12 + h / 2, 0.026), (1, 0, 0), (0, 1, 0), w / 2 - 0.02, h / 2 - 0.02)
    return _voc("tvmonitor", [Piece(on_floor_box((0.2, 0.02, 0.15)), case),  # foot, neck, casing, screen
                              Piece(on_floor_box((0.05, 0.12, 0.03), 0.02, -0.02), case),
                              Piece(on_floor_box((w, h, 0.05), 0.12), case),
                              Piece(panel, screen, "screen")])


def _pottedplant(rng) -> Thing:
    r = rng.uniform(0.1, 0.2)
    pot = look(rng, pick(rng, [(180, 90, 50), (240, 240, 235), (60, 60, 60)]), jitter=0.05)
    leaves = look(rng, pick(rng, [(40, 120, 40), (70, 140, 50), (30, 90, 40)]), "noise", color2=(20, 60, 20),
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
    table = furniture.table(rng, _VOC["diningtable"], items=False)
    table.things[0].context = VOC_TO_CONTEXT[_VOC["diningtable"]]
    w, h, d = table.size
    spot = (rng.uniform(-w / 4, w / 4), h, rng.uniform(-d / 4, d / 4))
    lifted = Model([item], (0, 0, 0)).placed(spot, rng.uniform(-0.5, 0.5))
    return Model(table.things + lifted, (w, h + 0.5, d))


def _voc_sofa(rng):
    model = furniture.sofa(rng)
    fabric = model.things[0].pieces[0].material
    cushions = [Piece(p.shape, fabric) for t in model.things[1:] for p in t.pieces]  # VOC's sofa includes them
    return Model([_voc("sofa", model.things[0].pieces + cushions)], model.size)


def _voc_table(rng):
    model = furniture.table(rng, _VOC["diningtable"], items=False)
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
    surface = look(rng, base, pattern, scale=scale, axis=(0.1, 0, 1), dark=0.8)
    things = [_stuff(ground, [Piece(Plane((0, 0, 0), (0, 1, 0)), surface)])]
    if rng.uniform() < 0.4:
        center = (rng.uniform(-300, 300), 0, -rng.uniform(500, 900))
        hill = Ellipsoid(center, (rng.uniform(300, 600), rng.uniform(80, 200), 150))
        rock = look(rng, pick(rng, [(110, 120, 140), (90, 110, 90)]), "noise", scale=60)
        things.append(_stuff("mountain", [Piece(hill, rock)]))
    for _ in range(int(rng.integers(0, 4))):
        w, h = rng.uniform(8, 30), rng.uniform(6, 25)
        block = Box((rng.uniform(-40, 40), h / 2, -far - rng.uniform(10, 50)), (w / 2, h / 2, rng.uniform(4, 8)),
                    rot_y(rng.uniform(-0.5, 0.5)))
        facade = look(rng, pick(rng, [(180, 160, 140), (150, 80, 60), (200, 200, 195), (120, 120, 130)]), "checker",
                      color2=(60, 70, 90), scale=1.6)  # the checker's dark cells read as windows
        things.append(_stuff("building", [Piece(block, facade)]))
    for _ in range(int(rng.integers(0, 5))):
        x, z, h = rng.uniform(-25, 25), -far - rng.uniform(0, 30), rng.uniform(2, 4)
        crown = look(rng, pick(rng, [(50, 110, 40), (70, 130, 50), (40, 90, 35), (140, 120, 40)]), "noise",
                     scale=0.6, dark=0.6)
        trunk = Cylinder((x, 0, z), (x, h, z), rng.uniform(0.15, 0.35))
        things.append(_stuff("tree", [Piece(trunk, look(rng, (90, 65, 40))),
                                      Piece(Ellipsoid((x, h + 1.0, z), rng.uniform(1.2, 2.5, 3)), crown)]))
    if ground != "water" and rng.uniform() < 0.3:
        z, w = -far * rng.uniform(0.8, 1.2), rng.uniform(6, 20)
        boards = look(rng, pick(rng, WOOD + [(240, 240, 240)]), "stripes", scale=0.25, axis=(1, 0, 0), dark=0.5)
        things.append(_stuff("fence", [Piece(Box((rng.uniform(-5, 5), 0.6, z), (w / 2, 0.6, 0.03)), boards)]))
    if ground != "water" and rng.uniform() < 0.3:
        for _ in range(int(rng.integers(1, 3))):
            boulder = Ellipsoid((rng.uniform(-8, 8), 0.0, -rng.uniform(4, far)), rng.uniform(0.3, 1.0, 3))
            things.append(_stuff("rock", [Piece(boulder, look(rng, (130, 125, 120), "noise", scale=0.3))]))
    if ground in ("road", "ground", "grass") and rng.uniform() < 0.25:
        x, z = rng.uniform(-6, 6), -rng.uniform(6, far)
        plate = look(rng, pick(rng, [(30, 90, 170), (200, 30, 30), (240, 200, 30)]))
        things += [_stuff("pole", [Piece(Cylinder((x, 0, z), (x, 2.6, z), 0.04), look(rng, METAL[1]))]),
                   _stuff("sign", [Piece(Box((x, 2.6, z + 0.05), (0.4, 0.3, 0.02)), plate)])]
    return things


def _sky(rng) -> Callable[[np.ndarray], np.ndarray]:
    """Sky colour by ray elevation, with soft clouds."""
    horizon = np.array(color(rng, pick(rng, [(200, 215, 235), (225, 225, 225), (240, 210, 180)]), 0.05))
    zenith = np.array(color(rng, pick(rng, [(70, 120, 200), (150, 160, 175), (100, 140, 210)]), 0.05))
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
    n_persons = pick(rng, [0, 1, int(rng.integers(2, 5))])  # a third without persons
    land = [c for c in _VOC_BUILDERS if c != "boat"]
    if n_persons == 0:
        main = pick(rng, list(_VOC_BUILDERS))
        company = ["boat", "bird"] if main == "boat" else land
        other_classes = [main] + [pick(rng, company) for _ in range(int(rng.integers(0, 3)))]
    else:
        company = [c for c in land if c not in ("aeroplane", "train")]
        other_classes = [pick(rng, company) for _ in range(int(rng.integers(0, 3)))]
    main_is_person = n_persons > 0 and (not other_classes or rng.uniform() < 0.6)
    lands = ["grass", "grass", "ground", "road", "sand", "snow"]
    ground = "water" if other_classes[:1] == ["boat"] else pick(rng, lands)

    # Foreground models in placing order: the main object first (it sets the camera).
    models: list[tuple[str, Model]] = []
    if main_is_person:
        models += [("person", _voc_person(rng)) for _ in range(n_persons)]
        models += [(c, _VOC_BUILDERS[c](rng)) for c in other_classes]
    else:
        models += [(c, _VOC_BUILDERS[c](rng)) for c in other_classes]
        models += [("person", _voc_person(rng)) for _ in range(n_persons)]

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
            yaw = to_camera + pick(rng, [-1.0, 1.0]) * math.pi / 2 + rng.uniform(-0.7, 0.7)
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
    r = render_scene(scene, rng)

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
