"""rosbag2 read/write (mcap, sqlite3) of images, camera info and dir_ros/TwoHandMesh via rosbags.

No ROS installation is needed: the dir_ros message types are registered in a rosbags
typestore from the package's own ``msg/*.msg`` text (found by :func:`find_msg_dir`), and
bags written here embed the definitions, so any ROS 2 tool (or AnyReader) can read them.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dir_ros.common.geometry import axis_angle_to_quat, project_points
from dir_ros.common.resources import find_resource

from dir_ros.data.dataset import POSE_DIM, SHAPE_DIM, DatasetFrame, GtHand
from dir_ros.common.results import NUM_KEYPOINTS
from dir_ros.eval.evaluator import FrameSample, HandSample, hand_sample

PACKAGE = "dir_ros"
MSG_NAMES = ("HandMesh", "TwoHandMesh")  # dependency order
HAND_MESH = "dir_ros/msg/HandMesh"
TWO_HAND_MESH = "dir_ros/msg/TwoHandMesh"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DEFAULT_FRAME_ID = "camera_color_optical_frame"  # RealSense-style colour optical frame
TOPIC_IMAGE = "/camera/image_raw"
TOPIC_COMPRESSED = "/camera/image_raw/compressed"  # image_transport's compressed suffix
TOPIC_INFO = "/camera/camera_info"
TOPIC_GT = "/hands/gt"
# Optional aligned depth (16UC1 mm, REP 118), named as the RealSense driver names it.
TOPIC_DEPTH = "/camera/aligned_depth_to_color/image_raw"
TOPIC_HANDS = "/hands"  # the node's output (absolute after the default namespace)
# image_transport's compressed plugin writes this format string for rgb8 input
COMPRESSED_FORMAT = "rgb8; jpeg compressed bgr8"
DEFAULT_JPEG_QUALITY = 95  # OpenCV JPEG quality (0-100); image_transport's default is 95
BAG_VERSION = 9  # rosbag2 metadata version written by Jazzy
STORAGES = ("mcap", "sqlite3")
NUM_DISTORTION = 5  # plumb_bob coefficients (k1 k2 t1 t2 k3)
CAMERA_INFO_NAME = "camera_info"  # image_transport: <ns>/<image> pairs with <ns>/camera_info
# Last topic components image_transport appends for its transports (<image>/<transport>).
TRANSPORT_SUFFIXES = ("compressed", "compressedDepth", "theora", "zstd", "ffmpeg", "h264")
# A bag is written into this hidden sibling folder and renamed into place when complete.
PARTIAL_SUFFIX = ".partial"


class BagError(ValueError):
    """Bad bag input; the message says which bag / topic / message."""


# --------------------------------------------------------------------------------------------
# Message definitions


def find_msg_dir() -> Path:
    """The folder holding HandMesh.msg and TwoHandMesh.msg (env DIR_ROS_MSG_DIR overrides)."""
    def has_messages(folder: Path) -> bool:
        return all((folder / f"{n}.msg").is_file() for n in MSG_NAMES)

    env = os.environ.get("DIR_ROS_MSG_DIR")
    found = Path(env) if env and has_messages(Path(env)) else find_resource("msg", has_messages)
    if found is None:
        raise BagError(
            "cannot find dir_ros msg/HandMesh.msg and msg/TwoHandMesh.msg "
            "(set DIR_ROS_MSG_DIR to the package's msg folder)"
        )
    return found


def make_typestore() -> Any:
    """A rosbags typestore: ROS 2 Jazzy standard types plus dir_ros HandMesh / TwoHandMesh."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    folder = find_msg_dir()
    types: dict[str, Any] = {}
    for name in MSG_NAMES:
        types.update(get_types_from_msg((folder / f"{name}.msg").read_text(), f"{PACKAGE}/msg/{name}"))
    store.register(types)
    return store


# --------------------------------------------------------------------------------------------
# Building messages


def _header(store: Any, stamp_ns: int, frame_id: str) -> Any:
    T = store.types
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 10**9), nanosec=int(stamp_ns % 10**9)),
        frame_id=frame_id,
    )


def stamp_to_ns(header: Any) -> int:
    """Integer nanoseconds of a std_msgs/Header's stamp."""
    return int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec)


