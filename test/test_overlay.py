"""dir_ros.output.overlay: what the debug image and the demo draw."""
from __future__ import annotations

import numpy as np

from dir_ros.common import geometry as geo
from dir_ros.output.overlay import MESH_FILL_ALPHA, HandDrawing, colour, draw_hands

K = np.array([[100.0, 0.0, 49.5], [0.0, 100.0, 49.5], [0.0, 0.0, 1.0]])  # 100x100 image
FAR_KEYPOINTS = np.full((21, 2), -1e6)  # off any sane image: the skeleton is skipped


def big_triangle_hand(side: str, valid: bool = True, metric: bool = True) -> HandDrawing:
    """One triangle at 1 m covering the image centre (about +-0.3 m -> +-30 px)."""
    verts = np.array([[-0.3, -0.3, 1.0], [0.3, -0.3, 1.0], [0.0, 0.3, 1.0]])
    return HandDrawing(side, valid, metric, verts, np.array([[0, 1, 2]]), FAR_KEYPOINTS)


def test_metric_mesh_is_blended_in_the_hand_colour() -> None:
    """The centre pixel becomes alpha * hand colour + (1 - alpha) * background."""
    img = np.zeros((100, 100, 3), np.uint8)
    out = draw_hands(img, [big_triangle_hand("left")], K)
    want = MESH_FILL_ALPHA * np.array(colour("left"))
    np.testing.assert_allclose(out[50, 50], want, atol=1.5)
    assert out[2, 2].sum() == 0  # outside the triangle: untouched
    bgr = draw_hands(img, [big_triangle_hand("left")], K, bgr=True)
    np.testing.assert_allclose(bgr[50, 50], want[::-1], atol=1.5)


def test_invalid_or_wrist_relative_hands_draw_no_mesh() -> None:
    """An invalid hand draws nothing; a wrist-relative one (or no K) draws no mesh."""
    img = np.zeros((100, 100, 3), np.uint8)
    for hands, k in (([big_triangle_hand("right", valid=False)], K),
                     ([big_triangle_hand("right", metric=False)], K),
                     ([big_triangle_hand("right")], None)):
        assert not draw_hands(img, hands, k).any()


def test_skeleton_and_crop_box_drawn() -> None:
    """Keypoints draw the skeleton in the hand colour; the crop box outline appears."""
    img = np.zeros((100, 100, 3), np.uint8)
    kp = np.stack([np.linspace(20, 80, 21), np.full(21, 50.0)], axis=1)  # a horizontal line
    hand = HandDrawing("right", True, False, np.zeros((0, 3)), np.zeros((0, 3), int), kp)
    out = draw_hands(img, [hand], None, box=geo.CropBox(50.0, 50.0, 90.0))
    row = out[50, 25:75].astype(int)
    assert (row.sum(axis=1) > 0).all()  # the bones cover the line
    assert out[5, 50].any()  # top edge of the box (y0 = 5)
    assert not out[20, 50].any()  # inside the box, away from the hand
