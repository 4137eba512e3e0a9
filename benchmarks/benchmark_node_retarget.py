#!/usr/bin/env python3
"""The node's own cost of the robot outputs (issue 22): hands_node with `retarget` and
`publish_joint_tf` on, fed the sample photos, and its /diagnostics stage table read back.

One node (benchmark_node.NodeProcess: own ROS domain, this checkout's code; landmark backend,
node defaults otherwise: markers, wrist TF, One-Euro smoothing) gets each photo (samples/*.jpg,
letterboxed into 640x480 rgb8, camera_info with a 60 degree field of view) --frames times in
a row, as a still video, reliable, one frame at a time (the next after its TwoHandMesh:
no queueing). The node times every frame's stages (NODE_STAGES: predict, tf, grasp, retarget
= both hands' dex-retargeting and their JointState publish, total = callback -> last
publish); its last /diagnostics after the run gives median / mean / p90 over its window
(STAGE_WINDOW = 100 frames, so keep photos x frames <= 100 to cover the whole run). Prints the
table, the retargeting cost per hand per frame (the stage over the JointStates per frame) and
its share of the node's frame time (stage total), all from the same frames, and the load.

  tools/ros_env.sh python benchmarks/benchmark_node_retarget.py [--frames 25] [--robot allegro]
      [--joint-tf fingertips] [--images samples] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import benchmark_node as bench  # noqa: E402  (NodeProcess)
from benchmark_node_overhead import parse_stage_table  # noqa: E402

from dir_ros.cli.infer import letterbox  # noqa: E402
from dir_ros.common.machine import machine_info  # noqa: E402

WIDTH, HEIGHT = 640, 480  # a VGA camera frame
HFOV_DEG = 60.0  # the field of view the samples are run with (no calibration)
STARTUP_S = 120.0  # node start (MediaPipe, hand model, optimisers) on 2 busy cores
ANSWER_S = 10.0  # longest wait for one frame's TwoHandMesh
DIAG_WAIT_S = 5.0  # /diagnostics comes every second: one after the last frame
SETTLE_S = 0.3  # after a TwoHandMesh, the frame's JointStates (published after it) arrive
STAGES_SHOWN = ("predict", "smoothing", "mesh_build", "markers_build", "tf", "grasp",
                "retarget", "total")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the node, send the frames, read its stage table; the figures."""
    import cv2
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, JointState

    from dir_ros.msg import TwoHandMesh

    photos = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() == ".jpg")
    frames = [cv2.cvtColor(letterbox(cv2.imread(str(p)), WIDTH, HEIGHT), cv2.COLOR_BGR2RGB)
              for p in photos]
    domain = 10 + os.getpid() % 90
    params = {"retarget": args.robot, "publish_joint_tf": args.joint_tf,
              "image_reliability": "reliable"}
    node = bench.NodeProcess("landmarks", params, domain)
    rclpy.init(domain_id=domain)
    client = rclpy.create_node("retarget_benchmark")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    answers: dict[tuple[int, int], Any] = {}
    joint_msgs: list[Any] = []
    diag: list[tuple[float, dict[str, str]]] = []
    client.create_subscription(
        TwoHandMesh, "hands", lambda m: answers.__setitem__(
            (m.header.stamp.sec, m.header.stamp.nanosec), m), qos)
    for side in ("left", "right"):
        client.create_subscription(JointState, f"hands/{side}/joint_commands",
                                   joint_msgs.append, qos)
    client.create_subscription(
        DiagnosticArray, "/diagnostics", lambda a: diag.extend(
            (time.monotonic(), {kv.key: kv.value for kv in s.values}) for s in a.status
            if s.name.startswith("hands_node")), qos)
    pub = client.create_publisher(Image, "image", qos)
    pub_info = client.create_publisher(CameraInfo, "camera_info", qos)
    f = WIDTH / 2 / np.tan(np.radians(HFOV_DEG) / 2)
    info = CameraInfo(width=WIDTH, height=HEIGHT,
                      k=[f, 0.0, (WIDTH - 1) / 2, 0.0, f, (HEIGHT - 1) / 2, 0.0, 0.0, 1.0])
    info.header.frame_id = "camera_optical"

    def send(rgb: np.ndarray, count: int) -> tuple[int, int]:
        msg = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3,
                    data=rgb.tobytes())
        msg.header.frame_id = info.header.frame_id
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + count, 0
        info.header.stamp = msg.header.stamp
        pub_info.publish(info)
        pub.publish(msg)
        return (msg.header.stamp.sec, msg.header.stamp.nanosec)

    def wait_for(stamp: tuple[int, int], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rclpy.spin_once(client, timeout_sec=0.02)
            if stamp in answers:
                return True
        return False

    count = 0
    try:
        # startup: the first frame until answered (it may reach the node before it listens)
        end = time.monotonic() + STARTUP_S
        while True:
            count += 1
            if wait_for(send(frames[0], count), 2.0):
                break
            if time.monotonic() > end or not node.alive():
                raise RuntimeError(f"the node did not answer:\n{node.output()[-3000:]}")
        end = time.monotonic() + SETTLE_S  # its JointStates come after its TwoHandMesh
        while time.monotonic() < end:
            rclpy.spin_once(client, timeout_sec=0.02)
        answers.clear()
        joint_msgs.clear()
        sent = 0
        valid_hands = 0
        for rgb in frames:
            for _ in range(args.frames):
                count += 1
                stamp = send(rgb, count)
                sent += 1
                if wait_for(stamp, ANSWER_S):
                    m = answers[stamp]
                    valid_hands += int(m.left.valid) + int(m.right.valid)
        t_last = time.monotonic()
        end = t_last + SETTLE_S
        while time.monotonic() < end:
            rclpy.spin_once(client, timeout_sec=0.02)
        end = time.monotonic() + DIAG_WAIT_S
        while time.monotonic() < end and not any(t > t_last for t, _ in diag):
            rclpy.spin_once(client, timeout_sec=0.05)
        after = [v for t, v in diag if t > t_last]
        if not after:
            raise RuntimeError("no /diagnostics after the last frame")
        table = parse_stage_table(after[-1])
    finally:
        status = node.stop()
        client.destroy_node()
        rclpy.try_shutdown()
    answered = len(answers)
    per_frame_hands = len(joint_msgs) / max(answered, 1)
    retarget_ms = table.get("retarget", {}).get("median", float("nan"))
    total_ms = table.get("total", {}).get("median", float("nan"))
    return {
        "photos": [p.name for p in photos], "frames_per_photo": args.frames,
        "sent": sent, "answered": answered, "valid_hands": valid_hands,
        "joint_states": len(joint_msgs), "retargeted_hands_per_frame": per_frame_hands,
        "stages_ms": table, "retarget_ms_per_hand": retarget_ms / max(per_frame_hands, 1e-9),
        "retarget_share_of_frame": retarget_ms / total_ms,
        "robot": args.robot, "joint_tf": args.joint_tf, "node_exit_status": status,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3], "machine": machine_info(),
    }


