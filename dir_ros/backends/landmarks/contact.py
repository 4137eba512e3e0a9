"""Two hands placed together: a coupling step that keeps touching hands touching and apart from
passing through each other.

The landmark backend places each hand alone: its fitted 3D keypoints are moved so that they
project onto its image landmarks. Along the image plane that placement is tight (a pixel of
landmark noise is a millimetre at 0.3 m); along the camera ray it rests on the hand's
monocular metric size, a few percent off, i.e. centimetres. So two interacting hands come out
at depths centimetres apart, or one partly inside the other (measured on the three photos:
5 and 13 mm deep, or 7 cm apart while clasped).

When both hands are placed metrically and their image regions meet, this step moves the two
hands rigidly along their mean wrist ray (the direction the monocular placement does not
know; across it each hand stays where its 2D landmarks put it) by a relative depth delta,
shared in proportion to each hand's depth variance, minimising

  (delta / sigma)^2                                    (the hands' own placements)
  + sum_i (p_i / PENETRATION_SIGMA_M)^2                (vertices of one hand inside the other)
  + [(g - CONTACT_GAP_M)_+ / CONTACT_SIGMA_M]^2        (the hands touch: smallest gap g)
  + ((r - r_last) / TEMPORAL_SIGMA_M)^2                (video: relative depth r as before)

sigma = DEPTH_SIGMA_RATIO x the wrists' depths (root sum of squares): the uncertainty of the
hands' relative depth. A vertex's penetration p_i is the nearest-surface-normal test: the
nearest vertex of the other mesh and that vertex's normal; a vertex behind it (p = -(v - n).N
> 0, within MAX_INSIDE_M) is inside. The contact term is a prior of interacting hands (DIR's
data: hands whose image regions meet touch): it pulls only while the gap is one the depth
uncertainty explains (at most CONTACT_MAX_SIGMAS sigma); hands farther apart stay where they
are. In video the last frame's relative depth r_last (reset() forgets it) keeps the
solution from flipping between equally good ones. The cost is piecewise (vertices change
sides and nearest neighbours as a hand moves), so it is minimised by a search: a grid over
+-SEARCH_SIGMAS sigma (delta = 0 on it, so the step never makes the cost worse than leaving
the hands alone), refined around the best point.
The hands' relative placement (DIR's relative root position) thus comes from both hands'
fitted surfaces and 2D evidence together. Hands whose image regions do not meet are not
touched; fingers that interlock (one hand's fingers between the other's) cannot be separated
by moving whole hands, only kept from going deeper.

The finger step (separate_fingers, separate_pair; the landmark backend's finger_step, by
default 'onset': run where the interlock appears, its turns then carried to later frames by
turn_fingers) does that part: where a vertex of one hand is still more than FINGER_PENETRATION_M
inside the other after the coupling, each finger the inside vertices belong to (by their
largest skinning weight; for the other hand's vertices inside, the finger they are inside) is
turned as one piece about its base joint (the MCP; the thumb's CMC) by two angles: about the
axis across the viewing ray through that joint and the finger (the turn that moves the
finger along its viewing rays, i.e. changes its 2D projection least to first order), and
about the axis across the finger and that one (sideways). The angles minimise, by a few
Gauss-Newton steps (each point's nearest vertex re-found at each step),

  sum_i (p_i / PENETRATION_SIGMA_M)^2            (the finger's vertices inside the other hand,
                                                  and the other hand's inside the finger)
  + sum_k |proj(k) - proj0(k)|^2 / FINGER_PX_SIGMA^2   (its keypoints where the fit put them)
  + |angles|^2 / FINGER_ANGLE_SIGMA_RAD^2          (its fitted pose)

The vertices move as the layer's skinning moves them (v + w_f (R - I)(v - c), w_f the
vertex's skinning weight on the finger's joints), the finger's keypoints rigidly, and the base
joint's local rotation takes the turn (the hand's pose stays its own kinematic state).
Measured on the demo2 photo (its fingers interlock at their bases, where a turn moves
little): 8.3 -> 2.2 mm at 30-100 ms on this 2-core machine, the keypoints' mean distance from
the image landmarks growing by 0.3 and 4.4 px (benchmarks/benchmark_steadiness.py).
No ROS, no torch: numpy and scipy's k-d tree.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import numpy as np

# Image regions "meet" when the boxes of the two hands' 21 landmarks, each grown on every side
# by this fraction of its diagonal, overlap (a finger's width on a hand ~10 % of its diagonal
# wide: hands that touch at their outline still meet).
REGION_MARGIN = 0.1
# Depth uncertainty of a hand placed alone, as a fraction of its depth: the spread of its
# monocular size (hand sizes of adults spread by ~5-7 % (anthropometric tables); MediaPipe's
# world landmarks add 1.4-3.4 % per frame, measured by dir_ros.backends.landmarks.scale's model).
DEPTH_SIGMA_RATIO = 0.08
# Penetration residual scale (m): a millimetre of one hand inside the other costs as much as
# a depth sigma of the hand's own placement (a hard constraint to within the mesh's accuracy).
PENETRATION_SIGMA_M = 1e-3
# Touching hands: the smallest vertex distance the contact term asks for (m; the mesh's vertex
# spacing is ~5 mm, so vertices of touching surfaces are a few mm apart), and its scale.
CONTACT_GAP_M = 4e-3
CONTACT_SIGMA_M = 2e-3
# The contact prior pulls only when the gap is within this many combined depth sigmas
# (beyond it the image says the hands are apart in depth, e.g. one held in front).
CONTACT_MAX_SIGMAS = 3.0
# A vertex farther than this from the other mesh's nearest vertex is outside it, whatever the
# normal says (a palm is ~3 cm thick: the normal test alone misreads vertices far off).
MAX_INSIDE_M = 0.03
# In video, two coupled hands' relative depth (along the ray) moves little from one frame to
# the next: hands held against each other change it by 0.1 m/s at most, 3 mm per 30 Hz
# frame. Without this term a clasp whose cost has two nearly equal minima flips between them
# (measured: 19 mm/frame^2 wrist jitter on the demo2 clip; 5 with 1 cm; 1.2 with 3 mm).
TEMPORAL_SIGMA_M = 0.003
# The relative depth is searched on a grid of 0 and +-SEARCH_SIGMAS x sigma (and the last
# frame's relative depth), geometric so that it is fine near the hands' own placement, where
# the cheap solutions are (a valley of the contact term is a few mm wide: a uniform grid
# missed the one next to 0 and found the hands passed through each other instead), and out
# to 2.5 sigma; then refined by REFINE_STEPS halvings of the spacing around the best point
# (sigma / 8 / 2^3 ~ 1-2 mm at 0.3-0.5 m, finer than the vertex spacing the terms see).
SEARCH_SIGMAS = (0.125, 0.25, 0.5, 1.0, 1.75, 2.5)
REFINE_STEPS = 3
# Every QUERY_STRIDE-th vertex is tested against the other mesh in the solve (a quarter of the
# cost; ~1 cm between tested vertices, under a finger's width). The report tests all.
QUERY_STRIDE = 4
# Candidate nearest vertices per point in the solve (see _RayPairs): 16 vertices across a
# mesh whose vertices are ~5 mm apart reach ~1 cm around the point's line, on both surfaces.
RAY_NEIGHBOURS = 16
# The finger step runs when, after the coupling, a vertex of one hand is deeper than this inside
# the other (m; the target is 3 mm: a third of it leaves room for the report's exact
# test, which sees every vertex, where the step sees the finger's).
FINGER_PENETRATION_M = 1e-3
# A finger's keypoint may move this far (px) from where the fit put it for the penetration's
# sigma. The fit is a 3D fit to MediaPipe's world landmarks, placed by translation only: after
# the coupling its keypoints lie 45-71 px (mean) from the image landmarks on the demo2 photo,
# so 10 px is small beside the 2D agreement the hands have; with 3 px the step stopped at 7.0
# mm on demo2 (its fingers interlock at their bases, where a turn moves little), with 10 px
# it reaches 2.2 mm, the landmarks' mean distance growing by 0.3 and 4.4 px.
FINGER_PX_SIGMA = 10.0
# Prior on the finger's turn (rad): a finger's base joint flexes over ~90 degrees; a turn of
# ~17 degrees costs one sigma (weak next to the penetration and 2D terms, it only breaks ties
# where the finger lies across the ray and the 2D term is flat).
FINGER_ANGLE_SIGMA_RAD = 0.3
# Gauss-Newton steps of a finger's two angles (each one dense nearest-vertex search; the
# nearest-vertex correspondences change as it turns, so several re-linearisations: 4 stopped
# at 7.6 mm on demo2, 8 reach 2.2), each step at most FINGER_MAX_STEP_RAD (a fingertip 8 cm
# from its base moves ~1.4 mm per degree: 15 degrees is 2 cm), and the angle step of the 2D
# term's numerical derivative.
FINGER_GN_STEPS = 8
FINGER_MAX_STEP_RAD = np.radians(15.0)
# A finger's Gauss-Newton stops early when its step is under this (rad; 0.06 degrees: 0.1 mm
# at a fingertip 8 cm from its base, far under the mesh's vertex spacing).
FINGER_STOP_RAD = 1e-3
FINGER_DIFF_RAD = 1e-6
# A turning finger's vertices farther than this from the other hand (m) are left out of the
# penetration terms, and the other hand's vertices farther than this from them: the most its
# vertices move in the step (turns up to ~20 degrees: 1-3 cm at the tip; 2 cm stopped at
# 7.6 mm on demo2).
FINGER_REACH_M = 0.03
# Rounds of the two hands' fingers in turn (separate_pair): each round a hand's fingers move
# out of the other as it is then. With the 2D term held at the fit's projection a second round
# changed nothing on demo2 (each finger's angles are at their optimum): one round.
FINGER_ROUNDS = 1
# MANO's fingers (index, middle, pinky, ring, thumb): joints 1 + 3 f .. 3 + 3 f (base first);
# the contract keypoint of the base joint (its finger's keypoints follow it, tip last).
_NUM_FINGERS = 5
FINGER_BASE_JOINT = (1, 4, 7, 10, 13)
_FINGER_BASE_KEYPOINT = (5, 9, 17, 13, 1)
_KEYPOINTS_PER_FINGER = 4


@dataclass
class ContactReport:
    """How two meshes meet: deepest penetration (m, >= 0; one hand's vertices inside the other,
    both ways), how many vertices are inside, and the smallest vertex distance (m)."""

    max_penetration_m: float
    inside_count: int
    min_distance_m: float


@functools.lru_cache(maxsize=4)
def _incidence(faces_key: bytes, num_verts: int) -> "object":
    """Sparse (V,F) vertex-face incidence of a face array (cached by its bytes)."""
    from scipy.sparse import csr_matrix

    faces = np.frombuffer(faces_key, dtype=np.int64).reshape(-1, 3)
    rows = faces.reshape(-1)
    cols = np.repeat(np.arange(len(faces)), 3)
    return csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_verts, len(faces)))


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit outward vertex normals (V,3) of a mesh verts (V,3) m, faces (F,3) (area-weighted
    face normals summed per vertex; the face winding sets the side)."""
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    tri = verts[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 x area
    normals = _incidence(faces.tobytes(), len(verts)) @ face_n
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def penetration(points: np.ndarray, verts: np.ndarray, normals: np.ndarray,
                tree: Optional[object] = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-surface-normal inside test of points (N,3) against a mesh verts (V,3) with unit
    normals (V,3): (depth (N,) m, > 0 inside (nearest vertex within MAX_INSIDE_M and the point
    behind its normal), 0 outside; distance to the nearest vertex (N,) m). tree: a
    scipy cKDTree of verts when the caller has one."""
    from scipy.spatial import cKDTree

    dist, idx = (tree if tree is not None else cKDTree(verts)).query(points)
    near = dist < MAX_INSIDE_M
    depth = np.zeros(len(points))
    hit = idx[near]
    depth[near] = np.maximum(-np.einsum("ij,ij->i", points[near] - verts[hit], normals[hit]), 0.0)
    return depth, dist


def contact_report(verts_a: np.ndarray, faces_a: np.ndarray, verts_b: np.ndarray,
                   faces_b: np.ndarray) -> ContactReport:
    """Penetration (both ways) and smallest vertex distance of two meshes (m)."""
    verts_a, verts_b = np.asarray(verts_a, np.float64), np.asarray(verts_b, np.float64)
    pa, dist = penetration(verts_a, verts_b, vertex_normals(verts_b, faces_b))
    pb, _ = penetration(verts_b, verts_a, vertex_normals(verts_a, faces_a))
    return ContactReport(max_penetration_m=float(max(pa.max(), pb.max())),
                         inside_count=int((pa > 0).sum() + (pb > 0).sum()),
                         min_distance_m=float(dist.min()))


def regions_meet(px_a: np.ndarray, px_b: np.ndarray, margin: float = REGION_MARGIN) -> bool:
    """True when the boxes of two hands' image landmarks (21,2) px, grown by margin x their
    diagonal on every side, overlap."""
    boxes = []
    for px in (np.asarray(px_a, np.float64), np.asarray(px_b, np.float64)):
        lo, hi = px.min(axis=0), px.max(axis=0)
        grow = margin * float(np.linalg.norm(hi - lo))
        boxes.append((lo - grow, hi + grow))
    (lo_a, hi_a), (lo_b, hi_b) = boxes
    return bool(np.all(lo_a <= hi_b) and np.all(lo_b <= hi_a))


class _RayPairs:
    """The nearest-surface-normal test of points (N,3) against a mesh (V,3), for the points
    moved along one unit ray by any shift: each point's candidate nearest vertices are the
    RAY_NEIGHBOURS mesh vertices nearest to its line along the ray (found once, with a 2D k-d
    tree across the ray; they include the vertices of the surfaces in front of and behind
    the point), so each shift costs a few vectorised operations on an (N, RAY_NEIGHBOURS)
    array instead of a 3D search. The report (contact_report) uses the exact 3D search."""

    def __init__(self, points: np.ndarray, verts: np.ndarray, normals: np.ndarray,
                 ray: np.ndarray) -> None:
        from scipy.spatial import cKDTree

        basis = np.linalg.svd(ray[None])[2][1:]  # (2,3) orthonormal, across the ray
        tree = cKDTree(verts @ basis.T, balanced_tree=False, compact_nodes=False)
        lat, j = tree.query(points @ basis.T, k=min(RAY_NEIGHBOURS, len(verts)))
        lat, j = lat.reshape(len(points), -1), j.reshape(len(points), -1)  # k = 1: (N,)
        keep = lat[:, 0] < MAX_INSIDE_M  # farther across the ray: never near the mesh
        self.num_points = len(points)
        self.rows = np.flatnonzero(keep)
        self.index = np.arange(len(self.rows))
        lat, j, points = lat[keep], j[keep], points[keep]
        diff = points[:, None] - verts[j]  # (N,k,3)
        self.lat2 = lat ** 2  # squared distance across the ray (m^2)
        self.along = diff @ ray  # point minus vertex, along the ray (m)
        self.normal_dist = -np.einsum("nkc,nkc->nk", diff, normals[j])
        self.normal_along = normals[j] @ ray  # its change per metre of shift along the ray

    def __call__(self, shift: float) -> tuple[np.ndarray, float]:
        """(depth (n,) m of the points near the mesh (rows: self.rows), 0 outside; smallest
        point-vertex distance m, inf when no point is near) with the points moved by shift x
        ray."""
        if not len(self.rows):
            return np.zeros(0), float("inf")
        d2 = self.lat2 + (self.along + shift) ** 2
        k = np.argmin(d2, axis=1)
        nearest2 = d2[self.index, k]
        pen = self.normal_dist[self.index, k] - shift * self.normal_along[self.index, k]
        depth = np.where(nearest2 < MAX_INSIDE_M ** 2, np.maximum(pen, 0.0), 0.0)
        return depth, float(np.sqrt(nearest2.min()))


class HandContact:
    """The coupling step of two placed hands (see module docstring)."""

    def __init__(self, depth_sigma_ratio: float = DEPTH_SIGMA_RATIO,
                 contact: bool = True) -> None:
        """depth_sigma_ratio: depth sigma of a hand placed alone / its depth; contact: pull
        meeting hands into contact (False: only keep them from passing through each other)."""
        if not (np.isfinite(depth_sigma_ratio) and depth_sigma_ratio > 0):
            raise ValueError(f"depth_sigma_ratio must be > 0, got {depth_sigma_ratio}")
        self.depth_sigma_ratio = float(depth_sigma_ratio)
        self.contact = bool(contact)
        self._last_gap: Optional[float] = None  # last frame's relative depth (m), see offsets
        # whether the last offsets() left a tested vertex inside the other hand (the finger
        # step's cue: interlocked fingers that moving whole hands cannot separate)
        self.inside = False
        # and how deep (m) its deepest tested vertex is (0 when not inside)
        self.depth_m = 0.0

    def reset(self) -> None:
        """Forget the last frame's relative depth (a new clip, a hand lost)."""
        self._last_gap = None

    def offsets(self, verts_a: np.ndarray, faces_a: np.ndarray, px_a: np.ndarray,
                wrist_a: np.ndarray, verts_b: np.ndarray, faces_b: np.ndarray,
                px_b: np.ndarray, wrist_b: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """Offsets (d_a, d_b) (3,) m moving two metric hands (vertices (V,3) m, faces, image
        landmarks (21,2) px, wrist (3,) m) into contact without penetration; None when their
        image regions do not meet (the hands stay as they are)."""
        self.inside, self.depth_m = False, 0.0
        if not regions_meet(px_a, px_b):
            return None
        va = np.asarray(verts_a, np.float64)
        vb = np.asarray(verts_b, np.float64)
        ray = np.asarray(wrist_a, np.float64) + np.asarray(wrist_b, np.float64)
        ray /= np.linalg.norm(ray)  # the two wrists' mean ray: the hands' uncertain direction
        # a's vertices against b's mesh and b's against a's, as a moves by -delta x ray
        # relative to b: a shift of -delta for a's points, +delta for b's
        a_in_b = _RayPairs(va[::QUERY_STRIDE], vb, vertex_normals(vb, faces_b), ray)
        b_in_a = _RayPairs(vb[::QUERY_STRIDE], va, vertex_normals(va, faces_a), ray)
        var_a, var_b = ((self.depth_sigma_ratio * np.linalg.norm(w)) ** 2
                        for w in (wrist_a, wrist_b))
        sigma = float(np.sqrt(var_a + var_b))  # sigma of the hands' relative depth (m)
        share_a, share_b = var_a / sigma ** 2, var_b / sigma ** 2

        reach = CONTACT_MAX_SIGMAS * sigma  # the contact prior's range (m)
        gap0 = float((np.asarray(wrist_a, np.float64) - wrist_b) @ ray)  # a's depth - b's
        last = self._last_gap

        def cost(delta: float, pull: bool) -> tuple[float, float, float]:
            """(cost, smallest gap m, penetration cost) of moving a by -share_a delta and b
            by +share_b delta along the ray; pull: with the contact term."""
            pa, gap = a_in_b(-delta)
            pb, _ = b_in_a(delta)
            inside = float(pa @ pa + pb @ pb) / PENETRATION_SIGMA_M ** 2
            total = (delta / sigma) ** 2 + inside
            if last is not None:  # the hands' relative depth moves little between frames
                total += ((gap0 - delta - last) / TEMPORAL_SIGMA_M) ** 2
            if pull and gap > CONTACT_GAP_M:
                total += ((min(gap, reach) - CONTACT_GAP_M) / CONTACT_SIGMA_M) ** 2
            return total, gap, inside

        # the contact prior holds when the hands as placed are within its range
        _, gap_here, inside_here = cost(0.0, True)
        pull = self.contact and gap_here <= reach
        if not pull and inside_here == 0.0:
            # apart in depth (or touching without contact prior), not inside each other:
            # nothing couples them, and the next frame starts afresh
            self._last_gap = None
            return np.zeros(3), np.zeros(3)

        # coarse grid over the plausible relative depths (0 included: never worse than
        # leaving the hands alone), then a few halvings around the best
        steps = sigma * np.asarray(SEARCH_SIGMAS)
        grid = np.concatenate([[0.0], steps, -steps])
        if last is not None:  # and where the last frame's relative depth is
            grid = np.append(grid, gap0 - last)
        costs = [cost(float(x), pull) for x in grid]
        best = int(np.argmin([c[0] for c in costs]))
        delta, (best_cost, _, best_inside) = float(grid[best]), costs[best]
        others = np.abs(np.delete(grid, best) - delta)
        spacing = float(others.min()) if len(others) else float(steps[0])
        for _ in range(REFINE_STEPS):
            spacing /= 2.0
            for cand in (delta - spacing, delta + spacing):
                c, _, inside = cost(cand, pull)
                if c < best_cost:
                    delta, best_cost, best_inside = cand, c, inside
        self._last_gap = gap0 - delta
        self.inside = best_inside > 0.0
        if self.inside:  # the deepest tested vertex there (the finger step's re-run cue)
            self.depth_m = float(max(a_in_b(-delta)[0].max(initial=0.0),
                                     b_in_a(delta)[0].max(initial=0.0)))
        return -share_a * delta * ray, share_b * delta * ray


@dataclass
class FingerStep:
    """The finger step's result for one hand: its moved vertices (V,3) m and joints (21,3) m,
    and per turned finger (MANO finger id 0..4: index, middle, pinky, ring, thumb) its turn, a
    rotation (3,3) in the camera frame about its base keypoint."""

    vertices: np.ndarray
    joints: np.ndarray
    turns: dict


def _skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrix (3,3) of a vector v (3,): _skew(v) @ x = v x x."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _rotation(rotvec: np.ndarray) -> np.ndarray:
    """Rotation (3,3) of a rotation vector (3,) rad (Rodrigues; the identity at 0)."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    k = _skew(rotvec / angle)
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def _project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection (...,2) px (corner-origin) of camera-frame points (...,3) m."""
    from dir_ros.common.geometry import project_points

    return project_points(points, K)


def finger_weights(weights: np.ndarray) -> np.ndarray:
    """Per vertex and finger the skinning weight on that finger's three joints (V,5), from the
    layer's skinning weights (V,16) (MANO joint order)."""
    weights = np.asarray(weights, np.float64)
    return weights[:, 1:].reshape(len(weights), _NUM_FINGERS, 3).sum(-1)


def turn_fingers(verts: np.ndarray, joints: np.ndarray, finger_w: np.ndarray,
                 turns: dict) -> FingerStep:
    """A hand (vertices (V,3) m, joints (21,3) m, its per-finger skinning weights (V,5):
    finger_weights of its layer's) with
    fingers turned as the finger step turns them: per MANO finger id (0..4) a rotation (3,3)
    in the camera frame about that finger's base keypoint (the vertices by their skinning
    weight on the finger's joints, its keypoints rigidly). Used to carry a finger step's
    turns to later frames (the landmark backend's finger_step 'onset')."""
    out_v = np.array(verts, np.float64)
    out_j = np.array(joints, np.float64)
    fw = np.asarray(finger_w, np.float64)
    for f, rot in turns.items():
        rows = np.flatnonzero(fw[:, f] > 0.0)
        w = fw[rows, f][:, None]
        centre = out_j[_FINGER_BASE_KEYPOINT[f]].copy()
        kp = np.arange(_FINGER_BASE_KEYPOINT[f] + 1,
                       _FINGER_BASE_KEYPOINT[f] + _KEYPOINTS_PER_FINGER)
        local_v = out_v[rows] - centre
        out_v[rows] = centre + local_v + w * (local_v @ rot.T - local_v)
        out_j[kp] = centre + (out_j[kp] - centre) @ rot.T
    return FingerStep(vertices=out_v, joints=out_j, turns=dict(turns))


def separate_fingers(verts_a: np.ndarray, joints_a: np.ndarray, faces_a: np.ndarray,
                     weights_a: np.ndarray, verts_b: np.ndarray, faces_b: np.ndarray,
                     K: np.ndarray, anchor_px: Optional[np.ndarray] = None
                     ) -> Optional[FingerStep]:
    """The finger step (module docstring) of hand a (vertices (V,3) m, joints (21,3) m, faces,
    its layer's skinning weights (V,16)) against hand b (vertices (V,3) m, faces) seen through
    K (3,3); anchor_px (21,2): where the 2D term holds a's keypoints (None: where they project
    now). Both ways: a's finger vertices inside b and b's vertices inside a's finger. None
    when no vertex of either is deeper than FINGER_PENETRATION_M in the other."""
    from scipy.spatial import cKDTree

    va = np.asarray(verts_a, np.float64)
    ja = np.asarray(joints_a, np.float64)
    vb = np.asarray(verts_b, np.float64)
    normals_a, normals_b = vertex_normals(va, faces_a), vertex_normals(vb, faces_b)
    tree_a = cKDTree(va, balanced_tree=False, compact_nodes=False)
    tree_b = cKDTree(vb, balanced_tree=False, compact_nodes=False)
    depth_a, dist_a = penetration(va, vb, normals_b, tree_b)  # a's vertices in b
    depth_b, _ = penetration(vb, va, normals_a, tree_a)  # b's vertices in a
    if max(depth_a.max(), depth_b.max()) <= FINGER_PENETRATION_M:
        return None
    _, nearest_a = tree_a.query(vb[depth_b > 0.0])  # a's vertices that b's are inside at
    anchor = _project(ja, K) if anchor_px is None else np.asarray(anchor_px, np.float64)
    fw = finger_weights(weights_a)  # (V,5)
    # each vertex's finger: its largest skinning weight among the 16 joints (-1: the palm's)
    dominant = np.asarray(weights_a).argmax(1)
    finger_of = np.where(dominant > 0, (dominant - 1) // 3, -1)
    fingers = sorted((set(finger_of[depth_a > 0.0].tolist())
                      | set(finger_of[nearest_a].tolist())) - {-1})
    out_v, out_j, turns = va.copy(), ja.copy(), {}
    for f in fingers:
        rows = np.flatnonzero(fw[:, f] > 0.0)  # the vertices the finger's joints move
        w = fw[rows, f][:, None]
        # the finger's own vertices (largest weight on its joints) near b: the penetration
        # terms' (farther than FINGER_REACH_M from b they stay out of it while it turns)
        own = np.flatnonzero((finger_of[rows] == f) & (dist_a[rows] < FINGER_REACH_M))
        kp = np.arange(_FINGER_BASE_KEYPOINT[f] + 1,
                       _FINGER_BASE_KEYPOINT[f] + _KEYPOINTS_PER_FINGER)
        centre = ja[_FINGER_BASE_KEYPOINT[f]]
        bone = ja[kp[-1]] - centre
        flex = np.cross(centre, bone)  # across the ray and the finger: moves it along rays
        if not len(own) or np.linalg.norm(flex) < 1e-12:  # along the ray: no turn keeps 2D
            continue
        flex /= np.linalg.norm(flex)
        side = np.cross(bone, flex)  # across the finger and flex: moves it sideways
        axes = np.stack([flex, side / np.linalg.norm(side)])  # (2,3) the turn's axes
        # x @ cross_t[i] = axes[i] x x (cross products as matrix products: a tenth of the
        # cost of np.cross on these small arrays)
        cross_t = np.stack([_skew(a).T for a in axes])  # (2,3,3)
        local_v, local_k = out_v[rows] - centre, ja[kp] - centre
        lv, wo, n_own = local_v[own], w[own], normals_a[rows[own]]
        # b's vertices the finger can meet while it turns: within FINGER_REACH_M of its own
        near = tree_b.query_ball_point(centre + lv, FINGER_REACH_M)
        near_b = np.unique(np.concatenate([np.asarray(x, np.int64) for x in near]))
        cand, cand_n = vb[near_b], normals_b[near_b]
        cand_sq = (cand * cand).sum(1)

        def residuals(angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Weighted residuals (n,) of turning the finger by angles (2,) rad about axes
            and their derivatives (n,2) by the angles (each point's nearest vertex held)."""
            rot = _rotation(angle @ axes)
            turned = lv @ rot.T
            points = centre + lv + wo * (turned - lv)  # the finger's own vertices, turned
            d_points = wo[:, None] * (turned @ cross_t).transpose(1, 0, 2)  # (n,2,3)
            normal = n_own @ rot.T  # their normals turn with them
            # squared distances (n_own, n_cand) m^2 by one matrix product
            d2 = (points * points).sum(1)[:, None] + cand_sq[None] - 2.0 * points @ cand.T
            # a's vertices in b: the nearest of b's candidates and its normal
            j, rng = d2.argmin(1), np.arange(len(points))
            pen_a = -np.einsum("ij,ij->i", points - cand[j], cand_n[j])
            in_a = (pen_a > 0.0) & (d2[rng, j] < MAX_INSIDE_M ** 2)
            d_a = -np.einsum("ij,ikj->ik", cand_n[j], d_points)
            # b's candidates in a's finger: the nearest of its own vertices and that normal
            k, rng = d2.argmin(0), np.arange(len(cand))
            rel = cand - points[k]
            pen_b = -np.einsum("ij,ij->i", rel, normal[k])
            in_b = (pen_b > 0.0) & (d2[k, rng] < MAX_INSIDE_M ** 2)
            d_b = np.einsum("ikj,ij->ik", d_points[k], normal[k]) \
                - np.einsum("ij,kij->ik", rel, normal[k] @ cross_t)
            tip = local_k @ rot.T
            px = _project(centre + tip, K)
            d_px = (_project(centre + tip[:, None] + FINGER_DIFF_RAD
                             * (tip @ cross_t).transpose(1, 0, 2), K)
                    - px[:, None]) / FINGER_DIFF_RAD  # (3,2 angles,2 px)
            res = np.concatenate([np.where(in_a, pen_a, 0.0) / PENETRATION_SIGMA_M,
                                  np.where(in_b, pen_b, 0.0) / PENETRATION_SIGMA_M,
                                  ((px - anchor[kp]) / FINGER_PX_SIGMA).ravel(),
                                  angle / FINGER_ANGLE_SIGMA_RAD])
            jac = np.concatenate([np.where(in_a[:, None], d_a, 0.0) / PENETRATION_SIGMA_M,
                                  np.where(in_b[:, None], d_b, 0.0) / PENETRATION_SIGMA_M,
                                  d_px.transpose(0, 2, 1).reshape(-1, 2) / FINGER_PX_SIGMA,
                                  np.eye(2) / FINGER_ANGLE_SIGMA_RAD])
            return res, jac

        angle, best, best_cost = np.zeros(2), np.zeros(2), np.inf
        for _ in range(FINGER_GN_STEPS + 1):  # Gauss-Newton in the two angles
            res, jac = residuals(angle)
            cost = float(res @ res)
            if cost < best_cost:
                best, best_cost = angle.copy(), cost
            step = np.linalg.solve(jac.T @ jac, jac.T @ res)
            norm = float(np.linalg.norm(step))
            if norm < FINGER_STOP_RAD:  # converged: the last point was evaluated
                break
            angle = angle - step * min(1.0, FINGER_MAX_STEP_RAD / norm)
        if not best.any():
            continue
        rot = _rotation(best @ axes)
        out_v[rows] = centre + local_v + w * (local_v @ rot.T - local_v)
        out_j[kp] = centre + local_k @ rot.T
        turns[f] = rot
    return FingerStep(vertices=out_v, joints=out_j, turns=turns)


def separate_pair(hand_a: tuple, hand_b: tuple, K: np.ndarray
                  ) -> Optional[tuple[FingerStep, FingerStep]]:
    """The finger step of two hands, each (vertices (V,3) m, joints (21,3) m, faces (F,3),
    skinning weights (V,16)), seen through K (3,3): up to FINGER_ROUNDS rounds of a's fingers
    out of b, then b's out of a (each hand's 2D term held at its keypoints' projection before
    the first round, so that the rounds share the correction between the hands rather than
    walking away from the image); the hands' FingerSteps with the turns of all rounds
    composed, or None when neither hand is deeper than FINGER_PENETRATION_M in the other."""
    state = [FingerStep(np.asarray(h[0], np.float64), np.asarray(h[1], np.float64), {})
             for h in (hand_a, hand_b)]
    anchors = [_project(st.joints, K) for st in state]
    moved = False
    for _ in range(FINGER_ROUNDS):
        changed = False
        for i in (0, 1):
            me, other = state[i], state[1 - i]
            mine, theirs = (hand_a, hand_b)[i], (hand_a, hand_b)[1 - i]
            step = separate_fingers(me.vertices, me.joints, mine[2], mine[3],
                                    other.vertices, theirs[2], K, anchors[i])
            if step is None or not step.turns:
                continue
            for f, rot in step.turns.items():  # same pivot (the finger's base): compose
                step.turns[f] = rot @ me.turns.get(f, np.eye(3))
            for f, rot in me.turns.items():
                step.turns.setdefault(f, rot)
            state[i], changed = step, True
        if not changed:
            break
        moved = True
    return (state[0], state[1]) if moved else None
