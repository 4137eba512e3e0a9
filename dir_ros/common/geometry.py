"""Image <-> network-crop transforms, weak-perspective to metric placement, rotations.

Conventions (used by every function here):
  * Image pixel coordinates (u, v) are continuous with the origin at the *top-left corner*
    of the top-left pixel (the convention of HandMesh.keypoints_2d); pixel (i, j) covers
    [j, j+1) x [i, i+1) and its centre is at (j + 0.5, i + 0.5).
  * OpenCV / CameraInfo intrinsics K put pixel *centres* at integer coordinates, so a
    corner-origin coordinate is the K coordinate plus HALF_PIXEL.
  * Normalised crop coordinates ("uv") lie in [-1, 1] over the square crop:
    pixel_in_crop = (uv + 1) * crop_px / 2, with crop_px the crop side in image pixels.
  * 3D: metres, camera optical frame (x right, y down, z forward).
  * Rotations go through scipy.spatial.transform.Rotation; quaternions are (x, y, z, w).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

# Offset between corner-origin pixel coordinates and OpenCV/K (centre-origin) coordinates.
HALF_PIXEL = 0.5
# Training crop margin of the DIR release: half-size = max extent / 2 / 0.8
# (DIR_ARCHITECTURE.md, "Input"), i.e. the hands fill 80 % of the crop side.
DEFAULT_CROP_FILL = 0.8
# Horizontal field of view assumed for pictures without calibration (demo, dir-ros infer):
# a typical phone or webcam main camera has 60-70 degrees.
DEFAULT_HFOV_DEG = 60.0
# Smallest crop side accepted (pixels); guards against degenerate boxes from tracking.
MIN_CROP_PX = 8.0
# Largest intermediate image warp_crop warps to before its area shrink (pixels per side):
# 4096^2 x 3 channels = 48 MB. Without it a 20000 px crop box (a 20000x1 image's full
# frame) made a 19968^2 warp (1.2 GB). Crops up to 4096 px (a 4K frame's full-frame box)
# are unaffected; larger ones shrink more than 2x in the bilinear step (some aliasing).
MAX_WARP_SIDE_PX = 4096
# Smallest weak-perspective scale accepted for metric placement (uv per metre); a
# smaller (or negative) scale would put the hand at an absurd or negative depth.
MIN_WEAK_PERSPECTIVE_SCALE = 1e-3


@dataclass(frozen=True)
class CropBox:
    """Axis-aligned square crop in image pixels (corner-origin): centre and side length."""

    cx: float
    cy: float
    size: float

    @property
    def x0(self) -> float:
        """Left edge (pixels)."""
        return self.cx - self.size / 2.0

    @property
    def y0(self) -> float:
        """Top edge (pixels)."""
        return self.cy - self.size / 2.0

    def as_xywh(self) -> tuple[float, float, float, float]:
        """(x0, y0, size, size) in image pixels."""
        return (self.x0, self.y0, self.size, self.size)


def full_frame_box(width: int, height: int) -> CropBox:
    """Centred square covering the whole image (the short side gets padded)."""
    return CropBox(width / 2.0, height / 2.0, float(max(width, height)))


def roi_box(roi: Sequence[float]) -> CropBox:
    """Square box around an ROI given as (x, y, w, h) in image pixels (longer side kept)."""
    if len(roi) != 4:
        raise ValueError(f"roi must be [x, y, w, h], got {list(roi)}")
    x, y, w, h = (float(r) for r in roi)
    if w <= 0 or h <= 0:
        raise ValueError(f"roi width and height must be > 0, got {list(roi)}")
    return CropBox(x + w / 2.0, y + h / 2.0, max(w, h, MIN_CROP_PX))


def box_from_points(points: np.ndarray, fill: float = DEFAULT_CROP_FILL) -> CropBox:
    """Square box centred on the bounding box of points (N,2) px; side = extent / fill."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) == 0:
        raise ValueError("box_from_points needs at least one finite point")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre = (lo + hi) / 2.0
    side = max(float(np.max(hi - lo)) / fill, MIN_CROP_PX)
    return CropBox(float(centre[0]), float(centre[1]), side)


