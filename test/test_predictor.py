"""Tests of dir_ros.backends.dir (the DIR backend): cropping, predict() with a stub and the light model."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dir_ros.common import geometry as geo
from dir_ros.frontend import crop as C
from dir_ros.image import decode as D
from dir_ros.backends import dir as P
from dir_ros.common import results as R
from dir_ros.post import smoothing as S
from dir_ros.output.hands_msg import fields_to_result, result_to_fields
from dir_ros.model.outputs import DIROutput, HandPrediction, LevelOutput

ROOT = Path(__file__).resolve().parent.parent
LIGHT_CONFIG = ROOT / "config" / "model" / "dir_light.yaml"
K = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])


def _rgb(h: int = 48, w: int = 64) -> np.ndarray:
    """A deterministic colourful RGB test image (H,W,3) uint8."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# --- decoding --------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC3", "8UC1"])
@pytest.mark.parametrize("pad", [0, 13])
def test_decode_raw(encoding: str, pad: int) -> None:
    """Every raw encoding decodes to the same RGB, with and without row padding."""
    rgb = _rgb()
    h, w = rgb.shape[:2]
    conv = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA,
            "bgra8": cv2.COLOR_RGB2BGRA, "mono8": cv2.COLOR_RGB2GRAY, "8UC3": cv2.COLOR_RGB2BGR,
            "8UC1": cv2.COLOR_RGB2GRAY}[encoding]
    src = rgb if conv is None else cv2.cvtColor(rgb, conv)
    src = src.reshape(h, w, -1)
    row = src.shape[1] * src.shape[2]
    padded = np.zeros((h, row + pad), np.uint8)
    padded[:, :row] = src.reshape(h, row)
    padded[:, row:] = 77  # garbage in the padding must be ignored
    out = D.decode_image(padded.tobytes(), w, h, encoding, row + pad)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    expected = rgb if src.shape[2] >= 3 else cv2.cvtColor(src[..., 0], cv2.COLOR_GRAY2RGB)
    assert np.array_equal(out, expected)


def test_decode_step_zero_and_list_input() -> None:
    """step 0 means packed rows; a list of ints (rclpy array) works too."""
    rgb = _rgb(4, 5)
    assert np.array_equal(D.decode_image(list(rgb.tobytes()), 5, 4, "rgb8", 0), rgb)
    assert np.array_equal(D.decode_image(np.frombuffer(rgb.tobytes(), np.uint8), 5, 4, "rgb8"), rgb)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_decode_compressed(ext: str) -> None:
    """png is lossless; jpeg is close."""
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = (200, 30, 10)
    rgb[:, 30:] = (10, 200, 90)
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    out = D.decode_compressed(buf.tobytes(), "jpeg" if ext == ".jpg" else "png")
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < (0.01 if ext == ".png" else 5.0)


def test_bad_buffers_raise_clear_errors() -> None:
    """Short buffer, bad step, unknown encoding and garbage compressed data all raise ValueError."""
    with pytest.raises(ValueError, match=r"rgb8.*640x480.*needs at least 921600 bytes, got 1000"):
        D.decode_image(b"\0" * 1000, 640, 480, "rgb8", 1920)
    with pytest.raises(ValueError, match=r"step 10 < width\*channels 30"):
        D.decode_image(b"\0" * 3000, 10, 10, "bgr8", 10)
    with pytest.raises(ValueError, match=r"unsupported image encoding 'yuv422'"):
        D.decode_image(b"\0" * 100, 5, 5, "yuv422", 10)
    with pytest.raises(ValueError,
                       match=r"cannot decode compressed image \(format 'jpeg', 4 bytes\)"):
        D.decode_compressed(b"junk", "jpeg")
    with pytest.raises(ValueError, match="empty"):
        D.decode_compressed(b"", "png")


# --- croppers ---------------------------------------------------------------------------

def test_croppers() -> None:
    """full = centred square; roi squares the ROI; track follows valid hands else full."""
    img = np.zeros((480, 640, 3), np.uint8)
    assert C.make_cropper("full")(img, None) == geo.CropBox(320, 240, 640)
    assert C.make_cropper("roi", [100, 100, 200, 100])(img, None) == geo.CropBox(200, 150, 200)
    with pytest.raises(ValueError, match="roi"):
        C.make_cropper("roi", [])
    with pytest.raises(ValueError, match="full, roi, track"):
        C.make_cropper("detector")
    tracker = C.make_cropper("track")
    assert tracker(img, None).size == 640
    hand = R.HandsResult.invalid("left", np.zeros((1, 3)), 4)
    hand.valid = True
    hand.keypoints_2d = np.array([[100.0, 100.0], [180.0, 140.0]] * 10 + [[100.0, 100.0]])
    prev = R.FrameResult(hand, R.HandsResult.invalid("right", np.zeros((1, 3)), 4),
                         geo.full_frame_box(640, 480))
    assert tracker(img, prev) == geo.CropBox(140.0, 120.0, 100.0)


