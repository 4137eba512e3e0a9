#!/usr/bin/env python3
"""What hands_node adds over predict(): node end-to-end against HandsPredictor.predict() on the
same image in the same run, with the node's per-stage timing table (issue 10, Speed item 3:
target node / predict <= 1.15x).

One run, one 640x480 bgr8 image (random pixels, fixed seed) and its camera_info:
  predict   HandsPredictor.predict(rgb, K) in this process (dir_ros.predictor.build_predictor,
            light config, random weights, backend dir, the crop the node is given), on the
            image decoded from the very message the node receives;
  node      hands_node in a subprocess (benchmark_node.py's NodeProcess: own ROS domain, this
            checkout's code), reliable camera publisher and subscription, node defaults
            otherwise (markers, TF, One-Euro smoothing on; min_confidence 0 so both hands are
            valid and every output is built): publish the Image -> its TwoHandMesh received
            here, one frame at a time (the next frame after the answer: no queueing).
The two alternate in --rounds blocks of --frames frames after a warm-up, so a change of load
on the machine hits both alike. Each image is stamped with the wall clock, so the node can
time the transport (header stamp -> its image callback). After the last node block the
node's /diagnostics gives its per-stage table (median / mean / p90 over its window).
Prints the table and the ratio node / predict (medians); --json writes everything.

The camera's DDS participant decides how a large frame travels. Fast DDS's default
shared-memory segment (512 KB) is smaller than a 640x480 bgr8 frame (0.9 MB): the frame is
then fragmented and waits for a repair round (a plain rclpy publisher / subscriber pair
shows the same: 12.7 ms median; 7.7 ms when the subscriber answers heartbeats at once, as
hands_node does with its config/fastdds_node.xml). So --camera runs:
  frame_sized      the camera (this process) with config/fastdds_camera.xml, its segment
                   sized to SHM_FRAMES frames (what a camera driver for such frames should use);
  fastdds_default  the camera with Fast DDS's defaults;
  both (default)   each of the two in a child process of its own (a process reads its Fast
                   DDS profile once), one after the other; the JSON holds both.
The node runs with the environment's Fast DDS settings: its own config/fastdds_node.xml
unless the environment names a profile file (dir_ros.ros.dds_profile).

  tools/ros_env.sh python benchmarks/benchmark_node_overhead.py [--frames 40] [--rounds 3]
      [--width 640 --height 480] [--crop full] [--runtime torch]
      [--camera both|frame_sized|fastdds_default] [--use-depth-node]
      [--json docs/figures/benchmark_node_overhead.json]

--use-depth-node also times, in the same run, a node with use_depth true and no depth camera:
its colour frames must not wait for depth (issue 20), so its ratio must match the plain node's.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

# benchmark_node beside this file; this checkout's dir_ros (as the node runs it) before the
# installed copy, so that both sides run the same code
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import benchmark_node as bench  # noqa: E402

from dir_ros.common.machine import cpu_name, write_figures  # noqa: E402
from dir_ros.predictor import RUNTIMES  # noqa: E402
from dir_ros.ros.dds_profile import PROFILE_ENVS  # noqa: E402

TARGET_RATIO = 1.15  # issue 10, Speed item 3: node end-to-end <= 1.15x predict()
DEFAULT_FRAMES = 40  # per block
DEFAULT_ROUNDS = 3  # predict block + node block, alternating
WARMUP_FRAMES = 10  # per side, before any timing (allocator, caches, DDS discovery settle)
REPLY_DEADLINE_S = 5.0  # a frame without its TwoHandMesh by then counts as lost
# The node publishes /diagnostics every second: wait this long for one covering the last frame.
DIAG_WAIT_S = 3.0
# Pause before each frame on both sides (ms): the node has finished the previous frame's
# markers and TF (published after TwoHandMesh) before the next image arrives, so frames do
# not overlap; predict() gets the same pause so that both start from the same idle state.
DEFAULT_GAP_MS = 20.0
P90 = 90  # percentile reported beside median and mean
# /diagnostics keys of the node's stage table: `stage_<name>_ms` = "median=.. mean=.. p90=..
# n=.." (dir_ros.ros.stage_timing); older nodes only had `<step>_ms_median` (median only).
# The camera's Fast DDS settings (see module docstring).
CAMERAS = ("frame_sized", "fastdds_default")
FASTDDS_PROFILES_ENV = PROFILE_ENVS[0]  # Fast DDS 2.x (ROS 2 Jazzy)
SHM_FRAMES = 4  # frames the frame_sized camera's shared-memory segment holds
CAMERA_PROFILE = "config/fastdds_camera.xml"  # the example profile for camera processes
FASTDDS_SEGMENT_BYTES = 512 * 1024  # Fast DDS 2.x default shared-memory segment size
STAGE_KEY = re.compile(r"stage_(?P<name>.+)_ms")
OLD_STEP_KEY = re.compile(r"(?P<name>.+)_ms_median")


def stats(values_ms: list[float]) -> dict[str, float]:
    """median / mean / p90 / count of a list of durations (ms)."""
    a = np.asarray(values_ms, np.float64)
    if a.size == 0:
        return {"median": float("nan"), "mean": float("nan"), "p90": float("nan"), "n": 0}
    return {"median": float(np.median(a)), "mean": float(a.mean()),
            "p90": float(np.percentile(a, P90)), "n": int(a.size)}


def parse_stage_table(values: dict[str, str]) -> dict[str, dict[str, float]]:
    """The node's per-stage timings from its /diagnostics values: {stage: {median, mean, p90,
    n}} (new `stage_*` keys), else the medians of the older `*_ms_median` keys."""
    table: dict[str, dict[str, float]] = {}
    for key, text in values.items():
        m = STAGE_KEY.fullmatch(key)
        if m:
            fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
            table[m["name"]] = {k: float(v) for k, v in fields.items()}
    if table:
        return table
    for key, text in values.items():
        m = OLD_STEP_KEY.fullmatch(key)
        if m:
            try:
                table[m["name"]] = {"median": float(text)}
            except ValueError:
                pass
    return table


def wall_stamp() -> bench.Stamp:
    """The wall clock (the ROS system clock) as a header stamp (sec, nanosec)."""
    ns = time.time_ns()
    return ns // 1_000_000_000, ns % 1_000_000_000


def node_frame(client: bench.BenchClient, frame: bench.Frame, gap_s: float) -> Optional[float]:
    """After gap_s, publish one frame stamped now; ms until its TwoHandMesh came back (None:
    no reply). Waits on the executor (no polling), so the client takes no CPU from the node."""
    client.spin(gap_s)
    stamp = wall_stamp()
    sent = time.monotonic()
    client.send(frame, stamp)
    if not client.wait_answer(stamp, REPLY_DEADLINE_S):
        return None
    return 1e3 * (client.answers.pop(stamp) - sent)


def predict_frame(pred: Any, rgb: np.ndarray, K: np.ndarray, gap_s: float) -> float:
    """After gap_s, ms of one predict() call."""
    time.sleep(gap_s)
    t = time.perf_counter()
    pred.predict(rgb, K)
    return 1e3 * (time.perf_counter() - t)


def print_report(r: dict[str, Any]) -> None:
    """The figures as text."""
    m, p, n = r["machine"], r["predict_ms"], r["node_ms"]
    print(f"camera {r['camera']}; machine: {m['cpu']}, {m['cores']} cores, load average "
          f"{m['load_average_start']} -> {m['load_average_end']}; {r['width']}x{r['height']} "
          f"bgr8, crop {r['crop']}, runtime {r['runtime']}, {r['rounds']} rounds of "
          f"{r['frames']} frames per side")
    print(f"{'':24} {'median':>8} {'mean':>8} {'p90':>8} {'n':>5}")
    for name, s in (("predict() in-process", p), ("node end-to-end", n)):
        print(f"{name:24} {s['median']:8.2f} {s['mean']:8.2f} {s['p90']:8.2f} {s['n']:5d}")
    print(f"ratio node / predict (medians): {r['ratio']:.3f}x (target <= {TARGET_RATIO}x: "
          f"{'met' if r['meets_target'] else 'NOT met'}); node overhead "
          f"{n['median'] - p['median']:.2f} ms; {r['no_reply']} frame(s) without reply")
    d = r.get("use_depth_without_depth_camera")
    if d:
        print(f"node with use_depth and no depth camera (same run, own predict blocks): "
              f"{d['node_ms']['median']:.2f} / {d['predict_ms']['median']:.2f} ms = "
              f"{d['ratio']:.3f}x against {r['ratio']:.3f}x without use_depth; queue stage "
              f"median {d['stages'].get('queue', {}).get('median', float('nan')):.2f} ms "
              f"against {r['stages'].get('queue', {}).get('median', float('nan')):.2f} ms")
    if r["stages"]:
        print("node stages from /diagnostics (ms over its last frames):")
        print(f"  {'stage':22} {'median':>8} {'mean':>8} {'p90':>8}")
        for name, s in r["stages"].items():
            print(f"  {name:22} {s.get('median', float('nan')):8.2f} "
                  f"{s.get('mean', float('nan')):8.2f} {s.get('p90', float('nan')):8.2f}")


def camera_profile(segment_bytes: int) -> str:
    """The package's example camera profile (config/fastdds_camera.xml: shared memory plus
    UDPv4) with a shared-memory segment of segment_bytes."""
    text = (bench.ROOT / CAMERA_PROFILE).read_text()
    text, n = re.subn(r"<segment_size>\d+</segment_size>",
                      f"<segment_size>{int(segment_bytes)}</segment_size>", text)
    if n != 1:
        raise RuntimeError(f"{CAMERA_PROFILE}: expected one <segment_size>, found {n}")
    return text


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One run with one camera setting (args.camera): both sides, the node's stage table."""
    from dir_ros.image.decode import decode_image_msg
    from dir_ros.predictor import build_predictor

    load_start = [round(v, 2) for v in os.getloadavg()]
    frame = bench.make_frame(args.width, args.height)
    frame_bytes = len(frame.image.data)
    node_env = {FASTDDS_PROFILES_ENV: os.environ.get(FASTDDS_PROFILES_ENV)}  # as it was
    segment = None
    if args.camera == "frame_sized":  # for this process (the camera) only, before rclpy.init
        segment = max(FASTDDS_SEGMENT_BYTES, SHM_FRAMES * frame_bytes)
        profile = Path(tempfile.mkdtemp(prefix="benchmark_camera_")) / "fastdds.xml"
        profile.write_text(camera_profile(segment))
        os.environ[FASTDDS_PROFILES_ENV] = str(profile)
    params = bench.node_parameters("light", reliability="reliable", device=args.device,
                                   markers=True, crop=args.crop, model_config=args.model_config,
                                   runtime=args.runtime)
    # the predictor of the node, built the way the node builds it (random weights: warns)
    pred = build_predictor(bench.predictor_config(args.model_config, args.device, args.crop,
                                                  args.runtime))
    rgb = decode_image_msg(frame.image)
    K = np.asarray(frame.info.k, np.float64).reshape(3, 3)
    predict_ms, node_ms, no_reply, diag, status = time_node(args, params, frame, node_env,
                                                            pred, rgb, K)
    p, n = stats(predict_ms), stats(node_ms)
    ratio = n["median"] / p["median"]
    use_depth = None
    if args.use_depth_node:  # same frames, same run: the pairing must not delay the image
        d_predict, d_node, d_no_reply, d_diag, d_status = time_node(
            args, {**params, "use_depth": "true"}, frame, node_env, pred, rgb, K)
        dp, dn = stats(d_predict), stats(d_node)
        use_depth = {"predict_ms": dp, "node_ms": dn, "ratio": dn["median"] / dp["median"],
                     "no_reply": d_no_reply, "stages": parse_stage_table(d_diag),
                     "node_exit_status": d_status}
    return {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "load_average_start": load_start,
                    "load_average_end": [round(v, 2) for v in os.getloadavg()]},
        "camera": args.camera, "camera_shm_segment_bytes": segment,
        "width": args.width, "height": args.height, "encoding": "bgr8",
        "frame_bytes": frame_bytes, "crop": args.crop, "runtime": args.runtime,
        "model_config": Path(args.model_config).name, "frames": args.frames,
        "rounds": args.rounds, "warmup_frames": WARMUP_FRAMES, "gap_ms": args.gap_ms,
        "node_parameters": params,
        "predict_ms": p, "node_ms": n, "ratio": ratio, "target_ratio": TARGET_RATIO,
        "meets_target": bool(ratio <= TARGET_RATIO), "no_reply": no_reply,
        "stages": parse_stage_table(diag), "diagnostics": diag, "node_exit_status": status,
        "use_depth_without_depth_camera": use_depth}


