"""Temporal smoothing of FrameResults: exponential moving average and One-Euro filters.

EmaSmoother and OneEuroSmoother (mode one_euro_single, the filter before issue 19) blend each
hand with its filtered previous state using one coefficient `a` per hand and frame (out = a *
new + (1 - a) * previous), so the mesh, joints, keypoints, pose and shape of a hand stay
consistent with each other (a mesh blended with the same weight as its parameters is the
mesh of the blended parameters to first order). The orientation is a normalised,
sign-aligned quaternion blend.

SignalOneEuroSmoother (mode one_euro, the default) knows its inputs: a hand is split into
four signals whose noise differs by an order of magnitude (measured with
benchmarks/tune_smoothing.py --measure on the drifting clips of dir_ros.data.clips), each with
its own One-Euro filter and cut-offs:
  * plane: the wrist across its viewing ray, (x/z, y/z) (the image-plane position: a pixel of
    landmark noise), its speed in m/s at the filtered depth;
  * depth: the wrist depth z along its ray (m), from the hand's monocular size: noisier, and
    with a noise that grows with the depth; it has its own filter with an explicit noise
    model, a constant-velocity Kalman filter (DepthKalman: measurement sd a fixed fraction
    of the depth, DepthParams.noise_ratio, measured; random accelerations of sd
    DepthParams.accel m/s^2), which, unlike a One-Euro filter, is not opened by its own
    noise;
  * orientation: the root rotation (quaternion; angular speed rad/s);
  * pose: the hand in its own frame, R^T (x - wrist) for joints and vertices (finger pose and
    shape; RMS keypoint speed m/s), with the pose and shape parameters.
The hand is put back together from the filtered signals: wrist = z (x/z, y/z, 1), joints =
wrist + R local joints. Unlike the scalar speed of OneEuroSmoother (the mean of |x_t -
x_t-1|, which frame-to-frame noise alone keeps high, so noise opened the filter), each
filter's speed is the norm of its low-passed, signed derivative, as in Casiez et al.: noise
that goes back and forth averages out of it.
Every filter restarts when a hand is lost (invalid), changes `metric`, changes its vertex
count or its wrist jumps farther than `jump_reset_m` (re-detection, swap of sides).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from dir_ros.common import geometry as geo
from dir_ros.common.results import FrameResult, HandsResult

SMOOTHING_MODES = ("none", "ema", "one_euro", "one_euro_single")
# One-Euro defaults of the single-coefficient filter (mode one_euro_single; before issue 19
# these were mode one_euro's) (Casiez et al., CHI 2012, "1 Euro filter"), chosen with the
# earlier benchmarks/tune_smoothing.py (git history) on synthetic 30 Hz sequences with 3 mm
# per-axis keypoint noise: the steadiest setting whose error on a hand moving at 0.5 m/s stays
# within 1.35x the unfiltered one. RMS keypoint error, unfiltered -> filtered: still hand
# 5.18 -> 2.69 mm, moving hand 5.22 -> 6.97 mm (the EMA with factor 0.5 gives 3.00 and 16.95).
SINGLE_MIN_CUTOFF_HZ = 0.25
SINGLE_BETA = 20.0
# Image-plane signal of the per-signal filter (mode one_euro; the node's one_euro_min_cutoff
# and one_euro_beta): see DEFAULT_SIGNAL_PARAMS for how they were chosen.
DEFAULT_MIN_CUTOFF_HZ = 0.05
DEFAULT_BETA = 10.0
# Cutoff of the speed estimate itself (Hz); the paper's recommended 1 Hz.
DEFAULT_D_CUTOFF_HZ = 1.0
# A wrist that moves farther than this between two frames is a new hand (re-detection, swap of
# sides), not motion to smooth: the filter restarts there (m; about a hand length).
DEFAULT_JUMP_RESET_M = 0.15
# Frame interval assumed when time stamps do not increase (s): 30 Hz camera.
FALLBACK_DT_S = 1.0 / 30.0


def _blend_hand(new: HandsResult, prev: HandsResult, a: float) -> HandsResult:
    """new blended with prev with weight a on new (one coefficient for every field)."""
    q_prev = np.where(np.dot(prev.wrist_quat, new.wrist_quat) < 0, -prev.wrist_quat,
                      prev.wrist_quat)
    quat = a * new.wrist_quat + (1 - a) * q_prev
    mix = lambda x, y: (a * x + (1 - a) * y).astype(np.float32)  # noqa: E731
    return replace(
        new, vertices=mix(new.vertices, prev.vertices), joints=mix(new.joints, prev.joints),
        wrist_position=a * new.wrist_position + (1 - a) * prev.wrist_position,
        wrist_quat=quat / np.linalg.norm(quat), pose=mix(new.pose, prev.pose),
        shape=mix(new.shape, prev.shape), keypoints_2d=mix(new.keypoints_2d, prev.keypoints_2d))


def _continues(new: HandsResult, prev: Optional[HandsResult], jump_reset_m: float) -> bool:
    """True when new is the same hand as prev and may be filtered against it."""
    if prev is None or not (new.valid and prev.valid) or prev.metric != new.metric \
            or prev.vertices.shape != new.vertices.shape:
        return False
    ref_new = new.wrist_position if new.metric else new.joints[0]
    ref_prev = prev.wrist_position if prev.metric else prev.joints[0]
    return float(np.linalg.norm(ref_new - ref_prev)) <= jump_reset_m


class EmaSmoother:
    """Exponential moving average per hand: out = a * new + (1 - a) * previous output.

    factor a in (0, 1] (1 = no smoothing); constant, so it lags moving hands as much as it
    steadies still ones (the One-Euro filter adapts).
    """

    def __init__(self, factor: float, jump_reset_m: float = DEFAULT_JUMP_RESET_M) -> None:
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"smoothing factor must be in (0, 1], got {factor}")
        self.factor = factor
        self.jump_reset_m = jump_reset_m
        self._prev: dict[str, HandsResult] = {}

    def reset(self) -> None:
        """Forget the history."""
        self._prev.clear()

    def __call__(self, result: FrameResult, t: Optional[float] = None) -> FrameResult:
        """Filtered copy of result; t (s) is ignored (kept for the common call signature)."""
        hands = {}
        for h in result.hands():
            p = self._prev.get(h.side)
            if _continues(h, p, self.jump_reset_m):
                h = _blend_hand(h, p, self.factor)
            self._prev[h.side] = h
            hands[h.side] = h
        return replace(result, left=hands["left"], right=hands["right"])


def _alpha(cutoff_hz: float, dt_s: float) -> float:
    """Smoothing coefficient of a first-order low-pass at cutoff_hz sampled every dt_s."""
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt_s)


@dataclass
class _OneEuroState:
    """Filtered hand, its filtered keypoint speed (m/s) and time (s)."""

    hand: HandsResult
    speed: float
    t: float


class _PerHandFilter:
    """What the time-aware smoothers share: per-hand state (each with its time `t`, s), reset,
    and the call that filters both hands of a frame with the subclass's `_filter`."""

    _state: dict

    def reset(self) -> None:
        """Forget the history."""
        self._state.clear()

    def _filter(self, h: HandsResult, t: float) -> HandsResult:
        raise NotImplementedError

    def __call__(self, result: FrameResult, t: Optional[float] = None) -> FrameResult:
        """Filtered copy of result at time t (s; None = previous time + FALLBACK_DT_S)."""
        if t is None:
            last = max((s.t for s in self._state.values()), default=0.0)
            t = last + FALLBACK_DT_S
        hands = {h.side: self._filter(h, float(t)) for h in result.hands()}
        return replace(result, left=hands["left"], right=hands["right"])


