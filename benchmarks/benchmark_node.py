#!/usr/bin/env python3
"""Benchmark hands_node over DDS: where do frames go? Transport loss against mailbox drops.

For each kind of camera publisher (best effort, reliable) it creates the publisher, then
starts a fresh node in a subprocess (own ROS_DOMAIN_ID), as with a camera that is already
running; for each image size it publishes --seconds of bgr8 frames at --rate Hz, each with a
unique header stamp, and counts:
  published      frames this script published;
  answered       TwoHandMesh messages that came back with one of those stamps (per stamp);
  mailbox drops  frames the node received but replaced by a newer one before processing
                 (its /diagnostics `dropped_total`, difference over the phase);
  errors         decode + inference errors of the node over the phase (/diagnostics);
  received       what reached the node's image callback: its `received_total` when its
                 /diagnostics has one, else answered + mailbox drops + errors;
  transport loss published - received: lost between the publisher and the node's callback
                 (on the wire, or replaced in the node's DDS reader queue before its
                 executor took it).
The node's `image_reliability` is left at its default unless --reliability is given; a
publisher whose QoS never matches the node's subscription is reported as incompatible.

--predictor stub (default) runs the real node with an instant stand-in predictor (two
invalid hands of MANO size), so the node is not the bottleneck and the figures are transport;
--predictor light runs the light DIR network (random weights) as a speed reference.
--latency-frames N adds publish -> TwoHandMesh latency (one frame at a time, first size).
Prints a table; --json writes the figures. Needs the built messages (tools/ros_env.sh).

  tools/ros_env.sh python benchmarks/benchmark_node.py [--sizes 640x480,1280x720] [--rate 30]
      [--seconds 10] [--publishers best_effort,reliable] [--reliability best_available]
      [--predictor stub|light] [--latency-frames 30] [--json out/benchmark_node.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from dir_ros.common.machine import machine_info, write_figures
from dir_ros.ros.demo_node import stop_process

ROOT = Path(__file__).resolve().parent.parent
SERVE_STUB_FLAG = "--serve-stub-node"  # argv[1] that makes this file run the stub node itself
NODE_NAME = "hands_node"
STARTUP_DEADLINE_S = 180.0  # process start -> first TwoHandMesh
MATCH_DEADLINE_S = 10.0  # new publisher -> matched with the node's subscription
MATCH_SETTLE_S = 0.5  # after matching, for the node's side of discovery
QUIET_S = 1.5  # no new answer for this long = the node has finished what it had
SETTLE_DEADLINE_S = 60.0  # longest wait for the node to finish after a phase
DIAG_DEADLINE_S = 5.0  # longest wait for a /diagnostics message after a given moment
REPLY_DEADLINE_S = 3.0  # latency / lockstep: a frame without a reply by then counts as lost
NODE_EXIT_TIMEOUT_S = 30.0  # SIGINT -> exit, then SIGKILL
ANSWER_DEPTH = 100  # TwoHandMesh subscription depth (reliable): no answer lost here
# Publisher history depth: rclcpp's default QoS depth, what image_transport publishers use.
PUBLISHER_DEPTH = 10
RELIABILITY_CHOICES = ("best_available", "best_effort", "reliable")
MANO_VERTS, MANO_FACES = 778, 1538  # stub hands have the mesh size of the real ones
LIGHT_CONFIG = ROOT / "config" / "model" / "dir_light.yaml"
BASELINE_WARMUP = 3  # predict() calls before timing the in-process baseline
# The network's runtime in every run (node and in-process predictor): eager, as the recorded
# figures were measured (the default `runtime: auto` would run OpenVINO on the CPU).
BENCH_RUNTIME = "torch"
DOMAIN_BASE, DOMAIN_SPAN = 150, 80  # ROS_DOMAIN_ID = base + pid % span: runs do not meet
KIB_PER_MIB = 1024.0

Stamp = tuple[int, int]



# ---- the node process ---------------------------------------------------------------------

def node_command() -> list[str]:
    """The installed hands_node executable run by this Python, else the module."""
    exe = ROOT / "install" / "dir_ros" / "lib" / "dir_ros" / "hands_node"
    try:
        from ament_index_python.packages import get_package_prefix

        exe = Path(get_package_prefix("dir_ros")) / "lib" / "dir_ros" / "hands_node"
    except Exception:  # no ament index: the source checkout's install space, else the module
        pass
    return [sys.executable, str(exe)] if exe.is_file() else [sys.executable, "-m",
                                                             "dir_ros.ros.node"]


def node_parameters(predictor: str, *, reliability: Optional[str], device: str = "cpu",
                    markers: bool = False, crop: str = "full",
                    model_config: str = str(LIGHT_CONFIG),
                    runtime: str = BENCH_RUNTIME) -> dict[str, Any]:
    """hands_node parameters for a benchmark run (values as `-p name:=value` text)."""
    params = {**predictor_config(model_config, device, crop, runtime),
              "publish_markers": str(markers).lower()}
    if reliability:
        params["image_reliability"] = reliability
    return params


def predictor_config(model_config: str, device: str, crop: str,
                     runtime: str = BENCH_RUNTIME) -> dict[str, Any]:
    """The light predictor's settings shared by the node and the in-process baseline."""
    return {"backend": "dir", "model_config": model_config, "device": device, "crop": crop,
            "runtime": runtime, "min_confidence": 0.0}