# --- predict() with a contract-shaped stub network ---------------------------------------

class _StubLayer(torch.nn.Module):
    """HandLayer stand-in: identity rotations, fixed vertex cloud."""

    def __init__(self, num_verts: int) -> None:
        super().__init__()
        self.num_verts = num_verts

    def forward_params(self, params: torch.Tensor):  # noqa: ANN201
        from types import SimpleNamespace

        b = params.shape[0]
        return SimpleNamespace(rotmats=torch.eye(3).expand(b, 16, 3, 3).clone())


class _StubDIR(torch.nn.Module):
    """Returns fixed hands with weak-perspective camera (s, tx, ty) and a seg map."""

    input_size = 32

    def __init__(self, camera: tuple[float, float, float]) -> None:
        super().__init__()
        self.camera = torch.tensor(camera)
        self.hand_layers = torch.nn.ModuleDict({"left": _StubLayer(10), "right": _StubLayer(10)})
        g = torch.Generator().manual_seed(0)
        self.verts = torch.rand(10, 3, generator=g) * 0.1 - 0.05
        self.joints = torch.rand(21, 3, generator=g) * 0.1 - 0.05
        self.joints[0] = 0.0  # root = wrist

    def faces(self, side: str) -> torch.Tensor:
        return torch.tensor([[0, 1, 2], [2, 3, 4]])

    def forward(self, x: torch.Tensor):  # noqa: ANN201
        b = x.shape[0]
        cam = self.camera.expand(b, 3)

        def hand() -> HandPrediction:
            j, v = self.joints.expand(b, 21, 3), self.verts.expand(b, 10, 3)
            params = torch.zeros(b, 64)
            params[:, 61:] = cam
            return HandPrediction(joints_uv=cam[:, None, :1] * j[..., :2] + cam[:, None, 1:],
                                  verts_uv=cam[:, None, :1] * v[..., :2] + cam[:, None, 1:],
                                  joints_xyz=j, verts_xyz=v, camera=cam, params=params)

        seg = torch.zeros(b, 3, 8, 8)
        seg[:, 1] = 10.0  # "left" everywhere: left confidence ~1, right ~0
        return DIROutput([LevelOutput(hand(), hand(), offset=torch.zeros(b, 3))], seg=seg)


def test_predict_stub_metric_placement_and_confidence() -> None:
    """Reference depth = 2 fx / (s crop_px) at the mesh's mean depth; root pixel from
    (tx, ty); seg confidence per side."""
    s, tx, ty = 5.0, 0.25, -0.5
    stub = _StubDIR((s, tx, ty))
    offset = float(stub.verts[:, 2].mean())
    pred = P.HandsPredictor(stub, min_confidence=0.5)
    res = pred.predict(np.zeros((480, 640, 3), np.uint8), K)
    left, right = res.left, res.right
    z = 2 * 600.0 / (s * 640)
    assert left.metric and left.valid and left.confidence > 0.99
    assert not right.valid and right.confidence < 0.01
    root_px = geo.uv_to_image(np.array([tx, ty]), res.box)
    expected = geo.backproject_pixel(root_px, z, K) - np.array([0.0, 0.0, offset])
    assert np.allclose(left.wrist_position, expected)
    assert left.wrist_position[2] == pytest.approx(z - offset)
    assert np.allclose(left.wrist_quat, [0, 0, 0, 1]) and left.pose.shape == (48,)
    # no K: wrist-relative
    res = pred.predict(np.zeros((480, 640, 3), np.uint8), None)
    assert not res.left.metric and np.allclose(res.left.wrist_position, 0)
    assert np.allclose(res.left.joints[0], 0)
    # implausible scale: not metric even with K
    res = P.HandsPredictor(_StubDIR((-1.0, 0.0, 0.0))).predict(np.zeros((48, 64, 3), np.uint8), K)
    assert not res.left.metric


def test_predict_stub_off_axis_crop_rotates_into_the_camera_view() -> None:
    """A crop off the principal point: the network's root-relative geometry and wrist
    orientation (identity in the stub) are rotated by the rotation from the optical axis to
    the crop-centre ray, so the wrist orientation comes out as that rotation."""
    stub = _StubDIR((5.0, 0.0, 0.0))
    box = geo.CropBox(600.0, 240.0, 80.0)  # about 25 degrees right of the axis
    pred = P.HandsPredictor(stub, cropper=lambda rgb, prev: box, min_confidence=0.0)
    res = pred.predict(np.zeros((480, 640, 3), np.uint8), K)
    view = geo.ray_rotation(K, np.array([box.cx, box.cy]))
    ray = np.linalg.solve(K, [box.cx - 0.5, box.cy - 0.5, 1.0])
    angle = np.degrees(np.arccos(ray[2] / np.linalg.norm(ray)))
    assert angle > 20.0
    got = geo.quat_to_matrix(res.left.wrist_quat)
    assert np.allclose(got, view, atol=1e-6)
    rel = res.left.joints - res.left.joints[0]
    assert np.allclose(rel, stub.joints.numpy() @ view.T, atol=1e-5)
    # root axis-angle of the message pose is the same rotation
    assert np.allclose(geo.axis_angle_to_matrix(res.left.pose[:3]), view, atol=1e-5)


