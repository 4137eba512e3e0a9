#!/usr/bin/env python3
"""Generate the project's own MANO-format hand model (weights/open_hand/) and a preview image.

The project cannot ship MANO, so this script builds an original, procedurally defined hand in
MANO's file format and conventions so that ``dir_ros.hand_model`` and ``smplx.MANO`` load it
unchanged. Deterministic: no randomness, no downloads; rerunning reproduces the same arrays.

Conventions (chosen to match MANO so the same pose values move this hand the way they move
MANO's):
- MANO's 16-joint kinematic tree: 0 wrist, 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring,
  13-15 thumb; kintree parents (-1,0,1,2,0,4,5,0,7,8,0,10,11,0,13,14).
- Right hand in MANO's canonical frame, metres: fingers point along -x (wrist at x ~ +0.09,
  knuckles near x ~ 0), the thumb is on the +z side, the back of the hand faces +y and the
  palm faces -y. Every joint's rest orientation is the identity (as in MANO), so pose
  axis-angles act in this frame: a positive rotation about +z flexes a right-hand finger
  toward the palm (-y), as MANO's right-hand mean pose (positive z components on the finger
  joints) shows. Rotation about +y spreads a finger toward the thumb side.
- Left hand = mirror image of the right (x -> -x, faces reversed); pose PCA components and
  the mean pose are mirrored per joint as axis-angle (a, b, c) -> (a, -b, -c), so a mirrored
  pose gives the mirrored mesh, as with MANO's left model.
- 21 keypoints use the five fingertip vertices stored under the extra key 'tip_ids'
  (thumb, index, middle, ring, pinky); the mesh is not MANO's, so MANO's tip ids do not apply.

Geometry: a palm (rounded super-elliptic tube from the wrist to the knuckle line, closed at
both ends) and five closed finger tubes (thumb from its CMC joint) with rounded tips; every
joint has a vertex ring centred on it, and J_regressor averages that ring. Skinning weights
are smooth: along each finger they blend parent/child joints over a short band around each
joint; palm weights fall off with distance from the knuckles and the thumb metacarpal.
Shape space: 10 hand-designed linear directions (overall size, finger length, palm width,
palm thickness, finger girth, palm length, thumb length, index/ring ratio, pinky length,
finger taper). posedirs are zero (no pose correctives). Finger-pose PCA: an orthonormal 45x45
basis whose leading rows are hand-designed synergies (grasp, hook, spread, thumb opposition,
...) completed by the standard basis vectors that are clearly independent of them (explicit
rank decision, then QR), so every row is a well-conditioned function of the design, the same
on every CPU; the mean pose is a relaxed slight flexion.

Usage: python tools/make_open_hand.py [--out weights/open_hand] [--render docs/open_hand.png]
"""
from __future__ import annotations

import argparse
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# Design constants (metres, radians). Anatomical sizes are round numbers for an average adult
# hand (hand length ~0.19 m, breadth ~0.085 m); they are this project's own choices.
# ---------------------------------------------------------------------------------------------
NUM_JOINTS = 16
NUM_BETAS = 10
NUM_POSE = 45
POSEDIR_DIM = (NUM_JOINTS - 1) * 9  # 135 pose-corrective features (MANO format)
KINTREE_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)  # MANO's tree
ROOT_PARENT_CODE = 2 ** 32 - 1  # MANO stores the root's parent as uint32(-1)
# Hand frame (u distal, v toward the thumb, w dorsal) -> MANO frame: x = X0 - u, y = Y0 + w,
# z = Z0 + v. The offset places the wrist where MANO's template has it (roughly).
MANO_OFFSET = np.array([0.09, 0.005, 0.005])

RING_N = 11  # vertices around a finger tube (11 + palm 24 gives MANO's 778 vertices)
PALM_N = 24  # vertices around the palm tube
BASE_DEPTH = 0.012  # finger tubes start this far behind the MCP joint (inside the palm)
BLEND_HALF_WIDTH = 0.006  # skinning weight blend half-width along a finger around each joint
PALM_FALLOFF_MCP = 0.011  # Gaussian falloff of MCP influence on palm vertices
PALM_FALLOFF_THUMB = 0.008  # Gaussian falloff of the thumb metacarpal's influence on the palm
PALM_MCP_GAIN = 0.6  # peak MCP influence on palm vertices (relative to the wrist's 1)
PALM_THUMB_GAIN = 0.4  # peak thumb-CMC influence on palm vertices

# Finger name -> (MANO joint ids, MCP/CMC position in the hand frame (u, v, w), segment
# directions as (yaw toward +v, pitch toward +w) in degrees, segment lengths (to next joint, to
# next joint, to fingertip), half-widths (side, dorsal-palmar) at base joint .. tip).
@dataclass
class FingerSpec:
    """Design of one digit in the hand frame."""

    name: str
    joints: Tuple[int, int, int]  # MANO joint ids, proximal to distal
    base: Tuple[float, float, float]  # first joint position (u, v, w) m
    yaw_deg: Tuple[float, float, float]  # per-segment direction toward +v (thumb side)
    pitch_deg: Tuple[float, float, float]  # per-segment direction toward +w (dorsal)
    lengths: Tuple[float, float, float]  # joint-joint, joint-joint, joint-tip m
    radii: Tuple[Tuple[float, float], ...]  # (half width, half thickness) at 4 stations m
    roll_deg: float = 0.0  # cross-section roll about the axis (thumb nail faces sideways)