class NodeProcess:
    """hands_node in a subprocess with its own ROS domain; output goes to a log file."""

    def __init__(self, predictor: str, params: dict[str, str], domain: int,
                 env_overrides: Optional[dict[str, Optional[str]]] = None) -> None:
        """env_overrides: environment variables of the node set (str) or removed (None)
        against this process's."""
        self.log = tempfile.NamedTemporaryFile("w+", prefix="hands_node_", suffix=".log",
                                               delete=False)
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1",
                   RCUTILS_LOGGING_BUFFERED_STREAM="0")
        for key, value in (env_overrides or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        # the node runs this checkout's dir_ros (dir_ros.msg still comes from the install)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        exe = ([sys.executable, str(Path(__file__).resolve()), SERVE_STUB_FLAG]
               if predictor == "stub" else node_command())
        self.cmd = exe + ["--ros-args"] + [a for k, v in params.items()
                                           for a in ("-p", f"{k}:={v}")]
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        """Process id of the node (the ROS wheels re-exec Python in place: same pid)."""
        return self.proc.pid

    def alive(self) -> bool:
        """True while the node runs."""
        return self.proc.poll() is None

    def rss_mb(self) -> float:
        """Resident set size (VmRSS) of the node in MiB; nan once it has exited."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / KIB_PER_MIB
        except OSError:
            pass
        return float("nan")

    def output(self) -> str:
        """Everything the node printed so far."""
        self.log.flush()
        return Path(self.log.name).read_text(encoding="utf-8", errors="replace")

    def stop(self) -> Optional[int]:
        """SIGINT (the node's clean shutdown), SIGKILL after NODE_EXIT_TIMEOUT_S; removes the
        log. Returns the exit status."""
        stop_process(self.proc, NODE_EXIT_TIMEOUT_S)
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass
        return self.proc.returncode


def serve_stub_node(ros_args: list[str]) -> int:
    """Run the real hands_node with an instant predictor (this process is the node)."""
    from dir_ros.common import geometry as geo
    from dir_ros import predictor as P
    from dir_ros.common.results import FrameResult, HandsResult

    faces = np.zeros((MANO_FACES, 3), np.int64)

    class StubPredictor:
        """Two invalid hands of MANO size at once: the node's own cost without a network."""

        device, precision, min_confidence = "cpu", "fp32", 0.0

        def predict(self, rgb: np.ndarray, K: Optional[np.ndarray] = None) -> FrameResult:
            h, w = rgb.shape[:2]
            return FrameResult(left=HandsResult.invalid("left", faces, MANO_VERTS),
                               right=HandsResult.invalid("right", faces, MANO_VERTS),
                               box=geo.CropBox(w / 2.0, h / 2.0, float(min(w, h))),
                               image_size=(w, h))

        def reset(self) -> None:
            """Nothing to forget."""

    def stub_factory(config: Any) -> StubPredictor:
        return StubPredictor()

    P.build_predictor = stub_factory  # before the node module binds it as its default
    import inspect

    from dir_ros.ros import node as node_module

    default = inspect.signature(node_module.HandsNode.__init__).parameters.get(
        "predictor_factory")
    if default is None or default.default is not stub_factory:
        print("benchmark stub: hands_node no longer takes its predictor from "
              "dir_ros.predictor.build_predictor; use --predictor light", file=sys.stderr)
        return 2
    return node_module.main(["hands_node", *ros_args])


# ---- the ROS client -----------------------------------------------------------------------

class BenchClient:
    """rclpy node publishing frames with unique stamps, recording answers and diagnostics."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from dir_ros.msg import TwoHandMesh

        self._rclpy = rclpy
        rclpy.init(domain_id=domain)
        self.node = rclpy.create_node("hands_benchmark")
        self.answers: dict[Stamp, float] = {}  # stamp -> monotonic receive time
        self.diag: Optional[tuple[float, dict[str, str]]] = None  # (receive time, values)
        self.last_answer = 0.0
        reliable = QoSProfile(depth=ANSWER_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(TwoHandMesh, "hands", self._on_hands, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable)
        self.pub: Any = None
        self.info_pub: Any = None
        self.publisher_kind = ""

    def _on_hands(self, msg: Any) -> None:
        now = time.monotonic()
        self.answers[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = now
        self.last_answer = now

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            if NODE_NAME in status.name:
                self.diag = (time.monotonic(), {kv.key: kv.value for kv in status.values})

    def use_publisher(self, reliability: str, depth: int = PUBLISHER_DEPTH) -> None:
        """(Re)create the image and camera_info publishers with this reliability."""
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        for pub in (self.pub, self.info_pub):
            if pub is not None:
                self.node.destroy_publisher(pub)
        policy = {"best_effort": ReliabilityPolicy.BEST_EFFORT,
                  "reliable": ReliabilityPolicy.RELIABLE}[reliability]
        qos = QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=policy)
        self.pub = self.node.create_publisher(Image, "image", qos)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", qos)
        self.publisher_kind = reliability

    def wait_matched(self, deadline_s: float = MATCH_DEADLINE_S) -> bool:
        """Spin until the image publisher has matched the node's subscription."""
        end = time.monotonic() + deadline_s
        while self.pub.get_subscription_count() == 0 and time.monotonic() < end:
            self.spin(0.05)
        if self.pub.get_subscription_count() == 0:
            return False
        self.spin(MATCH_SETTLE_S)
        return True

    def send(self, frame: "Frame", stamp: Stamp) -> None:
        """Publish camera_info and the image with this header stamp."""
        frame.image.header.stamp.sec, frame.image.header.stamp.nanosec = stamp
        frame.info.header.stamp = frame.image.header.stamp
        self.info_pub.publish(frame.info)
        self.pub.publish(frame.image)

    def poll(self) -> None:
        """Handle the callbacks that are ready now, without waiting."""
        self._rclpy.spin_once(self.node, timeout_sec=0.0)

    def wait_answer(self, stamp: Stamp, deadline_s: float) -> bool:
        """Wait until the TwoHandMesh of `stamp` has come (True) or deadline_s passed (False),
        blocking in the executor (no polling: the client takes no CPU from the node)."""
        end = time.monotonic() + deadline_s
        while stamp not in self.answers:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self._rclpy.spin_once(self.node, timeout_sec=left)
        return True

    def spin(self, seconds: float) -> None:
        """Handle callbacks for about `seconds`."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self._rclpy.spin_once(self.node, timeout_sec=min(left, 0.05))

    def quiet(self, deadline_s: float = SETTLE_DEADLINE_S) -> None:
        """Wait until no answer has come for QUIET_S (the node is idle)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end and time.monotonic() - self.last_answer < QUIET_S:
            self.spin(0.05)
        self.spin(0.05)

    def diagnostics_after(self, moment: float, deadline_s: float = DIAG_DEADLINE_S
                          ) -> dict[str, str]:
        """Values of the node's first /diagnostics status received after `moment`."""
        end = time.monotonic() + deadline_s
        while (self.diag is None or self.diag[0] <= moment) and time.monotonic() < end:
            self.spin(0.05)
        if self.diag is None or self.diag[0] <= moment:
            raise RuntimeError("no /diagnostics from the node")
        return self.diag[1]

    def close(self) -> None:
        """Destroy the node and shut rclpy down."""
        self.node.destroy_node()
        self._rclpy.try_shutdown()


@dataclass
class Frame:
    """One image message and its camera_info (reused; only the stamp changes)."""

    image: Any
    info: Any
    width: int
    height: int


def make_frame(width: int, height: int, seed: int = 0) -> Frame:
    """A random bgr8 image of this size and a plausible camera_info."""
    from sensor_msgs.msg import CameraInfo, Image

    img = Image(height=height, width=width, encoding="bgr8", step=width * 3)
    img.header.frame_id = "benchmark_optical"
    img.data = np.random.default_rng(seed).integers(0, 256, height * width * 3,
                                                    np.uint8).tobytes()
    f = 0.9 * width  # a plausible focal length in pixels
    info = CameraInfo(width=width, height=height,
                      k=[f, 0.0, width / 2 - 0.5, 0.0, f, height / 2 - 0.5, 0.0, 0.0, 1.0])
    info.header.frame_id = img.header.frame_id
    return Frame(img, info, width, height)


# ---- counting ------------------------------------------------------------------------------

def _counter(values: dict[str, str], key: str) -> Optional[int]:
    """An integer /diagnostics value, None when the node does not report it."""
    try:
        return int(values[key])
    except (KeyError, ValueError):
        return None


@dataclass
class PhaseResult:
    """Where the frames of one phase went (see module docstring)."""

    width: int
    height: int
    publisher: str
    rate_hz: float
    published: int
    answered: int
    mailbox_drops: int
    errors: int
    received: int
    received_source: str  # 'node' (its received_total) or 'derived'
    transport_loss: int
    seconds: float
    answered_hz: float
    matched: bool = True  # False: the publisher's QoS never matched the node's subscription

    @property
    def transport_loss_pct(self) -> float:
        """Transport loss in percent of the published frames."""
        return 100.0 * self.transport_loss / max(self.published, 1)


def run_phase(client: BenchClient, frame: Frame, frames: int, rate_hz: float, phase_id: int,
              node: NodeProcess, progress: bool = True,
              on_tick: Optional[Callable[[], None]] = None) -> PhaseResult:
    """Publish `frames` frames at `rate_hz` (<= 0: one at a time, each after the previous
    answer) and count where they went, from diagnostics snapshots taken while the node idles."""
    from tqdm import tqdm

    client.quiet()
    before = client.diagnostics_after(time.monotonic())
    stamps: list[Stamp] = []
    period = 1.0 / rate_hz if rate_hz > 0 else 0.0
    bar = tqdm(total=frames, unit="frame", leave=False, disable=None if progress else True,
               desc=f"{frame.width}x{frame.height} {client.publisher_kind}")
    t_start = time.monotonic()
    next_t = t_start
    for i in range(frames):
        stamp = (phase_id, i + 1)
        if period:
            while time.monotonic() < next_t:
                client.spin(min(0.005, max(0.0, next_t - time.monotonic())))
            next_t += period
        client.send(frame, stamp)
        stamps.append(stamp)
        if not period:  # lockstep
            end = time.monotonic() + REPLY_DEADLINE_S
            while stamp not in client.answers and time.monotonic() < end:
                client.spin(0.002)
        else:
            client.poll()
        if on_tick is not None:
            on_tick()
        bar.update(1)
        if not node.alive():
            raise RuntimeError(f"node exited ({node.proc.returncode}):\n{node.output()}")
    bar.close()
    seconds = time.monotonic() - t_start
    client.quiet()
    after = client.diagnostics_after(time.monotonic())
    answered = sum(1 for s in stamps if s in client.answers)
    delta = {k: (_counter(after, k) or 0) - (_counter(before, k) or 0)
             for k in ("dropped_total", "decode_errors_total", "inference_errors_total")}
    errors = delta["decode_errors_total"] + delta["inference_errors_total"]
    recv_before, recv_after = _counter(before, "received_total"), _counter(after,
                                                                           "received_total")
    if recv_before is not None and recv_after is not None:
        received, source = recv_after - recv_before, "node"
    else:
        received, source = answered + delta["dropped_total"] + errors, "derived"
    return PhaseResult(width=frame.width, height=frame.height, publisher=client.publisher_kind,
                       rate_hz=rate_hz, published=len(stamps), answered=answered,
                       mailbox_drops=delta["dropped_total"], errors=errors, received=received,
                       received_source=source, transport_loss=len(stamps) - received,
                       seconds=seconds, answered_hz=answered / max(seconds, 1e-9))


@dataclass
class Started:
    """A running node and its client, as start_and_wait leaves them."""

    node: NodeProcess
    client: BenchClient
    startup_s: float  # process start -> first answer (or -> first diagnostics if unmatched)
    matched: bool  # the camera publisher matched the node's image subscription

    def stop(self) -> Optional[int]:
        """Close the client, stop the node; the node's exit status."""
        self.client.close()
        return self.node.stop()


def start_and_wait(predictor: str, params: dict[str, str], frame: Frame,
                   publisher: str = "reliable",
                   node_env: Optional[dict[str, Optional[str]]] = None) -> Started:
    """Create the camera publisher first (a camera that is already running), then start the
    node; wait until it is up (/diagnostics), its image subscription matched the publisher
    and it answered a first frame. An unmatched publisher (QoS incompatible) is returned as
    matched=False instead of waited for. node_env: NodeProcess's env_overrides."""
    from tqdm import tqdm

    domain = DOMAIN_BASE + os.getpid() % DOMAIN_SPAN
    client = BenchClient(domain)
    client.use_publisher(publisher)
    node = NodeProcess(predictor, params, domain, node_env)
    t0 = time.monotonic()

    run = Started(node, client, 0.0, matched=False)

    def check() -> None:
        if not node.alive():
            raise RuntimeError(f"hands_node exited ({node.proc.returncode}):\n{node.output()}")
        if time.monotonic() - t0 > STARTUP_DEADLINE_S:
            raise RuntimeError(f"hands_node not answering after {STARTUP_DEADLINE_S:g} s")

    try:
        with tqdm(desc="starting hands_node", unit="s", leave=False,
                  bar_format="{desc}: {elapsed}", disable=None):
            while client.diag is None:  # the node is up: its diagnostics timer runs
                check()
                client.spin(0.2)
            run.matched = client.wait_matched()
            counter = 0
            while run.matched and not client.answers:
                check()
                counter += 1
                client.send(frame, (0, counter))
                client.spin(1.0)
    except BaseException:  # failed or interrupted: no node left behind
        run.stop()
        raise
    run.startup_s = time.monotonic() - t0
    return run


# ---- the benchmark -------------------------------------------------------------------------

def measure_latency(client: BenchClient, frame: Frame, frames: int) -> dict[str, Any]:
    """Publish -> TwoHandMesh latency (ms), one frame at a time on the current publisher."""
    lat: list[float] = []
    lost = 0
    for i in range(frames):
        stamp = (1, i + 1)
        sent = time.monotonic()
        client.send(frame, stamp)
        end = sent + REPLY_DEADLINE_S
        while stamp not in client.answers and time.monotonic() < end:
            client.spin(0.002)
        if stamp in client.answers:
            lat.append(1e3 * (client.answers[stamp] - sent))
        else:
            lost += 1
    a = np.array(lat) if lat else np.full(1, np.nan)
    return {"frames": frames, "no_reply": lost, "median_ms": float(np.median(a)),
            "p95_ms": float(np.percentile(a, 95)), "max_ms": float(np.max(a))}


def predict_baseline(args: argparse.Namespace, frame: Frame) -> Optional[float]:
    """Median wall time (ms) of the light predictor's predict() in this process."""
    from dir_ros.predictor import build_predictor

    rgb = np.frombuffer(bytes(frame.image.data), np.uint8).reshape(
        frame.height, frame.width, 3)[..., ::-1]
    K = np.asarray(frame.info.k).reshape(3, 3)
    pred = build_predictor(predictor_config(args.model_config, args.device, args.crop))
    for _ in range(BASELINE_WARMUP):
        pred.predict(rgb, K)
    times = []
    for _ in range(max(args.latency_frames, 1)):
        t = time.perf_counter()
        pred.predict(rgb, K)
        times.append(1e3 * (time.perf_counter() - t))
    return float(np.median(times))


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'640x480,1280x720' -> [(640, 480), (1280, 720)]."""
    sizes = []
    for part in text.split(","):
        w, h = part.lower().split("x")
        sizes.append((int(w), int(h)))
    return sizes


def print_table(rows: list[PhaseResult], node_qos: str) -> None:
    """The transport table."""
    print(f"{'image':>9} {'publisher':>11} {'node QoS':>14} {'published':>9} {'received':>8} "
          f"{'answered':>8} {'mailbox':>7} {'errors':>6} {'transport loss':>16} "
          f"{'answered/s':>10}")
    for r in rows:
        if not r.matched:
            print(f"{r.width:>4}x{r.height:<4} {r.publisher:>11} {node_qos:>14}   "
                  f"QoS incompatible: the publisher never matched the node's subscription")
            continue
        print(f"{r.width:>4}x{r.height:<4} {r.publisher:>11} {node_qos:>14} {r.published:>9} "
              f"{r.received:>8} {r.answered:>8} {r.mailbox_drops:>7} {r.errors:>6} "
              f"{r.transport_loss:>6} ({r.transport_loss_pct:5.1f} %) {r.answered_hz:>10.1f}")


def main() -> int:
    """Run the benchmark, print the table, write --json."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="640x480,1280x720", help="WxH[,WxH...] (bgr8)")
    ap.add_argument("--rate", type=float, default=30.0, help="publish rate, Hz")
    ap.add_argument("--seconds", type=float, default=10.0, help="per size and publisher")
    ap.add_argument("--publishers", default="best_effort,reliable",
                    help="camera publisher reliabilities to try (comma separated)")
    ap.add_argument("--reliability", choices=RELIABILITY_CHOICES, default=None,
                    help="the node's image_reliability (default: the node's own default)")
    ap.add_argument("--predictor", choices=("stub", "light"), default="stub",
                    help="stub: instant stand-in predictor inside the real node (transport "
                         "only); light: the light DIR network")
    ap.add_argument("--model-config", default=str(LIGHT_CONFIG), help="for --predictor light")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--crop", default="full", help="the node's crop mode (light predictor)")
    ap.add_argument("--markers", action="store_true", help="node publishes markers too")
    ap.add_argument("--latency-frames", type=int, default=0,
                    help="also measure latency over N frames (first size); 0 = skip")
    ap.add_argument("--baseline", action="store_true",
                    help="with --predictor light: also time predict() in this process")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()

    sizes = parse_sizes(args.sizes)
    kinds = [k.strip() for k in args.publishers.split(",") if k.strip()]
    for k in kinds:
        if k not in ("best_effort", "reliable"):
            ap.error(f"--publishers: '{k}' is not best_effort or reliable")
    params = node_parameters(args.predictor, reliability=args.reliability, device=args.device,
                             markers=args.markers, crop=args.crop,
                             model_config=args.model_config)
    frames = {s: make_frame(*s) for s in sizes}
    node_qos = args.reliability or "node default"
    report: dict[str, Any] = {"machine": machine_info(), "predictor": args.predictor,
                              "node_parameters": params, "node_image_reliability": node_qos,
                              "rate_hz": args.rate, "seconds": args.seconds,
                              "startup_s": {}, "node_exit_status": {}, "transport": []}
    rows: list[PhaseResult] = []
    n = max(1, round(args.rate * args.seconds))
    phase_id = 100
    for kind in kinds:  # a fresh node per publisher kind: the camera runs before the node
        try:
            run = start_and_wait(args.predictor, params, frames[sizes[0]], kind)
        except RuntimeError as e:
            print(f"benchmark_node: {e}", file=sys.stderr)
            return 1
        report["startup_s"][kind] = round(run.startup_s, 2)
        try:
            if not run.matched:  # e.g. a best effort camera and a reliable subscription
                rows += [PhaseResult(w, h, kind, args.rate, 0, 0, 0, 0, 0, "none", 0, 0.0, 0.0,
                                     matched=False) for w, h in sizes]
                continue
            if args.latency_frames and "latency" not in report:
                report["latency"] = measure_latency(run.client, frames[sizes[0]],
                                                    args.latency_frames) | {"publisher": kind}
            for size in sizes:
                phase_id += 1
                rows.append(run_phase(run.client, frames[size], n, args.rate, phase_id,
                                      run.node, progress=not args.no_progress))
        except RuntimeError as e:  # the node died or stopped sending diagnostics
            print(f"benchmark_node: {e}", file=sys.stderr)
            return 1
        finally:
            report["node_exit_status"][kind] = run.stop()
    report["transport"] = [asdict(r) | {"transport_loss_pct": round(r.transport_loss_pct, 2)}
                           for r in rows]
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores; predictor {args.predictor}; node "
          f"image_reliability {node_qos}; {args.rate:g} Hz for {args.seconds:g} s per row; "
          f"startup " + ", ".join(f"{k} {v:.1f} s" for k, v in report["startup_s"].items()))
    print_table(rows, node_qos)
    if any(r.received_source == "derived" for r in rows):
        print("received = answered + mailbox drops + errors (the node's /diagnostics has no "
              "received_total)")
    if "latency" in report:
        lat = report["latency"]
        print(f"latency publish -> TwoHandMesh over {lat['frames']} frames at "
              f"{sizes[0][0]}x{sizes[0][1]}, {lat['publisher']} publisher: median "
              f"{lat['median_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms, max {lat['max_ms']:.1f} ms; "
              f"{lat['no_reply']} without reply within {REPLY_DEADLINE_S:g} s")
    if args.baseline and args.predictor == "light":
        base = predict_baseline(args, frames[sizes[0]])
        report["baseline_predict_ms"] = base
        print(f"baseline predict() in-process: median {base:.1f} ms")
    if args.json:
        write_figures(args.json, report)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == SERVE_STUB_FLAG:
        sys.exit(serve_stub_node(sys.argv[2:]))
    sys.exit(main())
