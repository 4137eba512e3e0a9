"""A small z-buffer rasteriser (numpy) for the training targets and the synthetic images.

The release renders its segmentation and dense-correspondence targets with pytorch3d; this
module does the same job on the CPU without it: triangles are projected with a pinhole K,
every pixel centre inside a triangle's bounding box is tested with edge functions (all
triangles at once, vectorised), depth and attributes are interpolated perspective-correctly,
and the nearest surface wins per pixel.

Conventions: camera optical frame (x right, y down, z forward), metres; K maps camera
points to *corner-origin* pixels (pixel (i, j) covers [j, j+1) x [i, i+1), its centre is at
(j + 0.5, i + 0.5)); an OpenCV K becomes one by adding 0.5 to cx and cy
(:func:`corner_origin`). No back-face culling (hand meshes are rendered from any side).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Points closer than this to the camera plane (m) cannot be projected: triangles touching
# it are dropped (a hand is never within 1 mm of the lens).
NEAR_PLANE_M = 1e-3
# Triangles with a smaller screen area (px^2) have no interior worth testing.
MIN_TRIANGLE_AREA_PX2 = 1e-12
# Edge-function tolerance (barycentric units): pixel centres exactly on a shared edge belong
# to both triangles, so no crack opens between them.
INSIDE_EPS = 1e-9
# Pixel/triangle candidate pairs handled at once; bounds the memory of one pass
# (about 100 bytes per candidate).
MAX_CANDIDATES_PER_PASS = 2_000_000
# Half-pixel offset between OpenCV intrinsics (centre origin) and corner-origin pixels.
HALF_PIXEL = 0.5


@dataclass
class Fragments:
    """Per-pixel result of :func:`rasterize` for an image of (H,W).

    face (H,W) int64: index of the visible triangle, -1 for background.
    bary (H,W,3) float64: perspective-correct barycentric weights of its three vertices.
    depth (H,W) float64: camera-frame z (m) of the visible surface, +inf for background.
    """

    face: np.ndarray
    bary: np.ndarray
    depth: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(H,W) bool: a surface covers the pixel centre."""
        return self.face >= 0


