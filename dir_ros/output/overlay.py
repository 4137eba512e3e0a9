"""Drawing reconstructed hands onto the input image (the node's debug image, the demo).

One drawer for both so the debug image and the demo overlays show the same thing: each
valid hand's mesh projected through K (metric hands only), its skeleton and keypoints, in
the hand's colour (the same hues as the RViz markers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from dir_ros.common import geometry as geo
from dir_ros.hand_model import BONE_PARENTS

# RGB colours in 0..1 per hand (blue-ish left, orange right), shared with the RViz markers.
HAND_COLOURS = {"left": (0.25, 0.55, 1.0), "right": (1.0, 0.5, 0.2)}
CROP_BOX_RGB = (255, 255, 0)  # the network crop, drawn in the debug image
SHIFT_BITS = 4  # cv2 sub-pixel drawing: coordinates scaled by 2**SHIFT_BITS
MESH_FILL_ALPHA = 0.45  # opacity of the projected mesh layer
MESH_EDGE_SHADE = 0.6  # triangle outlines: the hand colour times this
MIN_DEPTH_M = 1e-3  # vertices nearer than this (or behind the camera) are not projected
MAX_ABS_PX = 1e5  # projected coordinates beyond this are dropped (cv2 int overflow guard)
LINE_PX_PER_THICKNESS = 300  # one pixel of line thickness per this many pixels of short side
TEXT_WIDTH_PX_PER_SCALE = 1100.0  # cv2 font scale 1.0 per this many image pixels of width
MIN_TEXT_SCALE = 0.4  # smallest legible cv2 font scale
WARNING_RGB = (255, 0, 0)  # the random-weights warning line


@dataclass
class HandDrawing:
    """What the drawer needs of one hand (a predictor HandsResult has these attributes too).

    vertices (V,3) m in the camera frame (wrist-relative when metric is False); faces (F,3);
    keypoints_2d (21,2) input-image pixels, origin at the top-left pixel corner.
    """

    side: str
    valid: bool
    metric: bool
    vertices: np.ndarray
    faces: np.ndarray
    keypoints_2d: np.ndarray


def colour(side: str, bgr: bool = False) -> tuple[int, int, int]:
    """The hand's colour as 0..255 integers, RGB or BGR order."""
    rgb = tuple(int(round(255 * c)) for c in HAND_COLOURS[side])
    return rgb[::-1] if bgr else rgb


def _cv_points(px: np.ndarray) -> np.ndarray:
    """Corner-origin image pixels (...,2) -> cv2 fixed-point centre-origin int32 coordinates."""
    return np.round((px - geo.HALF_PIXEL) * (1 << SHIFT_BITS)).astype(np.int32)


