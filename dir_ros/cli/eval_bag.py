"""`dir-ros eval-bag`: score a bag, either by running the predictor on its images (what the
node would publish) or by matching a recording of the live node's TwoHandMesh to its frames by
header stamp; writes report.json / report.md / pck.png (dir_ros.eval.report).

Library entry point used by the CLI and the tests: :func:`eval_bag`.
No ROS installation is needed (bags are read with rosbags).
"""
from __future__ import annotations

import argparse
import bisect
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from dir_ros.cli.common import PROG, check_writable_folder, existing_parent

# The node's shipped params file: eval-bag scores what the node would publish.
DEFAULT_PREDICTOR_CONFIG = "config/hands.yaml"
DEFAULT_OUT_DIR = "dir_ros_eval"  # eval-bag output folder (relative to the working directory)
# A recorded receive time minus header stamp beyond this is not a latency (clock mismatch,
# e.g. wall-clock recording of a replayed bag without --use-sim-time).
MAX_PLAUSIBLE_LATENCY_S = 10.0
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
# eval-bag with depth: depth frames kept for pairing with images (and how many later
# messages an image waits for its depth), enough for a driver that logs depth late.
DEPTH_PAIRING_FRAMES = 8


class Predictor(Protocol):
    """What eval-bag needs from a predictor (dir_ros.backends.dir.HandsPredictor has it)."""

    def predict(self, rgb: np.ndarray, K: np.ndarray | None) -> Any:
        """rgb (H,W,3) uint8, K (3,3) or None -> FrameResult-like (left/right hand results)."""
        ...


def frame_sample_from_result(result: Any, K: np.ndarray | None, stamp_ns: int) -> Any:
    """evaluator.FrameSample from a predictor FrameResult (duck-typed: .left/.right hands)."""
    from dir_ros.eval.evaluator import FrameSample, hand_sample

    if isinstance(result, FrameSample):
        result.stamp_ns = stamp_ns
        return result

    metric = K is not None  # for hands that do not say
    return FrameSample(left=hand_sample(result.left, metric=metric),
                       right=hand_sample(result.right, metric=metric), K=K, stamp_ns=stamp_ns)


def _pick_topic(topics: dict[str, str], wanted: str | None, defaults: tuple[str, ...],
                types: tuple[str, ...], what: str, required: bool, exclude: tuple[str, ...] = ()) -> str | None:
    """Choose a topic: the requested one, else a default name, else the only one of the types."""
    from dir_ros.eval.bag import BagError

    if wanted:
        if wanted not in topics:
            raise BagError(f"{what} topic {wanted!r} not in the bag (topics: {', '.join(sorted(topics))})")
        return wanted
    for name in defaults:
        if name in topics and topics[name] in types:
            return name
    cands = [t for t, ty in topics.items() if ty in types and t not in exclude]
    if len(cands) == 1:
        return cands[0]
    if required:
        hint = f"several: {', '.join(sorted(cands))}; choose one with its --*-topic option" if cands else "none found"
        raise BagError(f"no {what} topic in the bag ({hint})")
    return None


def _latest_k(k_stamps: list[int], k_values: list[np.ndarray], stamp: int) -> np.ndarray | None:
    """The intrinsics of the latest CameraInfo at or before stamp (else the first one)."""
    if not k_stamps:
        return None
    i = bisect.bisect_right(k_stamps, stamp) - 1
    return k_values[max(i, 0)]


