"""End-to-end tests of the hands_node over real DDS (rclpy), with the light model config.

The node runs as its executable (scripts/hands_node of this checkout, which colcon installs as
lib/dir_ros/hands_node; the installed copy may be older than the source) in a
subprocess; the source tree is put first on PYTHONPATH so the code under test is this
checkout's (the generated dir_ros.msg is found in the install space via extend_path).
Skipped when the ROS messages are not built / importable.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import pytest

try:
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from dir_ros.msg import TwoHandMesh
    from dir_ros.ros.dds_profile import PROFILE_ENVS
    from dir_ros.ros.demo_node import stop_process
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage
    from visualization_msgs.msg import Marker, MarkerArray
except ImportError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"ROS messages not importable (build with colcon and source install/setup.bash "
                f"first): {e}", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
LIGHT_CONFIG = ROOT / "config" / "model" / "dir_light.yaml"
NODE_EXE = ROOT / "scripts" / "hands_node"  # installed as lib/dir_ros/hands_node
STARTUP_DEADLINE_S = 60.0  # model build + DDS discovery on 2 busy cores
EXIT_DEADLINE_S = 30.0
FRAME = "test_camera_optical"
PREFIX = "t_"
W, H = 160, 120
K = [150.0, 0.0, 79.5, 0.0, 150.0, 59.5, 0.0, 0.0, 1.0]
# One DDS domain per test session (conftest.py sets a pid-derived ROS_DOMAIN_ID) so
# parallel runs do not hear each other.
DOMAIN_ID = int(os.environ["ROS_DOMAIN_ID"])  # set by conftest.py
_STAMPS = iter(range(1000, 10**9))  # unique image stamps across all probes of a session


def _node_cmd(*ros_args: str) -> list[str]:
    """Command line of the node: its executable, else the module."""
    exe = [str(NODE_EXE)] if NODE_EXE.is_file() else ["-m", "dir_ros.ros.node"]
    return [sys.executable, *exe, "--ros-args", *ros_args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(DOMAIN_ID)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    venv = env.get("VIRTUAL_ENV") or str(Path(sys.executable).resolve().parent.parent)
    if venv not in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        env["AMENT_PREFIX_PATH"] = os.pathsep.join([env.get("AMENT_PREFIX_PATH", ""), venv])
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    return env


class NodeProcess:
    """hands_node in a subprocess; stderr goes to a file we can read while it runs."""

    def __init__(self, tmp: Path, *params: str, params_file: Optional[Path] = None) -> None:
        self.log = tmp / "node_stderr.log"
        self._f = open(self.log, "w")
        args: list[str] = ["--params-file", str(params_file)] if params_file else []
        for p in params:
            args += ["-p", p]
        self.proc = subprocess.Popen(_node_cmd(*args), env=_env(), stdout=self._f,
                                     stderr=subprocess.STDOUT, cwd=str(tmp))

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        status = stop_process(self.proc, EXIT_DEADLINE_S)  # SIGINT: the clean shutdown path
        self._f.close()
        return status


def _light_params(*extra: str) -> list[str]:
    # runtime torch: the node tests are about the node (auto would export the network on the
    # CPU into the user's cache; test_export.py tests the exported runtimes).
    return ["backend:=dir", "crop:=full", f"model_config:={LIGHT_CONFIG}", "device:=cpu",
            "runtime:=torch", "min_confidence:=0.0",
            f"frame_prefix:={PREFIX}", "publish_debug_image:=true", *extra]


class Probe:
    """Test-side rclpy node: publishes images / camera_info, records the node's outputs."""

    def __init__(self, ctx: Any, reliability: ReliabilityPolicy) -> None:
        self.node = Node(f"probe_{reliability.name.lower()}_{time.monotonic_ns() % 100000}",
                         context=ctx)
        qos = QoSProfile(depth=5, reliability=reliability)
        self.pub_img = self.node.create_publisher(Image, "image", qos)
        self.pub_info = self.node.create_publisher(CameraInfo, "camera_info", qos)
        out_qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.hands: list[TwoHandMesh] = []
        self.markers: list[MarkerArray] = []
        self.tf: list[TFMessage] = []
        self.debug: list[Image] = []
        self.node.create_subscription(TwoHandMesh, "hands", self.hands.append, out_qos)
        self.node.create_subscription(MarkerArray, "hands/markers", self.markers.append, out_qos)
        self.node.create_subscription(TFMessage, "/tf", self.tf.append,
                                      QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.node.create_subscription(Image, "hands/debug_image", self.debug.append, out_qos)
        from diagnostic_msgs.msg import DiagnosticArray

        self.diagnostics: list[Any] = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append,
                                      out_qos)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.sent: dict[tuple[int, int], float] = {}

    def image(self, data: Optional[bytes] = None) -> Image:
        """A rgb8 test image (or one with the given raw data) stamped uniquely."""
        count = next(_STAMPS)
        msg = Image()
        msg.header.frame_id = FRAME
        msg.header.stamp.sec, msg.header.stamp.nanosec = count, 1234
        msg.height, msg.width, msg.encoding, msg.step = H, W, "rgb8", W * 3
        if data is None:
            rng = np.random.default_rng(count)
            data = rng.integers(0, 256, (H, W, 3), dtype=np.uint8).tobytes()
        msg.data = data
        return msg

    def camera_info(self) -> CameraInfo:
        info = CameraInfo()
        info.header.frame_id = FRAME
        info.width, info.height, info.k = W, H, K
        return info

    def publish(self, msg: Image) -> None:
        self.pub_info.publish(self.camera_info())
        self.pub_img.publish(msg)
        self.sent[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.monotonic()

    def publish_frame(self, rgb: np.ndarray, k: Sequence[float]) -> tuple[int, int]:
        """Publish rgb (H,W,3) uint8 as a uniquely stamped rgb8 Image after a CameraInfo of
        its size with intrinsics k (9 row-major values); returns the stamp (sec, nanosec)."""
        height, width = rgb.shape[:2]
        msg = self.image(rgb.tobytes())
        msg.width, msg.height, msg.step = width, height, width * 3
        info = self.camera_info()
        info.width, info.height, info.k = width, height, list(k)
        self.pub_info.publish(info)
        self.pub_img.publish(msg)
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.sent[stamp] = time.monotonic()
        return stamp

    def spin_until(self, cond: Callable[[], bool], deadline_s: float,
                   every: Optional[Callable[[], None]] = None, period_s: float = 1.0) -> bool:
        """Spin until cond() holds; call every() each period_s (e.g. publish a frame)."""
        end = time.monotonic() + deadline_s
        next_pub = 0.0
        while time.monotonic() < end:
            if every is not None and time.monotonic() >= next_pub:
                every()
                next_pub = time.monotonic() + period_s
            self.executor.spin_once(timeout_sec=0.05)
            if cond():
                return True
        return False

    def mine(self, msgs: list[Any]) -> list[Any]:
        """The messages (with a header) answering this probe's images."""
        return [m for m in msgs if (m.header.stamp.sec, m.header.stamp.nanosec) in self.sent]

    def mine_markers(self) -> list[MarkerArray]:
        return [a for a in self.markers if a.markers and self.mine([a.markers[0]])]

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture(scope="module")
def running_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node with the light model for the streaming tests of this module."""
    proc = NodeProcess(tmp_path_factory.mktemp("node"), *_light_params())
    yield proc
    rc = proc.stop()
    assert rc == 0, f"node did not exit cleanly on SIGINT (rc {rc}):\n{proc.output()[-3000:]}"


def _check_hands(msg: TwoHandMesh, probe: Probe) -> None:
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) in probe.sent
    assert msg.header.frame_id == FRAME
    for hand, side in ((msg.left, 0), (msg.right, 1)):
        assert hand.side == side
        assert hand.valid  # min_confidence 0
        assert 0.0 <= hand.confidence <= 1.0
        v = len(hand.vertices)
        assert v > 0 and v % 3 == 0
        faces = np.asarray(hand.faces)
        assert len(faces) > 0 and len(faces) % 3 == 0 and faces.max() < v // 3
        assert len(hand.joints) == 21 and len(hand.keypoints_2d) == 42
        assert len(hand.pose) == 48 and len(hand.shape) == 10
        arrays = [np.asarray(hand.vertices), np.asarray(hand.pose), np.asarray(hand.shape),
                  np.asarray(hand.keypoints_2d),
                  np.array([[p.x, p.y, p.z] for p in hand.joints])]
        for a in arrays:
            assert np.all(np.isfinite(a))
        o = hand.wrist_pose.orientation
        assert abs(np.linalg.norm([o.x, o.y, o.z, o.w]) - 1.0) < 1e-4


def _stream_and_check(ctx: Any, node: NodeProcess, reliability: ReliabilityPolicy) -> Probe:
    probe = Probe(ctx, reliability)
    try:
        ok = probe.spin_until(lambda: bool(probe.mine(probe.hands) and probe.mine_markers()
                                           and probe.tf),
                              STARTUP_DEADLINE_S, every=lambda: probe.publish(probe.image()))
        assert ok, (f"no output within {STARTUP_DEADLINE_S} s (hands {len(probe.hands)}, "
                    f"markers {len(probe.markers)}, tf {len(probe.tf)}); node log:\n"
                    f"{node.output()[-3000:]}")
        _check_hands(probe.mine(probe.hands)[-1], probe)
        # markers: 3 per hand, documented namespaces / types, triangles complete
        arr = probe.mine_markers()[-1]
        by_ns = {m.ns: m for m in arr.markers}
        types = {"mesh": Marker.TRIANGLE_LIST, "joints": Marker.SPHERE_LIST,
                 "bones": Marker.LINE_LIST}
        assert set(by_ns) == {f"{s}/{k}" for s in ("left", "right") for k in types}
        for ns, m in by_ns.items():
            assert m.type == types[ns.split("/")[1]] and m.action == Marker.ADD
            assert m.header.frame_id == FRAME
            assert 0.0 <= m.color.r <= 1.0 and 0.0 < m.color.a <= 1.0
        for s in ("left", "right"):
            assert len(by_ns[f"{s}/mesh"].points) % 3 == 0 and by_ns[f"{s}/mesh"].points
            assert len(by_ns[f"{s}/joints"].points) == 21
            assert len(by_ns[f"{s}/bones"].points) == 40
        # TF: both wrists under the image frame
        children = {t.child_frame_id: t for msg in probe.tf for t in msg.transforms}
        assert {f"{PREFIX}left_wrist", f"{PREFIX}right_wrist"} <= set(children)
        assert all(t.header.frame_id == FRAME for t in children.values())
    except BaseException:
        probe.close()
        raise
    return probe


def test_best_effort_stream(ctx: Any, running_node: NodeProcess) -> None:
    """BEST_EFFORT camera: TwoHandMesh, markers, TF and debug image come out."""
    probe = _stream_and_check(ctx, running_node, ReliabilityPolicy.BEST_EFFORT)
    try:
        assert probe.spin_until(lambda: bool(probe.mine(probe.debug)), 20.0,
                                every=lambda: probe.publish(probe.image()))
        img = probe.debug[-1]
        assert (img.width, img.height, img.encoding) == (W, H, "rgb8")
        # diagnostics: rates, drops, latency, device
        def latest() -> Any:
            found = [s for a in probe.diagnostics for s in a.status
                     if s.name.startswith("hands_node")]
            return found[-1] if found else None

        # a status from after the frames above: it has the per-stage table
        assert probe.spin_until(lambda: latest() is not None and any(
            kv.key == "stage_total_ms" for kv in latest().values), 10.0)
        status = latest()
        keys = {kv.key: kv.value for kv in status.values}
        assert {"input_rate_hz", "processed_rate_hz", "dropped_total", "latency_ms_median",
                "device"} <= set(keys)
        assert keys["device"] == "cpu" and status.hardware_id == "cpu"
        # no profile file in the test's environment: the node took the package's
        if not any(os.environ.get(n) for n in PROFILE_ENVS):
            assert keys["dds_profile"].endswith("config/fastdds_node.xml")
        # per-stage timing table: one key per stage, median / mean / p90 ms and frames
        stages = {k.removeprefix("stage_").removesuffix("_ms"):
                  dict(part.split("=") for part in v.split()) for k, v in keys.items()
                  if k.startswith("stage_")}
        assert {"queue", "decode", "predict", "predict_network", "mesh_build", "mesh_publish",
                "markers_build", "markers_publish", "debug_image", "total"} <= set(stages)
        for name, s in stages.items():
            assert set(s) == {"median", "mean", "p90", "n"}, name
            median, p90, n = float(s["median"]), float(s["p90"]), int(s["n"])
            assert 0.0 <= median <= p90 and n >= 1, (name, s)
        # every processed frame's total contains its predict(): so do the medians
        assert float(stages["total"]["median"]) >= float(stages["predict"]["median"])
        # the predictor's steps keep their keys (<step>_ms_median, 0.1 ms: the same median)
        assert abs(float(keys["network_ms_median"])
                   - float(stages["predict_network"]["median"])) <= 0.051
    finally:
        probe.close()


def test_reliable_stream(ctx: Any, running_node: NodeProcess) -> None:
    """A RELIABLE camera publisher is heard too (best-effort subscription)."""
    _stream_and_check(ctx, running_node, ReliabilityPolicy.RELIABLE).close()


def test_survives_undecodable_image(ctx: Any, running_node: NodeProcess) -> None:
    """A short buffer is logged as an error; the next good frame is still processed."""
    probe = Probe(ctx, ReliabilityPolicy.RELIABLE)
    try:
        bad = probe.image(data=b"\x00" * 10)
        assert probe.spin_until(lambda: "cannot decode image" in running_node.output(), 30.0,
                                every=lambda: probe.publish(bad), period_s=0.5), \
            running_node.output()[-3000:]
        assert "rgb8" in running_node.output()
        n = len(probe.mine(probe.hands))
        assert probe.spin_until(lambda: len(probe.mine(probe.hands)) > n, 30.0,
                                every=lambda: probe.publish(probe.image()))
        _check_hands(probe.mine(probe.hands)[-1], probe)
        assert running_node.proc.poll() is None
    finally:
        probe.close()


def test_runtime_parameter_refused(ctx: Any, running_node: NodeProcess) -> None:
    """set_parameters with a bad value returns successful=False and a reason naming it."""
    from rcl_interfaces.msg import Parameter as ParamMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    node = Node("param_probe", context=ctx)
    try:
        cli = node.create_client(SetParameters, "/hands_node/set_parameters")
        assert cli.wait_for_service(timeout_sec=STARTUP_DEADLINE_S)
        req = SetParameters.Request(parameters=[
            ParamMsg(name="crop", value=ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                      string_value="bogus")),
            ParamMsg(name="min_confidence", value=ParameterValue(
                type=ParameterType.PARAMETER_DOUBLE, double_value=0.0))])
        fut = cli.call_async(req)
        rclpy.spin_until_future_complete(node, fut, timeout_sec=20.0,
                                         executor=rclpy.executors.SingleThreadedExecutor(
                                             context=ctx))
        results = fut.result().results
        assert not results[0].successful
        assert "crop" in results[0].reason and "full, roi, track" in results[0].reason
    finally:
        node.destroy_node()


@pytest.mark.parametrize("param, words", [
    ("device:=gpu", ("device", "auto", "cpu", "cuda")),
    ("image_reliability:=sometimes", ("image_reliability", "best_effort", "reliable")),
])
def test_bad_parameter_refused_at_startup(tmp_path: Path, param: str,
                                          words: tuple[str, ...]) -> None:
    """A bad value stops the node with a non-zero exit and a message naming the parameter."""
    res = subprocess.run(_node_cmd("-p", f"model_config:={LIGHT_CONFIG}", "-p", param),
                         env=_env(), capture_output=True, text=True, timeout=EXIT_DEADLINE_S * 2,
                         cwd=str(tmp_path))
    assert res.returncode != 0
    for w in words:
        assert w in res.stderr, res.stderr


def test_missing_weights_clear_error(tmp_path: Path) -> None:
    """A weights path that does not exist: non-zero exit, error names the file."""
    missing = tmp_path / "missing.pt"
    res = subprocess.run(_node_cmd("-p", f"model_config:={LIGHT_CONFIG}", "-p", "device:=cpu",
                                   "-p", f"weights:={missing}"),
                         env=_env(), capture_output=True, text=True, timeout=EXIT_DEADLINE_S * 2,
                         cwd=str(tmp_path))
    assert res.returncode != 0
    assert "weights" in res.stderr and str(missing) in res.stderr, res.stderr
    # a file that is not a checkpoint: refused in one line naming it, no traceback
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    res = subprocess.run(_node_cmd("-p", f"model_config:={LIGHT_CONFIG}", "-p", "device:=cpu",
                                   "-p", f"weights:={corrupt}"),
                         env=_env(), capture_output=True, text=True, timeout=EXIT_DEADLINE_S * 2,
                         cwd=str(tmp_path))
    assert res.returncode != 0
    assert str(corrupt) in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_compressed_transport(ctx: Any, tmp_path: Path) -> None:
    """image_transport compressed: CompressedImage (png) on image/compressed is processed.
    Also: the shipped config/hands.yaml loads, and use_sim_time does not break the node."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    node = NodeProcess(tmp_path, *_light_params("image_transport:=compressed",
                                                "publish_debug_image:=false",
                                                "use_sim_time:=true"),
                       params_file=ROOT / "config" / "hands.yaml")
    probe = Probe(ctx, ReliabilityPolicy.BEST_EFFORT)
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    pub = probe.node.create_publisher(CompressedImage, "image/compressed", qos)
    ok, png = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (H, W, 3), np.uint8))
    assert ok

    def send() -> None:
        raw = probe.image()
        msg = CompressedImage(header=raw.header, format="png", data=png.tobytes())
        probe.pub_info.publish(probe.camera_info())
        pub.publish(msg)
        probe.sent[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.monotonic()

    try:
        assert probe.spin_until(lambda: bool(probe.mine(probe.hands)), STARTUP_DEADLINE_S,
                                every=send), node.output()[-3000:]
        _check_hands(probe.mine(probe.hands)[-1], probe)
    finally:
        probe.close()
        assert node.stop() == 0, node.output()[-3000:]


def test_fast_marker_serialisation_matches_rclpy() -> None:
    """The CDR fast path of the markers reads back (rclpy) as the rclpy-built MarkerArray."""
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header

    from dir_ros.common.results import FrameResult, HandsResult
    from dir_ros.common.geometry import full_frame_box
    from dir_ros.ros.markers import FastMarkerSerializer, frame_markers

    rng = np.random.default_rng(0)
    left = HandsResult.invalid("left", rng.integers(0, 30, (40, 3)), 30)
    left.valid = True
    left.vertices, left.joints = rng.normal(size=(30, 3)), rng.normal(size=(21, 3))
    right = HandsResult.invalid("right", rng.integers(0, 30, (40, 3)), 30)  # invalid: DELETE
    result = FrameResult(left, right, full_frame_box(W, H))
    header = Header(frame_id=FRAME)
    header.stamp.sec, header.stamp.nanosec = 7, 8
    fast = FastMarkerSerializer()
    assert fast.enabled
    data = fast(result, header)
    assert isinstance(data, bytes)
    slow = serialize_message(frame_markers(result, header))
    assert deserialize_message(data, MarkerArray) == deserialize_message(slow, MarkerArray)
    assert len(deserialize_message(data, MarkerArray).markers[0].points) == 120


# --- issue 9: transport, logging, parameters, startup ----------------------------------------

TRANSPORT_FRAMES = 30  # 640x480 frames sent by a reliable camera in the transport test
TRANSPORT_RATE_HZ = 15.0


def _latest_status(probe: Probe) -> dict[str, str]:
    """Key/values of the newest hands_node diagnostic status the probe heard."""
    status = [s for a in probe.diagnostics for s in a.status if s.name.startswith("hands_node")]
    return {kv.key: kv.value for kv in status[-1].values} if status else {}


def _fresh_status(probe: Probe, deadline_s: float = 10.0) -> dict[str, str]:
    """Wait for the next diagnostics message and return its hands_node status."""
    n = len(probe.diagnostics)
    assert probe.spin_until(lambda: len(probe.diagnostics) > n and bool(_latest_status(probe)),
                            deadline_s)
    return _latest_status(probe)


def test_reliable_camera_loses_no_frame(ctx: Any, running_node: NodeProcess) -> None:
    """Default image_reliability best_available: every 640x480 frame of a reliable camera
    reaches the node (received_total counts them); a best-effort subscription received
    0-2 of 40 such frames on these machines."""
    probe = Probe(ctx, ReliabilityPolicy.RELIABLE)
    try:
        # earlier tests' best-effort publishers are gone: the node turns reliable
        assert probe.spin_until(lambda: _latest_status(probe).get("image_qos") == "reliable",
                                STARTUP_DEADLINE_S), _latest_status(probe)
        before = _fresh_status(probe)
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8).tobytes()
        for _ in range(TRANSPORT_FRAMES):
            msg = probe.image()
            msg.width, msg.height, msg.step, msg.data = 640, 480, 640 * 3, frame
            probe.publish(msg)
            probe.spin_until(lambda: False, 1.0 / TRANSPORT_RATE_HZ)
        probe.spin_until(lambda: False, 2.0)
        after = _fresh_status(probe)
        received = int(after["received_total"]) - int(before["received_total"])
        dropped = int(after["dropped_total"]) - int(before["dropped_total"])
        assert received == TRANSPORT_FRAMES, (received, dropped)
    finally:
        probe.close()