FINGERS: Tuple[FingerSpec, ...] = (  # order: thumb, index, middle, ring, pinky (tip_ids order)
    FingerSpec("thumb", (13, 14, 15), (0.022, 0.026, -0.012), (52.0, 38.0, 30.0),
               (-8.0, -6.0, -4.0), (0.040, 0.032, 0.028),
               ((0.0150, 0.0130), (0.0108, 0.0098), (0.0100, 0.0088), (0.0088, 0.0076)),
               roll_deg=-40.0),
    FingerSpec("index", (1, 2, 3), (0.088, 0.022, -0.002), (5.0, 4.0, 3.0), (0.0, 0.0, 0.0),
               (0.037, 0.024, 0.023),
               ((0.0098, 0.0088), (0.0088, 0.0080), (0.0078, 0.0070), (0.0072, 0.0062))),
    FingerSpec("middle", (4, 5, 6), (0.092, 0.001, 0.000), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0),
               (0.040, 0.027, 0.024),
               ((0.0100, 0.0090), (0.0091, 0.0082), (0.0080, 0.0072), (0.0073, 0.0064))),
    FingerSpec("ring", (10, 11, 12), (0.086, -0.019, -0.002), (-4.0, -3.0, -2.0),
               (0.0, 0.0, 0.0), (0.037, 0.025, 0.023),
               ((0.0094, 0.0085), (0.0085, 0.0078), (0.0075, 0.0068), (0.0069, 0.0060))),
    FingerSpec("pinky", (7, 8, 9), (0.075, -0.036, -0.006), (-10.0, -7.0, -5.0),
               (0.0, 0.0, 0.0), (0.029, 0.020, 0.020),
               ((0.0082, 0.0074), (0.0074, 0.0067), (0.0066, 0.0060), (0.0061, 0.0054))),
)
# Palm: rings from the wrist (t=0) to the knuckle line (t=1); half-width / half-thickness /
# centre offset (v, w) at t, linear between the listed stations.
PALM_T = (0.0, 0.25, 0.5, 0.75, 1.0)
PALM_HALF_WIDTH = (0.027, 0.034, 0.040, 0.043, 0.044)
PALM_HALF_THICK = (0.013, 0.0145, 0.0150, 0.0140, 0.0120)
PALM_CENTRE_V = (0.000, -0.002, -0.003, -0.004, -0.006)
PALM_CENTRE_W = (0.000, -0.001, -0.002, -0.002, -0.003)
PALM_EXPONENT = 3.0  # super-ellipse exponent of the palm cross-section (2 = ellipse)
PALM_RINGS_T = tuple(k / 6 for k in range(7))  # main palm rings, wrist (0) to knuckles (1)
PALM_CAP_WRIST = (0.006, 0.72)  # wrist cap ring: (distance behind the wrist, size factor)
PALM_CAP_KNUCKLE = (0.007, 0.65)  # knuckle cap ring: (distance past the knuckles, size)

# Shape directions: displacement per unit beta (see shape_dirs()).
SHAPE_SCALE = 0.04  # beta0: overall size, fraction per unit
SHAPE_FINGER_LEN = 0.05  # beta1: finger (not thumb) length fraction
SHAPE_PALM_WIDTH = 0.06  # beta2: palm width fraction
SHAPE_PALM_THICK = 0.08  # beta3: palm thickness fraction
SHAPE_GIRTH = 0.06  # beta4: digit girth fraction
SHAPE_PALM_LEN = 0.05  # beta5: palm length fraction
SHAPE_THUMB_LEN = 0.06  # beta6: thumb length fraction
SHAPE_DIGIT_RATIO = 0.04  # beta7: index longer / ring shorter fraction
SHAPE_PINKY_LEN = 0.06  # beta8: pinky length fraction
SHAPE_TAPER = -0.08  # beta9: girth change at the tip relative to the base (negative = taper)

# Relaxed mean pose (right hand): flexion about +z per finger joint (MCP, PIP, DIP) and a
# slight thumb flexion; spread about +y per MCP (toward the thumb is positive).
MEAN_FLEX = {"index": (0.15, 0.25, 0.15), "middle": (0.18, 0.30, 0.18),
             "ring": (0.22, 0.32, 0.18), "pinky": (0.28, 0.35, 0.20)}
MEAN_SPREAD = {"index": 0.05, "middle": 0.0, "ring": -0.04, "pinky": -0.10}
MEAN_THUMB_FLEX = (0.10, 0.15, 0.20)  # CMC, MCP, IP about each segment's flexion axis
THUMB_FLEX_TOWARD = (0.45, 1.0)  # thumb flexion moves the tip toward (medial, palmar) weights

FINGER_MANO_IDS = {f.name: f.joints for f in FINGERS}
# Rank decision of the pose basis completion (independent_columns()): relative residual of a
# candidate vector after projecting out the vectors kept before it. The design's residuals are
# either >= 0.1 (kept) or <= 1e-15 (dependent), far from both thresholds.
RANK_KEEP = 1e-3
RANK_DROP = 1e-9
TWO_HAND_GAP = 0.12  # preview: distance between the two wrists (m)
SHAPE_GAP = 0.11  # preview: distance between shape variants (m)
PANEL_PX = 320  # preview: panel size in pixels
OPPOSITION_AXIS = np.array([1.0, 0.0, 0.0])  # thumb CMC roll: +x turns the thumb palmar (-y)
# Preview poses (right hand; radians): finger (MCP, PIP, DIP) flexion about +z, thumb
# (CMC, MCP, IP) flexion about thumb_flex_axes(), CMC opposition about OPPOSITION_AXIS.
PREVIEW_POSES = {
    "flat (zero pose)": {},
    "mean pose (pca = 0)": None,
    "fist": {f: (1.4, 1.6, 1.0) for f in ("index", "middle", "ring", "pinky")} | {
        "thumb": (0.5, 0.6, 0.6), "opposition": 0.9},
    "pointing": {f: (1.4, 1.6, 1.0) for f in ("middle", "ring", "pinky")} | {
        "index": (0.0, 0.05, 0.0), "thumb": (0.5, 0.6, 0.6), "opposition": 0.9},
    "grasp": {f: (0.6, 0.8, 0.5) for f in ("index", "middle", "ring", "pinky")} | {
        "thumb": (0.3, 0.4, 0.4), "opposition": 0.9},
}
PREVIEW_PCA = ((0, 2.0, "grasp synergy"), (2, 0.8, "spread"), (3, 1.2, "thumb opposition"))
PREVIEW_SHAPES = ((0, 3.0), (0, -3.0), (1, -3.0), (2, 3.0), (4, 3.0), (5, -3.0), (6, 3.0))


