"""Metric placement of hand-centred landmarks in the camera frame: the translation that
makes MediaPipe-style world landmarks project onto their image landmarks through K (weighted,
iteratively reweighted linear least squares; numpy, no torch).

Units: metres; image coordinates in corner-origin pixels."""
from __future__ import annotations

from typing import Optional

import numpy as np

from dir_ros.common.geometry import HALF_PIXEL

__all__ = ["DEFAULT_PX_SIGMA", "DEFAULT_WORLD_SIGMA", "place_hand"]

# place_hand noise model (standard deviations per coordinate), used only to weight the
# landmarks against each other: MediaPipe image landmarks ~1-2 px on a hand a few hundred px
# tall, world landmarks a few mm (assumed, from the benchmark noise used here; scale both
# together and nothing changes).
DEFAULT_PX_SIGMA = 1.5  # px
DEFAULT_WORLD_SIGMA = 3e-3  # m
# Reweighted solves after the first (the weights depend only on the landmark depths, which
# the first solve already gets to within a few percent: two passes settle them).
_PLACE_REWEIGHT_STEPS = 2
# Smallest depth (m) a landmark may have in front of the camera.
_MIN_DEPTH = 1e-3
# place_hand: smallest accepted reciprocal condition number of the 3x3 normal matrix.
_PLACE_MIN_RCOND = 1e-10


def place_hand(world: np.ndarray, image_px: np.ndarray, K: np.ndarray,
               weights: Optional[np.ndarray] = None, *,
               px_sigma: float = DEFAULT_PX_SIGMA,
               world_sigma: float = DEFAULT_WORLD_SIGMA) -> np.ndarray:
    """Camera-frame translation t (3,) m with world + t projecting onto image_px through K.

    world (N,3) m (hand-centred, camera-aligned axes), image_px (N,2) corner-origin pixels,
    K (3,3), weights (N,) >= 0 (None = all 1; points with weight 0 are ignored, may be NaN).
    With the rotation known, the collinearity equations (X + tx) - x (Z + tz) = 0 (x, y the
    normalised image coordinates) are linear in t; their residual is depth x reprojection
    error, so each is weighted by weights / (world_sigma^2 + (depth * px_sigma / f)^2) (the
    variance of that residual for world noise world_sigma m and pixel noise px_sigma px) and
    re-solved with the depths of the previous solve (iteratively reweighted least squares).
    Raises ValueError on non-finite input, fewer than 2 usable points, a degenerate
    geometry or a solution with a landmark behind the camera.
    """
    world = np.asarray(world, dtype=np.float64)
    px = np.asarray(image_px, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    if world.ndim != 2 or world.shape[1] != 3 or px.shape != (world.shape[0], 2):
        raise ValueError(f"world must be (N,3) and image_px (N,2), got {world.shape}, {px.shape}")
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K must be a finite (3,3) intrinsic matrix with fx, fy > 0, got {K}")
    if not (px_sigma >= 0 and world_sigma >= 0 and px_sigma + world_sigma > 0):
        raise ValueError(f"need px_sigma, world_sigma >= 0, not both 0; got {px_sigma}, "
                         f"{world_sigma}")
    w = np.ones(len(world)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.shape != (len(world),) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be (N,) finite and >= 0")
    used = w > 0
    if used.sum() < 2:
        raise ValueError(f"place_hand needs at least 2 points with weight > 0, got {used.sum()}")
    world, px, w = world[used], px[used], w[used]
    if not (np.all(np.isfinite(world)) and np.all(np.isfinite(px))):
        raise ValueError("place_hand: non-finite world or image landmarks")
    # Normalised image coordinates (x, y) of each ray: K^-1 [u - 0.5, v - 0.5, 1].
    uv1 = np.column_stack([px - HALF_PIXEL, np.ones(len(px))])
    rays = np.linalg.solve(K, uv1.T).T
    xn, yn = rays[:, 0] / rays[:, 2], rays[:, 1] / rays[:, 2]
    n = len(world)
    a = np.zeros((2 * n, 3))  # rows x0, y0, x1, y1, ...
    a[0::2, 0], a[0::2, 2] = 1.0, -xn
    a[1::2, 1], a[1::2, 2] = 1.0, -yn
    b = np.empty(2 * n)
    b[0::2] = xn * world[:, 2] - world[:, 0]
    b[1::2] = yn * world[:, 2] - world[:, 1]
    focal = np.tile([K[0, 0], K[1, 1]], n)  # pixels per normalised unit of each row
    t = _weighted_lstsq(a, b, np.repeat(w, 2))  # first pass: plain weights
    for _ in range(_PLACE_REWEIGHT_STEPS):
        depth = np.repeat(world[:, 2] + t[2], 2)
        if np.any(depth <= _MIN_DEPTH):
            break  # behind the camera: reported below
        var = world_sigma ** 2 + (depth * px_sigma / focal) ** 2
        t = _weighted_lstsq(a, b, np.repeat(w, 2) / var)
    depth = world[:, 2] + t[2]
    if not np.all(np.isfinite(t)) or np.any(depth <= _MIN_DEPTH):
        raise ValueError(f"place_hand: degenerate solution t={t} (landmark depth "
                         f"{depth.min():.4g} m, behind the camera or at it)")
    return t


def _weighted_lstsq(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares x (3,) of a x = b (row weights w) through the normal
    equations; ValueError if they are singular (t not determined)."""
    h = a.T @ (a * w[:, None])
    if not np.all(np.isfinite(h)) or np.linalg.cond(h) * _PLACE_MIN_RCOND > 1.0:
        raise ValueError("place_hand: degenerate geometry (rays do not constrain t)")
    return np.linalg.solve(h, a.T @ (b * w))
