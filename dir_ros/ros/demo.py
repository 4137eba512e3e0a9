"""End-to-end demo: run hands_node over real ROS 2 DDS on folders of photos, draw overlays.

What it does (what `make demo` runs):
  1. starts the node as a user would: `ros2 launch dir_ros hands.launch.py` where the ROS 2
     launch tools are installed, else its installed executable (`lib/dir_ros/hands_node`),
     in a subprocess, in its own namespace (default /demo), with the params of
     config/hands.yaml (backend auto: the landmark backend until a DIR checkpoint is given)
     plus the demo's overrides (the `overrides` of run(): no smoothing across independent photos,
     reliable QoS for its reliable publisher, raw transport, TF frames under demo/, markers
     and TF on; the network config; with a randomly initialised network min_confidence 0);
  2. for each jpg/png in the --images folders (default: the committed samples/): calls the
     node's `hands_node/reset` service (each photo is independent: no tracking, warm start
     or smoothing carried over from the photo before, so its hands equal `dir-ros infer`'s),
     publishes a sensor_msgs/CameraInfo (pinhole with a default horizontal field of view,
     principal point at the image centre: the photos have no calibration) and the image as
     sensor_msgs/Image bgr8;
  3. waits for the node's TwoHandMesh (matched by header stamp), MarkerArray and /tf answers;
  4. writes <out>/<name>_overlay.png (projected meshes, keypoints, skeleton, one text line
     per hand) and <out>/summary.json, and prints a latency table.

This module is the runner (inputs, the run loop, overlays, summary and table); the node
subprocess is in demo_node.py, the ROS 2 client in demo_client.py.

Usage: tools/ros_env.sh python -m dir_ros.ros.demo [--images samples] [--images DIR ...]
       [--out out/demo]
Exit status: 0 ok; 2 bad input (images folder missing / empty, config not found);
3 the node failed to start or did not answer in time (its log tail is printed); 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from dir_ros.common.geometry import DEFAULT_HFOV_DEG, pinhole_K
from dir_ros.ros.demo_client import DemoClient, Stamp
from dir_ros.ros.demo_node import LOG_TAIL_LINES, TF_PREFIX, NodeProcess, node_params

# ---- defaults (every one documented; CLI flags override the tunable ones)
# Assumed horizontal field of view of the uncalibrated sample images (geometry.py).
DEFAULT_FOV_DEG = DEFAULT_HFOV_DEG
DEFAULT_MODEL_CONFIG = "config/model/dir_release.yaml"  # the release's architecture
DEFAULT_PARAMS = "config/hands.yaml"  # the node's documented parameter file
DEFAULT_NAMESPACE = "/demo"  # the node's relative topics live under it (no interference)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Model build on a CPU (ResNet-50 release config, hand model) plus DDS discovery.
DEFAULT_STARTUP_TIMEOUT_S = 180.0
# Per image: from the first publish to the TwoHandMesh answer (CPU inference of ~1 s plus
# a slow first call while torch warms up).
DEFAULT_ANSWER_TIMEOUT_S = 120.0
# Re-publish an unanswered image after this long, or RESEND_LATENCY_FACTOR x the slowest
# answer so far when that is longer (a frame lost in transport must not stall the demo).
RESEND_MIN_S = 10.0
RESEND_LATENCY_FACTOR = 3.0
# After the TwoHandMesh, how long to keep waiting for the markers and TF of the same frame.
SIDE_OUTPUT_WAIT_S = 5.0
# Overlay text (the hands themselves are drawn by dir_ros.output.overlay).
RANDOM_WEIGHTS_WARNING = ("WARNING: no trained weights are configured: the DIR network is "
                          "RANDOMLY INITIALISED, so the hand geometry below is NOT meaningful "
                          "yet (it only shows the pipeline working end to end).")
EXIT_OK, EXIT_INPUT, EXIT_NODE, EXIT_INTERRUPTED = 0, 2, 3, 130
DEFAULT_IMAGES = "samples"  # the committed sample photos (samples/ATTRIBUTION.md)


class DemoError(Exception):
    """A failure with a one-line message and an exit status (plus optional detail lines)."""

    def __init__(self, message: str, status: int, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


# ---- inputs ------------------------------------------------------------------------------

def list_images(folder: Path) -> list[Path]:
    """Sorted jpg/png files of `folder`; DemoError when it is missing or has none."""
    if not folder.is_dir():
        raise DemoError(f"images folder '{folder}' does not exist", EXIT_INPUT)
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DemoError(f"images folder '{folder}' has no {'/'.join(IMAGE_SUFFIXES)} files",
                        EXIT_INPUT)
    return files


def resolve_file(value: str, what: str) -> Path:
    """Absolute path of a package file (cwd, source root or share/dir_ros); DemoError if none."""
    from dir_ros.common.resources import resolve_resource

    p = resolve_resource(value)
    if not p.is_file():
        raise DemoError(f"{what} '{value}' not found", EXIT_INPUT)
    return p.resolve()


# ---- command line --------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The demo's command line (see module docstring)."""
    ap = argparse.ArgumentParser(
        prog="python -m dir_ros.ros.demo",
        description="Run hands_node over ROS 2 on a folder of images; write overlays and "
                    "summary.json.")
    ap.add_argument("--images", type=Path, action="append", default=None,
                    help=f"folder of .jpg/.png photos; repeat for several (default "
                         f"{DEFAULT_IMAGES}/: the committed sample photos)")
    ap.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    ap.add_argument("--model-config", default=DEFAULT_MODEL_CONFIG,
                    help=f"network config YAML (default {DEFAULT_MODEL_CONFIG}; "
                         "config/model/dir_light.yaml is the small CPU one)")
    ap.add_argument("--backend", default=None, choices=("auto", "dir", "landmarks"),
                    help="reconstruction backend; default: the `backend` of --params (auto: "
                         "the landmark backend until `weights` names a DIR checkpoint)")
    ap.add_argument("--weights", default=None,
                    help="trained checkpoint; default: the `weights` of --params")
    ap.add_argument("--params", default=DEFAULT_PARAMS,
                    help=f"node parameter file (default {DEFAULT_PARAMS})")
    ap.add_argument("--device", default=None, help="torch device for the node: auto|cpu|cuda "
                    "(default: the `device` of --params)")
    ap.add_argument("--fov-deg", type=float, default=DEFAULT_FOV_DEG,
                    help=f"assumed horizontal field of view of the images, degrees "
                         f"(default {DEFAULT_FOV_DEG:g}); fx = fy, principal point at the centre")
    ap.add_argument("--namespace", default=DEFAULT_NAMESPACE,
                    help=f"ROS namespace of the node and the demo (default {DEFAULT_NAMESPACE})")
    ap.add_argument("--startup-timeout", type=float, default=DEFAULT_STARTUP_TIMEOUT_S,
                    help="seconds for the node to come up and connect")
    ap.add_argument("--timeout", type=float, default=DEFAULT_ANSWER_TIMEOUT_S,
                    help="seconds to wait for the node's answer to one image")
    ap.add_argument("--no-launch", dest="launch", action="store_false",
                    help="start the hands_node executable itself, not through `ros2 launch` "
                         "(used when the ROS 2 launch tools are not installed)")
    args = ap.parse_args(argv)
    if not args.images:
        from dir_ros.common.resources import resolve_resource

        args.images = [resolve_resource(DEFAULT_IMAGES)]
    if not 0.0 < args.fov_deg < 180.0:
        ap.error(f"--fov-deg must be in (0, 180), got {args.fov_deg}")
    if not args.namespace.startswith("/"):
        args.namespace = "/" + args.namespace
    return args


