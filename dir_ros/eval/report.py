"""Evaluation report files: report.json, report.md (the paper's table layout) and pck.png."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from dir_ros.common.results import SIDES
from dir_ros.eval.pose_metrics import PCK_MAX_MM, VARIANT_TITLES, VARIANTS

NA = "n/a"  # table cell of a metric that cannot be computed (e.g. mesh metrics without GT mesh)
PCK_FIGSIZE_IN = (6.0, 4.5)  # inches
PCK_DPI = 100  # -> 600 x 450 px
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PCK_PNG = "pck.png"
# pck.png's message when it has no curve.
PCK_NO_GT_TEXT = "no ground truth: no PCK"
PCK_NOTHING_SCORED_TEXT = ("ground truth present, but no hand was scored\n"
                           "(no frame with a valid prediction and valid ground truth)")
# Topic roles listed in report.md, in this order.
TOPIC_ROLES = ("image", "camera_info", "ground_truth", "predictions")


def _fmt(value: Any, digits: int = 2) -> str:
    """Table cell text of a number (n/a for None / NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NA
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _json_safe(obj: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones, recursively."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def markdown(summary: dict[str, Any]) -> str:
    """The report as Markdown: accuracy table (paper layout), counts, rates."""
    lines = ["# dir_ros evaluation report", ""]
    src = summary.get("source", {})
    for key in ("bag", "predictions", "mode"):
        if src.get(key):
            lines.append(f"- {key}: `{src[key]}`")
    fr = summary["frames"]
    lines.append(f"- frames: {fr['total']} (with ground truth: {fr['with_ground_truth']}, "
                 f"without any prediction: {fr['without_prediction']})")
    if "unmatched_predictions" in summary:
        lines.append(f"- prediction messages matching no frame (by header stamp): {summary['unmatched_predictions']}")
    if summary.get("undecodable_frames"):
        lines.append(f"- frames skipped because their image could not be decoded (counted as "
                     f"without prediction, as the node skips them): "
                     f"{summary['undecodable_frames']} (first: {summary.get('undecodable_example', '')})")
    topics = summary.get("topics") or {}
    used = [f"{role} `{topics[role]}`" for role in TOPIC_ROLES if topics.get(role)]
    lines.append("- topics: " + (", ".join(used) if used else NA))
    if summary.get("camera_info_choice"):
        lines.append(f"- camera_info: {summary['camera_info_choice']}")
    lines.append("")
    hints = summary.get("hints") or []
    if hints:
        lines += ["## Hints", ""] + [f"- {h}" for h in hints] + [""]
    if summary.get("has_ground_truth"):
        lines += [
            "## Accuracy",
            "",
            "Errors per hand and averaged over both hands. MPJPE / MPVPE in mm, MRRPE in mm "
            "(two-hand quantity, mean row), MIAA in px (alignment-independent, main rows), "
            f"AUC of the PCK curve over 0-{PCK_MAX_MM:g} mm. Detected: the detection rate "
            "(frames where the ground truth has the hand and the prediction is valid / frames "
            "where the ground truth has the hand); the errors are means over detected hands.",
            "",
            "| Alignment | Hand | Detected | MPJPE (mm) | MPVPE (mm) | MRRPE (mm) | MIAA (px) | AUC |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        miaa = summary.get("miaa_px", {})
        for variant in VARIANTS:
            per = summary["metrics"][variant]
            for hand in (*SIDES, "mean"):
                e = per[hand]
                main = variant == "wrist"
                mrrpe = _fmt(summary.get("mrrpe_mm")) if main and hand == "mean" else ("" if main else "-")
                mi = _fmt(miaa.get(hand)) if main else "-"
                title = VARIANT_TITLES[variant] if hand == "left" else ""
                det = _fmt(e.get("detection_rate"), 3)
                lines.append(f"| {title} | {hand} | {det} | {_fmt(e['mpjpe_mm'])} | "
                             f"{_fmt(e['mpvpe_mm'])} | {mrrpe} | {mi} | {_fmt(e['auc'], 3)} |")
        lines += ["", f"MRRPE over {summary.get('mrrpe_frames', 0)} frames with both hands valid "
                  f"(not computable for {summary.get('mrrpe_unavailable_frames', 0)} frames: "
                  f"non-metric prediction or GT wrist not annotated).", ""]
        by_placement = summary.get("root_error_mm_by_placement") or {}
        if by_placement:
            lines += ["Wrist (root) position error of metric predictions, by placement "
                      "(HandMesh.placement: hand_size = from the predicted hand size, depth = "
                      "from an aligned depth image):", "",
                      "| Placement | hands | median (mm) | mean (mm) | p95 (mm) |",
                      "|---|---:|---:|---:|---:|"]
            for name, d in by_placement.items():
                lines.append(f"| {name} | {d['hands']} | {_fmt(d['median'], 1)} | "
                             f"{_fmt(d['mean'], 1)} | {_fmt(d['p95'], 1)} |")
            lines.append("")
    else:
        lines += ["No ground truth in the bag: rates, latency, drops and confidence only.", ""]
    lines += [
        "## Hands",
        "",
        "| Hand | frames | GT valid | predicted valid | valid rate | detection rate | scored "
        "| missing (GT valid, no prediction) | false positive | no mesh to compare | confidence mean |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for side in SIDES:
        c = summary["hands"][side]
        conf = c.get("confidence") or {}
        lines.append(
            f"| {side} | {c['frames']} | {c['gt_valid']} | {c['pred_valid']} | {_fmt(c['valid_rate'], 3)} | "
            f"{_fmt(c.get('detection_rate'), 3)} | {c['scored']} | {c['missing']} | {c['false_positive']} | {c['mesh_unavailable']} | "
            f"{_fmt(conf.get('mean'), 3)} |"
        )
    unalignable = {s: summary["hands"][s].get("gt_unalignable", 0) for s in SIDES}
    skipped_joints = {s: summary["hands"][s].get("gt_joints_not_annotated", 0) for s in SIDES}
    if any(unalignable.values()) or any(skipped_joints.values()):
        lines += ["", "Per-joint ground-truth validity: "
                  + ", ".join(f"{s}: {unalignable[s]} hands not scored (wrist or middle MCP not "
                              f"annotated), {skipped_joints[s]} joints of scored hands excluded"
                              for s in SIDES) + "."]
    lines += _temporal_lines(summary)
    lines += _confidence_lines(summary)
    iv = summary.get("interpenetration", {})
    lines += ["", "## Other", ""]
    lines.append(f"- interpenetration volume of the predicted meshes ({_fmt(iv.get('pitch_cm'), 1)} cm voxels): "
                 f"mean {_fmt(iv.get('mean_cm3'))} cm^3 over {iv.get('frames', 0)} frames "
                 f"({iv.get('not_watertight_frames', 0)} with a non-watertight mesh)")
    lat = summary.get("latency_ms")
    lines.append("- latency: " + (NA if not lat else
                 f"mean {lat['mean']:.1f} ms, median {lat['median']:.1f} ms, p95 {lat['p95']:.1f} ms "
                 f"({summary.get('latency_source', '')})"))
    rates = summary.get("rate_hz") or {}
    for key, val in rates.items():
        lines.append(f"- {key} rate: {_fmt(val)} Hz")
    return "\n".join(lines) + "\n"


def _temporal_lines(summary: dict[str, Any]) -> list[str]:
    """The temporal section: jitter of the predictions (and of the ground truth) and the
    acceleration error per hand, the detection rate beside them, and the miss rule."""
    tm = summary.get("temporal")
    if not tm:
        return []
    has_gt = bool(summary.get("has_ground_truth"))
    interval = tm.get("frame_interval_ms")
    lines = ["", "## Temporal", "",
             "Jitter = mean \\|x[t+1] - 2 x[t] + x[t-1]\\| in mm/frame^2 of the wrist (root) "
             "position and of the root-relative joints (joint - wrist, unscaled, joints 1-20)."]
    if has_gt:
        lines.append("Acceleration error = mean \\|a_pred - a_gt\\| in m/s^2 of the same "
                     "quantities, a = second difference / dt^2 with dt the mean of the two "
                     "stamp intervals around the frame"
                     + (f" (median {interval:.2f} ms)." if interval is not None else
                        " (no usable stamps: not computed)."))
    lines += ["", f"Miss rule: {tm.get('rule', '')}", ""]
    # without ground truth a miss cannot be told from an empty frame: the valid rate instead
    head = ["Hand", "Detected" if has_gt else "valid rate", "jitter wrist (mm/f^2)",
            "jitter joints (mm/f^2)"]
    keys = ["detection_rate", "jitter_wrist_mm_f2", "jitter_joints_mm_f2"]
    if has_gt:
        head += ["GT jitter wrist", "GT jitter joints", "accel. error wrist (m/s^2)",
                 "accel. error joints (m/s^2)"]
        keys += ["gt_jitter_wrist_mm_f2", "gt_jitter_joints_mm_f2", "accel_error_wrist_m_s2",
                 "accel_error_joints_m_s2"]
    head.append(f"triples counted of {tm.get('triples', 0)}: jitter"
                + (", GT jitter, accel. error" if has_gt else "") + " (wrist / joints)")
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for hand in (*SIDES, "mean"):
        e = dict(tm.get(hand) or {})
        if not has_gt:
            hands = summary.get("hands") or {}
            rates = [hands[s].get("valid_rate") for s in SIDES if s in hands]
            e["detection_rate"] = (hands.get(hand, {}).get("valid_rate") if hand in SIDES else
                                   (float(np.mean(rates)) if rates and None not in rates else None))
        cells = [_fmt(e.get(k), 3 if k == "detection_rate" else 2) for k in keys]
        counted = e.get("triples_counted") or {}
        groups = ("jitter", "gt_jitter", "accel_error") if has_gt else ("jitter",)
        cells.append(", ".join(f"{counted.get(g + '_wrist', 0)} / {counted.get(g + '_joints', 0)}"
                               for g in groups) if counted else "")
        lines.append(f"| {hand} | " + " | ".join(cells) + " |")
    return lines


def _confidence_lines(summary: dict[str, Any]) -> list[str]:
    """The confidence table used to tune min_confidence: valid and invalid predictions, and
    (with ground truth) every prediction split by whether the hand is really there."""
    columns = [("confidence", "valid predictions"), ("confidence_invalid", "invalid predictions")]
    if summary.get("has_ground_truth"):
        columns += [("confidence_gt_hand", "GT hand present"),
                    ("confidence_gt_no_hand", "GT hand absent")]
    lines = ["", "## Confidence (to tune min_confidence)", "",
             "Mean / median / p95 / min / max of the predicted confidence; invalid predictions "
             "include hands below min_confidence.", "",
             "| Hand | " + " | ".join(title for _, title in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for side in SIDES:
        cells = []
        for key, _ in columns:
            d = summary["hands"][side].get(key)
            cells.append(NA if not d else " / ".join(_fmt(d[k], 3) for k in
                                                     ("mean", "median", "p95", "min", "max")))
        lines.append(f"| {side} | " + " | ".join(cells) + " |")
    return lines


def pck_placeholder_text(summary: dict[str, Any]) -> str:
    """What pck.png says when it has no curve: no ground truth, or nothing scored."""
    return PCK_NOTHING_SCORED_TEXT if summary.get("has_ground_truth") else PCK_NO_GT_TEXT


def plot_pck(summary: dict[str, Any], path: str | Path) -> Path:
    """PCK curves (main alignment per hand and mean; MS/M means dashed) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.asarray(summary["pck_thresholds_mm"])
    fig, ax = plt.subplots(figsize=PCK_FIGSIZE_IN, dpi=PCK_DPI)
    metrics = summary.get("metrics") or {}
    plotted = False
    for variant in VARIANTS:
        per = metrics.get(variant, {})
        hands = (*SIDES, "mean") if variant == "wrist" else ("mean",)
        for hand in hands:
            e = per.get(hand, {})
            if e.get("pck") is None:
                continue
            style = "-" if variant == "wrist" else "--"
            auc = _fmt(e.get("auc"), 3)
            ax.plot(t, e["pck"], style, label=f"{variant} {hand} (AUC {auc})")
            plotted = True
    if not plotted:
        ax.text(0.5, 0.5, pck_placeholder_text(summary), ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlim(0, PCK_MAX_MM)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("error threshold (mm)")
    ax.set_ylabel("PCK")
    ax.grid(True, alpha=0.3)
    if plotted:
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(summary: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md and pck.png into out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / REPORT_JSON, "md": out / REPORT_MD, "png": out / PCK_PNG}
    safe = _json_safe(summary)
    paths["json"].write_text(json.dumps(safe, indent=2) + "\n")
    paths["md"].write_text(markdown(safe))
    plot_pck(safe, paths["png"])
    return paths