class OneEuroSmoother(_PerHandFilter):
    """One-Euro filter per hand (Casiez et al. 2012): the cutoff rises with the hand's speed,
    cutoff = min_cutoff + beta * speed, so a still hand is steady and a moving one keeps up.

    speed = filtered mean keypoint speed (m/s, camera frame; wrist-relative keypoints when
    not metric). Time comes from the caller (image stamps); a non-increasing time assumes
    FALLBACK_DT_S.
    """

    def __init__(self, min_cutoff: float = SINGLE_MIN_CUTOFF_HZ, beta: float = SINGLE_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF_HZ,
                 jump_reset_m: float = DEFAULT_JUMP_RESET_M) -> None:
        for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"One-Euro {name} must be > 0 Hz, got {value}")
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"One-Euro beta must be >= 0, got {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.jump_reset_m = jump_reset_m
        self._state: dict[str, _OneEuroState] = {}

    def _filter(self, h: HandsResult, t: float) -> HandsResult:
        s = self._state.get(h.side)
        if not _continues(h, None if s is None else s.hand, self.jump_reset_m):
            self._state[h.side] = _OneEuroState(h, 0.0, t)
            return h
        dt = t - s.t if t > s.t else FALLBACK_DT_S
        raw_speed = float(np.mean(np.linalg.norm(h.joints - s.hand.joints, axis=1))) / dt
        speed = s.speed + _alpha(self.d_cutoff, dt) * (raw_speed - s.speed)
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        out = _blend_hand(h, s.hand, a)
        self._state[h.side] = _OneEuroState(out, speed, t)
        return out