# ---------------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------------
def hand_to_mano(p: np.ndarray) -> np.ndarray:
    """Hand frame (u distal, v thumb-ward, w dorsal) points (...,3) -> MANO right frame."""
    p = np.asarray(p, dtype=np.float64)
    return np.stack([MANO_OFFSET[0] - p[..., 0], MANO_OFFSET[1] + p[..., 2],
                     MANO_OFFSET[2] + p[..., 1]], axis=-1)


def hand_dir_to_mano(d: np.ndarray) -> np.ndarray:
    """Hand-frame direction vectors (...,3) -> MANO frame (no offset)."""
    d = np.asarray(d, dtype=np.float64)
    return np.stack([-d[..., 0], d[..., 2], d[..., 1]], axis=-1)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _direction(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Unit hand-frame direction: distal (+u) turned by yaw toward +v and pitch toward +w."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    return np.array([np.cos(y) * np.cos(p), np.sin(y) * np.cos(p), np.sin(p)])


def _interp(t: float, ts: Sequence[float], vals: Sequence[float]) -> float:
    return float(np.interp(t, ts, vals))


def _ring_frame(d: np.ndarray, roll_deg: float) -> Tuple[np.ndarray, np.ndarray]:
    """Side and dorsal unit vectors perpendicular to axis d (hand frame), rolled about d."""
    dorsal = np.array([0.0, 0.0, 1.0])
    dorsal = _unit(dorsal - d * (dorsal @ d))
    side = np.cross(dorsal, d)  # toward +v for a distal axis
    r = np.radians(roll_deg)
    return (np.cos(r) * side + np.sin(r) * dorsal, -np.sin(r) * side + np.cos(r) * dorsal)


@dataclass
class Part:
    """One closed surface component with per-vertex bookkeeping for weights and shapes."""

    verts: List[np.ndarray] = field(default_factory=list)  # hand-frame positions
    axis_pt: List[np.ndarray] = field(default_factory=list)  # centre-line point per vertex
    s: List[float] = field(default_factory=list)  # arc length from the first joint (digits)
    faces: List[Tuple[int, int, int]] = field(default_factory=list)
    joint_rings: Dict[int, List[int]] = field(default_factory=dict)  # joint -> ring verts
    tip: int = -1  # tip vertex (digits)


def _tube_faces(rings: List[List[int]], start_pole: int, end_pole: int) -> List[Tuple[int, ...]]:
    """Triangles of a closed tube: caps fanned to poles, quads split; outward winding."""
    faces: List[Tuple[int, ...]] = []
    n = len(rings[0])
    for k in range(n):  # start cap (normal points backward along the axis)
        faces.append((start_pole, rings[0][(k + 1) % n], rings[0][k]))
    for a, b in zip(rings[:-1], rings[1:]):
        for k in range(n):
            k1 = (k + 1) % n
            faces.append((a[k], a[k1], b[k1]))
            faces.append((a[k], b[k1], b[k]))
    for k in range(n):
        faces.append((end_pole, rings[-1][k], rings[-1][(k + 1) % n]))
    return faces


def digit_joint_positions(spec: FingerSpec) -> np.ndarray:
    """(4,3) hand-frame positions of the digit's three joints and its tip end."""
    joints = [np.array(spec.base, dtype=np.float64)]
    for (yaw, pitch), length in zip(zip(spec.yaw_deg, spec.pitch_deg), spec.lengths):
        joints.append(joints[-1] + _direction(yaw, pitch) * length)
    return np.stack(joints)


def build_digit(spec: FingerSpec, offset: int) -> Tuple[Part, np.ndarray]:
    """A closed tube along the digit's joints; returns the part and its joint positions (4,3)."""
    dirs = [_direction(y, p) for y, p in zip(spec.yaw_deg, spec.pitch_deg)]
    joints = list(digit_joint_positions(spec))
    cum = np.concatenate([[0.0], np.cumsum(spec.lengths)])  # arc length at joints and tip end
    total = cum[-1]
    r_tip = spec.radii[-1][1]  # tip cap radius (along the axis) = tip half thickness

    def axis_at(s: float) -> Tuple[np.ndarray, np.ndarray]:
        """Centre-line point and direction at arc length s (extends linearly past the ends)."""
        k = int(np.clip(np.searchsorted(cum, s, side="right") - 1, 0, 2))
        d = dirs[k]
        if s < 0:
            d = dirs[0]
        pt = joints[k] + d * (s - cum[k])
        # use the mean direction exactly at inner joints for a symmetric ring
        for j in (1, 2):
            if abs(s - cum[j]) < 1e-12:
                d = _unit(dirs[j - 1] + dirs[j])
        return pt, d

    def radii_at(s: float) -> Tuple[float, float]:
        sa = np.clip(s, 0.0, total)
        stations = [0.0, cum[1], cum[2], total]
        return (_interp(sa, stations, [r[0] for r in spec.radii]),
                _interp(sa, stations, [r[1] for r in spec.radii]))

    cap_start = total - r_tip
    # ring stations (arc length) and which MANO joint each ring is centred on
    stations: List[Tuple[float, Optional[int]]] = [
        (-BASE_DEPTH, None), (0.0, spec.joints[0]), (0.5 * cum[1], None),
        (cum[1], spec.joints[1]), (0.5 * (cum[1] + cum[2]), None), (cum[2], spec.joints[2]),
        (cum[2] + 0.45 * (cap_start - cum[2]), None), (cap_start, None)]
    cap_lat = (np.radians(40.0), np.radians(70.0))  # cap ring latitudes past cap_start
    part = Part()
    rings: List[List[int]] = []
    ang = np.linspace(0.0, 2 * np.pi, RING_N, endpoint=False)

    def add(p: np.ndarray, a: np.ndarray, s: float) -> int:
        part.verts.append(p)
        part.axis_pt.append(a)
        part.s.append(s)
        return offset + len(part.verts) - 1

    # base pole (inside the palm)
    pt0, d0 = axis_at(-BASE_DEPTH)
    rw, rt = radii_at(0.0)
    start_pole = add(pt0 - d0 * 0.4 * rt, pt0, -BASE_DEPTH)
    for s, joint in stations:
        pt, d = axis_at(s)
        side, dorsal = _ring_frame(d, spec.roll_deg)
        rw, rt = radii_at(s)
        ring = [add(pt + rw * np.cos(a) * side + rt * np.sin(a) * dorsal, pt, s) for a in ang]
        rings.append(ring)
        if joint is not None:
            part.joint_rings[joint] = [i for i in ring]
    pt, d = axis_at(cap_start)
    side, dorsal = _ring_frame(d, spec.roll_deg)
    rw, rt = radii_at(total)
    for lat in cap_lat:
        c = pt + d * r_tip * np.sin(lat)
        ring = [add(c + np.cos(lat) * (rw * np.cos(a) * side + rt * np.sin(a) * dorsal), pt,
                    cap_start + r_tip * np.sin(lat)) for a in ang]
        rings.append(ring)
    end_pole = add(pt + d * r_tip, pt, total)
    part.tip = end_pole
    part.faces = _tube_faces(rings, start_pole, end_pole)
    return part, np.stack(joints)


def knuckle_u(v: np.ndarray) -> np.ndarray:
    """u of the knuckle line (distal palm edge) as a function of v, through the MCP joints."""
    pts = sorted((f.base[1], f.base[0]) for f in FINGERS if f.name != "thumb")
    vs, us = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    return np.interp(v, vs, us)


def build_palm(offset: int) -> Part:
    """Closed super-elliptic tube from the wrist to the knuckle line; ring 0 centred on wrist."""
    part = Part()
    ang = np.linspace(0.0, 2 * np.pi, PALM_N, endpoint=False) + np.pi / PALM_N
    expo = 2.0 / PALM_EXPONENT
    cs, sn = np.cos(ang), np.sin(ang)
    unit = np.stack([np.sign(cs) * np.abs(cs) ** expo, np.sign(sn) * np.abs(sn) ** expo], 1)

    def ring_at(t: float, scale: float, du: float) -> np.ndarray:
        hw, ht = _interp(t, PALM_T, PALM_HALF_WIDTH), _interp(t, PALM_T, PALM_HALF_THICK)
        cv, cw = _interp(t, PALM_T, PALM_CENTRE_V), _interp(t, PALM_T, PALM_CENTRE_W)
        v = cv + scale * hw * unit[:, 0]
        w = cw + scale * ht * unit[:, 1]
        u = t * knuckle_u(v) + du
        return np.stack([u, v, w], 1), np.array([t * knuckle_u(cv) + du, cv, cw])

    def add(p: np.ndarray, a: np.ndarray) -> int:
        part.verts.append(p)
        part.axis_pt.append(a)
        part.s.append(0.0)
        return offset + len(part.verts) - 1

    rings: List[List[int]] = []
    back, shrink = PALM_CAP_WRIST
    pts, c = ring_at(0.0, shrink, -back)
    start_pole = add(c + np.array([-0.3 * back, 0, 0]), c)
    rings.append([add(p, c) for p in pts])
    for t in PALM_RINGS_T:
        pts, c = ring_at(t, 1.0, 0.0)
        ring = [add(p, c) for p in pts]
        rings.append(ring)
        if t == PALM_RINGS_T[0]:
            part.joint_rings[0] = list(ring)
    fwd, shrink = PALM_CAP_KNUCKLE
    pts, c = ring_at(1.0, shrink, fwd)
    rings.append([add(p, c) for p in pts])
    end_pole = add(c + np.array([0.3 * fwd, 0, 0]), c)
    part.faces = _tube_faces(rings, start_pole, end_pole)
    return part


# ---------------------------------------------------------------------------------------------
# Model assembly
# ---------------------------------------------------------------------------------------------
def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of points p (N,3) to segment a-b."""
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def build_right_model() -> Dict[str, np.ndarray]:
    """Assemble the right hand in MANO format (float64 arrays; saved as float32)."""
    palm = build_palm(0)
    parts: List[Tuple[str, Part]] = [("palm", palm)]
    digit_joints: Dict[str, np.ndarray] = {}
    offset = len(palm.verts)
    for spec in FINGERS:
        part, jts = build_digit(spec, offset)
        parts.append((spec.name, part))
        digit_joints[spec.name] = jts
        offset += len(part.verts)
    verts_h = np.concatenate([np.stack(p.verts) for _, p in parts])  # hand frame
    axis_h = np.concatenate([np.stack(p.axis_pt) for _, p in parts])
    s_all = np.concatenate([np.array(p.s) for _, p in parts])
    faces = np.array([f for _, p in parts for f in p.faces], dtype=np.int64)
    nv = verts_h.shape[0]
    part_of = np.concatenate([[name] * len(p.verts) for name, p in parts])

    # J_regressor: average of the ring centred on each joint
    jreg = np.zeros((NUM_JOINTS, nv))
    for _, p in parts:
        for j, ring in p.joint_rings.items():
            jreg[j, ring] = 1.0 / len(ring)
    assert np.allclose(jreg.sum(1), 1.0), "every joint needs a ring"
    joints_h = jreg @ verts_h

    # Skinning weights
    weights = np.zeros((nv, NUM_JOINTS))
    for spec in FINGERS:
        idx = np.where(part_of == spec.name)[0]
        s = s_all[idx]
        cum = np.concatenate([[0.0], np.cumsum(spec.lengths)])
        chain = (0,) + spec.joints  # wrist, j1, j2, j3
        # weight of chain[k] = ramp up at cum[k-1] minus ramp up at cum[k]
        ups = [np.ones_like(s)] + [_smoothstep((s - c + BLEND_HALF_WIDTH) /
                                               (2 * BLEND_HALF_WIDTH)) for c in cum[:3]]
        ups.append(np.zeros_like(s))
        if spec.name == "thumb":
            # the thick thumb metacarpal (thenar) moves rigidly with the CMC joint: blending it
            # with the wrist inside the palm creases the thumb base under opposition
            ups[1] = np.ones_like(s)
        for k, j in enumerate(chain):
            weights[idx, j] += ups[k] - ups[k + 1]
    pidx = np.where(part_of == "palm")[0]
    pv = verts_h[pidx]
    pw = np.zeros((len(pidx), NUM_JOINTS))
    pw[:, 0] = 1.0
    for spec in FINGERS:
        jts = digit_joints[spec.name]
        if spec.name == "thumb":
            d = _seg_dist(pv, jts[0], jts[1])
            pw[:, spec.joints[0]] = PALM_THUMB_GAIN * np.exp(-(d / PALM_FALLOFF_THUMB) ** 2)
        else:
            d = np.linalg.norm(pv - jts[0], axis=1)
            pw[:, spec.joints[0]] = PALM_MCP_GAIN * np.exp(-(d / PALM_FALLOFF_MCP) ** 2)
    weights[pidx] = pw / pw.sum(1, keepdims=True)
    assert np.allclose(weights.sum(1), 1.0)

    # Shape directions (hand frame), then mapped to MANO frame
    sd = np.zeros((nv, 3, NUM_BETAS))
    wrist = joints_h[0]
    sd[:, :, 0] = SHAPE_SCALE * (verts_h - wrist)
    offsets = verts_h - axis_h  # radial offset from the centre line
    palm_axis_v = 0.0  # palm width is measured from v = 0 (the wrist centre line)
    for spec in FINGERS:
        idx = np.where(part_of == spec.name)[0]
        base = digit_joints[spec.name][0]
        along = np.where(s_all[idx, None] > 0, axis_h[idx] - base, 0.0)  # centre-line growth
        total = sum(spec.lengths)
        if spec.name == "thumb":
            sd[idx, :, 6] = SHAPE_THUMB_LEN * along
        else:
            sd[idx, :, 1] = SHAPE_FINGER_LEN * along
        if spec.name == "index":
            sd[idx, :, 7] = SHAPE_DIGIT_RATIO * along
        if spec.name == "ring":
            sd[idx, :, 7] = -SHAPE_DIGIT_RATIO * along
        if spec.name == "pinky":
            sd[idx, :, 8] = SHAPE_PINKY_LEN * along
        sd[idx, 1, 2] = SHAPE_PALM_WIDTH * (base[1] - palm_axis_v)  # whole digit moves sideways
        sd[idx, :, 4] = SHAPE_GIRTH * offsets[idx]
        sd[idx, 0, 5] = SHAPE_PALM_LEN * (base[0] - wrist[0])  # digit rides on the palm
        frac = np.clip(s_all[idx] / total, 0.0, 1.0)[:, None]
        sd[idx, :, 9] = SHAPE_TAPER * frac * offsets[idx]
    sd[pidx, 1, 2] = SHAPE_PALM_WIDTH * (verts_h[pidx, 1] - axis_h[pidx, 1])
    sd[pidx, 2, 3] = SHAPE_PALM_THICK * (verts_h[pidx, 2] - axis_h[pidx, 2])
    sd[pidx, 0, 5] = SHAPE_PALM_LEN * (verts_h[pidx, 0] - wrist[0])
    shapedirs = np.stack([hand_dir_to_mano(sd[:, :, b]) for b in range(NUM_BETAS)], -1)

    v_template = hand_to_mano(verts_h)
    tips = [dict(parts)[f.name].tip for f in FINGERS]  # thumb, index, middle, ring, pinky
    mean, comps = pose_space(digit_joints)
    return dict(
        v_template=v_template, shapedirs=shapedirs,
        posedirs=np.zeros((nv, 3, POSEDIR_DIM)), J_regressor=jreg,
        kintree_table=np.array([[ROOT_PARENT_CODE if p < 0 else p for p in KINTREE_PARENTS],
                                list(range(NUM_JOINTS))], dtype=np.int64),
        weights=weights, f=faces, hands_components=comps, hands_mean=mean,
        tip_ids=np.array(tips, dtype=np.int64))


def thumb_flex_axes(digit_joints: Dict[str, np.ndarray]) -> np.ndarray:
    """(3,3) MANO-frame unit axes that flex thumb joints 13, 14, 15 toward the palm."""
    jts = hand_dir_to_mano(digit_joints["thumb"])  # only differences are used
    palmar = np.array([0.0, -1.0, 0.0])  # the right palm faces -y
    medial = np.array([0.0, 0.0, -1.0])  # toward the pinky (-z) in the right-hand frame
    axes = []
    for k in range(3):
        t = _unit(jts[k + 1] - jts[k])
        want = THUMB_FLEX_TOWARD[0] * medial + THUMB_FLEX_TOWARD[1] * palmar
        want = _unit(want - t * (want @ t))
        axes.append(_unit(np.cross(t, want)))  # rotating about t x want turns t toward want
    return np.stack(axes)


def pose_space(digit_joints: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Relaxed mean finger pose (45,) and an orthonormal PCA basis (45,45), right hand."""
    z, y = np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])
    th_axes = thumb_flex_axes(digit_joints)

    def vec(entries: Dict[int, np.ndarray]) -> np.ndarray:
        out = np.zeros(NUM_POSE)
        for j, aa in entries.items():
            out[3 * (j - 1): 3 * j] += aa
        return out

    fingers = ("index", "middle", "ring", "pinky")
    ids = FINGER_MANO_IDS
    mean = vec({})
    for f in fingers:
        for k, j in enumerate(ids[f]):
            mean += vec({j: MEAN_FLEX[f][k] * z})
        mean += vec({ids[f][0]: MEAN_SPREAD[f] * y})
    for k, j in enumerate(ids["thumb"]):
        mean += vec({j: MEAN_THUMB_FLEX[k] * th_axes[k]})

    syn = []
    # 0: power grasp (all joints flex, thumb too)
    syn.append(sum(vec({j: z}) for f in fingers for j in ids[f])
               + vec({j: th_axes[k] for k, j in enumerate(ids["thumb"])}))
    # 1: hook vs flat: MCP extend, PIP/DIP flex
    syn.append(sum(vec({ids[f][0]: -z, ids[f][1]: z, ids[f][2]: z}) for f in fingers))
    # 2: spread (abduction about +y): index toward thumb, ring/pinky away
    syn.append(vec({1: 0.6 * y, 4: 0.1 * y, 10: -0.5 * y, 7: -1.0 * y}))
    # 3: thumb opposition (CMC roll about OPPOSITION_AXIS plus flexion)
    syn.append(vec({13: OPPOSITION_AXIS + 0.5 * th_axes[0], 14: 0.5 * th_axes[1]}))
    # 4: thumb flexion (MCP, IP)
    syn.append(vec({14: th_axes[1], 15: th_axes[2]}))
    # 5: index vs the rest (pointing when negative)
    syn.append(sum(vec({j: -z}) for j in ids["index"])
               + sum(vec({j: z / 3}) for f in ("middle", "ring", "pinky") for j in ids[f]))
    # 6: ulnar (ring + pinky) vs radial (index + middle) flexion
    syn.append(sum(vec({j: z}) for f in ("ring", "pinky") for j in ids[f])
               - sum(vec({j: z}) for f in ("index", "middle") for j in ids[f]))
    return mean, orthonormal_completion(np.stack(syn))