def test_core_warnings_reach_the_ros_logger_once(running_node: NodeProcess) -> None:
    """The predictor's "no weights" warning (Python logging + warnings.warn) is printed once,
    through the ROS logger (so it reaches /rosout), not as a bare line plus a UserWarning."""
    out = running_node.output()
    lines = [ln for ln in out.splitlines() if "NO WEIGHTS GIVEN" in ln]
    assert len(lines) == 1, out[-3000:]
    assert lines[0].startswith("[WARN]") and "[hands_node]" in lines[0], lines[0]
    assert "UserWarning" not in out


class _StubPredictor:
    """A predictor that is never asked to predict: in-process parameter tests."""

    device = "cpu"
    precision = "fp32"

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.min_confidence = cfg["min_confidence"]

    def set_crop(self, mode: str, roi: Optional[list]) -> None:
        self.crop = (mode, roi)


def _in_process_node(ctx: Any, *overrides: tuple[str, Any], factory: Any = _StubPredictor,
                     params_file: Optional[Path] = None) -> Any:
    from rclpy.parameter import Parameter

    from dir_ros.ros.node import HandsNode

    cli = ["--ros-args", "--params-file", str(params_file)] if params_file else None
    return HandsNode(factory, context=ctx, namespace=f"inproc{time.monotonic_ns() % 10**6}",
                     cli_args=cli, parameter_overrides=[Parameter(n, value=v)
                                                        for n, v in overrides])