def crop_affine(box: CropBox, out_size: int) -> np.ndarray:
    """(2,3) affine taking image pixels to crop pixels (both corner-origin), crop out_size px."""
    scale = out_size / box.size
    return np.array([[scale, 0.0, -scale * box.x0], [0.0, scale, -scale * box.y0]])


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of a (2,3) affine transform."""
    a = np.asarray(affine, dtype=np.float64)
    lin_inv = np.linalg.inv(a[:, :2])
    return np.hstack([lin_inv, -lin_inv @ a[:, 2:3]])


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2,3) affine to points (...,2)."""
    a = np.asarray(affine, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    return p @ a[:, :2].T + a[:, 2]


def warp_crop(image: np.ndarray, box: CropBox, out_size: int, border_value: int = 0) -> np.ndarray:
    """Crop + resize image (H,W,C) uint8 to (out_size,out_size,C); outside pixels = border."""
    import cv2  # local import: keeps geometry importable for pure-math users

    # Shrinking a lot: warpAffine ignores INTER_AREA (it samples bilinearly, which aliases),
    # so warp (linearly, at most 2x shrink) to an integer multiple of out_size, then
    # box-average down with cv2.resize INTER_AREA (corner-aligned: the same affine overall).
    factor = 2 * int(box.size // (2 * out_size)) if box.size > 2 * out_size else 1
    factor = max(1, min(factor, MAX_WARP_SIDE_PX // out_size))  # bounded memory
    warp_size = out_size * factor
    a = crop_affine(box, warp_size)
    # cv2.warpAffine uses centre-origin pixels: shift in and out by half a pixel.
    a_cv = a.copy()
    a_cv[:, 2] += a[:, :2] @ np.array([HALF_PIXEL, HALF_PIXEL]) - HALF_PIXEL
    out = cv2.warpAffine(
        image, a_cv, (warp_size, warp_size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(border_value,) * 4)
    if factor > 1:
        out = cv2.resize(out, (out_size, out_size), interpolation=cv2.INTER_AREA)
    if out.ndim == 2 and image.ndim == 3:
        out = out[..., None]
    return out


def uv_to_image(uv: np.ndarray, box: CropBox) -> np.ndarray:
    """Normalised crop uv (...,2) in [-1,1] -> image pixels (...,2), corner-origin."""
    uv = np.asarray(uv, dtype=np.float64)
    return (uv + 1.0) * (box.size / 2.0) + np.array([box.x0, box.y0])


def image_to_uv(px: np.ndarray, box: CropBox) -> np.ndarray:
    """Image pixels (...,2), corner-origin -> normalised crop uv (...,2)."""
    px = np.asarray(px, dtype=np.float64)
    return (px - np.array([box.x0, box.y0])) / (box.size / 2.0) - 1.0


def project_points(xyz: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-frame points (...,3) m -> image px (...,2), corner-origin."""
    xyz = np.asarray(xyz, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    z = xyz[..., 2:3]
    uv = xyz[..., :2] / z
    return np.concatenate(
        [uv[..., :1] * K[0, 0] + uv[..., 1:2] * K[0, 1] + K[0, 2],
         uv[..., 1:2] * K[1, 1] + K[1, 2]], axis=-1) + HALF_PIXEL


def intrinsics_for_image(k: np.ndarray, info_size: tuple[int, int],
                         image_size: tuple[int, int],
                         roi: tuple[int, int, int, int] = (0, 0, 0, 0)
                         ) -> tuple[np.ndarray, tuple[int, int]]:
    """K of a CameraInfo (size info_size = (width, height), roi (x, y, w, h) as in REP 104)
    for an image of image_size: the roi crop, then a per-axis rescale when the sizes differ
    (binning or a resized image; OpenCV K has pixel centres at integers). Returns (K, the
    size K described before the rescale, (0, 0) when the CameraInfo gave none)."""
    K = np.array(k, dtype=np.float64).reshape(3, 3)
    size = (int(info_size[0]), int(info_size[1]))
    x, y, w, h = (int(v) for v in roi)
    if w > 0 and h > 0 and (w, h) != size:  # REP 104: K is of the full sensor, roi crops it
        K[0, 2] -= x
        K[1, 2] -= y
        size = (w, h)
    if 0 in size or size == tuple(image_size):
        return K, size
    sx, sy = image_size[0] / size[0], image_size[1] / size[1]
    out = K.copy()
    out[0, :2] *= sx
    out[1, 1] *= sy
    out[0, 2] = (K[0, 2] + HALF_PIXEL) * sx - HALF_PIXEL
    out[1, 2] = (K[1, 2] + HALF_PIXEL) * sy - HALF_PIXEL
    return out, size


def intrinsics_problem(k: Sequence[float]) -> Optional[str]:
    """None when a CameraInfo K (9 numbers, row-major) can place hands metrically, else what
    is wrong with it (no values, so one problem reads the same every time): the node then
    publishes wrist-relative hands instead of NaN or absurd metric ones."""
    K = np.asarray(k, dtype=np.float64).reshape(-1)
    if K.size != 9:
        return f"K has {K.size} entries, not 9"
    if not np.any(K):
        return "K is all zeros (uncalibrated camera)"
    names = ("fx", "skew", "cx", "0", "fy", "cy", "0", "0", "1")
    bad = [names[i] for i in range(9) if not np.isfinite(K[i])]
    if bad:
        return f"K has non-finite entries ({', '.join(bad)})"
    if K[0] <= 0 or K[4] <= 0:
        return "K focal lengths fx, fy must be > 0"
    return None  # the third row is not used (projection reads fx, skew, cx, fy, cy)


def usable_intrinsics(K: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """K as a (3,3) float64 array when intrinsics_problem finds nothing wrong with it, else
    None (the predictors then answer wrist-relative hands)."""
    if K is None or intrinsics_problem(np.asarray(K).reshape(-1)) is not None:
        return None
    return np.asarray(K, dtype=np.float64).reshape(3, 3)


def pinhole_K(width: int, height: int, fov_deg: float = DEFAULT_HFOV_DEG) -> np.ndarray:
    """(3,3) intrinsics of an uncalibrated picture: fx = fy from the horizontal field of view,
    principal point at the image centre (pixel centres at integers: the centre is (W-1)/2)."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
    f = (width / 2.0) / np.tan(np.radians(fov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0],
                     [0.0, 0.0, 1.0]])


def weak_perspective_depth(scale: float, crop_px: float, fx: float) -> float:
    """Root depth Z (m) from weak-perspective scale s (uv/m): s*crop_px/2 = fx/Z."""
    if not np.isfinite(scale) or scale < MIN_WEAK_PERSPECTIVE_SCALE:
        raise ValueError(f"weak-perspective scale must be > {MIN_WEAK_PERSPECTIVE_SCALE}, "
                         f"got {scale}")
    return 2.0 * fx / (scale * crop_px)


def backproject_pixel(px: np.ndarray, depth: float, K: np.ndarray) -> np.ndarray:
    """Image pixel (2,) corner-origin at depth Z (m) -> camera-frame point (3,) m through K."""
    K = np.asarray(K, dtype=np.float64)
    u, v = np.asarray(px, dtype=np.float64) - HALF_PIXEL
    y = (v - K[1, 2]) / K[1, 1]
    x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return np.array([x * depth, y * depth, depth])


def weak_perspective_to_camera(camera: np.ndarray, box: CropBox, K: np.ndarray,
                               ref_depth_offset: float = 0.0) -> np.ndarray:
    """Metric root position (3,) m in the camera frame from (s, tx, ty), crop box and K.

    Weak perspective treats the hand as a plane at a reference depth Z_ref, with
    pixels per metre = s * crop_px / 2 = fx / Z_ref, so Z_ref = 2 fx / (s * crop_px).
    The root projects to crop uv (tx, ty); its X, Y come from that image position through K
    at Z_ref (under weak perspective the projection of the root scales with 1/Z_ref).
    ref_depth_offset = depth of the reference point relative to the root (m), e.g. the mean
    root-relative z of the points the camera was fit to; then Z_root = Z_ref - offset
    (0 = reference at the root: the plain formula). fx is used for the single isotropic s.
    """
    s, tx, ty = (float(c) for c in np.asarray(camera).reshape(3))
    z_ref = weak_perspective_depth(s, box.size, float(np.asarray(K)[0, 0]))
    root_px = uv_to_image(np.array([tx, ty]), box)
    p = backproject_pixel(root_px, z_ref, K)
    p[2] -= ref_depth_offset
    return p


def fit_weak_perspective(xyz: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Least-squares (s, tx, ty) with uv ~ s * xyz[:, :2] + (tx, ty); xyz (N,3), uv (N,2)."""
    xy = np.asarray(xyz, dtype=np.float64)[:, :2]
    uv = np.asarray(uv, dtype=np.float64)
    n = len(xy)
    a = np.zeros((2 * n, 3))
    a[0::2, 0], a[0::2, 1] = xy[:, 0], 1.0
    a[1::2, 0], a[1::2, 2] = xy[:, 1], 1.0
    sol, *_ = np.linalg.lstsq(a, uv.reshape(-1), rcond=None)
    return sol


# --- rotations (scipy) ------------------------------------------------------------------

def matrix_to_quat(rotmat: np.ndarray) -> np.ndarray:
    """Rotation matrices (...,3,3) -> unit quaternions (...,4) xyzw, w >= 0."""
    m = np.asarray(rotmat, dtype=np.float64)
    q = Rotation.from_matrix(m.reshape(-1, 3, 3)).as_quat()
    q = np.where(q[:, 3:4] < 0, -q, q)  # canonical hemisphere for stable messages
    return q.reshape(m.shape[:-2] + (4,))


def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Quaternions (...,4) xyzw (normalised here) -> rotation matrices (...,3,3). The closed
    form, not scipy's Rotation: the smoother calls it twice per hand and frame, where scipy's
    per-call overhead was most of the smoothing stage (issue 20)."""
    q = np.asarray(quat, dtype=np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if not np.all(norm > 0):
        raise ValueError("quat_to_matrix: a zero-norm quaternion has no rotation")
    x, y, z, w = np.moveaxis(q / norm, -1, 0)
    rows = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def matrix_to_axis_angle(rotmat: np.ndarray) -> np.ndarray:
    """Rotation matrices (...,3,3) -> axis-angle vectors (...,3), radians, |angle| <= pi."""
    m = np.asarray(rotmat, dtype=np.float64)
    return Rotation.from_matrix(m.reshape(-1, 3, 3)).as_rotvec().reshape(m.shape[:-2] + (3,))


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle vectors (...,3) radians -> rotation matrices (...,3,3)."""
    r = np.asarray(rotvec, dtype=np.float64)
    return Rotation.from_rotvec(r.reshape(-1, 3)).as_matrix().reshape(r.shape[:-1] + (3, 3))


def axis_angle_to_quat(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle (...,3) radians -> quaternions (...,4) xyzw, w >= 0."""
    return matrix_to_quat(axis_angle_to_matrix(rotvec))


# --- viewing rays -----------------------------------------------------------------------

def ray_rotation(K: np.ndarray, px: np.ndarray) -> np.ndarray:
    """(3,3) rotation taking the optical axis (0,0,1) onto the ray through image pixel px
    (corner-origin): the minimal rotation (axis = z x ray). Geometry seen by a virtual camera
    looking along that ray (an off-centre crop) is expressed in the real camera by R @ x."""
    ray = backproject_pixel(px, 1.0, K)
    if not np.all(np.isfinite(ray)):
        raise ValueError(f"ray_rotation needs a finite pixel and K, got px={px}")
    ray = ray / np.linalg.norm(ray)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, ray)  # sin(angle) * unit axis
    cos = float(ray[2])  # > 0: a ray through the image points forward
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    # Rodrigues with sin and cos of the angle: I + K + K^2 (1 - cos) / sin^2 = I + K + K^2/(1+cos)
    return np.eye(3) + k + k @ k / (1.0 + cos)