def _rate_hz(stamps: list[int]) -> float | None:
    """Mean message rate from sorted stamps (ns)."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return None
    return (len(stamps) - 1) * NS_PER_S / (stamps[-1] - stamps[0])


def _choose_camera_info(topics: dict[str, str], wanted: str | None,
                        image_topic: str | None) -> tuple[str | None, str]:
    """The CameraInfo topic for the image topic, and how it was chosen: --info-topic, else
    the one image_transport pairs with the image topic by name (<ns>/image_raw ->
    <ns>/camera_info), else the bag's only CameraInfo topic; several and none of them the
    pair: BagError (a colour and a depth camera_info must not be guessed between)."""
    from dir_ros.eval.bag import CAMERA_INFO, TOPIC_INFO, BagError, camera_info_topic_for

    if wanted:
        if wanted not in topics:
            raise BagError(f"camera_info topic {wanted!r} not in the bag (topics: {', '.join(sorted(topics))})")
        if topics[wanted] != CAMERA_INFO:
            raise BagError(f"--info-topic {wanted!r} carries {topics[wanted]}, not {CAMERA_INFO}")
        return wanted, "given by --info-topic"
    infos = sorted(t for t, ty in topics.items() if ty == CAMERA_INFO)
    paired = camera_info_topic_for(image_topic) if image_topic else TOPIC_INFO
    if paired in infos:
        return paired, (f"paired with the image topic {image_topic} by name" if image_topic
                        else "the default topic")
    if len(infos) == 1:
        return infos[0], f"the bag's only CameraInfo topic ({paired} is not in the bag)"
    if not infos:
        return None, "none in the bag (no intrinsics: MIAA and metric positions need them)"
    raise BagError(f"{len(infos)} camera_info topics in the bag ({', '.join(infos)}) and none "
                   f"is {paired}, the one paired with the image topic; choose one with --info-topic")


def _read_reference(bag: Path, args: argparse.Namespace, need_images: bool,
                    start: Callable[[], Callable[[int, Any, np.ndarray | None, Any], None]] | None = None,
                    depth: dict[int, Any] | None = None) -> dict[str, Any]:
    """Read GT, camera info and (optionally) images of the reference bag.

    Passes: ground truth, then every CameraInfo (sorted by header stamp), then the images,
    so an image gets the CameraInfo of its own stamp even when that one is logged after it
    (else the latest before it, else the first). start(), when given, is called once the
    topics are chosen and the GT and camera_info read (so bad topics fail before a model is
    built) and returns on_image(stamp_ns, image msg, K, GT FrameSample or None), called per
    image in bag order. depth, when given: the depth topic (--depth-topic, else TOPIC_DEPTH
    when the bag has it) is read with the images and its messages kept in depth (stamp ns ->
    message, the newest DEPTH_PAIRING_FRAMES) before on_image sees an image of that stamp
    (an image waits for up to DEPTH_PAIRING_FRAMES later messages for its depth).
    """
    from dir_ros.eval.bag import (COMPRESSED_IMAGE, IMAGE, TOPIC_COMPRESSED, TOPIC_DEPTH, TOPIC_GT,
                           TOPIC_IMAGE, TWO_HAND_MESH, BagError, BagReader, K_from_camera_info,
                           frame_sample_from_msg, stamp_to_ns)

    out: dict[str, Any] = {"gt": {}, "image_stamps": [], "k_stamps": [], "k_values": []}
    with BagReader(bag) as reader:
        topics = reader.topics
        img_t = _pick_topic(topics, args.image_topic, (TOPIC_IMAGE, TOPIC_COMPRESSED),
                            (IMAGE, COMPRESSED_IMAGE), "image", required=need_images)
        info_t, how = _choose_camera_info(topics, args.info_topic, img_t)
        gt_t = _pick_topic(topics, args.gt_topic, (TOPIC_GT,), (TWO_HAND_MESH,), "ground truth",
                           required=False, exclude=(args.hands_topic,)) if args.gt_topic or TOPIC_GT in topics else None
        out["topics"] = {"image": img_t, "camera_info": info_t, "ground_truth": gt_t}
        depth_t = None
        if depth is not None and getattr(args, "depth_topic", "") != "":
            depth_t = args.depth_topic or (TOPIC_DEPTH if TOPIC_DEPTH in topics else None)
            if depth_t is not None and depth_t not in topics:
                raise BagError(f"{bag}: no depth topic {depth_t} (topics: {', '.join(sorted(topics))})")
            out["topics"]["depth"] = depth_t
        out["camera_info_choice"] = f"`{info_t}`, {how}" if info_t else how
        if gt_t:
            for m in reader.messages([gt_t]):
                s = stamp_to_ns(m.msg.header)
                out["gt"][s] = frame_sample_from_msg(m.msg)
        if info_t:
            ks = []
            for m in reader.messages([info_t]):
                K = K_from_camera_info(m.msg)
                if K is not None:
                    ks.append((stamp_to_ns(m.msg.header), K))
            ks.sort(key=lambda stamp_k: stamp_k[0])  # bag order need not be stamp order
            out["k_stamps"] = [stamp for stamp, _ in ks]
            out["k_values"] = [K for _, K in ks]
        for s, g in out["gt"].items():
            if g.K is None:
                g.K = _latest_k(out["k_stamps"], out["k_values"], s)
        on_image = start() if start is not None else None
        if not img_t:
            return out
        progress = None
        if on_image is not None:
            from tqdm import tqdm

            progress = tqdm(total=reader.count(img_t), desc="eval-bag", unit="frame",
                            file=sys.stderr, disable=args.no_progress)
        pending: list[tuple[int, Any]] = []  # images waiting for their depth frame

        def emit(s: int, msg: Any) -> None:
            out["image_stamps"].append(s)
            if on_image is not None:
                on_image(s, msg, _latest_k(out["k_stamps"], out["k_values"], s), out["gt"].get(s))
                if progress is not None:
                    progress.update(1)

        for m in reader.messages([img_t] + ([depth_t] if depth_t else [])):
            s = stamp_to_ns(m.msg.header)
            if depth_t is None:
                emit(s, m.msg)
                continue
            if m.topic == depth_t:
                depth[s] = m.msg
                for old in sorted(depth)[:-DEPTH_PAIRING_FRAMES]:
                    del depth[old]
            else:
                pending.append((s, m.msg))
            newest = max(depth) if depth else -1
            while pending and (pending[0][0] <= newest or len(pending) > DEPTH_PAIRING_FRAMES):
                emit(*pending.pop(0))
        for s, msg in pending:
            emit(s, msg)
        if progress is not None:
            progress.close()
    return out


def _place_with_depth(result: Any, depth_frames: dict[int, Any], K: np.ndarray | None,
                      stamp: int) -> None:
    """Depth placement of a FrameResult (in place) with the depth frame closest in stamp, as
    the node does with use_depth (dir_ros.post.depth; tolerance: its default)."""
    from dir_ros.post.depth import DEFAULT_STAMP_TOLERANCE_S, DepthError, apply_depth, decode_depth, mark_fallback

    if not depth_frames:
        mark_fallback(result, "no depth image")
        return
    s = min(depth_frames, key=lambda d: abs(d - stamp))
    msg = depth_frames[s]
    try:
        depth = decode_depth(msg.encoding, msg.width, msg.height, msg.step,
                             np.asarray(msg.data, np.uint8).tobytes(), bool(msg.is_bigendian))
    except DepthError as err:
        mark_fallback(result, str(err))
        return
    apply_depth(result, depth, K, (s - stamp) / NS_PER_S, DEFAULT_STAMP_TOLERANCE_S)


def load_predictor(config: str) -> Predictor:
    """The predictor the node would run for a config (dir_ros.predictor.build_predictor: DIR
    or the landmark backend; imported lazily: torch is heavy)."""
    try:
        from dir_ros.predictor import build_predictor
    except ImportError as err:
        raise RuntimeError(f"cannot import dir_ros.predictor ({err})") from None
    return build_predictor(config)


def eval_bag(args: argparse.Namespace, predictor: Predictor | None = None) -> dict[str, Any]:
    """Score a bag; writes report.json / report.md / pck.png into args.out; returns the summary.

    Without args.predictions every image goes through ``predictor`` (or the one built from
    args.config) in bag order; with it, TwoHandMesh messages of that bag are matched to the
    reference frames by header stamp.
    """
    from dir_ros.eval.evaluator import Evaluator
    from dir_ros.eval.report import write_report
    from dir_ros.image.decode import decode_image_msg

    bag = Path(args.bag)
    evaluator = Evaluator(compute_iv=not args.no_iv)
    summary_extra: dict[str, Any] = {}
    if args.predictions is None:
        import cv2

        latencies: list[float] = []
        undecodable: list[str] = []  # one reason per skipped frame
        model: list[Predictor] = []

        def on_image(stamp: int, msg: Any, K: np.ndarray | None, gt: Any) -> None:
            try:
                rgb = decode_image_msg(msg)
            except (ValueError, cv2.error) as err:  # the node skips such frames too
                undecodable.append(" ".join(str(err).split()) or type(err).__name__)
                evaluator.add(None, gt, stamp)
                return
            t0 = time.perf_counter()
            result = model[0].predict(rgb, K)
            if depth_frames:  # the bag has depth (no depth topic: left empty)
                _place_with_depth(result, depth_frames, K, stamp)
            latencies.append((time.perf_counter() - t0) * 1000.0)
            evaluator.add(frame_sample_from_result(result, K, stamp), gt, stamp)  # streamed

        def start() -> Callable[[int, Any, np.ndarray | None, Any], None]:
            """Build the predictor once the bag's topics are known to be usable."""
            model.append(predictor if predictor is not None else load_predictor(args.config))
            return on_image

        # --depth-topic '' turns depth off; else the bag's depth topic, when it has one
        depth_frames: dict[int, Any] | None = ({} if getattr(args, "depth_topic", None) != ""
                                               else None)
        ref = _read_reference(bag, args, need_images=True, start=start, depth=depth_frames)
        frames = ref["image_stamps"]
        preds = {s: None for s in frames}  # every image got a prediction (already scored)
        summary_extra["undecodable_frames"] = len(undecodable)
        if undecodable:
            summary_extra["undecodable_example"] = undecodable[0]
        summary_extra["latency_source"] = "predict() wall time per image, this machine"
        summary_extra["source"] = {"mode": "predictor", "bag": str(bag)}
        lat_ms = latencies
        rates = {"processing (1 / mean latency)": (1000.0 / float(np.mean(latencies))) if latencies else None}
    else:
        from dir_ros.eval.bag import TOPIC_HANDS, TWO_HAND_MESH, BagReader, frame_sample_from_msg, stamp_to_ns

        ref = _read_reference(bag, args, need_images=False)
        preds = {}
        lat_ms = []
        duplicates = 0
        with BagReader(args.predictions) as reader:
            topics = reader.topics
            hands_t = _pick_topic(topics, args.hands_topic, (TOPIC_HANDS,), (TWO_HAND_MESH,), "prediction",
                                  required=True, exclude=(ref["topics"]["ground_truth"] or "",))
            for m in reader.messages([hands_t]):
                s = stamp_to_ns(m.msg.header)
                if s in preds:
                    duplicates += 1
                preds[s] = frame_sample_from_msg(m.msg, _latest_k(ref["k_stamps"], ref["k_values"], s))
                lat = (m.log_time_ns - s) / NS_PER_MS
                if 0.0 <= lat <= MAX_PLAUSIBLE_LATENCY_S * 1000.0:
                    lat_ms.append(lat)
        ref["topics"]["predictions"] = hands_t
        frames = sorted(set(ref["gt"]) | set(ref["image_stamps"])) or sorted(preds)
        pstamps = sorted(preds)  # all prediction header stamps, matched or not
        preds = _match_stamps(preds, frames, args.stamp_tolerance_ms)
        if pstamps and frames and all(isinstance(k, tuple) for k in preds):
            summary_extra["hints"] = [_tolerance_hint(pstamps, frames, args.stamp_tolerance_ms)]
        summary_extra["duplicate_predictions"] = duplicates
        summary_extra["latency_source"] = "bag receive time - header stamp of the predictions"
        summary_extra["source"] = {"mode": "predictions bag", "bag": str(bag), "predictions": str(args.predictions)}
        rates = {"input": _rate_hz(sorted(ref["image_stamps"])), "output": _rate_hz(pstamps)}
    frame_set = set(frames)
    matched = {s: p for s, p in preds.items() if s in frame_set}
    if args.predictions is not None:
        from tqdm import tqdm

        for s in tqdm(frames, desc="scoring", unit="frame", file=sys.stderr, disable=args.no_progress):
            evaluator.add(matched.get(s), ref["gt"].get(s), s)  # frames in stamp order
    summary = evaluator.summary()
    summary.update(summary_extra)
    summary["topics"] = ref["topics"]
    summary["camera_info_choice"] = ref["camera_info_choice"]
    summary["unmatched_predictions"] = len(preds) - len(matched)
    summary["ground_truth_without_frame"] = len(set(ref["gt"]) - frame_set)
    from dir_ros.eval.evaluator import describe

    summary["latency_ms"] = describe(lat_ms)
    summary["rate_hz"] = rates
    write_report(summary, args.out)
    return summary