def _sensor_reliability(node: Any) -> dict[str, Any]:
    """image / camera_info -> the reliability of the node's live subscription(s): one
    ReliabilityPolicy, or the set of both while best_available listens both ways."""
    found: dict[str, set] = {}
    for name in ("image", "camera_info"):
        topic = node.resolve_topic_name(name)
        found[name] = {p for p in (ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT)
                       if p.name.lower() in node.transport.reliability(topic).split("+")}
    return {k: next(iter(v)) if len(v) == 1 else v for k, v in found.items()}


BOTH_WAYS = {ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT}


def test_explicit_image_reliability(ctx: Any) -> None:
    """best_effort and reliable stay explicit choices."""
    for choice, policy in (("best_effort", ReliabilityPolicy.BEST_EFFORT),
                           ("reliable", ReliabilityPolicy.RELIABLE)):
        node = _in_process_node(ctx, ("image_reliability", choice))
        try:
            assert _sensor_reliability(node) == {"image": policy, "camera_info": policy}
        finally:
            node.destroy_node()


@contextlib.contextmanager
def _stopped_node_and_probe(ctx: Any) -> Iterator[tuple[Any, Any, Any]]:
    """(in-process node with defaults, stopped: the stub never predicts, only its
    subscriptions are under test; a probe node; an executor spinning both)."""
    from rclpy.executors import SingleThreadedExecutor

    node = _in_process_node(ctx)
    probe = Node(f"probe_{time.monotonic_ns() % 10**6}", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    executor.add_node(probe)
    try:
        node.stop()
        yield node, probe, executor
    finally:
        executor.shutdown()
        probe.destroy_node()
        node.destroy_node()


def test_best_available_follows_the_publishers(ctx: Any) -> None:
    """Default best_available, node started before its camera: a best-effort camera is heard
    (rmw resolves BEST_AVAILABLE once, at creation, to reliable when no publisher exists yet:
    such a camera was never heard); a reliable camera alone makes the subscription reliable."""
    with _stopped_node_and_probe(ctx) as (node, probe, executor):
        topic = node.resolve_topic_name("image")

        def spin_until(cond: Callable[[], bool], timeout_s: float, pub: Any) -> bool:
            end = time.monotonic() + timeout_s
            while time.monotonic() < end:
                msg = Image(width=4, height=2, encoding="rgb8", step=12, data=bytes(24))
                pub.publish(msg)
                executor.spin_once(timeout_sec=0.05)
                if cond():
                    return True
            return False
        executor.spin_once(timeout_sec=0.5)
        for policy in (ReliabilityPolicy.BEST_EFFORT, ReliabilityPolicy.RELIABLE):
            pub = probe.create_publisher(Image, topic, QoSProfile(depth=1, reliability=policy))
            received = node.stats.received
            assert spin_until(lambda: node.stats.received > received + 2
                              and _sensor_reliability(node)["image"] == policy, 20.0, pub), \
                (policy, node.stats.received - received, _sensor_reliability(node))
            probe.destroy_publisher(pub)


def test_camera_info_survives_the_qos_switch(ctx: Any) -> None:
    """best_available: a CameraInfo that reached the node just before its subscription is
    re-created as reliable (the publishers were looked up) is still used. The demo's first
    photo used to come out wrist-relative (metric false) now and then: its one CameraInfo
    was dropped with the replaced subscription."""
    with _stopped_node_and_probe(ctx) as (node, probe, executor):
        for timer in node.timers:  # the re-check runs only when this test calls it
            timer.cancel()
        topic = node.resolve_topic_name("camera_info")
        pub = probe.create_publisher(CameraInfo, topic,
                                     QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        end = time.monotonic() + 10.0
        while not (pub.get_subscription_count() > 0 and node.get_publishers_info_by_topic(topic)):
            assert time.monotonic() < end, "the probe never matched the node's camera_info"
            executor.spin_once(timeout_sec=0.05)
        # no publisher known at the last check: listening both ways
        assert _sensor_reliability(node)["camera_info"] == BOTH_WAYS
        info = CameraInfo(width=640, height=480)
        info.k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
        pub.publish(info)
        time.sleep(0.2)  # delivered to the best-effort subscription's queue, not yet taken
        node.transport.match_publishers()  # the periodic re-check: now reliable, as the publisher
        for timer in node.timers:  # (the image topic has no publisher: it re-armed its timer)
            timer.cancel()
        assert _sensor_reliability(node)["camera_info"] == ReliabilityPolicy.RELIABLE
        end = time.monotonic() + 2.0
        while node._camera is None and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        assert node._camera is not None, "the CameraInfo was lost with the old subscription"
        np.testing.assert_allclose(node._camera[0], np.reshape(info.k, (3, 3)))
        assert node._camera[1] == (640, 480)
        node.transport.match_publishers()  # the next re-check destroys the replaced subscription
        assert sum(s.topic_name == topic for s in node.subscriptions) == 1


def test_integers_accepted_for_doubles(ctx: Any, tmp_path: Path) -> None:
    """`min_confidence: 0`, `smoothing_factor: 1`, `roi: [0, 0, 100, 50]` in a params file
    are the doubles they mean (rclpy refused the integers), at startup and at runtime."""
    from rclpy.parameter import Parameter

    params = tmp_path / "ints.yaml"
    params.write_text("/**:\n  ros__parameters:\n    min_confidence: 0\n"
                      "    smoothing_factor: 1\n    one_euro_beta: 20\n"
                      "    crop: roi\n    roi: [0, 0, 100, 50]\n")
    node = _in_process_node(ctx, params_file=params)
    try:
        assert node.get_parameter("min_confidence").type_ == Parameter.Type.DOUBLE
        assert node.get_parameter("min_confidence").value == 0.0
        assert node.get_parameter("smoothing_factor").value == 1.0
        assert list(node.get_parameter("roi").value) == [0.0, 0.0, 100.0, 50.0]
        assert node.predictor.cfg["roi"] == [0.0, 0.0, 100.0, 50.0]
        result = node.set_parameters([Parameter("min_confidence", Parameter.Type.INTEGER, 1)])
        assert result[0].successful, result[0].reason
        assert node.get_parameter("min_confidence").value == 1.0
        assert node.predictor.min_confidence == 1.0
    finally:
        node.destroy_node()


@pytest.mark.parametrize("name, value, words", [
    ("roi", [0.0, 0.0, float("nan"), 10.0], "finite"),
    ("roi", [0.0, 0.0, float("inf"), 10.0], "finite"),
    ("roi", [0.0, 0.0, 1e6, 10.0], "16384"),
    ("roi", [0.0, 0.0, -5.0, 10.0], "> 0"),
    ("frame_prefix", "/x/", "valid TF frame id"),
    ("frame_prefix", "my hands", "valid TF frame id"),
    ("frame_prefix", "a//b", "valid TF frame id"),
    ("smoothing_factor", 0.0, "[0.001, 1.0]"),
    ("one_euro_min_cutoff", 0.0, "[0.001, 100.0]"),
    ("min_confidence", 1.5, "[0.0, 1.0]"),
    ("max_image_pixels", 0, "[1, 1073741824]"),
])
def test_bad_values_refused_in_one_line(ctx: Any, name: str, value: Any, words: str) -> None:
    """Each bad value stops the node with one line naming the parameter and the rule, and
    is refused at runtime."""
    from rclpy.parameter import Parameter

    from dir_ros.ros.parameters import ConfigError

    with pytest.raises(ConfigError) as info:
        _in_process_node(ctx, (name, value))
    text = str(info.value)
    assert text.startswith(f"parameter '{name}'") and words in text and "\n" not in text, text
    node = _in_process_node(ctx)
    try:
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and name in result.reason, result.reason
    finally:
        node.destroy_node()


def test_good_values_accepted(ctx: Any) -> None:
    """A prefix with namespaces ('robot1/' gives robot1/left_wrist), a roi with integers."""
    node = _in_process_node(ctx, ("frame_prefix", "robot1/"), ("crop", "roi"),
                            ("roi", [10.0, 20.0, 300.0, 200.0]), ("max_image_pixels", 640 * 480))
    try:
        assert node.get_parameter("frame_prefix").value == "robot1/"
    finally:
        node.destroy_node()


def test_declared_ranges_are_the_accepted_ranges(ctx: Any) -> None:
    """rclpy shows a FloatingPointRange as inclusive: its ends must be values the node takes."""
    from dir_ros.ros.parameters import PARAMS, check_param

    node = _in_process_node(ctx)
    try:
        for spec in PARAMS:
            if spec.value_range is None:
                continue
            desc = node.describe_parameter(spec.name)
            rng = (desc.integer_range or desc.floating_point_range)[0]
            for end in (rng.from_value, rng.to_value):
                assert check_param(spec.name, end) is None, (spec.name, end)
        smooth = node.describe_parameter("smoothing_factor").floating_point_range[0]
        assert smooth.from_value > 0.0  # 0 is refused, so the shown range must not hold it
    finally:
        node.destroy_node()


@pytest.mark.parametrize("text, words", [
    ("", "is empty"),
    ("- 1\n- 2\n", "must be a mapping of config keys, got a list"),
    ("input_size: [\n", "is not valid YAML"),
    ("gcn: 5\n", "'gcn' must be a mapping"),
    ("bogus_key: 1\n", "unknown model config keys ['bogus_key']"),
])
def test_bad_model_config_file_one_line(ctx: Any, tmp_path: Path, text: str, words: str) -> None:
    """An empty, non-mapping or malformed model_config stops the node with one line naming
    the file (an empty file used to build the release network silently)."""
    from dir_ros.predictor import build_predictor
    from dir_ros.ros.parameters import ConfigError

    path = tmp_path / "model.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        _in_process_node(ctx, ("backend", "dir"), ("crop", "full"), ("device", "cpu"),
                         ("model_config", str(path)), factory=build_predictor)
    message = str(info.value)
    assert words in message and "\n" not in message and not message.startswith("'"), message


def test_malformed_params_file_one_line(tmp_path: Path) -> None:
    """A params file that is not YAML: exit 2 with one line, no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    min_confidence: [unclosed\n")
    res = subprocess.run(_node_cmd("--params-file", str(bad)), env=_env(), capture_output=True,
                         text=True, timeout=EXIT_DEADLINE_S * 2, cwd=str(tmp_path))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "params file" in res.stderr, res.stderr
    # ours, plus rcl's own "[rcl]: Failed to parse global arguments" (printed by the C library)
    ours = [ln for ln in res.stderr.splitlines() if ln.startswith("[hands_node]")]
    assert len(ours) == 1 and "line 3" in ours[0], res.stderr


def test_sigint_during_startup_no_traceback(tmp_path: Path) -> None:
    """Ctrl-C while the model is being built ends quietly (exit 0, one line)."""
    code = ("import faulthandler, signal, sys, time\n"
            "faulthandler.register(signal.SIGUSR1, all_threads=True)\n"
            "import dir_ros.ros.node as n\n"
            "def slow(cfg):\n"
            "    print('BUILDING', flush=True)\n"
            "    time.sleep(60)\n"
            "n.HandsNode.__init__.__defaults__ = (slow,)\n"
            "sys.exit(n.main(sys.argv))\n")
    log = tmp_path / "out.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, "--ros-args", "-p", "device:=cpu"],
                                env=_env(), stdout=out, stderr=subprocess.STDOUT, cwd=str(tmp_path))
        try:
            end = time.monotonic() + STARTUP_DEADLINE_S
            while "BUILDING" not in log.read_text() and time.monotonic() < end:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
            proc.send_signal(2)
            try:
                rc = proc.wait(EXIT_DEADLINE_S)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGUSR1)  # every thread's Python stack into the log
                time.sleep(1.0)
                pytest.fail(f"no exit {EXIT_DEADLINE_S:g} s after Ctrl-C; its output and "
                            f"stacks:\n{log.read_text()}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert rc == 0 and "Traceback" not in text and "interrupted during startup" in text, text


def test_debug_image_advertised_only_when_enabled(ctx: Any, running_node: NodeProcess) -> None:
    """hands/debug_image exists while publish_debug_image is true, and goes away (and comes
    back) when the parameter is switched at run time."""
    from rcl_interfaces.msg import Parameter as ParamMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    node = Node("debug_probe", context=ctx)
    executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
    executor.add_node(node)

    def publishers() -> int:
        return len(node.get_publishers_info_by_topic("/hands/debug_image"))

    def wait_for(count: int) -> bool:
        end = time.monotonic() + 20.0
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
            if publishers() == count:
                return True
        return False

    def set_debug(value: bool) -> None:
        cli = node.create_client(SetParameters, "/hands_node/set_parameters")
        assert cli.wait_for_service(timeout_sec=STARTUP_DEADLINE_S)
        fut = cli.call_async(SetParameters.Request(parameters=[ParamMsg(
            name="publish_debug_image", value=ParameterValue(
                type=ParameterType.PARAMETER_BOOL, bool_value=value))]))
        executor.spin_until_future_complete(fut, timeout_sec=20.0)
        assert fut.result().results[0].successful
        node.destroy_client(cli)

    try:
        assert wait_for(1), "the node was started with publish_debug_image true"
        set_debug(False)
        assert wait_for(0), "hands/debug_image still advertised after disabling it"
        set_debug(True)
        assert wait_for(1)
    finally:
        executor.shutdown()
        node.destroy_node()


def test_log_bridges_of_two_nodes_restore_the_core_logger() -> None:
    """Two in-process nodes' log bridges, removed in either order, leave the `dir_ros` logger
    and warnings.showwarning as they were (a nested bridge must not restore what an earlier
    one had already changed: pytest's caplog would then see no core log record)."""
    import logging
    import warnings as _warnings

    from dir_ros.ros.log_bridge import CORE_LOGGER, RosLogBridge

    class _Logger:
        def get_effective_level(self) -> int:
            return logging.INFO

    core = logging.getLogger(CORE_LOGGER)
    before = (core.level, core.propagate, _warnings.showwarning)
    for order in ((0, 1), (1, 0)):
        bridges = [RosLogBridge(_Logger()), RosLogBridge(_Logger())]
        for b in bridges:
            b.install()
        assert core.propagate is False
        for i in order:
            bridges[i].uninstall()
        assert (core.level, core.propagate, _warnings.showwarning) == before
