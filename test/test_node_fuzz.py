"""Fuzz test of hands_node (issue 9): every class of malformed input goes to the node over
DDS; after each one the node must be alive, answer the next good frame with a TwoHandMesh
(finite, metric only with a usable K), and have logged the reason on /rosout.

Two HandsNodes run in this process (the interface has one image transport per node): one on
raw `image`, one on `image/compressed`, both with the light DIR network on the full frame,
spun by an executor thread. A probe node publishes (reliable, as a camera driver) and
listens to /rosout, hands and /diagnostics. Skipped when the ROS messages are not built.
"""
from __future__ import annotations

import os
import resource
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import cv2
import numpy as np
import pytest

try:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rcl_interfaces.msg import Log
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from dir_ros.msg import TwoHandMesh
    from dir_ros.ros.node import HandsNode
except ImportError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"ROS messages not importable (build with colcon and source install/setup.bash "
                f"first): {e}", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
LIGHT_CONFIG = ROOT / "config" / "model" / "dir_light.yaml"
DOMAIN_ID = int(os.environ["ROS_DOMAIN_ID"])  # set by conftest.py
FRAME = "fuzz_camera_optical"
W, H = 160, 120
GOOD_K = [150.0, 0.0, 79.5, 0.0, 150.0, 59.5, 0.0, 0.0, 1.0]
RAW_NS, COMPRESSED_NS = "fuzz_raw", "fuzz_compressed"
DISCOVERY_TIMEOUT_S = 20.0  # probe <-> nodes matching on 2 busy cores
STEP_TIMEOUT_S = 15.0  # one bad message logged, or one good frame answered
RESEND_PERIOD_S = 0.5  # a message is sent again after this long without effect
RSS_GROWTH_LIMIT_KB = 300_000  # peak-RSS growth allowed across a decompression bomb
_STAMPS = iter(range(5000, 10**9))


def _rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_bomb(side: int) -> bytes:
    """A real side x side 8-bit grey PNG of zeros: a few hundred kB, side^2 x 3 bytes as BGR."""
    comp = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header claims width x height (the issue's 60000x60000)."""
    data = bytearray(_jpeg(_rgb(0, 16, 16)))
    i = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, height, width)
    return bytes(data)