@dataclass(frozen=True)
class EuroParams:
    """One-Euro parameters of one signal: cutoff (Hz) = min_cutoff + beta x speed (speed in
    the signal's units per second, so beta in s per unit), d_cutoff (Hz) of the derivative."""

    min_cutoff: float
    beta: float
    d_cutoff: float = DEFAULT_D_CUTOFF_HZ

    def __post_init__(self) -> None:
        for name, value in (("min_cutoff", self.min_cutoff), ("d_cutoff", self.d_cutoff)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"One-Euro {name} must be > 0 Hz, got {value}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"One-Euro beta must be >= 0, got {self.beta}")


SIGNALS = ("plane", "orientation", "pose")  # the One-Euro signals (depth: DepthParams)
# Defaults of SignalOneEuroSmoother, per signal, chosen with benchmarks/tune_smoothing.py: on
# synthetic 30 Hz sequences with each signal's measured frame-to-frame noise (--measure:
# landmark backend defaults, the three drifting clips of ../shared/images; median sd over the
# six hands: plane 1.49 mm, orientation 0.023 rad, pose 1.59 mm per keypoint), the steadiest
# setting whose error on a moving signal (0.5 m/s across, 2 rad/s, fingers at 0.3 m/s) stays
# within a frame of motion: RMS error of a still signal plane 2.12 -> 0.32 mm, orientation
# 0.041 -> 0.012 rad, pose 2.74 -> 0.51 mm per keypoint. Each beta raises the cutoff by
# 5 Hz at its test speed. Derivative cutoff 0.5 Hz: a speed estimate that the noise moves
# less.
SIGNAL_D_CUTOFF_HZ = 0.5
DEFAULT_SIGNAL_PARAMS = {
    "plane": EuroParams(DEFAULT_MIN_CUTOFF_HZ, DEFAULT_BETA, SIGNAL_D_CUTOFF_HZ),  # beta s/m
    "orientation": EuroParams(0.05, 2.5, SIGNAL_D_CUTOFF_HZ),  # beta s/rad
    "pose": EuroParams(0.05, 16.7, SIGNAL_D_CUTOFF_HZ),  # beta s/m (RMS keypoint speed)
}


# The fastest a hand moves (m/s; fast gestures) and turns (rad/s; fast wrist rotations): a
# frame-to-frame change that implies more is a re-fit or noise, not motion, and counts as this
# speed in a One-Euro filter's speed estimate. Without the bound the first frames of the demo1
# clip (a first fit 2.7 rad off the next ones) held the filters open for ~20 frames: mean
# root-relative joint jitter 2.15 -> 1.76 mm/frame^2 with it (benchmarks/benchmark_steadiness.py).
MAX_LINEAR_SPEED_M_S = 3.0
MAX_ANGULAR_SPEED_RAD_S = 10.0


@dataclass(frozen=True)
class DepthParams:
    """Noise model of the wrist depth along its ray: measurement sd = noise_ratio x depth;
    motion: constant velocity with random accelerations of sd accel (m/s^2), each frame."""

    noise_ratio: float
    accel: float

    def __post_init__(self) -> None:
        for name, value in (("noise_ratio", self.noise_ratio), ("accel", self.accel)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"depth {name} must be > 0, got {value}")


# Depth noise model, chosen with benchmarks/tune_smoothing.py: noise_ratio = the measured
# frame-to-frame sd of the wrist depth over its depth (landmark backend defaults, the drifting
# clips: 1.34 %, median of the six hands); accel = the steadiest whose error on a hand at
# 0.35 m that starts moving along its ray at 0.25 m/s (and stops 25 cm later) stays within
# one frame of that motion: still error 4.6 -> 1.8 mm, moving 7.8 -> 9.5 mm (budget 10.5).
DEFAULT_DEPTH_PARAMS = DepthParams(noise_ratio=0.013, accel=0.1)
# Velocity sd (m/s) of a hand's depth when its filter starts: hands move along the camera ray
# far less than across it; 5 cm/s. (0.5 m/s let the first frames' depth noise through: mean
# wrist jitter 3.6 instead of 2.8 mm/frame^2 on the demo1 clip, benchmarks/benchmark_steadiness.py.)
DEPTH_START_SPEED_SD = 0.05
# Memory (frames) of the depth filter's running noise estimate (DepthKalman): a third of a
# second at 30 Hz, long enough to average a front end flipping every other frame (mean wrist
# jitter on the demo1 clip 3.5 -> 2.1 mm/frame^2 with it, benchmarks/benchmark_steadiness.py),
# short enough to follow a hand whose noise changes.
DEPTH_NOISE_MEMORY = 10.0
# Smallest accepted noise ratio and acceleration sd (node parameter ranges; rclpy shows
# ranges as closed intervals and 0 would make the filter ignore every measurement).
MIN_DEPTH_NOISE_RATIO = 1e-4
MIN_DEPTH_ACCEL = 1e-3


class DepthKalman:
    """Constant-velocity Kalman filter of one depth (m): state (z, dz/dt), see DepthParams.

    The measurement variance is (noise_ratio x depth)^2 or, when the hand's measurements are
    noisier than that, the variance its recent measurements show: the running mean over
    DEPTH_NOISE_MEMORY frames of their squared second difference / 6 (white noise of
    variance s^2 has second differences of variance 6 s^2; a constant velocity has none, so
    motion does not pass for noise, as the innovations would): a hand whose front end flips
    between two solutions is trusted less than a steady one."""

    def __init__(self, z: float, params: DepthParams) -> None:
        self.params = params
        self.x = np.array([z, 0.0])
        self.P = np.diag([(params.noise_ratio * z) ** 2, DEPTH_START_SPEED_SD ** 2])
        self.noise2 = self.P[0, 0]  # running measurement variance estimate (m^2)
        self.last = [z]  # the last two measurements (m), newest first

    def step(self, z: float, dt: float) -> float:
        """Filtered depth (m) after the measurement z (m) taken dt s after the last one."""
        F = np.array([[1.0, dt], [0.0, 1.0]])
        g = np.array([0.5 * dt * dt, dt])  # how an acceleration held over the frame moves it
        self.x = F @ self.x
        self.P = F @ self.P @ F.T + self.params.accel ** 2 * np.outer(g, g)
        if len(self.last) == 2:
            d2 = z - 2.0 * self.last[0] + self.last[1]
            self.noise2 += (d2 * d2 / 6.0 - self.noise2) / DEPTH_NOISE_MEMORY
        self.last = [z] + self.last[:1]
        r = max((self.params.noise_ratio * z) ** 2, self.noise2)
        gain = self.P[:, 0] / (self.P[0, 0] + r)
        self.x = self.x + gain * (z - self.x[0])
        self.P = self.P - np.outer(gain, self.P[0])
        return float(self.x[0])


class _Euro:
    """One-Euro filter of one array-valued signal (any shape); the speed is the norm of its
    low-passed signed derivative (times `scale`, over `groups` equal parts: RMS per part)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = np.asarray(x, dtype=np.float64).copy()
        self.dx = np.zeros_like(self.x)

    def coefficient(self, x: np.ndarray, dt: float, p: EuroParams, scale: float = 1.0,
                    groups: int = 1, max_speed: float = MAX_LINEAR_SPEED_M_S) -> float:
        """Blend weight of the new sample x (the derivative state is updated; the sample's
        own speed counts at most max_speed, in the speed's units)."""
        raw = (np.asarray(x, np.float64) - self.x) / dt
        raw_speed = scale * float(np.linalg.norm(raw)) / math.sqrt(groups)
        if raw_speed > max_speed:
            raw = raw * (max_speed / raw_speed)
        self.dx += _alpha(p.d_cutoff, dt) * (raw - self.dx)
        speed = scale * float(np.linalg.norm(self.dx)) / math.sqrt(groups)
        return _alpha(p.min_cutoff + p.beta * speed, dt)

    def step(self, x: np.ndarray, dt: float, p: EuroParams, scale: float = 1.0,
             groups: int = 1) -> np.ndarray:
        """Filtered value of the new sample x."""
        a = self.coefficient(x, dt, p, scale, groups)
        self.x += a * (np.asarray(x, np.float64) - self.x)
        return self.x


def _quat_log(q: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) rad of a unit quaternion (4,) xyzw."""
    q = q if q[3] >= 0 else -q
    v = q[:3]
    s = float(np.linalg.norm(v))
    return v * (2.0 * math.atan2(s, q[3]) / s) if s > 1e-12 else 2.0 * v


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a b of quaternions (4,) xyzw."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])


@dataclass
class _SignalState:
    """Filters of one hand: wrist (x/z, y/z), depth z, orientation, hand-frame geometry."""

    plane: _Euro
    depth: DepthKalman
    quat: np.ndarray  # (4,) filtered orientation xyzw
    dquat: np.ndarray  # (3,) low-passed angular velocity rad/s
    local_joints: _Euro
    local_verts: np.ndarray  # (V,3) filtered, with the joints' coefficient
    pose: np.ndarray  # (45,) filtered finger pose
    shape: np.ndarray  # (10,)
    keypoints_2d: np.ndarray  # (21,2)
    hand: HandsResult  # the last output
    t: float


def _split(h: HandsResult) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
    """(x/z, y/z) (2,), z (m), unit quaternion, hand-frame joints (21,3) and vertices (V,3) m
    of a hand (plane and depth 0 when not metric)."""
    wrist = np.asarray(h.joints[0], np.float64)
    rot = geo.quat_to_matrix(h.wrist_quat)
    local_j = (np.asarray(h.joints, np.float64) - wrist) @ rot
    local_v = (np.asarray(h.vertices, np.float64) - wrist) @ rot
    if h.metric and wrist[2] > 0:
        return wrist[:2] / wrist[2], float(wrist[2]), h.wrist_quat / np.linalg.norm(
            h.wrist_quat), local_j, local_v
    return np.zeros(2), 0.0, h.wrist_quat / np.linalg.norm(h.wrist_quat), local_j, local_v


class SignalOneEuroSmoother(_PerHandFilter):
    """Filters per hand and signal: One-Euro for plane, orientation and pose, a Kalman filter
    for depth (module docstring)."""

    def __init__(self, params: Optional[dict[str, EuroParams]] = None,
                 jump_reset_m: float = DEFAULT_JUMP_RESET_M,
                 depth: DepthParams = DEFAULT_DEPTH_PARAMS) -> None:
        self.params = {**DEFAULT_SIGNAL_PARAMS, **(params or {})}
        self.depth = depth
        unknown = set(self.params) - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown smoothing signals {sorted(unknown)}; known: {SIGNALS}")
        self.jump_reset_m = jump_reset_m
        self._state: dict[str, _SignalState] = {}

    def _start(self, h: HandsResult, t: float) -> HandsResult:
        plane, depth, quat, local_j, local_v = _split(h)
        self._state[h.side] = _SignalState(
            _Euro(plane), DepthKalman(depth, self.depth), quat, np.zeros(3), _Euro(local_j),
            local_v, np.asarray(h.pose[3:], np.float64), np.asarray(h.shape, np.float64),
            np.asarray(h.keypoints_2d, np.float64), h, t)
        return h

    def _filter(self, h: HandsResult, t: float) -> HandsResult:
        s = self._state.get(h.side)
        if not _continues(h, None if s is None else s.hand, self.jump_reset_m):
            return self._start(h, t)
        dt = t - s.t if t > s.t else FALLBACK_DT_S
        p = self.params
        plane, depth, quat, local_j, local_v = _split(h)
        if h.metric:
            z = s.depth.step(depth, dt)
            # image-plane speed in m/s at the filtered depth
            a_plane = s.plane.coefficient(plane, dt, p["plane"], scale=z)
            s.plane.x += a_plane * (plane - s.plane.x)
            wrist = z * np.array([s.plane.x[0], s.plane.x[1], 1.0])
        else:
            a_plane, wrist = 1.0, np.zeros(3)
        # orientation: the rotation from the filtered to the new one, as a rotation vector
        if np.dot(quat, s.quat) < 0:
            quat = -quat
        conj = np.array([-s.quat[0], -s.quat[1], -s.quat[2], s.quat[3]])
        omega = _quat_log(_quat_mul(quat, conj)) / dt  # world-frame angular velocity rad/s
        rate = float(np.linalg.norm(omega))
        if rate > MAX_ANGULAR_SPEED_RAD_S:  # a re-fit, not a turn (see the constant)
            omega = omega * (MAX_ANGULAR_SPEED_RAD_S / rate)
        po = p["orientation"]
        s.dquat += _alpha(po.d_cutoff, dt) * (omega - s.dquat)
        a_rot = _alpha(po.min_cutoff + po.beta * float(np.linalg.norm(s.dquat)), dt)
        q = (1 - a_rot) * s.quat + a_rot * quat
        s.quat = q / np.linalg.norm(q)
        # hand-frame geometry (finger pose and shape): one coefficient for joints, vertices,
        # pose and shape, the RMS keypoint speed
        a_pose = s.local_joints.coefficient(local_j, dt, p["pose"], groups=len(local_j))
        s.local_joints.x += a_pose * (local_j - s.local_joints.x)
        s.local_verts += a_pose * (local_v - s.local_verts)
        s.pose += a_pose * (np.asarray(h.pose[3:], np.float64) - s.pose)
        s.shape += a_pose * (np.asarray(h.shape, np.float64) - s.shape)
        s.keypoints_2d += a_plane * (np.asarray(h.keypoints_2d, np.float64) - s.keypoints_2d)
        rot = geo.quat_to_matrix(s.quat)
        joints = wrist + s.local_joints.x @ rot.T
        out = replace(
            h, vertices=(wrist + s.local_verts @ rot.T).astype(np.float32),
            joints=joints.astype(np.float32),
            wrist_position=wrist.copy() if h.metric else np.zeros(3), wrist_quat=s.quat.copy(),
            # the root rotation as axis-angle: the rotation vector of s.quat (|angle| <= pi)
            pose=np.concatenate([_quat_log(s.quat), s.pose]).astype(np.float32),
            shape=s.shape.astype(np.float32), keypoints_2d=s.keypoints_2d.astype(np.float32))
        s.hand, s.t = out, t
        return out


Smoother = EmaSmoother | OneEuroSmoother | SignalOneEuroSmoother


def make_smoother(mode: str, factor: float = 0.5, min_cutoff: Optional[float] = None,
                  beta: Optional[float] = None,
                  signals: Optional[dict[str, EuroParams]] = None,
                  depth: DepthParams = DEFAULT_DEPTH_PARAMS) -> Optional[Smoother]:
    """Smoother for mode 'none' (None) | 'ema' (factor) | 'one_euro' (per-signal filters:
    signals, signal -> EuroParams, defaults DEFAULT_SIGNAL_PARAMS; depth: the depth's noise
    model) | 'one_euro_single' (one
    coefficient per hand: min_cutoff, beta; defaults SINGLE_MIN_CUTOFF_HZ, SINGLE_BETA)."""
    if mode == "none":
        return None
    if mode == "ema":
        return EmaSmoother(factor)
    if mode == "one_euro":
        return SignalOneEuroSmoother(signals, depth=depth)
    if mode == "one_euro_single":
        return OneEuroSmoother(SINGLE_MIN_CUTOFF_HZ if min_cutoff is None else min_cutoff,
                               SINGLE_BETA if beta is None else beta)
    raise ValueError(f"smoothing '{mode}' is not one of {', '.join(SMOOTHING_MODES)}")