def independent_columns(cands: np.ndarray) -> List[int]:
    """Indices of the columns of cands (n, m) kept by a greedy rank decision in column order:
    a column is kept when the part of it orthogonal to the kept columns before it is at least
    RANK_KEEP of its norm, dropped when under RANK_DROP. Anything in between is ambiguous (the
    decision would depend on rounding) and raises, so the choice is the same on every CPU."""
    n = cands.shape[0]
    q = np.zeros((n, 0))
    keep: List[int] = []
    for k in range(cands.shape[1]):
        c = cands[:, k]
        norm = np.linalg.norm(c)
        if norm == 0.0:
            continue
        v = c - q @ (q.T @ c)
        v = v - q @ (q.T @ v)  # second pass: orthogonal to working precision
        rel = np.linalg.norm(v) / norm
        if RANK_DROP <= rel < RANK_KEEP:
            raise ValueError(f"candidate column {k} is nearly dependent (relative residual "
                             f"{rel:.3g}); the basis would depend on rounding")
        if rel >= RANK_KEEP:
            keep.append(k)
            q = np.concatenate([q, (v / np.linalg.norm(v))[:, None]], 1)
        if len(keep) == n:
            break
    return keep


def orthonormal_completion(leading: np.ndarray) -> np.ndarray:
    """Orthonormal (n, n) basis (rows) whose first rows are Gram-Schmidt of the rows of
    leading (k, n), completed by the standard basis vectors e_0, e_1, ... in that order,
    each kept only when it is clearly independent of the rows before it
    (independent_columns()). The kept columns form a square, well-conditioned matrix whose
    QR (R's diagonal made positive) is unique, so every row is a smooth function of the
    inputs, not of rounding noise. Row i has a positive dot product with its source vector."""
    n = leading.shape[1]
    cands = np.concatenate([leading.T, np.eye(n)], 1)
    keep = independent_columns(cands)
    if len(keep) != n or any(k != i for i, k in enumerate(keep[:leading.shape[0]])):
        raise ValueError(f"leading rows are not linearly independent: kept {keep}")
    q, r = np.linalg.qr(cands[:, keep])
    q = q * np.sign(np.diag(r))
    comps = q.T  # rows = components
    assert np.allclose(comps @ comps.T, np.eye(n), atol=1e-10)
    return comps