def time_node(args: argparse.Namespace, params: dict[str, Any], frame: bench.Frame,
              node_env: dict[str, Optional[str]], pred: Any, rgb: np.ndarray, K: np.ndarray
              ) -> tuple[list[float], list[float], int, dict[str, str], Optional[int]]:
    """Start a node with `params`, warm both sides, then --rounds blocks of predict() and of
    the node alternately: (predict ms, node ms, frames without reply, its last
    /diagnostics values, its exit status)."""
    run = bench.start_and_wait("light", params, frame, "reliable", node_env=node_env)
    predict_ms: list[float] = []
    node_ms: list[float] = []
    no_reply = 0
    try:
        if not run.matched:
            raise RuntimeError("the reliable camera publisher never matched the node")
        gap = args.gap_ms / 1e3
        for _ in range(WARMUP_FRAMES):
            predict_frame(pred, rgb, K, gap)
            node_frame(run.client, frame, gap)
        for _ in range(args.rounds):
            predict_ms += [predict_frame(pred, rgb, K, gap) for _ in range(args.frames)]
            for _ in range(args.frames):
                ms = node_frame(run.client, frame, gap)
                if ms is None:
                    no_reply += 1
                else:
                    node_ms.append(ms)
            if not run.node.alive():
                raise RuntimeError(f"node exited:\n{run.node.output()}")
        diag = run.client.diagnostics_after(time.monotonic(), DIAG_WAIT_S)
    finally:
        status = run.stop()
    return predict_ms, node_ms, no_reply, diag, status


