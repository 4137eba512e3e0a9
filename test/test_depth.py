"""Tests of RGB-D hand placement (dir_ros.post.depth), synthetic RGB-D (dir_ros.data.depth_synthetic)
and the hand point cloud layout (dir_ros.output.pointcloud). No ROS."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from dir_ros.post import depth as D
from dir_ros.data import depth_synthetic as syn
from dir_ros.common import geometry as geo
from dir_ros.output import pointcloud as pc
from dir_ros.output.hands_msg import fields_to_hand, hand_to_fields
from dir_ros.common.results import (PLACEMENT_DEPTH, PLACEMENT_HAND_SIZE, PLACEMENT_NONE, HandsResult)

K = np.array([[400.0, 0.0, 239.5], [0.0, 400.0, 179.5], [0.0, 0.0, 1.0]])
SIZE = (480, 360)
PALM_TO_CAMERA = (np.pi / 2, 0.0, 0.0)  # open hand, palm facing the camera
# Wrist error (m) accepted after a depth placement on noisy synthetic depth.
DEPTH_ERROR_TOL_M = 0.01


def _scene(z: float = 0.6, overlap: bool = False) -> tuple[HandsResult, HandsResult]:
    """Two posed hands at about z m (the open hands' fingers point to the image centre): side
    by side, or the right hand 12 cm in front of and over the left one (overlap)."""
    left = syn.posed_hand("left", PALM_TO_CAMERA, (-0.2 * z / 0.6, -0.02, z))
    right_at = (0.05, -0.01, z - 0.12) if overlap else (0.2 * z / 0.6, -0.02, z)
    right = syn.posed_hand("right", PALM_TO_CAMERA, right_at)
    return left, right


def _size_error(hand: HandsResult, frac: float) -> None:
    """Move a hand along its wrist ray by frac of its distance (the size-based error model)."""
    D.apply_shift(hand, hand.wrist_position * frac)


def test_decode_16uc1_and_32fc1_with_row_padding() -> None:
    mm = np.array([[0, 500, 1000], [65535, 1, 2]], np.uint16)
    padded = np.zeros((2, 4), np.uint16)  # step 8 bytes for 3 pixels of 2 bytes
    padded[:, :3] = mm
    d16 = D.decode_depth("16UC1", 3, 2, 8, padded.tobytes())
    assert np.isnan(d16[0, 0])
    np.testing.assert_allclose(d16[0, 1:], [0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(d16[1], [65.535, 0.001, 0.002], rtol=1e-6)
    big = D.decode_depth("16UC1", 3, 2, 6, mm.astype(">u2").tobytes(), is_bigendian=True)
    np.testing.assert_allclose(big[0, 1:], [0.5, 1.0], rtol=1e-6)
    m = np.array([[0.0, np.nan, np.inf], [-np.inf, -1.0, 0.75]], np.float32)
    d32 = D.decode_depth("32FC1", 3, 2, 12, m.tobytes())
    assert np.isnan(d32[0]).all() and np.isnan(d32[1, :2]).all()
    assert d32[1, 2] == pytest.approx(0.75)


@pytest.mark.parametrize("args, words", [
    (("rgb8", 3, 2, 9, bytes(18)), "encoding 'rgb8' is not supported"),
    (("16UC1", 3, 2, 4, bytes(12)), "step 4"),
    (("32FC1", 3, 2, 12, bytes(20)), "needs 24"),
    (("16UC1", 0, 2, 0, b""), "0x2"),
])
def test_decode_refuses_with_a_clear_message(args: tuple, words: str) -> None:
    with pytest.raises(D.DepthError, match=words):
        D.decode_depth(*args)


def test_zbuffer_occlusion_between_the_hands() -> None:
    """The hidden part of the far (left) hand is not sampled: its visible vertices all map to
    pixels the left hand owns, and the occluder's depth is never among its samples."""
    left, right = _scene(overlap=True)
    zbuf, ids = D.render_zbuffer([(left.vertices, left.faces), (right.vertices, right.faces)],
                                 K, SIZE)
    assert (ids == 0).sum() > 100 and (ids == 1).sum() > 100  # both partly seen
    px = geo.project_points(left.vertices, K).astype(int)
    in_view = (px[:, 0] >= 0) & (px[:, 0] < SIZE[0]) & (px[:, 1] >= 0) & (px[:, 1] < SIZE[1])
    covered = in_view.copy()
    covered[in_view] = ids[px[in_view, 1], px[in_view, 0]] == 1
    assert covered.sum() > 50  # the right hand really hides part of the left one
    vis, rc = D.visible_vertices(left.vertices.astype(np.float64), K, zbuf, ids, 0)
    assert vis.sum() > D.MIN_DEPTH_SAMPLES
    assert not np.any(vis & covered)
    assert np.all(ids[rc[vis, 0], rc[vis, 1]] == 0)
    # and the placement of the occluded hand is right from the depth it does see
    _, depth = syn.render_rgbd([left, right], K, SIZE, noise_frac=0.01, hole_frac=0.2,
                               rng=np.random.default_rng(3))
    truth = {h.side: h.wrist_position.copy() for h in (left, right)}
    _size_error(left, 0.1)
    _size_error(right, -0.08)
    result = syn.frame(left, right, SIZE)
    fits = D.apply_depth(result, depth, K)
    for hand in result.hands():
        assert fits[hand.side].used, fits[hand.side].reason
        assert hand.placement == PLACEMENT_DEPTH
        assert np.linalg.norm(hand.wrist_position - truth[hand.side]) < DEPTH_ERROR_TOL_M


def test_self_occlusion_hides_the_back_of_the_hand() -> None:
    """A hand seen edge-on: vertices behind its own surface are not visible."""
    hand = syn.posed_hand("right", (0.0, np.pi / 2, 0.0), (0.0, 0.0, 0.5))
    zbuf, ids = D.render_zbuffer([(hand.vertices, hand.faces)], K, SIZE)
    vis, rc = D.visible_vertices(hand.vertices.astype(np.float64), K, zbuf, ids, 0)
    z = hand.vertices[:, 2]
    assert vis.sum() > 0
    assert np.all(z[vis] <= zbuf[rc[vis, 0], rc[vis, 1]] + D.VISIBILITY_TOLERANCE_M)
    assert not vis[z > np.percentile(z, 90)].any()  # the far side is hidden


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_placement_with_noise_holes_nan_inf_and_flying_pixels(encoding: str) -> None:
    rng = np.random.default_rng(7)
    left, right = _scene(z=0.9)
    _, depth = syn.render_rgbd([left, right], K, SIZE, noise_frac=0.01, hole_frac=0.2,
                               flying_frac=0.5, rng=rng)
    if encoding == "16UC1":
        raw = syn.to_16uc1(depth)  # holes are zeros
        decoded = D.decode_depth("16UC1", SIZE[0], SIZE[1], SIZE[0] * 2, raw.tobytes())
    else:
        raw = depth.copy()
        raw[rng.random(raw.shape) < 0.05] = np.inf  # invalid returns as +-inf and zeros
        raw[rng.random(raw.shape) < 0.05] = -np.inf
        raw[rng.random(raw.shape) < 0.05] = 0.0
        decoded = D.decode_depth("32FC1", SIZE[0], SIZE[1], SIZE[0] * 4, raw.tobytes())
    assert np.isnan(decoded).mean() > 0.15 and np.isfinite(np.nanmax(decoded))
    truth = {h.side: h.wrist_position.copy() for h in (left, right)}
    _size_error(left, -0.1)
    _size_error(right, 0.1)
    result = syn.frame(left, right, SIZE)
    D.apply_depth(result, decoded, K)
    for hand in result.hands():
        assert hand.placement == PLACEMENT_DEPTH, hand.placement_note
        assert np.linalg.norm(hand.wrist_position - truth[hand.side]) < DEPTH_ERROR_TOL_M
        # vertices and joints moved with the wrist
        np.testing.assert_allclose(hand.joints[0], hand.wrist_position, atol=1e-5)


@pytest.mark.parametrize("case, words", [
    ("size", "depth image is 240x180, colour image 480x360"),
    ("stamp", "depth stamp 50.0 ms from the colour stamp (> 17.0 ms)"),
    ("missing", "no depth image"),
    ("holes", "valid depth samples (< 30)"),
    ("disagree", "depth disagrees with the hand-size estimate"),
])
def test_unusable_depth_falls_back_to_hand_size_with_reason(case: str, words: str) -> None:
    left, right = _scene()
    _, depth = syn.render_rgbd([left, right], K, SIZE)
    before = {h.side: h.wrist_position.copy() for h in (left, right)}
    gap = 0.0
    if case == "size":
        depth = depth[::2, ::2]
    elif case == "stamp":
        gap = -0.05
    elif case == "missing":
        depth = None
    elif case == "holes":
        depth = np.full_like(depth, np.nan)
    elif case == "disagree":
        depth = depth * 3.0  # a surface three times farther than the hands
    result = syn.frame(left, right, SIZE)
    D.apply_depth(result, depth, K, stamp_gap_s=gap, tolerance_s=D.DEFAULT_STAMP_TOLERANCE_S)
    for hand in result.hands():
        assert hand.placement == PLACEMENT_HAND_SIZE
        assert words in hand.placement_note
        np.testing.assert_array_equal(hand.wrist_position, before[hand.side])


def test_wrist_relative_and_invalid_hands_are_left_alone() -> None:
    left, right = _scene()
    _, depth = syn.render_rgbd([left, right], K, SIZE)
    rel = HandsResult.invalid("left", left.faces, len(left.vertices))
    assert rel.placement == PLACEMENT_NONE
    result = syn.frame(rel, right, SIZE)
    fits = D.apply_depth(result, depth, K)
    assert set(fits) == {"right"} and result.left.placement == PLACEMENT_NONE
    assert result.right.placement == PLACEMENT_DEPTH


def test_placement_defaults_and_message_fields() -> None:
    left, _ = _scene()
    assert HandsResult(**{**left.__dict__, "placement": -1}).placement == PLACEMENT_HAND_SIZE
    left.placement = PLACEMENT_DEPTH
    fields = hand_to_fields(left)
    assert fields["placement"] == PLACEMENT_DEPTH
    assert fields_to_hand(fields).placement == PLACEMENT_DEPTH
    invalid = HandsResult.invalid("right", left.faces, len(left.vertices))
    assert hand_to_fields(invalid)["placement"] == PLACEMENT_NONE


def test_point_cloud_layout_and_round_trip() -> None:
    left, right = _scene()
    result = syn.frame(left, right, SIZE)
    cloud = pc.cloud_fields(pc.hand_points(result))
    n = len(left.vertices) + len(right.vertices)
    # sensor_msgs_py.point_cloud2.create_cloud(header, fields, float32 (N,4) points):
    # height 1, width N, point_step = 4 fields x 4 bytes, row_step = 16 N, is_dense False.
    assert cloud["fields"] == [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1),
                               ("hand", 12, 7, 1)]
    assert (cloud["height"], cloud["width"], cloud["point_step"], cloud["row_step"]) == \
        (1, n, 16, 16 * n)
    assert cloud["is_dense"] is False and cloud["is_bigendian"] is False
    expected = b"".join(struct.pack("<ffff", *v, code)
                        for code, hand in ((0.0, left), (1.0, right)) for v in hand.vertices)
    assert cloud["data"] == expected
    back = pc.read_points(cloud)
    assert len(back) == n
    np.testing.assert_array_equal(np.stack([back["x"], back["y"], back["z"]], 1),
                                  np.concatenate([left.vertices, right.vertices]))
    np.testing.assert_array_equal(back["hand"], [0.0] * len(left.vertices) + [1.0] * len(
        right.vertices))
    # wrist-relative hands are not in the cloud (they are not where the camera sees them)
    right.metric = False
    assert len(pc.hand_points(result)) == len(left.vertices)
    with pytest.raises(ValueError, match="layout"):
        pc.read_points({**cloud, "point_step": 13})