# ---- the run ---------------------------------------------------------------------------------

def wait_connected(client: DemoClient, node: NodeProcess, timeout_s: float) -> float:
    """Spin until the node is up and matched; seconds it took. DemoError if it died / timed out."""
    from tqdm import tqdm

    t0 = time.monotonic()
    # elapsed-time ticker on a terminal only (disable=None), so logs stay readable
    with tqdm(total=None, desc="starting hands_node", unit="s", leave=False, disable=None,
              bar_format="{desc}: {elapsed}") as bar:
        while not client.connected():
            if not node.alive():
                raise DemoError(f"hands_node exited with status {node.proc.returncode} "
                                f"before it was ready", EXIT_NODE, node.tail())
            if time.monotonic() - t0 > timeout_s:
                raise DemoError(f"hands_node did not come up within {timeout_s:g} s "
                                f"(no matched image subscription / hands publisher)",
                                EXIT_NODE, node.tail())
            client.spin()
            bar.update(0)
    return time.monotonic() - t0


def process_image(client: DemoClient, node: NodeProcess, bgr: np.ndarray, K: np.ndarray,
                  stamp: Stamp, timeout_s: float, resend_s: float
                  ) -> tuple[Any, float, int, Optional[float], Optional[float], list[str]]:
    """Publish one frame and wait for its answers: (TwoHandMesh, hands latency s, sends,
    markers latency s | None, tf latency s | None, tf child frames)."""
    t_first = client.publish(bgr, K, stamp)  # latencies count from the first Image publish
    sends, t_last = 1, t_first
    answers = client.answers
    while stamp not in answers.hands:
        now = time.monotonic()
        if not node.alive():
            raise DemoError(f"hands_node exited with status {node.proc.returncode} while "
                            f"processing", EXIT_NODE, node.tail())
        if now - t_first > timeout_s:
            raise DemoError(f"hands_node did not answer within {timeout_s:g} s "
                            f"({sends} send(s))", EXIT_NODE, node.tail())
        if now - t_last > resend_s:
            t_last = client.publish(bgr, K, stamp)  # same stamp: its first answer counts
            sends += 1
        client.spin()
    msg, t_hands = answers.hands[stamp]
    want_tf = msg.left.valid or msg.right.valid
    end = time.monotonic() + SIDE_OUTPUT_WAIT_S
    while time.monotonic() < end and not (
            stamp in answers.markers and (stamp in answers.tf or not want_tf)):
        client.spin()
    lat_m = answers.markers[stamp][1] - t_first if stamp in answers.markers else None
    lat_tf = answers.tf[stamp][1] - t_first if stamp in answers.tf else None
    frames = sorted(set(answers.tf[stamp][0])) if stamp in answers.tf else []
    return msg, t_hands - t_first, sends, lat_m, lat_tf, frames