def _tolerance_hint(pred_stamps: list[int], frames: list[int], tolerance_ms: float) -> str:
    """Advice when no prediction matched a frame: how far the nearest frames are, and the
    --stamp-tolerance-ms that would match at least half of the predictions."""
    offsets_ms = []
    for s in pred_stamps:
        i = bisect.bisect_left(frames, s)
        near = [abs(frames[j] - s) for j in (i - 1, i) if 0 <= j < len(frames)]
        offsets_ms.append(min(near) / NS_PER_MS)
    median_ms = float(np.median(offsets_ms))
    within = f" within {tolerance_ms:g} ms" if tolerance_ms > 0 else ""
    return (f"no prediction matched a frame by header stamp{within}: the nearest frame is "
            f"{median_ms:.1f} ms away (median over {len(offsets_ms)} predictions); if the images "
            f"were re-stamped on the way to the node, rerun with --stamp-tolerance-ms "
            f"{max(1, math.ceil(median_ms))}")


def _match_stamps(preds: dict[int, Any], frames: list[int], tolerance_ms: float) -> dict[Any, Any]:
    """Re-key predictions to the nearest reference stamp within the tolerance (0: exact).

    Unmatched predictions keep a ('unmatched', stamp) key so they are counted, not lost.
    """
    if tolerance_ms <= 0:
        known = set(frames)
        return {(s if s in known else ("unmatched", s)): p for s, p in preds.items()}
    tol = int(tolerance_ms * NS_PER_MS)
    out: dict[Any, Any] = {}
    for s, p in sorted(preds.items()):
        i = bisect.bisect_left(frames, s)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(frames) and abs(frames[j] - s) <= tol and frames[j] not in out:
                if best is None or abs(frames[j] - s) < abs(best - s):
                    best = frames[j]
        out[best if best is not None else ("unmatched", s)] = p
    return out