MIRROR = np.array([-1.0, 1.0, 1.0])  # x -> -x
AA_MIRROR = np.tile(np.array([1.0, -1.0, -1.0]), NUM_POSE // 3)  # axis-angle under x-mirror


def mirror_model(right: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Left hand as the mirror image of the right (same vertex ids, reversed faces)."""
    left = dict(right)
    left["v_template"] = right["v_template"] * MIRROR
    left["shapedirs"] = right["shapedirs"] * MIRROR[None, :, None]
    left["posedirs"] = np.zeros_like(right["posedirs"])  # zero; a non-zero one would need
    # the mirrored pose-feature mapping
    left["f"] = right["f"][:, ::-1].copy()
    left["hands_mean"] = right["hands_mean"] * AA_MIRROR
    left["hands_components"] = right["hands_components"] * AA_MIRROR[None, :]
    return left


def to_file_dict(model: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """float32 arrays (int64 indices) for a small committed file."""
    out = {}
    for k, v in model.items():
        v = np.asarray(v)
        out[k] = np.ascontiguousarray(v.astype(np.float32) if v.dtype.kind == "f" else v)
    out["bs_style"] = "lbs"
    out["bs_type"] = "lrotmin"
    return out


README = """# Open hand model (MANO format)

`MANO_LEFT.pkl` and `MANO_RIGHT.pkl` are this project's own procedurally generated hand model,
produced by `tools/make_open_hand.py` (deterministic, no downloads, no MANO data used). They
are licensed under the project's license, Apache-2.0. They are NOT the MANO model: they only
use MANO's file layout (keys v_template, shapedirs, posedirs, J_regressor, kintree_table,
weights, f, hands_components, hands_mean, plus `tip_ids`) and MANO's joint conventions, so
`dir_ros.hand_model` and `smplx.MANO` load them. Geometry, skinning, shape space and pose
space are simplified hand-designed approximations ({nv} vertices, {nf} faces); posedirs are
zero. For accuracy comparable with the published DIR numbers use the licensed MANO files
(https://mano.is.tue.mpg.de) instead.

Regenerate: `python tools/make_open_hand.py --out weights/open_hand --render docs/open_hand.png`
"""


def save(folder: Path) -> Dict[str, Dict[str, np.ndarray]]:
    """Write MANO_RIGHT.pkl, MANO_LEFT.pkl and README.md into folder."""
    right = build_right_model()
    left = mirror_model(right)
    folder.mkdir(parents=True, exist_ok=True)
    models = {"right": to_file_dict(right), "left": to_file_dict(left)}
    for side, name in (("right", "MANO_RIGHT.pkl"), ("left", "MANO_LEFT.pkl")):
        with open(folder / name, "wb") as fh:
            pickle.dump(models[side], fh, protocol=4)
    (folder / "README.md").write_text(README.format(nv=right["v_template"].shape[0],
                                                    nf=right["f"].shape[0]))
    return models


# ---------------------------------------------------------------------------------------------
# Preview rendering (small numpy z-buffer rasteriser; no GL needed)
# ---------------------------------------------------------------------------------------------
def _vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, f[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def render(meshes: Sequence[Tuple[np.ndarray, np.ndarray, Tuple[float, float, float]]],
           view: np.ndarray, size: int = PANEL_PX, extent: Optional[float] = None) -> np.ndarray:
    """Orthographic Gouraud-shaded render of meshes (verts, faces, rgb) seen through rotation
    `view` (camera looks along -z of the rotated frame). Returns (size,size,3) float image."""
    allv = np.concatenate([m[0] @ view.T for m in meshes])
    lo, hi = allv[:, :2].min(0), allv[:, :2].max(0)
    scale = 0.9 * size / (max(hi - lo) if extent is None else extent)
    centre = (lo + hi) / 2
    img = np.ones((size, size, 3))
    zbuf = np.full((size, size), -np.inf)
    light = _unit(np.array([0.3, 0.5, 1.0]))
    for verts, faces, rgb in meshes:
        v = verts @ view.T
        n = _vertex_normals(verts, faces) @ view.T
        px = (v[:, :2] - centre) * scale + size / 2
        px[:, 1] = size - px[:, 1]
        shade = 0.25 + 0.75 * np.clip(n @ light, 0, 1)
        for tri in faces:
            p = px[tri]
            x0, y0 = np.floor(p.min(0)).astype(int)
            x1, y1 = np.ceil(p.max(0)).astype(int)
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size - 1), min(y1, size - 1)
            if x1 < x0 or y1 < y0:
                continue
            xs, ys = np.meshgrid(np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5)
            d = (p[1, 0] - p[0, 0]) * (p[2, 1] - p[0, 1]) - (p[2, 0] - p[0, 0]) * (p[1, 1] - p[0, 1])
            if abs(d) < 1e-12:
                continue
            l1 = ((xs - p[0, 0]) * (p[2, 1] - p[0, 1]) - (p[2, 0] - p[0, 0]) * (ys - p[0, 1])) / d
            l2 = ((p[1, 0] - p[0, 0]) * (ys - p[0, 1]) - (xs - p[0, 0]) * (p[1, 1] - p[0, 1])) / d
            l0 = 1 - l1 - l2
            inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
            if not inside.any():
                continue
            z = l0 * v[tri[0], 2] + l1 * v[tri[1], 2] + l2 * v[tri[2], 2]
            sh = l0 * shade[tri[0]] + l1 * shade[tri[1]] + l2 * shade[tri[2]]
            sub = zbuf[y0:y1 + 1, x0:x1 + 1]
            upd = inside & (z > sub)
            sub[upd] = z[upd]
            img[y0:y1 + 1, x0:x1 + 1][upd] = np.outer(sh[upd], rgb)
    return img


def _rot(axis: str, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def preview(folder: Path, out_png: Path) -> None:
    """Render posed hands from the saved files through dir_ros.hand_model (the real loader)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    sys.path.insert(0, str(REPO))
    from dir_ros import hand_model as hm

    layers = hm.build_hand_layers(folder)
    right, left = layers["right"], layers["left"]
    th_axes = thumb_flex_axes({"thumb": digit_joint_positions(FINGERS[0])})
    z = np.array([0.0, 0.0, 1.0])

    def full_pose(spec: Dict[str, Sequence[float]]) -> np.ndarray:
        """Finger flexion about +z per joint, thumb flexion about its axes, CMC opposition."""
        p = np.zeros(NUM_POSE)
        for f in ("index", "middle", "ring", "pinky"):
            for j, a in zip(FINGER_MANO_IDS[f], spec.get(f, (0.0, 0.0, 0.0))):
                p[3 * (j - 1): 3 * j] += a * z
        for k, j in enumerate(FINGER_MANO_IDS["thumb"]):
            p[3 * (j - 1): 3 * j] += spec.get("thumb", (0.0, 0.0, 0.0))[k] * th_axes[k]
        p[36:39] += spec.get("opposition", 0.0) * OPPOSITION_AXIS
        return p

    poses = {name: (None if spec is None else full_pose(spec))
             for name, spec in PREVIEW_POSES.items()}

    def run(layer, pose_full: Optional[np.ndarray], rot: np.ndarray,
            betas: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        comps = layer.th_comps.double().numpy()
        mean = layer.th_hands_mean.double().numpy()[0]
        pca = np.zeros(NUM_POSE) if pose_full is None else (pose_full - mean) @ comps.T
        r6 = torch.tensor(np.concatenate([rot[:, 0], rot[:, 1]]), dtype=torch.float32)[None]
        b = torch.zeros(1, NUM_BETAS) if betas is None else torch.tensor(betas)[None].float()
        out = layer(r6, torch.tensor(pca, dtype=torch.float32)[None], b)
        return out.vertices[0].detach().numpy(), layer.faces.numpy()

    skin = (0.93, 0.75, 0.62)
    skin_l = (0.70, 0.80, 0.95)
    eye = np.eye(3)
    # camera views (rotation applied to points): palm view looks at the palm (-y faces camera)
    # fingers (-x) up on screen, palm normal (-y) toward the viewer (+z of the view frame)
    palm_view = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    back_view = _rot("y", 180) @ palm_view
    side_view = _rot("y", -70) @ palm_view
    panels = []
    for name, pose in poses.items():
        v, f = run(right, pose, eye)
        panels.append((f"right, {name}\npalm view", render([(v, f, skin)], palm_view)))
        panels.append((f"right, {name}\nside view", render([(v, f, skin)], side_view)))
    # both hands, mirrored pose (left mirrored: R -> M R M, pose -> per-joint (a, -b, -c))
    beside = palm_view.T @ np.array([TWO_HAND_GAP, 0.0, 0.0])  # screen-horizontal offset
    for name, pose in (("fist", poses["fist"]), ("mean", None), ("pointing", poses["pointing"])):
        vr, fr = run(right, pose, eye)
        # mirrored pose, then turned 180 deg about y so both palms face the viewer
        vl, fl = run(left, None if pose is None else pose * AA_MIRROR, _rot("y", 180.0))
        panels.append((f"left (blue) + right, {name}\npalm view",
                       render([(vr + beside / 2, fr, skin), (vl - beside / 2, fl, skin_l)],
                              palm_view)))
    shapes = [("base", np.zeros(NUM_BETAS))] + [
        (f"b{k}={v:+g}", np.eye(NUM_BETAS)[k] * v) for k, v in PREVIEW_SHAPES]
    # PCA synergies (leading rows of hands_components) added to the mean pose
    for comp, value, label in PREVIEW_PCA:
        layer_pca = np.zeros(NUM_POSE)
        layer_pca[comp] = value
        mean = right.th_hands_mean.double().numpy()[0]
        full = mean + layer_pca @ right.th_comps.double().numpy()
        v, f = run(right, full, eye)
        panels.append((f"right, pca[{comp}] = {value:+g} ({label})\npalm view",
                       render([(v, f, skin)], palm_view)))
    wide = []
    for row in (shapes[:4], shapes[4:]):
        meshes = []
        for i, (_, betas) in enumerate(row):
            v, f = run(right, None, eye, betas)
            meshes.append((v + back_view.T @ np.array([i * SHAPE_GAP, 0.0, 0.0]), f, skin))
        img = render(meshes, back_view, size=2 * PANEL_PX)  # one row of hands: keep the band
        wide.append(("shape, back view: " + " | ".join(n for n, _ in row),
                     img[PANEL_PX // 2: PANEL_PX // 2 + PANEL_PX]))
    cols = 4
    rows = (len(panels) + cols - 1) // cols
    fig = plt.figure(figsize=(3.2 * cols, 3.4 * rows + 3.4))
    grid = fig.add_gridspec(rows + 1, cols)
    axes = [fig.add_subplot(grid[k // cols, k % cols]) for k in range(len(panels))]
    axes += [fig.add_subplot(grid[rows, 0:2]), fig.add_subplot(grid[rows, 2:4])]
    for ax, (title, img) in zip(axes, panels + wide):
        ax.imshow(img)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "weights" / "open_hand",
                    help="output folder for MANO_LEFT.pkl / MANO_RIGHT.pkl / README.md")
    ap.add_argument("--render", type=Path, default=None, help="write a preview PNG here")
    args = ap.parse_args(argv)
    models = save(args.out)
    r = models["right"]
    print(f"wrote {args.out}: {r['v_template'].shape[0]} vertices, {r['f'].shape[0]} faces")
    if args.render is not None:
        preview(args.out, args.render)
        print(f"wrote {args.render}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