def image_msg(store: Any, stamp_ns: int, frame_id: str, rgb: np.ndarray) -> Any:
    """sensor_msgs/Image rgb8 from (H,W,3) uint8."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    return store.types[IMAGE](
        header=_header(store, stamp_ns, frame_id), height=h, width=w, encoding="rgb8",
        is_bigendian=0, step=w * 3, data=rgb.reshape(-1),
    )


def depth_msg(store: Any, stamp_ns: int, frame_id: str, depth_m: np.ndarray) -> Any:
    """sensor_msgs/Image 16UC1 (millimetres, 0 = no depth) from (H,W) float metres (NaN =
    no depth), aligned to the colour image (same frame_id)."""
    d = np.asarray(depth_m, np.float64)
    mm = np.where(np.isfinite(d) & (d > 0), np.round(d * 1e3), 0)
    mm = np.clip(mm, 0, np.iinfo(np.uint16).max).astype("<u2")
    h, w = mm.shape
    return store.types[IMAGE](
        header=_header(store, stamp_ns, frame_id), height=h, width=w, encoding="16UC1",
        is_bigendian=0, step=w * 2, data=np.frombuffer(mm.tobytes(), np.uint8),
    )


def compressed_msg(store: Any, stamp_ns: int, frame_id: str, rgb: np.ndarray,
                   quality: int = DEFAULT_JPEG_QUALITY) -> Any:
    """sensor_msgs/CompressedImage (JPEG) from (H,W,3) uint8 RGB."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise BagError("JPEG encoding failed")
    return store.types[COMPRESSED_IMAGE](
        header=_header(store, stamp_ns, frame_id), format=COMPRESSED_FORMAT, data=buf.reshape(-1).astype(np.uint8)
    )


def camera_info_msg(store: Any, stamp_ns: int, frame_id: str, K: np.ndarray, width: int, height: int) -> Any:
    """sensor_msgs/CameraInfo of an undistorted pinhole camera with intrinsics K (3,3)."""
    T = store.types
    K = np.asarray(K, float)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return T[CAMERA_INFO](
        header=_header(store, stamp_ns, frame_id), height=int(height), width=int(width),
        distortion_model="plumb_bob", d=np.zeros(NUM_DISTORTION), k=K.reshape(-1),
        r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def hand_mesh_msg(store: Any, side: str, hand: GtHand, K: np.ndarray | None,
                  confidence: float = 1.0, metric: bool = True) -> Any:
    """dir_ros/HandMesh from one hand (invalid hands: zeros, `valid` false)."""
    T = store.types
    H = T[HAND_MESH]
    Point, Pose = T["geometry_msgs/msg/Point"], T["geometry_msgs/msg/Pose"]
    Quat = T["geometry_msgs/msg/Quaternion"]
    side_id = H.LEFT if side == "left" else H.RIGHT
    faces = np.zeros(0, np.uint32) if hand.faces is None else np.asarray(hand.faces).reshape(-1).astype(np.uint32)
    if not hand.valid or hand.joints is None:
        return H(side=side_id, valid=False, confidence=0.0,
                 wrist_pose=Pose(position=Point(x=0.0, y=0.0, z=0.0), orientation=Quat(x=0.0, y=0.0, z=0.0, w=1.0)),
                 metric=False, joints=[Point(x=0.0, y=0.0, z=0.0) for _ in range(NUM_KEYPOINTS)],
                 vertices=np.zeros(0, np.float32), faces=faces, pose=np.zeros(POSE_DIM, np.float32),
                 shape=np.zeros(SHAPE_DIM, np.float32), keypoints_2d=np.zeros(2 * NUM_KEYPOINTS, np.float32),
                 **_placement_field(H))
    j = np.asarray(hand.joints, float).reshape(NUM_KEYPOINTS, 3).copy()
    if hand.joint_valid is not None:
        j[~np.asarray(hand.joint_valid, bool)] = np.nan  # unannotated joints: NaN in /hands/gt
    pose = np.zeros(POSE_DIM) if hand.pose is None else np.asarray(hand.pose, float)
    q = axis_angle_to_quat(pose[:3]) if hand.pose is not None else np.array([0.0, 0.0, 0.0, 1.0])
    kp2d = np.zeros((NUM_KEYPOINTS, 2))
    if K is not None and metric:
        # keypoints_2d convention of the message (and the node): origin at the pixel corner
        kp2d = np.nan_to_num(project_points(j, K))
    return H(
        side=side_id, valid=True, confidence=float(confidence),
        wrist_pose=Pose(position=Point(x=float(j[0, 0]), y=float(j[0, 1]), z=float(j[0, 2])),
                        orientation=Quat(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))),
        metric=bool(metric),
        joints=[Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in j],
        vertices=(np.zeros(0) if hand.vertices is None else np.asarray(hand.vertices)).reshape(-1).astype(np.float32),
        faces=faces, pose=pose.astype(np.float32),
        shape=(np.zeros(SHAPE_DIM) if hand.shape is None else np.asarray(hand.shape)).astype(np.float32),
        keypoints_2d=kp2d.reshape(-1).astype(np.float32),
        **_placement_field(H),
    )