def add_parser(sub: Any) -> None:
    """Register `eval-bag` on the dir-ros subparsers."""
    ev = sub.add_parser(
        "eval-bag", help="score a bag: run the predictor on its images, or score a recording of the node",
        description="Score BAG. Default: every image of BAG goes through the predictor (--config) in order "
        "and is scored against /hands/gt. With --predictions OUT_BAG: the TwoHandMesh messages recorded "
        "from the live node are matched to BAG's frames by header stamp. Writes report.json, report.md and "
        "pck.png into --out. Without ground truth only rates, latency, drops and confidence are reported.",
    )
    ev.add_argument("bag", type=Path, help="reference bag (images, camera_info, optionally /hands/gt)")
    ev.add_argument("--predictions", type=Path, default=None, metavar="OUT_BAG",
                    help="bag recorded from the live node (TwoHandMesh on --hands-topic)")
    ev.add_argument("--config", default=DEFAULT_PREDICTOR_CONFIG,
                    help="predictor config YAML, e.g. the node's params file (default mode only; "
                         "default: %(default)s, the node's own defaults)")
    ev.add_argument("--out", type=Path, default=Path(DEFAULT_OUT_DIR), help="output folder (default: %(default)s)")
    ev.add_argument("--image-topic", default=None, help="image topic (default: /camera/image_raw[/compressed])")
    ev.add_argument("--info-topic", default=None,
                    help="camera_info topic (default: the image topic's own, <ns>/camera_info "
                         "for <ns>/image_raw[/compressed]; else the bag's only one)")
    ev.add_argument("--gt-topic", default=None, help="ground-truth TwoHandMesh topic (default: /hands/gt if present)")
    ev.add_argument("--depth-topic", default=None,
                    help="aligned depth Image topic (16UC1 mm / 32FC1 m) used to place the "
                         "predicted hands, as the node's use_depth (default mode only; default: "
                         "/camera/aligned_depth_to_color/image_raw if present; '' = no depth)")
    ev.add_argument("--hands-topic", default=None, help="prediction topic in OUT_BAG (default: /hands)")
    ev.add_argument("--stamp-tolerance-ms", type=float, default=0.0,
                    help="match predictions to frames within this stamp difference (default 0: exact)")
    ev.add_argument("--no-iv", action="store_true", help="skip the interpenetration volume (voxelisation)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")