def test_fields_roundtrip() -> None:
    """result_to_fields has the message's sizes; invalid hands are zeroed; round trip."""
    pred = P.HandsPredictor(_StubDIR((5.0, 0.0, 0.0)), min_confidence=0.5)
    res = pred.predict(np.zeros((480, 640, 3), np.uint8), K)
    f = result_to_fields(res)
    left, right = f["left"], f["right"]
    assert left["side"] == 0 and right["side"] == 1
    assert left["vertices"].shape == (30,) and left["faces"].dtype == np.uint32
    assert left["keypoints_2d"].shape == (42,) and left["pose"].shape == (48,)
    assert not right["valid"] and not right["vertices"].any() and right["faces"].size == 6
    back = fields_to_result(f, (640, 480))
    assert np.allclose(back.left.vertices, res.left.vertices)
    assert np.allclose(back.left.wrist_position, res.left.wrist_position)


def test_ema_smoother() -> None:
    """EMA halves a (5 cm) step with factor 0.5."""
    pred = P.HandsPredictor(_StubDIR((5.0, 0.0, 0.0)), min_confidence=0.0)
    a = pred.predict(np.zeros((480, 640, 3), np.uint8), K)
    sm = S.EmaSmoother(0.5)
    sm(a)
    from dataclasses import replace

    moved = replace(a, left=replace(a.left, wrist_position=a.left.wrist_position + 0.05))
    out = sm(moved)
    assert np.allclose(out.left.wrist_position, a.left.wrist_position + 0.025)
    with pytest.raises(ValueError):
        S.EmaSmoother(0.0)


# --- the light DIR model ----------------------------------------------------------------

def _light_predictor(**over: object) -> P.HandsPredictor:
    try:
        import dir_ros.model  # noqa: F401
        from dir_ros.model import build_dir  # noqa: F401
    except ImportError as e:
        pytest.skip(f"dir_ros.model not available yet: {e}")
    if not LIGHT_CONFIG.is_file():
        pytest.skip(f"{LIGHT_CONFIG} missing")
    # runtime torch: these tests are about the predictor, not the exported runtimes
    # (test_export.py); auto would export the network on the CPU.
    cfg = {"model_config": str(LIGHT_CONFIG), "weights": "", "device": "cpu",
           "runtime": "torch", "min_confidence": 0.0, "crop": "full", **over}
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        return P.HandsPredictor.from_config(cfg)


def test_predict_light_model_shapes() -> None:
    """predict() with the light config: documented shapes, finite values, valid faces."""
    pred = _light_predictor()
    img = _rgb(120, 160)
    for k in (K, None):
        res = pred.predict(img, k)
        for side in R.SIDES:
            h = res.hand(side)
            v = h.vertices.shape[0]
            assert h.side == side
            assert h.vertices.shape == (v, 3) and h.vertices.dtype == np.float32
            assert h.joints.shape == (21, 3) and h.keypoints_2d.shape == (21, 2)
            assert h.pose.shape == (48,) and h.shape.shape == (10,)
            assert h.wrist_position.shape == (3,) and h.wrist_quat.shape == (4,)
            assert abs(np.linalg.norm(h.wrist_quat) - 1) < 1e-6
            assert 0.0 <= h.confidence <= 1.0 and h.valid  # min_confidence 0
            for arr in (h.vertices, h.joints, h.keypoints_2d, h.pose, h.shape, h.wrist_position):
                assert np.all(np.isfinite(arr))
            assert h.faces.ndim == 2 and h.faces.shape[1] == 3
            assert h.faces.min() >= 0 and h.faces.max() < v
            if k is None:
                assert not h.metric
        assert set(res.timings) >= {"crop_ms", "network_ms", "post_ms"}


def test_from_config_errors(tmp_path: Path) -> None:
    """Missing weights / hand model / model config give errors naming the file."""
    with pytest.raises(FileNotFoundError, match="model_config"):
        P.HandsPredictor.from_config({"model_config": str(tmp_path / "nope.yaml")})
    if not LIGHT_CONFIG.is_file():
        pytest.skip(f"{LIGHT_CONFIG} missing")
    with pytest.raises(FileNotFoundError, match="hand_model"):
        P.HandsPredictor.from_config({"model_config": str(LIGHT_CONFIG),
                                      "hand_model": str(tmp_path / "nohands")})
    with pytest.raises(FileNotFoundError, match="weights"):
        P.HandsPredictor.from_config({"model_config": str(LIGHT_CONFIG), "device": "cpu",
                                      "weights": str(tmp_path / "w.pt")})
    with pytest.raises(ValueError, match="device"):
        P.HandsPredictor.from_config({"model_config": str(LIGHT_CONFIG), "device": "gpu"})