def main() -> int:
    """Run, print the figures, write --json."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=25, help="frames per photo")
    ap.add_argument("--images", default=str(ROOT / "samples"))
    ap.add_argument("--robot", default="allegro", help="the node's retarget value")
    ap.add_argument("--joint-tf", default="fingertips", help="the node's publish_joint_tf")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    out = run(args)
    out["loadavg_before"] = load_before
    print(f"hands_node, landmark backend, retarget {out['robot']}, publish_joint_tf "
          f"{out['joint_tf']}: {out['answered']}/{out['sent']} frames answered, "
          f"{out['joint_states']} JointStates ({out['retargeted_hands_per_frame']:.2f} hands "
          f"retargeted per frame); stage table of the node (ms over its last frames):")
    print(f"  {'stage':<14}{'median':>8}{'mean':>8}{'p90':>8}{'n':>6}")
    for name in STAGES_SHOWN:
        s = out["stages_ms"].get(name)
        if s:
            print(f"  {name:<14}{s['median']:8.2f}{s['mean']:8.2f}{s['p90']:8.2f}"
                  f"{int(s['n']):6d}")
    print(f"retargeting per hand per frame: {out['retarget_ms_per_hand']:.2f} ms (median stage "
          f"/ hands per frame); {100 * out['retarget_share_of_frame']:.1f} % of the node's "
          f"frame time (median total {out['stages_ms'].get('total', {}).get('median', 0):.1f}"
          f" ms); load average before {' '.join(load_before)}, after "
          f"{' '.join(out['loadavg'])}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0 if out["node_exit_status"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
