"""Metric hand placement from an aligned depth image (RGB-D), no ROS.

The size-based placement (the hand model's metric size against its size in pixels) puts a
hand at Z = 2 fx / (s * crop_px): a 10 % error in the predicted size is a 10 % error in
depth. With a depth image aligned to the colour image (REP 118: same frame, same K), each
hand is moved along the viewing ray through its wrist until its visible surface meets the
measured depth:

  1. both hands' meshes are rasterised into one z-buffer (`render_zbuffer`), so a vertex
     hidden by the other hand or by the hand itself is not sampled;
  2. the depth at each visible vertex's pixel is read; holes (0, NaN, inf), silhouette
     pixels (flying pixels between hand and background) and outliers (median / MAD) are
     rejected;
  3. the shift lambda along the unit ray r solves median(d_i - z_i) = lambda * r_z, iterated
     (re-projection, re-rendering) a few times.

A hand keeps its size-based placement (PLACEMENT_HAND_SIZE) with a stated reason when the
depth is missing, of another size, too old, has too few valid samples or disagrees with the
size-based estimate beyond MAX_DEPTH_CORRECTION_FRACTION.

Conventions: dir_ros.common.geometry (corner-origin pixels, camera optical frame, metres).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from dir_ros.common import geometry as geo
from dir_ros.common.results import (PLACEMENT_DEPTH, PLACEMENT_HAND_SIZE, FrameResult, HandsResult)

# Depth encodings accepted (REP 118): 16UC1 in millimetres, 32FC1 in metres.
DEPTH_ENCODINGS = {"16UC1": (np.dtype(np.uint16), 1e-3), "32FC1": (np.dtype(np.float32), 1.0)}
# A vertex is visible when its depth is within this of the z-buffer at its pixel (m): the
# rasterised surface and the vertex differ by interpolation over the triangle (mm).
VISIBILITY_TOLERANCE_M = 0.004
# Largest spacing (pixels) between the sample points that rasterise one triangle: below
# 1/sqrt(2) every pixel centre inside the triangle has a sample within its pixel.
RASTER_SPACING_PX = 0.7
# Largest subdivision of one triangle (sample rows); bounds memory for a hand at 5 cm.
MAX_RASTER_SUBDIVISION = 64
# Largest projected hand extent (pixels) the visibility z-buffer is rasterised at: nearer
# or larger hands are rasterised on a proportionally coarser grid (depth is still sampled at
# full resolution). Measured, 1280x720 with hands at 0.25 m: 1 s per frame at full
# resolution, 76 ms at 120 px; visibility needs only a few pixels per finger width.
MAX_RASTER_HAND_PX = 120.0
# Fewest valid, inlying depth samples for a depth placement: below, the hand is mostly
# occluded, out of view or over a hole and the median is not trustworthy.
MIN_DEPTH_SAMPLES = 30
# Outlier rejection: residuals farther than this many scaled MADs from the median are
# dropped (3 = 99.7 % of a Gaussian); MAD_TO_SIGMA makes a MAD a standard deviation.
OUTLIER_MADS = 3.0
MAD_TO_SIGMA = 1.4826
# Floor of the outlier band (m): 1 % depth noise at 0.4 m is 4 mm; a zero MAD (quantised
# 16UC1 depth) must not reject every sample but the median.
MIN_OUTLIER_BAND_M = 0.005
# Largest depth correction accepted, as a fraction of the size-based wrist distance: the
# size estimate is off by ~10 %, so a 35 % disagreement means the depth sampled something
# else (a background through a mask error, another object in front).
MAX_DEPTH_CORRECTION_FRACTION = 0.35
# Solver iterations (each re-projects and re-renders) and the shift change that stops them (m).
SOLVE_ITERATIONS = 4
SOLVE_CONVERGED_M = 5e-4
# Fewest inliers as a fraction of valid samples: fewer means two surfaces were sampled.
MIN_INLIER_FRACTION = 0.5
# Default pairing tolerance between colour and depth stamps (s): half a 30 Hz frame period.
DEFAULT_STAMP_TOLERANCE_S = 0.017


class DepthError(ValueError):
    """A depth buffer that cannot be read (encoding, size, step); the message says why."""


def decode_depth(encoding: str, width: int, height: int, step: int, data: bytes,
                 is_bigendian: bool = False) -> np.ndarray:
    """Depth Image buffer -> (H,W) float32 metres, NaN where there is no valid depth (0, NaN,
    inf, negative). 16UC1 is millimetres, 32FC1 metres; `step` (bytes per row) is honoured."""
    if encoding not in DEPTH_ENCODINGS:
        raise DepthError(f"depth encoding '{encoding}' is not supported "
                         f"(use {' or '.join(DEPTH_ENCODINGS)})")
    dtype, unit = DEPTH_ENCODINGS[encoding]
    width, height, step = int(width), int(height), int(step)
    if width <= 0 or height <= 0:
        raise DepthError(f"depth image is {width}x{height}")
    row = width * dtype.itemsize
    if step < row:
        raise DepthError(f"depth step {step} < width {width} x {dtype.itemsize} bytes")
    buf = memoryview(data).cast("B")
    if len(buf) < step * (height - 1) + row:
        raise DepthError(f"depth data has {len(buf)} bytes, {width}x{height} step {step} "
                         f"needs {step * (height - 1) + row}")
    dt = dtype.newbyteorder(">" if is_bigendian else "<")
    raw = np.ndarray((height, width), dtype=dt, buffer=buf, strides=(step, dtype.itemsize))
    depth = raw.astype(np.float32) * np.float32(unit)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


# --- z-buffer ---------------------------------------------------------------------------

def _triangle_samples(tri_px: np.ndarray, tri_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample points of triangles (T,3,2) px with vertex depths (T,3) m: (N,2) px, (N,) m,
    spaced at most RASTER_SPACING_PX (triangles grouped by subdivision, vectorised)."""
    edges = np.linalg.norm(tri_px - np.roll(tri_px, 1, axis=1), axis=2).max(axis=1)
    levels = np.clip(np.ceil(edges / RASTER_SPACING_PX), 1, MAX_RASTER_SUBDIVISION).astype(int)
    pts, zs = [], []
    for n in np.unique(levels):
        sel = levels == n
        i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        keep = (i + j) <= n
        bary = np.stack([i[keep], j[keep], n - i[keep] - j[keep]], axis=1) / n  # (S,3)
        pts.append(np.einsum("sk,tkc->tsc", bary, tri_px[sel]).reshape(-1, 2))
        zs.append((tri_z[sel] @ bary.T).reshape(-1))
    return np.concatenate(pts), np.concatenate(zs)