class Rig:
    """The two nodes under test, their executor thread and the probe."""

    def __init__(self) -> None:
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=DOMAIN_ID)
        self.probe = Node("fuzz_probe", context=self.ctx)
        self.logs: list[Any] = []
        self.hands: dict[str, list[Any]] = {RAW_NS: [], COMPRESSED_NS: []}
        self.diagnostics: list[Any] = []
        # /rosout as rcl publishes it (reliable, transient local): startup lines arrive too
        self.probe.create_subscription(Log, "/rosout", self.logs.append, QoSProfile(
            depth=1000, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        out_qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for ns, store in self.hands.items():
            self.probe.create_subscription(TwoHandMesh, f"/{ns}/hands", store.append, out_qos)
        self.probe.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append,
                                       out_qos)
        cam_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.probe.create_publisher(Image, f"/{RAW_NS}/image", cam_qos)
        self.pub_info = self.probe.create_publisher(CameraInfo, f"/{RAW_NS}/camera_info", cam_qos)
        self.pub_compressed = self.probe.create_publisher(
            CompressedImage, f"/{COMPRESSED_NS}/image/compressed", cam_qos)
        self.probe_executor = SingleThreadedExecutor(context=self.ctx)
        self.probe_executor.add_node(self.probe)
        params = [Parameter("model_config", value=str(LIGHT_CONFIG)),
                  Parameter("backend", value="dir"), Parameter("crop", value="full"),
                  Parameter("device", value="cpu"), Parameter("smoothing", value="none"),
                  Parameter("min_confidence", value=0),  # an integer for a double (item 5)
                  Parameter("precision", value="bf16"),  # CPU: falls back to fp32 (item 8)
                  Parameter("runtime", value="torch"),  # (eager: the fallback above)
                  Parameter("frame_prefix", value="fuzz/")]
        self.nodes = {
            RAW_NS: HandsNode(context=self.ctx, parameter_overrides=params, namespace=RAW_NS),
            COMPRESSED_NS: HandsNode(context=self.ctx, namespace=COMPRESSED_NS,
                                     parameter_overrides=params + [
                                         Parameter("image_transport", value="compressed")]),
        }
        self.executor = SingleThreadedExecutor(context=self.ctx)
        for node in self.nodes.values():
            self.executor.add_node(node)
        self._spin = threading.Thread(target=self._spin_nodes, daemon=True)
        self._spin.start()
        self.sent: set[tuple[int, int]] = set()

    def _spin_nodes(self) -> None:
        while self.ctx.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # shutting down
                if not self.ctx.ok():
                    return
                raise

    def close(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.ctx.try_shutdown()
        self._spin.join(timeout=10.0)
        for node in self.nodes.values():
            node.destroy_node()
        self.probe.destroy_node()

    # ---- messages
    def stamp(self, header: Any, frame_id: str = FRAME) -> tuple[int, int]:
        header.frame_id = frame_id
        header.stamp.sec, header.stamp.nanosec = next(_STAMPS), 7
        return header.stamp.sec, header.stamp.nanosec

    def raw(self, data: Optional[bytes] = None, width: int = W, height: int = H,
            encoding: str = "rgb8", step: Optional[int] = None, frame_id: str = FRAME) -> Image:
        msg = Image()
        key = self.stamp(msg.header, frame_id)
        msg.width, msg.height, msg.encoding = width, height, encoding
        msg.step = width * 3 if step is None else step
        msg.data = _rgb(key[0]).tobytes() if data is None else data
        return msg

    def compressed(self, data: bytes, fmt: str = "jpeg") -> CompressedImage:
        msg = CompressedImage(format=fmt, data=data)
        self.stamp(msg.header)
        return msg

    @staticmethod
    def info(k: list[float] = GOOD_K, width: int = W, height: int = H,
             d: Optional[list[float]] = None) -> CameraInfo:
        msg = CameraInfo(width=width, height=height, k=k, distortion_model="plumb_bob",
                         d=d if d is not None else [0.0] * 5)
        msg.header.frame_id = FRAME
        return msg

    def publish(self, ns: str, msg: Any, info: Optional[CameraInfo] = None) -> None:
        if info is not None:
            self.pub_info.publish(info)
        if isinstance(msg, CompressedImage):
            self.pub_compressed.publish(msg)
        else:
            self.pub_image.publish(msg)
        self.sent.add((msg.header.stamp.sec, msg.header.stamp.nanosec))

    # ---- waiting
    def spin_until(self, cond: Callable[[], bool], timeout_s: float,
                   every: Optional[Callable[[], None]] = None) -> bool:
        end = time.monotonic() + timeout_s
        next_send = 0.0
        while time.monotonic() < end:
            if every is not None and time.monotonic() >= next_send:
                every()
                next_send = time.monotonic() + RESEND_PERIOD_S
            self.probe_executor.spin_once(timeout_sec=0.02)
            if cond():
                return True
        return False

    def logged(self, ns: str, text: str, since: int = 0) -> list[str]:
        """The /rosout lines of node `ns` containing text (from log number `since` on)."""
        return [m.msg for m in self.logs[since:]
                if m.name == f"{ns}.hands_node" and text in m.msg]

    def node_log(self, ns: str) -> str:
        return "\n".join(m.msg for m in self.logs if m.name == f"{ns}.hands_node")[-3000:]

    def answered(self, ns: str, keys: set[tuple[int, int]]) -> list[Any]:
        return [m for m in self.hands[ns] if (m.header.stamp.sec, m.header.stamp.nanosec) in keys]

    def send_bad(self, ns: str, make: Callable[[], Any], reason: str,
                 info: Optional[Callable[[], CameraInfo]] = None) -> None:
        """Send a malformed message (again every RESEND_PERIOD_S) until `reason` is logged."""
        def send() -> None:
            self.publish(ns, make(), info() if info is not None else None)
        # Only a line logged after the first send counts: an earlier class may have logged the
        # same words (then this one's line comes once the per-kind log throttle has passed).
        start = len(self.logs)
        assert self.spin_until(lambda: bool(self.logged(ns, reason, start)), STEP_TIMEOUT_S,
                               send), \
            f"'{reason}' not logged by {ns}; its log:\n{self.node_log(ns)}"

    def answer(self, ns: str, with_info: bool = True,
               cond: Callable[[Any], bool] = lambda m: True) -> Any:
        """Send good frames until one is answered with a TwoHandMesh meeting cond; check it."""
        keys: set[tuple[int, int]] = set()

        def send() -> None:
            rgb_msg = self.raw()
            msg = (self.compressed(_jpeg(_rgb(rgb_msg.header.stamp.sec)))
                   if ns == COMPRESSED_NS else rgb_msg)
            keys.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
            self.publish(ns, msg, self.info() if with_info else None)
        ok = self.spin_until(lambda: any(cond(m) for m in self.answered(ns, keys)),
                             STEP_TIMEOUT_S, send)
        node = self.nodes[ns]
        assert node._worker.is_alive(), f"{ns}: worker thread died"
        assert ok, f"{ns}: no answer to a good frame; its log:\n{self.node_log(ns)}"
        msg = [m for m in self.answered(ns, keys) if cond(m)][-1]
        _check_finite(msg)
        return msg


def _check_finite(msg: Any) -> None:
    """Every number of both hands is finite; metric hands have a positive depth."""
    for hand in (msg.left, msg.right):
        p = hand.wrist_pose.position
        values = [p.x, p.y, p.z, *np.asarray(hand.vertices), *np.asarray(hand.keypoints_2d),
                  *(c for j in hand.joints for c in (j.x, j.y, j.z)), hand.confidence]
        assert np.all(np.isfinite(values)), "non-finite values in a published hand"
        if hand.metric:
            assert p.z > 0


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    r = Rig()
    try:
        for ns in r.nodes:  # discovery + first inference
            r.answer(ns)
        yield r
    finally:
        r.close()


# ---- startup (items 5 and 8) ---------------------------------------------------------------

def test_startup_lines(rig: Rig) -> None:
    """An integer for a double parameter was accepted; the ready line gives the precision
    actually used (bf16 requested, fp32 on CPU); the core's warnings reached /rosout once."""
    for ns, node in rig.nodes.items():
        assert node.get_parameter("min_confidence").value == 0.0
        assert rig.spin_until(lambda: bool(rig.logged(ns, "ready:")), DISCOVERY_TIMEOUT_S)
        assert "(fp32)" in rig.logged(ns, "ready:")[0]
        assert len(rig.logged(ns, "NO WEIGHTS GIVEN")) == 1, rig.node_log(ns)
        assert len(rig.logged(ns, "precision bf16 is only used on CUDA")) == 1, rig.node_log(ns)


# ---- raw images ------------------------------------------------------------------------------

RAW_CLASSES: list[tuple[str, Callable[[Rig], Image], str]] = [
    ("unsupported encoding", lambda r: r.raw(bytes(W * H * 2), encoding="yuv422",
                                                step=W * 2), "unsupported image encoding 'yuv422'"),
    ("zero width", lambda r: r.raw(b"", width=0), "empty size 0x120"),
    ("step below the row size", lambda r: r.raw(bytes(W * H * 3), step=W), "step 160 <"),
    ("truncated data", lambda r: r.raw(bytes(100)), "needs at least 57600 bytes, got 100"),
    ("8000x8000 claim", lambda r: r.raw(bytes(1000), width=8000, height=8000),
     "8000x8000 has 64000000 pixels"),
    ("20000x1 mono8 strip", lambda r: r.raw(bytes(20000), width=20000, height=1,
                                            encoding="mono8", step=20000), "side over 16384"),
]


@pytest.mark.parametrize("name, make, reason", RAW_CLASSES, ids=[c[0] for c in RAW_CLASSES])
def test_raw_malformed(rig: Rig, name: str, make: Callable[[Rig], Image], reason: str) -> None:
    node = rig.nodes[RAW_NS]
    before = node.stats.decode_errors
    rig.send_bad(RAW_NS, lambda: make(rig), reason)
    assert node.stats.decode_errors > before  # counted as decode errors
    rig.answer(RAW_NS)


def test_burst(rig: Rig) -> None:
    """60 frames back to back: no backlog, no crash, the next frame is answered."""
    node = rig.nodes[RAW_NS]
    received = node.stats.received
    for _ in range(60):
        rig.publish(RAW_NS, rig.raw(), rig.info())
    rig.spin_until(lambda: node.stats.received >= received + 10, STEP_TIMEOUT_S)
    assert node.stats.received > received
    rig.answer(RAW_NS)


def test_empty_frame_id(rig: Rig) -> None:
    """A header without frame_id: hands still published, TF skipped with a warning."""
    keys: set[tuple[int, int]] = set()

    def send() -> None:
        msg = rig.raw(frame_id="")
        keys.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
        rig.publish(RAW_NS, msg, rig.info())
    assert rig.spin_until(lambda: bool(rig.answered(RAW_NS, keys))
                          and bool(rig.logged(RAW_NS, "no frame_id")), STEP_TIMEOUT_S, send)
    rig.answer(RAW_NS)


# ---- compressed images -----------------------------------------------------------------------

COMPRESSED_CLASSES: list[tuple[str, Callable[[], tuple[bytes, str]], str]] = [
    ("garbage", lambda: (np.random.default_rng(5).integers(0, 256, 5000, np.uint8).tobytes(),
                         "jpeg"), "not a JPEG or PNG stream"),
    ("empty", lambda: (b"", "png"), "is empty"),
    ("compressedDepth", lambda: (b"\x89PNG\r\n\x1a\n" + bytes(40), "16UC1; compressedDepth"),
     "compressed depth images are not supported"),
    ("truncated jpeg", lambda: (_jpeg(_rgb(9))[:2000], "jpeg"), "truncated"),
    ("jpeg header 60000x60000", lambda: (_jpeg_claiming(60000, 60000), "jpeg"),
     "60000x60000 has a side over 16384"),
    ("png without IHDR", lambda: (b"\x89PNG\r\n\x1a\n" + bytes(4), "png"), "no IHDR header"),
    ("jpeg with a noise body", lambda: (_jpeg(_rgb(1))[:300] + b"\xff\xd9", "jpeg"),
     "cannot decode compressed image"),
]


@pytest.mark.parametrize("name, make, reason", COMPRESSED_CLASSES,
                         ids=[c[0] for c in COMPRESSED_CLASSES])
def test_compressed_malformed(rig: Rig, name: str, make: Callable[[], tuple[bytes, str]],
                              reason: str) -> None:
    node = rig.nodes[COMPRESSED_NS]
    before = node.stats.decode_errors
    data, fmt = make()
    rig.send_bad(COMPRESSED_NS, lambda: rig.compressed(data, fmt), reason)
    assert node.stats.decode_errors > before
    rig.answer(COMPRESSED_NS)


def test_png_bomb(rig: Rig) -> None:
    """A real 12000x12000 PNG (about 140 kB; 432 MB once decoded as BGR): refused from its
    header, the process's peak memory does not move."""
    bomb = _png_bomb(12000)
    assert len(bomb) < 1_000_000
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rig.send_bad(COMPRESSED_NS, lambda: rig.compressed(bomb, "png"),
                 "12000x12000 has 144000000 pixels")
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_kb
    assert growth < RSS_GROWTH_LIMIT_KB, f"peak RSS grew by {growth} kB"
    assert rig.nodes[COMPRESSED_NS].stats.too_large >= 1
    rig.answer(COMPRESSED_NS)


# ---- camera_info -----------------------------------------------------------------------------

def _with(index: int, value: float) -> list[float]:
    k = list(GOOD_K)
    k[index] = value
    return k


INFO_CLASSES: list[tuple[str, list[float], str]] = [
    ("nan cx", _with(2, float("nan")), "K has non-finite entries (cx)"),
    ("inf fy", _with(4, float("inf")), "K has non-finite entries (fy)"),
    ("zero K", [0.0] * 9, "K is all zeros"),
    ("negative fx", _with(0, -150.0), "fx, fy must be > 0"),
]


@pytest.mark.parametrize("name, k, reason", INFO_CLASSES, ids=[c[0] for c in INFO_CLASSES])
def test_unusable_camera_info(rig: Rig, name: str, k: list[float], reason: str) -> None:
    """An unusable K is not used: wrist-relative (metric false, finite) hands, the reason
    logged and shown in /diagnostics; a good K afterwards gives metric hands again."""
    rig.send_bad(RAW_NS, rig.raw, reason, info=lambda: rig.info(k))
    msg = rig.answer(RAW_NS, with_info=False)
    assert not msg.left.metric and not msg.right.metric
    assert rig.spin_until(lambda: any(
        kv.key == "camera_info" and kv.value == f"invalid: {reason}" or
        kv.key == "camera_info" and kv.value.startswith("invalid: ") and reason in kv.value
        for a in rig.diagnostics for s in a.status for kv in s.values), DISCOVERY_TIMEOUT_S)
    rig.answer(RAW_NS, cond=lambda m: m.left.metric and m.right.metric)


def test_camera_info_size_mismatch_warned_per_size(rig: Rig) -> None:
    """A CameraInfo of another size is warned; a mismatch that changes is warned again."""
    for w, h in ((320, 240), (640, 480)):
        rig.send_bad(RAW_NS, rig.raw, f"camera_info is {w}x{h} but the image is {W}x{H}",
                     info=lambda: rig.info(width=w, height=h))
        rig.answer(RAW_NS, with_info=False, cond=lambda m: m.left.metric)
    rig.answer(RAW_NS)


def test_camera_info_distortion_warned(rig: Rig) -> None:
    rig.send_bad(RAW_NS, rig.raw, "non-zero distortion vector",
                 info=lambda: rig.info(d=[0.1, -0.05, 0.0, 0.0, 0.01]))
    rig.answer(RAW_NS)


# ---- summary -------------------------------------------------------------------------------

def test_no_inference_errors(rig: Rig) -> None:
    """Nothing above counted as an inference error (item 4: decode problems are decode
    errors), and the nodes are still serving."""
    for ns, node in rig.nodes.items():
        assert node.stats.inference_errors == 0, rig.node_log(ns)
        assert node.stats.decode_errors > 0
        rig.answer(ns)
