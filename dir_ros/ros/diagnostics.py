"""The node's diagnostics: its counters and per-stage timings (Stats) and the
/diagnostics message built from them (diagnostics_message)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from dir_ros.ros.dds_profile import profile_in_use
from dir_ros.ros.stage_timing import StageTimes, format_stage

# Per-stage timing of each frame (/diagnostics `stage_<name>_ms`: median / mean / p90 over the
# last STAGE_WINDOW frames, dir_ros.ros.stage_timing), in pipeline order: transport = header
# stamp -> image callback (wall clock; only when the camera stamps with this machine's clock,
# see node.TRANSPORT_MAX_S), queue = callback -> worker, then the worker's stages; the predictor's
# own steps follow as predict_<step> (crop, network, post for DIR); total = callback -> last
# publish (the latency).
# handoff = the pause after TwoHandMesh (node.MESH_HANDOFF_S);
# grasp = hands/grasp built and published; retarget = both hands' robot joint commands
# computed (dex-retargeting) and published (publish_grasp / retarget).
NODE_STAGES = ("transport", "queue", "decode", "intrinsics", "predict", "depth", "smoothing",
               "mesh_build", "mesh_publish", "handoff", "markers_build", "markers_publish",
               "points", "tf", "grasp", "retarget", "debug_image", "total")
# Transport loss (estimated_transport_loss in /diagnostics, dir_ros.ros.transport_loss):
# share of frames lost above which a best-effort subscription warns once (the frames a
# 640x480 camera loses with Fast DDS defaults: 34-70 %; with config/fastdds_camera.xml 5 %),
# and the fewest received frames before it judges.
LOSS_WARN_SHARE = 0.10
LOSS_WARN_MIN_FRAMES = 30


@dataclass
class Stats:
    """Counters since start and per diagnostics period (guarded by the mailbox lock)."""

    received: int = 0
    processed: int = 0
    dropped: int = 0
    decode_errors: int = 0
    inference_errors: int = 0
    too_large: int = 0  # frames refused by max_image_pixels / the side limit (in decode_errors)
    # per-stage timings of the last frames (NODE_STAGES, then the predictor's own steps:
    # FrameResult.timings crop_ms, network_ms, detect_ms, ... as predict_crop, ...)
    stages: StageTimes = field(default_factory=lambda: StageTimes(NODE_STAGES))
    # latest fit residual (mm) per side from the landmark backend (nan when none)
    fit_residual_mm: dict[str, float] = field(default_factory=dict)
    # latest placement per side: (PLACEMENT_NAMES name, why depth was not used or '')
    placement: dict[str, tuple[str, str]] = field(default_factory=dict)
    # use_depth: why the latest frame's depth was not used (None: used / not asked for)
    depth_problem: Optional[str] = None
    last: dict[str, int] = field(default_factory=dict)
    last_time: float = field(default_factory=time.monotonic)


def diagnostics_message(node: Any) -> DiagnosticArray:
    """The /diagnostics message of a HandsNode: its Stats since the last call (rates, totals,
    per-stage timings), transport loss, QoS, camera_info, placement and depth pairing; warns
    once (on the node's logger) when a best-effort camera loses many frames."""
    now = time.monotonic()
    with node._lock:
        s = node.stats
        dt = max(now - s.last_time, 1e-6)
        pairer = node._pairer
        pairing = (None if pairer is None else
                   (pairer.paired, pairer.unpaired_late, pairer.unpaired_missing,
                    pairer.superseded, pairer.depth_received, pairer.longest_wait_s,
                    pairer.latest_late_s))
        # dropped: replaced before processing, in the mailbox or while waiting for depth
        cur = {"received": s.received, "processed": s.processed,
               "dropped": s.dropped + (pairing[3] if pairing else 0),
               "decode_errors": s.decode_errors, "inference_errors": s.inference_errors,
               "too_large": s.too_large}
        delta = {k: v - s.last.get(k, 0) for k, v in cur.items()}
        s.last, s.last_time = cur, now
        stage_window = s.stages.snapshot()  # statistics outside the lock
        residuals = dict(s.fit_residual_mm)
        placement = dict(s.placement)
        depth_problem = s.depth_problem
        stamps = node._loss.snapshot()
    loss = stamps.estimate()  # outside the lock
    stages = stage_window.summary()
    lat = stage_window.values("total")  # receive -> published, ms
    lat = lat if lat.size else np.zeros(1)
    image_qos = node.transport.reliability(node._image_topic)
    if (loss is not None and loss.received >= LOSS_WARN_MIN_FRAMES
            and loss.share > LOSS_WARN_SHARE and image_qos == "best_effort"):
        node._warn_once("transport_loss", (
            f"{node._image_topic}: about {100 * loss.share:.0f} % of the camera's frames "
            f"are lost in transport (estimated from the gaps of their header stamps; the "
            f"camera publishes best effort). On the camera side: publish reliable (the "
            f"node then subscribes reliable and loses none), or give the camera process a "
            f"Fast DDS profile whose shared-memory segment holds several frames, as "
            f"config/fastdds_camera.xml of this package does "
            f"(FASTRTPS_DEFAULT_PROFILES_FILE=<share>/dir_ros/config/fastdds_camera.xml)"))
    status = DiagnosticStatus(name=f"{node.get_name()}: hand reconstruction",
                              hardware_id=node.device_name)
    if delta["inference_errors"]:
        status.level, status.message = DiagnosticStatus.ERROR, "inference errors"
    elif delta["decode_errors"]:
        status.level, status.message = DiagnosticStatus.WARN, "undecodable images"
    elif node._camera_problem:
        status.level = DiagnosticStatus.WARN
        status.message = f"camera_info unusable: {node._camera_problem}"
    elif delta["received"] == 0:
        status.level = DiagnosticStatus.WARN
        status.message = f"no images on {node._image_topic}"
    else:
        status.level, status.message = DiagnosticStatus.OK, "running"
    values = {
        "input_rate_hz": f"{delta['received'] / dt:.2f}",
        "processed_rate_hz": f"{delta['processed'] / dt:.2f}",
        # received_total: frames that reached the node (sent - received = transport
        # loss); dropped_total: replaced in the one-slot mailbox before processing
        "received_total": str(cur["received"]),
        "processed_total": str(cur["processed"]),
        "dropped_total": str(cur["dropped"]),
        "dropped_rate_hz": f"{delta['dropped'] / dt:.2f}",
        "decode_errors_total": str(cur["decode_errors"]),
        "inference_errors_total": str(cur["inference_errors"]),
        "too_large_total": str(cur["too_large"]),  # refused by max_image_pixels / side
        "latency_ms_median": f"{np.median(lat):.1f}",  # receive -> published
        "latency_ms_max": f"{np.max(lat):.1f}",
        # the predictor's steps as before (crop_ms_median, network_ms_median, ...)
        **{f"{k.removeprefix('predict_')}_ms_median": f"{v[0]:.1f}"
           for k, v in stages.items() if k.startswith("predict_")},
        # per-stage table (NODE_STAGES): median / mean / p90 ms over the last frames
        **{f"stage_{k}_ms": format_stage(*v) for k, v in stages.items()},
        **{f"{side}_fit_residual_mm": f"{v:.1f}" for side, v in residuals.items()
           if node.backend == "landmarks"},
        "backend": node.backend,
        "device": node.device_name,
        "precision": str(getattr(node.predictor, "precision", node.cfg["precision"])),
        "image_qos": image_qos,
        # lost / (lost + received) over the last frames, from the header stamp gaps
        # against the camera's period (transport_loss.py); unknown until enough frames
        "estimated_transport_loss": (f"{loss.share:.3f}" if loss is not None
                                     else "unknown"),
        "estimated_lost_frames": str(loss.lost) if loss is not None else "0",
        "camera_period_ms": (f"{1e3 * loss.period_s:.1f}" if loss is not None
                             else "unknown"),
        # the Fast DDS profile file the process was started with (dds_profile.py)
        "dds_profile": profile_in_use() or "none",
        "camera_info": ("yes" if node._camera is not None else
                        f"invalid: {node._camera_problem}" if node._camera_problem else "no"),
        # latest frame: none | hand_size | depth, and why depth was not used
        **{f"{side}_placement": name + (f" ({note})" if note else "")
           for side, (name, note) in placement.items()},
        "retarget": node.cfg["retarget"],  # none, a bundled robot or the YAML path
        "depth": ("off" if node._depth is None else
                  f"not used: {depth_problem}" if depth_problem else "used"),
    }
    if pairing is not None:  # colour frames and their depth (stamp_pairing.py)
        values.update({"depth_paired_total": str(pairing[0]),
                       "depth_unpaired_late_total": str(pairing[1]),
                       "depth_unpaired_missing_total": str(pairing[2]),
                       "depth_received_total": str(pairing[4]),
                       # since start: what depth_wait needs here (colour arrival ->
                       # its depth), over paired and over late frames
                       "depth_wait_ms_max": f"{1e3 * pairing[5]:.1f}",
                       "depth_late_ms_max": f"{1e3 * pairing[6]:.1f}"})
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    arr = DiagnosticArray(status=[status])
    arr.header.stamp = node.get_clock().now().to_msg()
    return arr