def _placement_field(H: Any) -> dict[str, int]:
    """HandMesh.placement of a ground-truth hand: PLACEMENT_NONE (not placed by an estimator;
    HandMesh.msg documents it); {} for message definitions older than the field."""
    return {"placement": 0} if "placement" in getattr(H, "__dataclass_fields__", {}) else {}


def two_hand_msg(store: Any, stamp_ns: int, frame_id: str, hands: dict[str, GtHand],
                 K: np.ndarray | None, confidence: float = 1.0, metric: bool = True) -> Any:
    """dir_ros/TwoHandMesh from a side -> GtHand dict."""
    return store.types[TWO_HAND_MESH](
        header=_header(store, stamp_ns, frame_id),
        left=hand_mesh_msg(store, "left", hands["left"], K, confidence, metric),
        right=hand_mesh_msg(store, "right", hands["right"], K, confidence, metric),
    )


# --------------------------------------------------------------------------------------------
# Decoding messages


def camera_info_topic_for(image_topic: str) -> str:
    """The CameraInfo topic image_transport pairs with an image topic: a transport suffix
    dropped, then the last name replaced by camera_info (/cam/color/image_raw/compressed ->
    /cam/color/camera_info)."""
    parts = image_topic.rstrip("/").split("/")
    if len(parts) > 1 and parts[-1] in TRANSPORT_SUFFIXES:
        parts = parts[:-1]
    return "/".join(parts[:-1] + [CAMERA_INFO_NAME])


def K_from_camera_info(msg: Any) -> np.ndarray | None:
    """(3,3) intrinsics of a CameraInfo, None when uncalibrated (all zeros)."""
    K = np.asarray(msg.k, float).reshape(3, 3)
    return None if not K.any() else K


def hand_sample_from_msg(hand: Any) -> HandSample:
    """evaluator.HandSample from a dir_ros/HandMesh."""
    return hand_sample(hand, joints=[[p.x, p.y, p.z] for p in hand.joints])


def frame_sample_from_msg(msg: Any, K: np.ndarray | None = None) -> FrameSample:
    """evaluator.FrameSample from a dir_ros/TwoHandMesh."""
    return FrameSample(left=hand_sample_from_msg(msg.left), right=hand_sample_from_msg(msg.right),
                       K=K, stamp_ns=stamp_to_ns(msg.header))


# --------------------------------------------------------------------------------------------
# Writing / reading bags


def write_dataset_bag(
    path: str | Path,
    frames: list[DatasetFrame],
    storage: str = "mcap",
    frame_id: str = DEFAULT_FRAME_ID,
    compressed: bool = False,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    progress: bool = False,
    ground_truth: bool | None = None,
) -> dict[str, int]:
    """Write camera_info, image and /hands/gt for every frame; returns message counts per topic.

    All three messages of a frame share one header (the frame's stamp and frame_id), and
    the bag's receive timestamps equal the header stamps. ground_truth: write /hands/gt
    (None: when any frame carries hand annotations). The bag is written under a temporary
    name beside `path` and renamed to it when complete, so a failure leaves nothing behind.
    """
    if storage not in STORAGES:
        raise BagError(f"unknown storage {storage!r} (allowed: {', '.join(STORAGES)})")
    path = Path(path)
    if path.exists():
        raise BagError(f"output bag already exists: {path}")
    frames = sorted(frames, key=lambda f: f.stamp_ns)
    if ground_truth is None:
        ground_truth = any(getattr(f, "annotated", True) for f in frames)
    staging = path.parent / f".{path.name}{PARTIAL_SUFFIX}-{os.getpid()}"
    if staging.exists():  # left by an earlier run of this process id that was killed
        shutil.rmtree(staging)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir()
    try:
        counts = _write_frames(staging / path.name, frames, storage, frame_id, compressed,
                               jpeg_quality, progress, ground_truth)
        os.replace(staging / path.name, path)  # same folder: atomic
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts


def _write_frames(path: Path, frames: list[DatasetFrame], storage: str, frame_id: str,
                  compressed: bool, jpeg_quality: int, progress: bool,
                  ground_truth: bool) -> dict[str, int]:
    """Write the messages of write_dataset_bag into a new bag at path."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = make_typestore()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    img_topic, img_type = (TOPIC_COMPRESSED, COMPRESSED_IMAGE) if compressed else (TOPIC_IMAGE, IMAGE)
    counts = {TOPIC_INFO: 0, img_topic: 0, **({TOPIC_GT: 0} if ground_truth else {})}
    # frames that also have depth (load_depth() -> (H,W) m; no dataset source has it yet,
    # synthetic RGB-D frames do): written on TOPIC_DEPTH, same stamp
    with_depth = bool(frames) and all(callable(getattr(fr, "load_depth", None)) for fr in frames)
    if with_depth:
        counts[TOPIC_DEPTH] = 0
    iterator: Any = frames
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="make-bag", unit="frame", file=sys.stderr)
    with Writer(path, version=BAG_VERSION, storage_plugin=plugin) as writer:
        c_info = writer.add_connection(TOPIC_INFO, CAMERA_INFO, typestore=store)
        c_img = writer.add_connection(img_topic, img_type, typestore=store)
        c_gt = writer.add_connection(TOPIC_GT, TWO_HAND_MESH, typestore=store) if ground_truth else None
        c_depth = writer.add_connection(TOPIC_DEPTH, IMAGE, typestore=store) if with_depth else None
        for fr in iterator:
            rgb = fr.load_rgb()
            t = fr.stamp_ns
            h, w = rgb.shape[:2]
            info = camera_info_msg(store, t, frame_id, fr.K, w, h)
            img = (compressed_msg(store, t, frame_id, rgb, jpeg_quality) if compressed
                   else image_msg(store, t, frame_id, rgb))
            writer.write(c_info, t, store.serialize_cdr(info, CAMERA_INFO))
            if c_depth is not None:
                writer.write(c_depth, t, store.serialize_cdr(
                    depth_msg(store, t, frame_id, fr.load_depth()), IMAGE))
            writer.write(c_img, t, store.serialize_cdr(img, img_type))
            if c_gt is not None:
                gt = two_hand_msg(store, t, frame_id, fr.hands, fr.K)
                writer.write(c_gt, t, store.serialize_cdr(gt, TWO_HAND_MESH))
            for topic in counts:
                counts[topic] += 1
    return counts


def write_hands_bag(path: str | Path, messages: list[tuple[int, Any]], storage: str = "mcap",
                    topic: str = TOPIC_HANDS) -> None:
    """Write (receive time ns, TwoHandMesh) pairs to a new bag (what `ros2 bag record` makes)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = make_typestore()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(Path(path), version=BAG_VERSION, storage_plugin=plugin) as writer:
        conn = writer.add_connection(topic, TWO_HAND_MESH, typestore=store)
        for t, msg in messages:
            writer.write(conn, int(t), store.serialize_cdr(msg, TWO_HAND_MESH))


@dataclass
class BagMessage:
    """One deserialised message: topic, receive time (ns) and the message."""

    topic: str
    log_time_ns: int
    msg: Any


class BagReader:
    """Opens a rosbag2 (mcap or sqlite3) with rosbags' AnyReader, dir_ros types known."""

    def __init__(self, path: str | Path) -> None:
        """path: the bag folder (or its single storage file)."""
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        if self.path.is_file():  # a .mcap / .db3 file: its folder is the bag
            self.path = self.path.parent
        if not (self.path / "metadata.yaml").is_file():
            raise BagError(f"not a rosbag2 folder (no metadata.yaml): {self.path}")
        self._reader: Any = None

    def __enter__(self) -> "BagReader":
        from rosbags.highlevel import AnyReader

        try:
            self._reader = AnyReader([self.path], default_typestore=make_typestore())
            self._reader.open()
        except Exception as err:  # noqa: BLE001 - rosbags raises several error types
            raise BagError(f"cannot open bag {self.path}: {err}") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._reader is not None:
            self._reader.close()

    @property
    def topics(self) -> dict[str, str]:
        """topic -> message type of the bag."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    def count(self, topic: str) -> int:
        """Number of messages on a topic."""
        return sum(c.msgcount for c in self._reader.connections if c.topic == topic)

    def messages(self, topics: list[str]) -> Iterator[BagMessage]:
        """Deserialised messages of the given topics, in receive-time order."""
        conns = [c for c in self._reader.connections if c.topic in topics]
        if not conns:
            return
        for conn, t, raw in self._reader.messages(connections=conns):
            try:
                msg = self._reader.deserialize(raw, conn.msgtype)
            except Exception as err:  # noqa: BLE001
                raise BagError(f"{self.path}: cannot decode a {conn.msgtype} on {conn.topic}: {err}") from None
            yield BagMessage(conn.topic, t, msg)