def measure_in_child(args: argparse.Namespace, camera: str) -> dict[str, Any]:
    """measure() with this camera setting in a child process (its own Fast DDS setup)."""
    with tempfile.TemporaryDirectory(prefix="benchmark_node_overhead_") as tmp:
        out = Path(tmp) / f"{camera}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--camera", camera,
               "--frames", str(args.frames), "--rounds", str(args.rounds),
               "--width", str(args.width), "--height", str(args.height),
               "--model-config", args.model_config, "--device", args.device,
               "--crop", args.crop, "--runtime", args.runtime, "--gap-ms", str(args.gap_ms),
               "--json", str(out)] + (["--use-depth-node"] if args.use_depth_node else [])
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


def main() -> int:
    """Run both sides (per camera setting), print the figures, write --json."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per block")
    ap.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--model-config", default=str(bench.LIGHT_CONFIG))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--crop", default="full", help="crop mode of the node and of predict()")
    ap.add_argument("--runtime", choices=RUNTIMES, default=bench.BENCH_RUNTIME,
                    help="the network's runtime, both sides (the node's default is auto)")
    ap.add_argument("--gap-ms", type=float, default=DEFAULT_GAP_MS,
                    help="pause before each frame, both sides (ms)")
    ap.add_argument("--camera", choices=("both", *CAMERAS), default="both",
                    help="Fast DDS setting of the camera publisher (see above)")
    ap.add_argument("--use-depth-node", action="store_true",
                    help="also time a node with use_depth true and no depth camera (its "
                         "colour frames must not wait for depth)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()
    if args.frames < 1 or args.rounds < 1:
        ap.error("--frames and --rounds must be >= 1")
    try:
        if args.camera != "both":
            report = measure(args)
            print_report(report)
        else:
            runs = {camera: measure_in_child(args, camera) for camera in CAMERAS}
            report = {"machine": runs[CAMERAS[0]]["machine"], "target_ratio": TARGET_RATIO,
                      "runs": runs}
            print("summary (node / predict(), medians):")
            for camera, r in runs.items():
                transport = r["stages"].get("transport", {}).get("median", float("nan"))
                verdict = "met" if r["meets_target"] else "NOT met"
                print(f"  camera {camera:16} {r['node_ms']['median']:7.2f} / "
                      f"{r['predict_ms']['median']:6.2f} ms = {r['ratio']:.3f}x (target <= "
                      f"{TARGET_RATIO}x: {verdict}); transport median {transport:.2f} ms")
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"benchmark_node_overhead: {e}", file=sys.stderr)
        return 1
    if args.json:
        write_figures(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