def validate(args: argparse.Namespace) -> None:
    """Checks argparse cannot express, and the output before the run; raises ValueError
    with a one-line reason."""
    from dir_ros.eval.bag import BagReader
    from dir_ros.eval.report import PCK_PNG, REPORT_JSON, REPORT_MD

    if args.stamp_tolerance_ms < 0:
        raise ValueError("--stamp-tolerance-ms must be >= 0")
    BagReader(args.bag)  # checks that it exists and is a rosbag2 folder
    if args.predictions is not None:
        BagReader(args.predictions)
    # the output before the (possibly long) run, not after it
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} exists and is not a folder")
    for name in (REPORT_JSON, REPORT_MD, PCK_PNG):
        if (args.out / name).is_dir():
            raise ValueError(f"--out {args.out}: {name} there is a folder, not a file")
    check_writable_folder(args.out if args.out.exists() else existing_parent(args.out),
                          "--out folder")


def run(args: argparse.Namespace, predictor: Predictor | None = None) -> None:
    """Validate the parsed `eval-bag` arguments, score the bag, print the one-line summary
    (and notes / hints on stderr). predictor: injected (tests); None builds it from --config."""
    validate(args)
    summary = eval_bag(args, predictor=predictor)
    print(_one_line_summary(summary, args.out))
    if summary.get("undecodable_frames"):
        print(f"{PROG} eval-bag: note: skipped {summary['undecodable_frames']} frame(s) "
              f"whose image could not be decoded (first: {summary['undecodable_example']})",
              file=sys.stderr)
    for hint in summary.get("hints", []):
        print(f"{PROG} eval-bag: hint: {hint}", file=sys.stderr)


