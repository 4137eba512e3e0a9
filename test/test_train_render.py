"""The training rasteriser against geometry computed by hand: coverage, depth,
perspective-correct interpolation, the z-buffer, label and dense maps."""
from __future__ import annotations

import numpy as np
import pytest

from dir_ros.data.render import (MeshPart, corner_origin, interpolate, project, rasterize,
                                  render_labels, render_shaded)

SIZE = 16
FOCAL = 20.0
# Corner-origin intrinsics: the optical axis hits the image centre (8, 8).
K = np.array([[FOCAL, 0.0, SIZE / 2], [0.0, FOCAL, SIZE / 2], [0.0, 0.0, 1.0]])


def square(z: float, half: float) -> tuple[np.ndarray, np.ndarray]:
    """A square facing the camera at depth z, half-side `half` m: 4 verts, 2 triangles."""
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
    return v, np.array([[0, 1, 2], [0, 2, 3]])


def test_corner_origin_and_projection():
    k_cv = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    assert np.allclose(corner_origin(k_cv)[:2, 2], [320.0, 240.0])
    # a point on the optical axis lands on the principal point
    assert np.allclose(project(np.array([0.0, 0.0, 2.0]), K), [8.0, 8.0])


def test_square_coverage_and_depth():
    # half side 0.2 m at 1 m -> +-4 px around the centre: columns/rows whose centres are in
    # [4, 12] are pixels 4..11 (centres 4.5..11.5): an 8x8 block
    v, f = square(1.0, 0.2)
    frags = rasterize(v, f, K, SIZE)
    expected = np.zeros((SIZE, SIZE), bool)
    expected[4:12, 4:12] = True
    assert np.array_equal(frags.mask, expected)
    assert np.allclose(frags.depth[frags.mask], 1.0)
    assert np.all(np.isinf(frags.depth[~frags.mask]))
    assert np.allclose(frags.bary[frags.mask].sum(-1), 1.0)


def test_nearer_surface_wins():
    far_v, far_f = square(2.0, 0.6)            # covers +-6 px
    near_v, near_f = square(1.0, 0.1)          # covers +-2 px
    v = np.concatenate([far_v, near_v])
    f = np.concatenate([far_f, near_f + 4])
    frags = rasterize(v, f, K, SIZE)
    assert np.all(frags.face[6:10, 6:10] >= 2)             # near square's triangles
    assert frags.face[3, 3] in (0, 1) and frags.depth[3, 3] == pytest.approx(2.0)
    assert frags.depth[8, 8] == pytest.approx(1.0)
    # order of the faces in the list must not matter
    frags2 = rasterize(v, np.concatenate([near_f + 4, far_f]), K, SIZE)
    assert np.allclose(frags2.depth, frags.depth)


def test_perspective_correct_interpolation_on_a_slanted_plane():
    # plane z = 1 + x (tilted about the y axis); the depth seen through each pixel centre is
    # where its ray (x, y, 1) * t meets the plane: t = 1 / (1 - x_n), x_n = (u - 8) / FOCAL
    v = np.array([[-0.3, -0.3, 0.7], [0.3, -0.3, 1.3], [0.3, 0.3, 1.3], [-0.3, 0.3, 0.7]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    frags = rasterize(v, f, K, SIZE)
    rows, cols = np.nonzero(frags.mask)
    assert len(rows) > 20
    xn = (cols + 0.5 - 8.0) / FOCAL
    assert np.allclose(frags.depth[rows, cols], 1.0 / (1.0 - xn), atol=1e-9)
    # interpolating the vertices' own x coordinate gives the 3D point's x = xn * depth
    x = interpolate(frags, f, v[:, :1])[..., 0]
    assert np.allclose(x[rows, cols], xn * frags.depth[rows, cols], atol=1e-9)


def test_behind_camera_and_degenerate_triangles_are_dropped():
    v = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, -1.0], [0.0, 1.0, -1.0],   # behind
                  [0.0, 0.0, 1.0], [0.1, 0.0, 1.0], [0.2, 0.0, 1.0]])      # a line
    frags = rasterize(v, np.array([[0, 1, 2], [3, 4, 5]]), K, SIZE)
    assert not frags.mask.any()


def test_labels_dense_and_shading():
    left_v, f = square(1.0, 0.1)
    left_v[:, 0] -= 0.2                               # left square around u = 4
    right_v = left_v + [0.4, 0.0, 0.0]                # right square around u = 12
    colours = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0]])
    parts = [MeshPart(left_v, f, 1, colours), MeshPart(right_v, f, 2, colours)]
    seg, dense = render_labels(parts, K, SIZE)
    assert set(np.unique(seg)) == {0, 1, 2}
    assert np.all(seg[6:10, 2:6] == 1) and np.all(seg[6:10, 10:14] == 2)
    assert np.all(dense[seg == 0] == 0)
    assert dense.min() >= 0 and dense.max() <= 1
    # pixel (7, 3) sees the left square at (s, t) = (0.375, 0.375) of its side, on the
    # diagonal from vertex 0 to vertex 2: colour 0.625 c0 + 0.375 c2
    assert np.allclose(dense[7, 3], 0.625 * colours[0] + 0.375 * colours[2], atol=1e-6)
    rgb, mask = render_shaded([MeshPart(left_v, f, 0, np.array([0.5, 0.4, 0.3]))], K, SIZE,
                              light_dir=np.array([0.0, 0.0, -1.0]), ambient=0.2, diffuse=0.8)
    # a square facing the camera lit head-on: albedo * (0.2 + 0.8 * 1)
    assert np.allclose(rgb[mask], [0.5, 0.4, 0.3])
    assert np.all(rgb[~mask] == 0)