def _ms(seconds: Optional[float]) -> Optional[float]:
    """Seconds -> milliseconds rounded to 0.1 (None stays None)."""
    return None if seconds is None else round(1e3 * seconds, 1)


def print_table(rows: list[dict[str, Any]]) -> None:
    """Short stdout table: image, size, latencies, per-hand confidence and wrist depth."""
    head = (f"{'image':<28} {'size':>10} {'hands ms':>9} {'markers':>8} {'tf ms':>8} "
            f"{'L conf':>6} {'R conf':>6} {'L z m':>7} {'R z m':>7}")
    print(head)
    print("-" * len(head))

    def num(v: Optional[float], fmt: str) -> str:
        """Formatted number or '-' when absent."""
        return "-" if v is None else format(v, fmt)

    for r in rows:
        hl, hr = r["hands"]["left"], r["hands"]["right"]
        zl = hl["wrist_position"][2] if hl["valid"] and hl["metric"] else None
        zr = hr["wrist_position"][2] if hr["valid"] and hr["metric"] else None
        print(f"{r['image'][:28]:<28} {r['width']:>5}x{r['height']:<4} "
              f"{num(r['latency_ms'], '.1f'):>9} {num(r['markers_latency_ms'], '.1f'):>8} "
              f"{num(r['tf_latency_ms'], '.1f'):>8} {num(hl['confidence'], '.2f'):>6} "
              f"{num(hr['confidence'], '.2f'):>6} {num(zl, '.3f'):>7} {num(zr, '.3f'):>7}")
    lat = [r["latency_ms"] for r in rows]
    print(f"publish -> TwoHandMesh latency: median {np.median(lat):.1f} ms, "
          f"min {min(lat):.1f} ms, max {max(lat):.1f} ms over {len(lat)} image(s) "
          f"(the first includes warm-up)")