def _one_line_summary(summary: dict[str, Any], out: Path) -> str:
    """Short stdout line after eval-bag."""
    parts = [f"frames {summary['frames']['total']}"]
    if summary.get("has_ground_truth"):
        m = summary["metrics"]["wrist"]["mean"]
        for key, label in (("mpjpe_mm", "MPJPE"), ("mpvpe_mm", "MPVPE")):
            if m.get(key) is not None:
                parts.append(f"{label} {m[key]:.2f} mm")
        if summary.get("mrrpe_mm") is not None:
            parts.append(f"MRRPE {summary['mrrpe_mm']:.2f} mm")
        rate = (summary.get("detection_rate") or {}).get("mean")
        if rate is not None:
            parts.append(f"detected {100.0 * rate:.1f}%")
    tm = (summary.get("temporal") or {}).get("mean") or {}
    for key, label in (("jitter_wrist_mm_f2", "wrist jitter"), ("jitter_joints_mm_f2", "joint jitter")):
        if tm.get(key) is not None:
            parts.append(f"{label} {tm[key]:.2f} mm/frame^2")
    if tm.get("accel_error_joints_m_s2") is not None:
        parts.append(f"joint accel. error {tm['accel_error_joints_m_s2']:.2f} m/s^2")
    return f"report in {out}: " + ", ".join(parts)