def render_zbuffer(meshes: Sequence[tuple[np.ndarray, np.ndarray]], K: np.ndarray,
                   size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise meshes [(vertices (V,3) m camera frame, faces (F,3))] at K into an image of
    size (width, height): (H,W) float64 depth m (inf = empty) and (H,W) int16 mesh index
    (-1 = empty). Depth is interpolated linearly in the image (exact enough at mm level)."""
    w, h = int(size[0]), int(size[1])
    zbuf = np.full(h * w, np.inf)
    ids = np.full(h * w, -1, np.int16)
    flat_all, z_all, id_all = [], [], []
    for index, (verts, faces) in enumerate(meshes):
        verts = np.asarray(verts, np.float64)
        faces = np.asarray(faces, np.int64)
        if len(faces) == 0:
            continue
        z = verts[:, 2]
        front = np.all(z[faces] > 0, axis=1)  # a triangle behind the camera is not drawn
        faces = faces[front]
        px = geo.project_points(verts, K)
        pts, zs = _triangle_samples(px[faces], z[faces])
        col, row = np.floor(pts[:, 0]).astype(np.int64), np.floor(pts[:, 1]).astype(np.int64)
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        flat_all.append(row[inside] * w + col[inside])
        z_all.append(zs[inside])
        id_all.append(np.full(int(inside.sum()), index, np.int16))
    if flat_all:
        flat, zs, mesh_id = (np.concatenate(a) for a in (flat_all, z_all, id_all))
        np.minimum.at(zbuf, flat, zs)
        front = zs <= zbuf[flat]
        ids[flat[front]] = mesh_id[front]
    return zbuf.reshape(h, w), ids.reshape(h, w)


def visible_vertices(verts: np.ndarray, K: np.ndarray, zbuf: np.ndarray, ids: np.ndarray,
                     index: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V,3) m of mesh `index` seen in the z-buffer: (V,) bool visible and not on a
    silhouette (all 8 neighbours of its pixel show the same mesh: depth there mixes hand and
    background), and their (V,2) int pixel (row, col)."""
    h, w = zbuf.shape
    px = geo.project_points(verts, K)
    col, row = np.floor(px[:, 0]).astype(np.int64), np.floor(px[:, 1]).astype(np.int64)
    ok = (col >= 1) & (col < w - 1) & (row >= 1) & (row < h - 1) & (verts[:, 2] > 0)
    r, c = np.where(ok, row, 1), np.where(ok, col, 1)
    ok &= verts[:, 2] <= zbuf[r, c] + VISIBILITY_TOLERANCE_M
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            ok &= ids[r + dr, c + dc] == index
    return ok, np.stack([r, c], axis=1)


# --- placement --------------------------------------------------------------------------

@dataclass
class DepthFit:
    """Outcome of placing one hand from depth: shift (3,) m (zeros when not used), samples
    used, inlier spread (m) and why the depth was not used ('' when it was)."""

    shift: np.ndarray
    samples: int
    spread_m: float
    reason: str

    @property
    def used(self) -> bool:
        """True when the depth placement was accepted."""
        return not self.reason


def robust_offset(residuals: np.ndarray) -> tuple[float, int, float]:
    """Median / MAD outlier rejection of residuals (N,) m -> (mean of inliers m, inlier count,
    inlier standard deviation m)."""
    med = float(np.median(residuals))
    mad = float(np.median(np.abs(residuals - med))) * MAD_TO_SIGMA
    band = max(OUTLIER_MADS * mad, MIN_OUTLIER_BAND_M)
    inl = residuals[np.abs(residuals - med) <= band]
    return float(inl.mean()), int(inl.size), float(inl.std())


def place_hands_with_depth(result: FrameResult, depth_m: np.ndarray, K: np.ndarray,
                           iterations: int = SOLVE_ITERATIONS) -> dict[str, DepthFit]:
    """Move each valid, size-placed (metric) hand of result along the ray through its wrist so
    that its visible surface meets depth_m (H,W) m (NaN = no depth), in place; K is the
    depth image's (= the colour image's when aligned). Hands whose depth cannot be used keep
    their placement. Returns the DepthFit per side ('left', 'right') of the hands tried."""
    h, w = depth_m.shape
    hands = [hd for hd in result.hands() if hd.valid and hd.metric]
    K = np.asarray(K, np.float64)
    K_r, size_r = raster_intrinsics(hands, K, (w, h))
    fits: dict[str, DepthFit] = {}
    start = {hd.side: hd.wrist_position.astype(np.float64).copy() for hd in hands}
    shift = {hd.side: np.zeros(3) for hd in hands}
    rays = {hd.side: start[hd.side] / np.linalg.norm(start[hd.side]) for hd in hands}
    active = {hd.side for hd in hands}
    for _ in range(max(1, iterations)):
        meshes = [(hd.vertices.astype(np.float64) + shift[hd.side], hd.faces) for hd in hands]
        zbuf, ids = render_zbuffer(meshes, K_r, size_r)
        moved = 0.0
        for index, hd in enumerate(hands):
            if hd.side not in active:
                continue
            verts = meshes[index][0]
            vis, _ = visible_vertices(verts, K_r, zbuf, ids, index)
            px = geo.project_points(verts, K)
            col = np.clip(np.floor(px[:, 0]), 0, w - 1).astype(np.int64)
            row = np.clip(np.floor(px[:, 1]), 0, h - 1).astype(np.int64)
            d = depth_m[row, col].astype(np.float64)
            good = vis & np.isfinite(d)
            if good.sum() < MIN_DEPTH_SAMPLES:
                fits[hd.side] = DepthFit(np.zeros(3), int(good.sum()), float("nan"),
                                         f"{int(good.sum())} valid depth samples "
                                         f"(< {MIN_DEPTH_SAMPLES})")
                active.discard(hd.side)
                continue
            res = d[good] - verts[good, 2]
            offset, count, spread = robust_offset(res)
            if count < MIN_INLIER_FRACTION * good.sum() or count < MIN_DEPTH_SAMPLES:
                fits[hd.side] = DepthFit(np.zeros(3), count, spread,
                                         f"only {count} of {int(good.sum())} depth samples agree")
                active.discard(hd.side)
                continue
            step = rays[hd.side] * (offset / rays[hd.side][2])
            shift[hd.side] = shift[hd.side] + step
            moved = max(moved, float(np.linalg.norm(step)))
            fits[hd.side] = DepthFit(shift[hd.side].copy(), count, spread, "")
        if moved < SOLVE_CONVERGED_M:
            break
    for hd in hands:
        fit = fits.get(hd.side)
        if fit is None or not fit.used:
            continue
        limit = MAX_DEPTH_CORRECTION_FRACTION * float(np.linalg.norm(start[hd.side]))
        if np.linalg.norm(fit.shift) > limit:
            fits[hd.side] = DepthFit(np.zeros(3), fit.samples, fit.spread_m,
                                     f"depth disagrees with the hand-size estimate by "
                                     f"{np.linalg.norm(fit.shift):.3f} m (> {limit:.3f} m)")
            continue
        apply_shift(hd, fit.shift)
        hd.placement = PLACEMENT_DEPTH
        hd.placement_note = ""
    for hd in hands:
        if not fits.get(hd.side, DepthFit(np.zeros(3), 0, 0.0, "")).used:
            hd.placement = PLACEMENT_HAND_SIZE
            hd.placement_note = fits[hd.side].reason
    return fits


def raster_intrinsics(hands: Sequence[HandsResult], K: np.ndarray, size: tuple[int, int]
                      ) -> tuple[np.ndarray, tuple[int, int]]:
    """K and image size (w, h) of the visibility z-buffer: the image's, shrunk so that no
    hand spans more than MAX_RASTER_HAND_PX (cost grows with the projected hand area)."""
    extent = 0.0
    for hd in hands:
        v = np.asarray(hd.vertices, np.float64)
        if np.all(v[:, 2] > 0):
            px = geo.project_points(v, K)
            extent = max(extent, float(np.max(px.max(axis=0) - px.min(axis=0))))
    scale = min(1.0, MAX_RASTER_HAND_PX / extent) if extent > 0 else 1.0
    if scale >= 1.0:
        return K, (int(size[0]), int(size[1]))
    small = (max(1, int(round(size[0] * scale))), max(1, int(round(size[1] * scale))))
    K_r, _ = geo.intrinsics_for_image(K, size, small)
    return K_r, small


def apply_shift(hand: HandsResult, shift: np.ndarray) -> None:
    """Translate a hand's vertices, joints and wrist by shift (3,) m, in place."""
    s = np.asarray(shift, np.float64)
    hand.vertices = (hand.vertices.astype(np.float64) + s).astype(np.float32)
    hand.joints = (hand.joints.astype(np.float64) + s).astype(np.float32)
    hand.wrist_position = hand.wrist_position.astype(np.float64) + s


def mark_fallback(result: FrameResult, reason: str) -> None:
    """Record on every size-placed hand why depth was not used for the whole frame."""
    for hd in result.hands():
        if hd.valid and hd.metric:
            hd.placement = PLACEMENT_HAND_SIZE
            hd.placement_note = reason


def depth_frame_problem(depth_size: tuple[int, int], image_size: tuple[int, int],
                        stamp_gap_s: Optional[float], tolerance_s: float) -> Optional[str]:
    """None when a depth image of depth_size (w, h) taken stamp_gap_s from the colour image
    can be used for an image of image_size, else why not (None gap = no depth image)."""
    if stamp_gap_s is None:
        return "no depth image"
    if tuple(depth_size) != tuple(image_size):
        return (f"depth image is {depth_size[0]}x{depth_size[1]}, colour image "
                f"{image_size[0]}x{image_size[1]} (not aligned)")
    if abs(stamp_gap_s) > tolerance_s:
        return (f"depth stamp {abs(stamp_gap_s) * 1e3:.1f} ms from the colour stamp "
                f"(> {tolerance_s * 1e3:.1f} ms)")
    return None


def apply_depth(result: FrameResult, depth_m: Optional[np.ndarray], K: Optional[np.ndarray],
                stamp_gap_s: Optional[float] = 0.0,
                tolerance_s: float = DEFAULT_STAMP_TOLERANCE_S) -> dict[str, DepthFit]:
    """Checks a frame's depth (size, stamp) then places its hands with it; when the frame's
    depth cannot be used every metric hand is marked HAND_SIZE with the reason. Returns the
    per-side fits ({} when depth was not used for the frame)."""
    size = (0, 0) if depth_m is None else (depth_m.shape[1], depth_m.shape[0])
    problem = depth_frame_problem(size, result.image_size, None if depth_m is None
                                  else stamp_gap_s, tolerance_s)
    if problem is None and K is None:
        problem = "no camera intrinsics"
    if problem is not None:
        mark_fallback(result, problem)
        return {}
    return place_hands_with_depth(result, depth_m, K)