def run(args: argparse.Namespace) -> int:
    """The demo proper (see module docstring); raises DemoError on failure."""
    import cv2
    import yaml
    from tqdm import tqdm

    from dir_ros.output.hands_msg import fields_to_hand
    from dir_ros.output.overlay import draw_overlay
    from dir_ros.config import choose_backend, is_unset

    images = [path for folder in args.images for path in list_images(folder)]
    params_file = resolve_file(args.params, "node parameter file")
    model_config = resolve_file(args.model_config, "model config")
    overrides: dict[str, Any] = {
        "model_config": str(model_config),
        "smoothing": "none",  # the sample images are independent photos, not a video
        "image_reliability": "reliable",  # our publisher is reliable: no lost 3 MB frames
        "image_transport": "raw",
        "frame_prefix": TF_PREFIX,
        "publish_markers": True,
        "publish_tf": True,
    }
    if args.weights is not None:
        overrides["weights"] = (str(resolve_file(args.weights, "weights file"))
                                if not is_unset(args.weights) else "")
    if args.device is not None:
        overrides["device"] = args.device
    if args.backend is not None:
        overrides["backend"] = args.backend
    params = node_params(params_file, overrides)
    weights = str(params.get("weights", "") or "")
    if not is_unset(weights) and not os.path.isabs(weights):
        params["weights"] = str(resolve_file(weights, "weights file"))
    random_weights = is_unset(weights) and \
        choose_backend(str(params.get("backend", "auto")), weights) == "dir"
    if random_weights:
        params["min_confidence"] = 0.0  # so both hands come out whatever the (random) scores

    try:
        import rclpy  # noqa: F401
        from dir_ros.msg import TwoHandMesh  # noqa: F401
        from tf2_msgs.msg import TFMessage  # noqa: F401
    except ImportError as e:
        raise DemoError(f"ROS 2 environment not available ({e}); run through "
                        f"tools/ros_env.sh after `make setup`", EXIT_INPUT) from e

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    params_yaml = out / "node_params.yaml"
    # '/**' applies to the node whatever its namespace (a plain 'hands_node' key would not
    # match /demo/hands_node).
    params_yaml.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}},
                                          sort_keys=False), encoding="utf-8")
    backend = choose_backend(str(params.get("backend", "auto")), weights)
    what = (f"backend dir: model {model_config.name}, weights {params.get('weights') or '(none)'}, "
            f"device {params.get('device', 'auto')}, runtime {params.get('runtime', 'auto')}"
            if backend == "dir" else
            "backend landmarks (MediaPipe hand landmarks + hand-model fit; set weights for DIR)")
    print(f"demo: {len(images)} image(s) from {', '.join(map(str, args.images))}; {what}; "
          f"fov {args.fov_deg:g} deg; namespace {args.namespace}; output {out}", flush=True)
    if random_weights:
        print(RANDOM_WEIGHTS_WARNING, flush=True)

    node = NodeProcess(params_yaml, args.namespace, out / "node.log", use_launch=args.launch)
    client: Optional[DemoClient] = None
    try:
        client = DemoClient(args.namespace)
        startup_s = wait_connected(client, node, args.startup_timeout)
        how = "ros2 launch dir_ros hands.launch.py" if node.launched else "hands_node"
        print(f"demo: {how} ready after {startup_s:.1f} s (pid {node.proc.pid}, "
              f"log {node.log_path})", flush=True)
        rows: list[dict[str, Any]] = []
        stamp: Optional[Stamp] = None
        slowest = 0.0
        for path in tqdm(images, desc="images", unit="img"):
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise DemoError(f"cannot read image '{path}'", EXIT_INPUT)
            h, w = bgr.shape[:2]
            K = pinhole_K(w, h, args.fov_deg)
            reset_problem = client.reset()  # an independent photo: nothing carried over
            if reset_problem is not None:
                raise DemoError(f"cannot reset the node before '{path.name}': {reset_problem}",
                                EXIT_NODE, node.tail())
            stamp = client.new_stamp(stamp)
            resend_s = max(RESEND_MIN_S, RESEND_LATENCY_FACTOR * slowest)
            msg, lat, sends, lat_m, lat_tf, frames = process_image(
                client, node, bgr, K, stamp, args.timeout, resend_s)
            slowest = max(slowest, lat)
            hands = {"left": fields_to_hand(msg.left), "right": fields_to_hand(msg.right)}
            overlay_path = out / f"{path.stem}_overlay.png"
            if not cv2.imwrite(str(overlay_path), draw_overlay(bgr, hands, K, random_weights=random_weights)):
                raise DemoError(f"cannot write '{overlay_path}'", EXIT_INPUT)
            rows.append({
                "image": path.name,
                "width": w, "height": h,
                "stamp": {"sec": stamp[0], "nanosec": stamp[1]},
                "frame_id": msg.header.frame_id,
                "latency_ms": _ms(lat),  # first publish -> TwoHandMesh received
                "markers_latency_ms": _ms(lat_m),
                "tf_latency_ms": _ms(lat_tf),
                "sends": sends,
                "tf_frames": frames,
                "markers": len(client.answers.markers[stamp][0].markers)
                if stamp in client.answers.markers else 0,
                "K": K.tolist(),
                "overlay": overlay_path.name,
                "hands": {side: {"valid": hand.valid, "confidence": hand.confidence,
                                 "metric": hand.metric,
                                 "wrist_position": hand.wrist_position.tolist(),  # m, optical
                                 "wrist_quat_xyzw": hand.wrist_quat.tolist(),
                                 "num_vertices": len(hand.vertices)}
                          for side, hand in hands.items()},
            })
    finally:
        if client is not None:
            client.close()
        rc = node.stop()
    summary = {
        "random_weights": random_weights,
        "backend": backend,
        "model_config": str(model_config),
        "weights": params.get("weights") or None,
        "fov_deg": args.fov_deg,
        "namespace": args.namespace,
        "node_startup_s": round(startup_s, 2),
        "node_exit_status": rc,
        "images": rows,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print_table(rows)
    print(f"demo: wrote {len(rows)} overlay(s) and {out / 'summary.json'}")
    for r in rows:
        missing = [n for n, v in (("markers", r["markers_latency_ms"]),
                                  ("tf", r["tf_latency_ms"])) if v is None]
        if missing:
            print(f"demo: note: no {' / '.join(missing)} received for {r['image']}")
    if random_weights:
        print(RANDOM_WEIGHTS_WARNING)
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit status (one-line error on stderr on failure)."""
    args = parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        """SIGTERM: exit through the normal cleanup path."""
        print("demo: terminated (SIGTERM); stopping hands_node", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)  # unwinds through run()'s cleanup (node stopped)

    signal.signal(signal.SIGTERM, on_term)
    try:
        return run(args)
    except DemoError as e:
        print(f"demo: error: {e}", file=sys.stderr, flush=True)
        if e.detail:
            print(f"--- hands_node output (last {LOG_TAIL_LINES} lines) ---\n{e.detail}",
                  file=sys.stderr, flush=True)
        return e.status
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
