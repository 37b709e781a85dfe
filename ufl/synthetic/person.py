"""An articulated person of primitives carrying the 24 PASCAL-Part person parts.

Shared by both domains: standing persons in the NYUD-like rooms (NYUD label ``person``) and the
persons of the PASCAL-like photos (VOC ``person``, whose part masks are written to
``human_parts/ID.mat``).
"""

from __future__ import annotations

import numpy as np

from .render import Capsule, Ellipsoid, Material, rot_x, rot_y, rot_z, sphere
from .scene import CLOTH, HAIR, SKIN, TROUSERS, Model, Piece, Thing, look, pick

__all__ = ["PERSON_PARTS", "person_model"]

#: The 24 PASCAL-Part person part names ('l' / 'r' = the person's own left / right).
PERSON_PARTS = (
    "head", "hair", "lear", "rear", "leye", "reye", "lebrow", "rebrow", "nose", "mouth", "neck", "torso",
    "luarm", "ruarm", "llarm", "rlarm", "lhand", "rhand", "luleg", "ruleg", "llleg", "rlleg", "lfoot", "rfoot",
)


def _limb_dir(forward: float, sideways: float, side: float) -> np.ndarray:
    """Unit direction of a limb hanging down, swung ``forward`` (radians, towards +z) and
    ``sideways`` (away from the body on ``side`` = +1 for the person's left, +x)."""
    return rot_x(-forward) @ rot_z(side * sideways) @ np.array([0.0, -1.0, 0.0])


def _pose(rng: np.random.Generator) -> dict[str, float]:
    """Joint angles (radians) of a random pose: standing, walking, running, waving, arms out."""
    pose = pick(rng, ["stand", "walk", "run", "wave", "arms_out"])
    a = dict(l_sh=rng.uniform(-0.2, 0.3), r_sh=rng.uniform(-0.2, 0.3), l_ab=rng.uniform(0.05, 0.25),
             r_ab=rng.uniform(0.05, 0.25), l_el=rng.uniform(0.0, 0.4), r_el=rng.uniform(0.0, 0.4),
             l_hip=rng.uniform(-0.1, 0.1), r_hip=rng.uniform(-0.1, 0.1), l_kn=rng.uniform(0.0, 0.15),
             r_kn=rng.uniform(0.0, 0.15), l_hab=rng.uniform(0.0, 0.1), r_hab=rng.uniform(0.0, 0.1),
             head_yaw=rng.uniform(-0.5, 0.5), head_pitch=rng.uniform(-0.2, 0.2))
    if pose in ("walk", "run"):
        amp = rng.uniform(0.3, 0.6) if pose == "walk" else rng.uniform(0.6, 1.0)
        s = pick(rng, [-1.0, 1.0])
        a.update(l_sh=s * amp, r_sh=-s * amp, l_hip=-s * amp * 0.8, r_hip=s * amp * 0.8,
                 l_el=rng.uniform(0.2, 1.2), r_el=rng.uniform(0.2, 1.2),
                 l_kn=rng.uniform(0.1, 0.4 + amp), r_kn=rng.uniform(0.1, 0.3))
    elif pose == "wave":
        side = pick(rng, ["l", "r"])
        a.update({f"{side}_ab": rng.uniform(1.8, 2.8), f"{side}_el": rng.uniform(0.3, 1.4),
                  f"{side}_sh": rng.uniform(-0.3, 0.3)})
    elif pose == "arms_out":
        a.update(l_ab=rng.uniform(1.1, 1.6), r_ab=rng.uniform(1.1, 1.6), l_sh=rng.uniform(-0.2, 0.4),
                 r_sh=rng.uniform(-0.2, 0.4))
    return a


def person_model(rng: np.random.Generator, label: int, context: int = 0, height: float | None = None) -> Model:
    """An articulated person of primitives carrying the 24 PASCAL-Part part names.

    Segment lengths in units of body height H follow Drillis & Contini's anthropometric table
    (1966, as in Winter, "Biomechanics and Motor Control of Human Movement"): upper arm 0.186 H,
    forearm 0.146 H, thigh 0.245 H, shank 0.246 H. Head sphere, ellipsoid torso, capsule limbs,
    sphere hands, ellipsoid feet; local +z is the direction the person faces. 15% are children.
    """
    H = height if height is not None else (rng.uniform(1.0, 1.35) if rng.uniform() < 0.15 else rng.uniform(1.5, 1.9))
    a = _pose(rng)
    skin = look(rng, pick(rng, SKIN), jitter=0.05)
    hair = look(rng, pick(rng, HAIR), "noise", scale=0.03, dark=0.75)
    shirt_pattern = pick(rng, ["plain", "plain", "stripes", "noise"])
    shirt = look(rng, pick(rng, CLOTH), shirt_pattern, color2=pick(rng, CLOTH), scale=0.08)
    trousers = look(rng, pick(rng, TROUSERS), "noise", scale=0.1, dark=0.8)
    shoes = look(rng, pick(rng, [(30, 30, 30), (90, 50, 30), (230, 230, 230), (150, 30, 30)]))
    dark = Material((0.05, 0.05, 0.06))
    lips = look(rng, (170, 80, 80), jitter=0.05)
    sleeve = pick(rng, ["long", "short", "short", "none"])
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