def _projected_triangles(hand: HandDrawing, K: np.ndarray) -> list[np.ndarray]:
    """The hand's triangles in cv2 fixed-point pixels, dropping any with a vertex behind the
    camera or off any sane image plane."""
    verts = np.asarray(hand.vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(hand.faces, dtype=np.int64).reshape(-1, 3)
    tris = faces[(faces >= 0).all(axis=1) & (faces < len(verts)).all(axis=1)]
    ok = np.isfinite(verts).all(axis=1) & (verts[:, 2] > MIN_DEPTH_M)
    uv = np.zeros((len(verts), 2))
    uv[ok] = geo.project_points(verts[ok], K)
    ok &= (np.abs(uv) < MAX_ABS_PX).all(axis=1)
    return list(_cv_points(uv)[tris[ok[tris].all(axis=1)]])


def draw_hands(image: np.ndarray, hands: Iterable[HandDrawing], K: Optional[np.ndarray],
               bgr: bool = False, box: Optional[geo.CropBox] = None) -> np.ndarray:
    """A copy of `image` (H,W,3 uint8, RGB or BGR per `bgr`) with every valid hand drawn:
    its mesh projected through K (3,3) when the hand is metric and K is given, its skeleton
    and keypoints; plus the network crop `box` when given."""
    import cv2

    hands = [h for h in hands if h.valid]
    h, w = image.shape[:2]
    thickness = max(1, round(min(h, w) / LINE_PX_PER_THICKNESS))
    layer = image.copy()
    for hand in hands:
        if K is None or not hand.metric or not len(hand.faces):
            continue  # wrist-relative vertices cannot be projected
        polys = _projected_triangles(hand, K)
        if polys:
            fill = colour(hand.side, bgr)
            edge = tuple(int(c * MESH_EDGE_SHADE) for c in fill)
            cv2.fillPoly(layer, polys, fill, cv2.LINE_AA, shift=SHIFT_BITS)
            cv2.polylines(layer, polys, True, edge, 1, cv2.LINE_AA, shift=SHIFT_BITS)
    out = cv2.addWeighted(layer, MESH_FILL_ALPHA, image, 1.0 - MESH_FILL_ALPHA, 0.0)
    if box is not None:
        cv2.rectangle(out, (int(box.x0), int(box.y0)), (int(box.x0 + box.size), int(box.y0 + box.size)),
                      CROP_BOX_RGB[::-1] if bgr else CROP_BOX_RGB, thickness)
    for hand in hands:
        kp = np.asarray(hand.keypoints_2d, dtype=np.float64)
        if kp.shape != (21, 2) or not np.isfinite(kp).all() or (np.abs(kp) > MAX_ABS_PX).any():
            continue
        pts = _cv_points(kp)
        c = colour(hand.side, bgr)
        for child, parent in enumerate(BONE_PARENTS, start=1):
            cv2.line(out, tuple(pts[child]), tuple(pts[parent]), c, thickness + 1, cv2.LINE_AA,
                     shift=SHIFT_BITS)
        for p in pts:
            radius = (thickness + 2) << SHIFT_BITS
            cv2.circle(out, tuple(p), radius, (255, 255, 255), -1, cv2.LINE_AA, shift=SHIFT_BITS)
            cv2.circle(out, tuple(p), radius, c, 1, cv2.LINE_AA, shift=SHIFT_BITS)
    return out


def hand_text(side: str, hand: Any) -> str:
    """'left  conf 0.53  wrist (+0.012, -0.034, +0.612) m' (or why there is no position)."""
    if not hand.valid:
        return f"{side:<5} not found" if hand.confidence == 0 else \
            f"{side:<5} not valid (conf {hand.confidence:.2f})"
    x, y, z = hand.wrist_position
    where = (f"wrist ({x:+.3f}, {y:+.3f}, {z:+.3f}) m" if hand.metric
             else "wrist-relative (metric false: no 3D placement)")
    return f"{side:<5} conf {hand.confidence:.2f}  {where}"


def draw_overlay(image: np.ndarray, hands: Mapping[str, Any], K: Optional[np.ndarray],
                 bgr: bool = True, box: Optional[geo.CropBox] = None,
                 random_weights: bool = False) -> np.ndarray:
    """draw_hands plus a text line per hand (side, confidence, wrist position) in the hand's
    colour, and a warning line when the network's weights are random; image (H,W,3) uint8."""
    import cv2

    out = draw_hands(image, hands.values(), K, bgr=bgr, box=box)
    h, w = image.shape[:2]
    thickness = max(1, round(min(h, w) / LINE_PX_PER_THICKNESS))
    lines = [(hand_text(side, hand), colour(side, bgr)) for side, hand in hands.items()]
    if random_weights:
        lines.append(("RANDOM WEIGHTS: geometry not meaningful yet",
                      WARNING_RGB[::-1] if bgr else WARNING_RGB))
    scale = max(MIN_TEXT_SCALE, w / TEXT_WIDTH_PX_PER_SCALE)
    line_h = int(30 * scale) + 6
    for i, (text, text_colour) in enumerate(lines):
        org = (8, 8 + line_h * (i + 1) - 6)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    thickness + 2, cv2.LINE_AA)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, text_colour, thickness,
                    cv2.LINE_AA)
    return out
