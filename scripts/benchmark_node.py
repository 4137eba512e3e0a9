#!/usr/bin/env python3
"""Benchmark hands_node end to end over DDS: image publish -> TwoHandMesh receive.

Starts the node (light model config by default) in a subprocess, then
  1. latency: publishes one image at a time, waits for its TwoHandMesh; median / p95 / max;
  2. sustained rate: publishes at --flood-hz for --flood-s seconds; outputs per second
     (newest-frame-wins: the rest are dropped by the node, also reported).
  3. baseline: HandsPredictor.predict() on the same image in this process (after the node
     stops), so the node's transport + decode + publish overhead shows as a ratio.
Prints figures only (no assertions). Needs the built messages (source install/setup.bash).

  python scripts/benchmark_node.py [--model-config config/model/dir_light.yaml]
         [--width 640 --height 480] [--frames 30] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
STARTUP_DEADLINE_S = 120.0
REPLY_DEADLINE_S = 3.0  # a frame without a reply by then counts as lost
BASELINE_WARMUP = 3  # predict() calls before timing the in-process baseline


def main() -> int:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model-config", default=str(ROOT / "config/model/dir_light.yaml"))
    ap.add_argument("--weights", default="")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--frames", type=int, default=30, help="latency samples")
    ap.add_argument("--flood-hz", type=float, default=60.0)
    ap.add_argument("--flood-s", type=float, default=10.0)
    ap.add_argument("--markers", action="store_true", help="also publish markers (default off)")
    ap.add_argument("--reliable", action="store_true",
                    help="RELIABLE image QoS on both sides (default: best effort, as cameras)")
    args = ap.parse_args()

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from dir_ros.msg import TwoHandMesh

    domain = str(150 + os.getpid() % 80)
    env = dict(os.environ, ROS_DOMAIN_ID=domain, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    exe = ROOT / "install/dir_ros/lib/dir_ros/hands_node"
    cmd = [sys.executable, *([str(exe)] if exe.is_file() else ["-m", "dir_ros.ros.node"]),
           "--ros-args", "-p", f"model_config:={args.model_config}", "-p", f"device:={args.device}",
           *(["-p", f"weights:={args.weights}"] if args.weights else []),
           "-p", "min_confidence:=0.0",
           "-p", f"publish_markers:={str(args.markers).lower()}",
           "-p", f"image_reliability:={'reliable' if args.reliable else 'best_effort'}"]
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    rclpy.init(domain_id=int(domain))
    node = rclpy.create_node("hands_benchmark")
    sent: dict[tuple[int, int], float] = {}
    lat: list[float] = []
    got: list[float] = []

    def on_hands(msg: TwoHandMesh) -> None:
        t = time.monotonic()
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if key in sent:
            lat.append(1e3 * (t - sent[key]))
            got.append(t)

    node.create_subscription(TwoHandMesh, "hands", on_hands, 50)
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE if args.reliable
                     else ReliabilityPolicy.BEST_EFFORT)
    pub = node.create_publisher(Image, "image", qos)
    info_pub = node.create_publisher(CameraInfo, "camera_info", qos)
    w, h = args.width, args.height
    img = Image(height=h, width=w, encoding="bgr8", step=w * 3)
    img.header.frame_id = "benchmark_optical"
    img.data = np.random.default_rng(0).integers(0, 256, h * w * 3, np.uint8).tobytes()
    f = 0.9 * w  # a plausible focal length in pixels
    info = CameraInfo(width=w, height=h, k=[f, 0.0, w / 2 - 0.5, 0.0, f, h / 2 - 0.5, 0, 0, 1.0])
    info.header.frame_id = img.header.frame_id
    counter = iter(range(1, 10**9))

    def send() -> None:
        img.header.stamp.sec, img.header.stamp.nanosec = 1, next(counter)
        info_pub.publish(info)
        sent[(img.header.stamp.sec, img.header.stamp.nanosec)] = time.monotonic()
        pub.publish(img)

    def wait_reply(n: int, deadline: float) -> bool:
        end = time.monotonic() + deadline
        while len(lat) < n and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.01)
        return len(lat) >= n

    try:
        t0 = time.monotonic()
        while not lat and time.monotonic() - t0 < STARTUP_DEADLINE_S:  # startup + discovery
            send()
            wait_reply(1, 1.0)
            if proc.poll() is not None:
                raise RuntimeError(f"node exited ({proc.returncode}):\n{open(log.name).read()}")
        if not lat:
            raise RuntimeError("no reply from the node")
        startup = time.monotonic() - t0
        for _ in range(3):  # warm-up
            n = len(lat)
            send()
            wait_reply(n + 1, REPLY_DEADLINE_S)
        lat.clear()
        lost = 0
        for _ in range(args.frames):
            n = len(lat)
            send()
            if not wait_reply(n + 1, REPLY_DEADLINE_S):
                lost += 1
        a = np.array(lat)
        # sustained rate under a flood: newest frame wins
        got.clear()
        n_sent = 0
        period = 1.0 / args.flood_hz
        t_start = time.monotonic()
        next_t = t_start
        while time.monotonic() - t_start < args.flood_s:
            if time.monotonic() >= next_t:
                send()
                n_sent += 1
                next_t += period
            rclpy.spin_once(node, timeout_sec=max(0.0, min(period, next_t - time.monotonic())))
        settle = time.monotonic() + 2.0
        while time.monotonic() < settle:
            rclpy.spin_once(node, timeout_sec=0.05)
        dur = args.flood_s
        n_in = sum(1 for t in got if t - t_start <= dur)
        print(f"machine: {os.cpu_count()} CPU cores, device {args.device}; "
              f"model {Path(args.model_config).name}; image {w}x{h} bgr8; "
              f"markers {'on' if args.markers else 'off'}; image QoS "
              f"{'reliable' if args.reliable else 'best effort'}")
        print(f"startup (process start -> first reply): {startup:.1f} s")
        print(f"latency publish -> TwoHandMesh over {len(a)} frames: median {np.median(a):.1f} ms, "
              f"p95 {np.percentile(a, 95):.1f} ms, max {a.max():.1f} ms; "
              f"{lost} of {args.frames} frames got no reply within {REPLY_DEADLINE_S} s")
        print(f"sustained: sent {n_sent / dur:.1f} Hz, received {n_in / dur:.2f} Hz "
              f"(max sustained rate), dropped by the node ~{n_sent - n_in} of {n_sent}")
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        proc.send_signal(2)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        os.unlink(log.name)
    base = predict_baseline(args, np.frombuffer(img.data, np.uint8).reshape(h, w, 3)[..., ::-1],
                            np.asarray(info.k).reshape(3, 3))
    print(f"baseline HandsPredictor.predict() in-process over {len(base)} frames: median "
          f"{np.median(base):.1f} ms; node end-to-end / predict() = {np.median(a) / np.median(base):.2f}x")
    return 0


def predict_baseline(args: argparse.Namespace, rgb: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Wall times (ms) of predict() on `rgb` with the node's model settings, in this process."""
    from dir_ros.predictor import HandsPredictor

    pred = HandsPredictor.from_config({"model_config": args.model_config, "weights": args.weights,
                                       "device": args.device, "min_confidence": 0.0})
    for _ in range(BASELINE_WARMUP):
        pred.predict(rgb, K)
    times = []
    for _ in range(args.frames):
        t = time.perf_counter()
        pred.predict(rgb, K)
        times.append(1e3 * (time.perf_counter() - t))
    return np.array(times)


if __name__ == "__main__":
    sys.exit(main())
