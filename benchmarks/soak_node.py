#!/usr/bin/env python3
"""Soak hands_node: N frames over DDS, the node's memory (RSS) and where the frames went.

Starts the node as benchmark_node.py does (its own ROS domain, this checkout's code), warms
it up, then publishes --frames bgr8 frames at --rate Hz (0 = one at a time, each after the
previous answer, so every frame is processed) and samples the node's VmRSS from
/proc/<pid>/status. Prints RSS at start (after warm-up), end (after the node went idle) and
maximum, the growth and its slope per 1000 frames, and the frame accounting of
benchmark_node.py: published, received by the node, answered, mailbox drops, errors,
transport loss. Exits 1 when the RSS growth (end - start) exceeds --max-growth-mb or the
node dies; --json writes the figures and the RSS samples.

  tools/ros_env.sh python benchmarks/soak_node.py [--frames 10000] [--rate 30]
      [--width 640 --height 480] [--publisher reliable] [--reliability best_available]
      [--predictor light|stub] [--max-growth-mb 50] [--json out/soak.json]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmark_node beside this file
import benchmark_node as bench  # noqa: E402
from dir_ros.common.machine import write_figures  # noqa: E402

DEFAULT_FRAMES = 10000
DEFAULT_RATE_HZ = 30.0
DEFAULT_MAX_GROWTH_MB = 50.0  # the target: < 50 MB over 10,000 frames
WARMUP_FRAMES = 30  # one at a time before "start": model, allocator and caches settle
SAMPLE_PERIOD_S = 1.0  # RSS sampling period during the run
PER_FRAMES = 1000.0  # the slope is given in MiB per this many frames
EXIT_GROWTH = 1  # exit status when RSS grew too much or the node died


def main() -> int:
    """Run the soak; print and optionally write the figures; exit 1 on too much growth."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    ap.add_argument("--rate", type=float, default=DEFAULT_RATE_HZ,
                    help="publish rate, Hz; 0 = one frame at a time (every frame processed)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--publisher", choices=("reliable", "best_effort"), default="reliable",
                    help="reliability of the camera publisher")
    ap.add_argument("--reliability", choices=bench.RELIABILITY_CHOICES, default=None,
                    help="the node's image_reliability (default: the node's own default)")
    ap.add_argument("--predictor", choices=("light", "stub"), default="light",
                    help="light: the light DIR network (random weights); stub: instant "
                         "stand-in predictor (the node's own code only)")
    ap.add_argument("--model-config", default=str(bench.LIGHT_CONFIG))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--crop", default="full", help="the node's crop mode")
    ap.add_argument("--no-markers", action="store_true", help="node publishes no markers")
    ap.add_argument("--max-growth-mb", type=float, default=DEFAULT_MAX_GROWTH_MB,
                    help="fail (exit 1) when RSS end - start exceeds this (MiB)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    if args.frames < 1:
        ap.error("--frames must be >= 1")

    params = bench.node_parameters(args.predictor, reliability=args.reliability,
                                   device=args.device, markers=not args.no_markers,
                                   crop=args.crop, model_config=args.model_config)
    frame = bench.make_frame(args.width, args.height)
    try:
        run = bench.start_and_wait(args.predictor, params, frame, args.publisher)
    except RuntimeError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return EXIT_GROWTH
    node, client, startup = run.node, run.client, run.startup_s
    rss_ready = node.rss_mb()
    samples: list[tuple[int, float]] = []  # (frames published so far, RSS MiB)
    sent = [0]
    last_sample = [0.0]

    def on_tick() -> None:
        """Count the frame just sent; sample RSS every SAMPLE_PERIOD_S."""
        sent[0] += 1
        now = time.monotonic()
        if now - last_sample[0] >= SAMPLE_PERIOD_S:
            last_sample[0] = now
            samples.append((sent[0], node.rss_mb()))

    try:
        if not run.matched:
            raise RuntimeError(f"a {args.publisher} publisher does not match the node's "
                               f"image subscription (QoS incompatible)")
        bench.run_phase(client, frame, WARMUP_FRAMES, 0.0, 2, node, progress=False)
        rss_start = node.rss_mb()
        samples.append((0, rss_start))
        result = bench.run_phase(client, frame, args.frames, args.rate, 3, node,
                                 progress=not args.no_progress, on_tick=on_tick)
        rss_end = node.rss_mb()
        samples.append((args.frames, rss_end))
    except RuntimeError as e:  # the node died or stopped answering diagnostics
        print(f"FAIL: {e}", file=sys.stderr)
        return EXIT_GROWTH
    finally:
        status = run.stop()
    rss = np.array([r for _, r in samples])
    growth = rss_end - rss_start
    slope = (float(np.polyfit([n for n, _ in samples], rss, 1)[0] * PER_FRAMES)
             if len(samples) >= 3 else float("nan"))
    ok = growth <= args.max_growth_mb and bool(np.isfinite(rss_end))
    m = bench.machine_info()
    node_qos = args.reliability or "node default"
    print(f"machine: {m['cpu']}, {m['cores']} cores; predictor {args.predictor}; "
          f"{args.width}x{args.height} bgr8 at {args.rate:g} Hz "
          f"({'lockstep' if args.rate <= 0 else 'timed'}); {args.publisher} publisher, node "
          f"image_reliability {node_qos}; startup {startup:.1f} s")
    print(f"RSS of hands_node (pid {node.pid}): ready {rss_ready:.1f} MiB, start (after "
          f"{WARMUP_FRAMES} warm-up frames) {rss_start:.1f} MiB, end {rss_end:.1f} MiB, max "
          f"{rss.max():.1f} MiB; growth {growth:+.1f} MiB (limit {args.max_growth_mb:g}), "
          f"slope {slope:+.2f} MiB per {PER_FRAMES:g} frames")
    print(f"frames: published {result.published}, received by the node {result.received}, "
          f"answered {result.answered}, mailbox drops {result.mailbox_drops}, errors "
          f"{result.errors}, transport loss {result.transport_loss} "
          f"({result.transport_loss_pct:.1f} %); {result.seconds:.0f} s, answered "
          f"{result.answered_hz:.1f}/s")
    if result.received_source == "derived":
        print("received = answered + mailbox drops + errors (the node's /diagnostics has no "
              "received_total)")
    print("PASS" if ok else "FAIL: RSS grew more than the limit", f"(node exit status {status})")
    if args.json:
        report: dict[str, Any] = {
            "machine": m, "predictor": args.predictor, "node_parameters": params,
            "node_image_reliability": node_qos, "publisher": args.publisher,
            "width": args.width, "height": args.height, "rate_hz": args.rate,
            "frames": args.frames, "startup_s": round(startup, 2),
            "rss_mib": {"ready": rss_ready, "start": rss_start, "end": rss_end,
                        "max": float(rss.max()), "growth": growth,
                        "slope_per_1000_frames": slope, "limit": args.max_growth_mb},
            "rss_samples": [{"frames": n, "rss_mib": r} for n, r in samples],
            "frames_accounting": {k: getattr(result, k) for k in (
                "published", "received", "received_source", "answered", "mailbox_drops",
                "errors", "transport_loss", "seconds", "answered_hz")},
            "node_exit_status": status, "pass": ok}
        write_figures(args.json, report)
    return 0 if ok else EXIT_GROWTH


if __name__ == "__main__":
    sys.exit(main())