def corner_origin(K: np.ndarray) -> np.ndarray:
    """OpenCV intrinsics (pixel centres at integers) -> corner-origin intrinsics (3,3)."""
    Kc = np.array(K, dtype=np.float64).reshape(3, 3)
    Kc[0, 2] += HALF_PIXEL
    Kc[1, 2] += HALF_PIXEL
    return Kc


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-frame points (...,3) m with K (3,3) -> pixels (...,2)."""
    p = np.asarray(points, dtype=np.float64) @ np.asarray(K, dtype=np.float64).T
    return p[..., :2] / p[..., 2:3]


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from an int (square) or a (H, W) pair."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(s) for s in size)
    return h, w


def rasterize(verts: np.ndarray, faces: np.ndarray, K: np.ndarray,
              size: int | Sequence[int]) -> Fragments:
    """Rasterise a triangle mesh: verts (V,3) m camera frame, faces (F,3) int, K (3,3)
    corner-origin, size = S or (H, W) -> Fragments (nearest surface per pixel centre)."""
    h, w = _size(size)
    verts = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    face_buf = np.full(h * w, -1, dtype=np.int64)
    depth_buf = np.full(h * w, np.inf)
    bary_buf = np.zeros((h * w, 3))
    if len(faces) == 0 or len(verts) == 0:
        return Fragments(face_buf.reshape(h, w), bary_buf.reshape(h, w, 3),
                         depth_buf.reshape(h, w))
    z = verts[:, 2]
    front = np.all(z[faces] > NEAR_PLANE_M, axis=1)
    safe_z = np.where(z > NEAR_PLANE_M, z, 1.0)
    px = (verts @ np.asarray(K, dtype=np.float64).T)[:, :2] / safe_z[:, None]
    tri = px[faces]                                           # (F,3,2)
    tz = z[faces]                                             # (F,3)
    area = ((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
            - (tri[:, 2, 0] - tri[:, 0, 0]) * (tri[:, 1, 1] - tri[:, 0, 1]))
    lo, hi = tri.min(axis=1), tri.max(axis=1)                 # (F,2) px
    # Pixel j's centre j + 0.5 lies in [lo, hi] for j in [ceil(lo - .5), floor(hi - .5)].
    j0 = np.clip(np.ceil(lo[:, 0] - HALF_PIXEL), 0, w).astype(np.int64)
    j1 = np.clip(np.floor(hi[:, 0] - HALF_PIXEL), -1, w - 1).astype(np.int64)
    i0 = np.clip(np.ceil(lo[:, 1] - HALF_PIXEL), 0, h).astype(np.int64)
    i1 = np.clip(np.floor(hi[:, 1] - HALF_PIXEL), -1, h - 1).astype(np.int64)
    nx, ny = np.maximum(j1 - j0 + 1, 0), np.maximum(i1 - i0 + 1, 0)
    ok = front & (np.abs(area) > MIN_TRIANGLE_AREA_PX2) & np.isfinite(area)
    count = np.where(ok, nx * ny, 0)
    # Split the triangles into passes of bounded candidate count.
    starts = np.cumsum(count) - count
    pass_id = starts // MAX_CANDIDATES_PER_PASS
    for p in np.unique(pass_id[count > 0]):
        sel = np.nonzero((pass_id == p) & (count > 0))[0]
        _raster_pass(sel, count, nx, j0, i0, tri, tz, area, w, face_buf, depth_buf, bary_buf)
    return Fragments(face_buf.reshape(h, w), bary_buf.reshape(h, w, 3), depth_buf.reshape(h, w))


def _raster_pass(sel: np.ndarray, count: np.ndarray, nx: np.ndarray, j0: np.ndarray,
                 i0: np.ndarray, tri: np.ndarray, tz: np.ndarray, area: np.ndarray, w: int,
                 face_buf: np.ndarray, depth_buf: np.ndarray, bary_buf: np.ndarray) -> None:
    """Test every pixel centre of the bounding boxes of triangles `sel` and merge the
    nearest hits into the flat buffers (in place)."""
    cnt = count[sel]
    fid = np.repeat(sel, cnt)                                  # candidate -> triangle
    local = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    col = j0[fid] + local % nx[fid]
    row = i0[fid] + local // nx[fid]
    cx, cy = col + HALF_PIXEL, row + HALF_PIXEL
    t = tri[fid]                                               # (N,3,2)

    def edge(a: int, b: int) -> np.ndarray:
        """Edge function of (t[a] -> t[b]) at the pixel centres (twice a signed area)."""
        return ((t[:, b, 0] - t[:, a, 0]) * (cy - t[:, a, 1])
                - (t[:, b, 1] - t[:, a, 1]) * (cx - t[:, a, 0]))

    a = area[fid]
    w0, w1 = edge(1, 2) / a, edge(2, 0) / a
    w2 = 1.0 - w0 - w1
    inside = (w0 >= -INSIDE_EPS) & (w1 >= -INSIDE_EPS) & (w2 >= -INSIDE_EPS)
    if not inside.any():
        return
    ws = np.stack([w0, w1, w2], axis=1)[inside]
    fid, pix = fid[inside], (row * w + col)[inside]
    inv_z = ws / tz[fid]                                       # screen-linear 1/z weights
    denom = inv_z.sum(axis=1)
    depth = 1.0 / denom
    bary = inv_z / denom[:, None]                              # perspective-correct
    order = np.lexsort((depth, pix))                           # by pixel, nearest first
    pix_sorted = pix[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = pix_sorted[1:] != pix_sorted[:-1]
    win = order[first]
    pw = pix[win]
    closer = depth[win] < depth_buf[pw]
    pw, win = pw[closer], win[closer]
    depth_buf[pw] = depth[win]
    face_buf[pw] = fid[win]
    bary_buf[pw] = bary[win]


def interpolate(frags: Fragments, faces: np.ndarray, attributes: np.ndarray,
                background: float = 0.0) -> np.ndarray:
    """Per-vertex attributes (V,C) interpolated at the visible surface -> (H,W,C)."""
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    attributes = np.asarray(attributes, dtype=np.float64)
    out = np.full(frags.face.shape + (attributes.shape[1],), background, dtype=np.float64)
    m = frags.mask
    f = faces[frags.face[m]]                                   # (N,3)
    out[m] = np.einsum("nk,nkc->nc", frags.bary[m], attributes[f])
    return out


@dataclass
class MeshPart:
    """One mesh of a scene: verts (V,3) m camera frame, faces (F,3), an integer label
    (segmentation class) and per-vertex colours (V,3) in [0,1] (dense correspondence or
    albedo)."""

    verts: np.ndarray
    faces: np.ndarray
    label: int
    colours: np.ndarray


def _merge(parts: Sequence[MeshPart]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate parts -> (verts, faces, per-face label, per-vertex colour)."""
    verts, faces, labels, colours, offset = [], [], [], [], 0
    for p in parts:
        v = np.asarray(p.verts, dtype=np.float64).reshape(-1, 3)
        f = np.asarray(p.faces, dtype=np.int64).reshape(-1, 3)
        verts.append(v)
        faces.append(f + offset)
        labels.append(np.full(len(f), int(p.label), dtype=np.int64))
        colours.append(np.broadcast_to(np.asarray(p.colours, dtype=np.float64), v.shape))
        offset += len(v)
    return (np.concatenate(verts), np.concatenate(faces), np.concatenate(labels),
            np.concatenate(colours))


def render_labels(parts: Sequence[MeshPart], K: np.ndarray, size: int | Sequence[int]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Segmentation and dense-correspondence maps of a scene.

    Returns seg (H,W) int64 (the visible part's label, 0 for background) and dense
    (H,W,3) float32 (the visible surface's interpolated colour, 0 for background).
    """
    verts, faces, labels, colours = _merge(parts)
    frags = rasterize(verts, faces, K, size)
    seg = np.where(frags.mask, labels[np.maximum(frags.face, 0)], 0)
    dense = interpolate(frags, faces, colours).astype(np.float32)
    return seg.astype(np.int64), dense


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V,3) of a mesh (zero where undefined)."""
    v = np.asarray(verts, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])   # |fn| = 2 area
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)


def render_shaded(parts: Sequence[MeshPart], K: np.ndarray, size: int | Sequence[int],
                  light_dir: np.ndarray, ambient: float, diffuse: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Lambert shading of a scene with per-vertex albedo (the parts' colours):
    colour = albedo * (ambient + diffuse * |n . l|), n interpolated vertex normals,
    l = unit vector towards the light (camera frame).

    Returns rgb (H,W,3) float in [0,1] (0 for background) and the coverage mask (H,W).
    """
    verts, faces, _, colours = _merge(parts)
    normals = np.concatenate([vertex_normals(p.verts, p.faces) for p in parts])
    frags = rasterize(verts, faces, K, size)
    n = interpolate(frags, faces, normals)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    l = np.asarray(light_dir, dtype=np.float64)
    l = l / np.linalg.norm(l)
    shade = ambient + diffuse * np.abs(n @ l)
    rgb = interpolate(frags, faces, colours) * shade[..., None]
    return np.clip(rgb, 0.0, 1.0), frags.mask
