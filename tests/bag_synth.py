"""Synthetic rosbag2 recordings for the converter tests, written with the rosbags Writer.

Streams (all values are functions of time so the converted HDF5 can be checked exactly):
  camera  sensor_msgs/Image (rgb8/bgr8/mono8) or CompressedImage (png/jpeg); pixel (0, 0, R)
          is the frame index % 256, G is 7 (so bgr/rgb mix-ups show)
  qpos    sensor_msgs/JointState, joints J + an extra joint; position_j(t) = sin(t + j)
  action  std_msgs/Float64MultiArray (or JointState of a leader / JointTrajectory);
          a_j(t) = cos(t + j)
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

TS = get_typestore(Stores.ROS2_KILTED)
JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_pitch", "wrist_roll", "gripper"]
T0 = 1_700_000_000_000_000_000  # ns, a plausible wall-clock start


def q_of(t: float) -> np.ndarray:
    return np.sin(t + np.arange(len(JOINTS)))


def a_of(t: float) -> np.ndarray:
    return np.cos(t + np.arange(len(JOINTS)))


def _stamp(ns: int):
    Time = TS.types["builtin_interfaces/msg/Time"]
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _header(ns: int, frame: str = ""):
    return TS.types["std_msgs/msg/Header"](stamp=_stamp(ns), frame_id=frame)


def frame_image(k: int, h: int, w: int, noise: bool = False) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = k % 256
    img[..., 1] = 7
    img[h // 2:, w // 2:, 2] = 200
    if noise:  # the bottom-left quadrant does not compress (like camera noise)
        img[h // 2:, : w // 2] = np.random.default_rng(k).integers(0, 256, (h - h // 2, w // 2, 3))
    return img


def image_msg(k: int, ns: int, h: int, w: int, encoding: str = "rgb8", noise: bool = False):
    rgb = frame_image(k, h, w, noise)
    if encoding == "bgr8":
        arr = rgb[..., ::-1]
    elif encoding == "mono8":
        arr = rgb[..., :1]
    else:
        arr = rgb
    ch = arr.shape[2]
    return TS.types["sensor_msgs/msg/Image"](
        header=_header(ns, "cam"), height=h, width=w, encoding=encoding, is_bigendian=0,
        step=w * ch, data=np.ascontiguousarray(arr).reshape(-1),
    )


def compressed_msg(k: int, ns: int, h: int, w: int, fmt: str = "png"):
    bgr = frame_image(k, h, w)[..., ::-1]
    ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", bgr)
    assert ok
    return TS.types["sensor_msgs/msg/CompressedImage"](
        header=_header(ns, "cam"), format=fmt, data=buf.reshape(-1).astype(np.uint8)
    )


def joint_state_msg(ns: int, names, pos):
    n = len(names)
    return TS.types["sensor_msgs/msg/JointState"](
        header=_header(ns), name=list(names), position=np.asarray(pos, np.float64),
        velocity=np.zeros(n), effort=np.zeros(0),
    )


def float_array_msg(vals):
    MA = TS.types["std_msgs/msg/MultiArrayLayout"]
    return TS.types["std_msgs/msg/Float64MultiArray"](layout=MA(dim=[], data_offset=0),
                                                     data=np.asarray(vals, np.float64))


def trajectory_msg(ns: int, names, pos):
    Pt = TS.types["trajectory_msgs/msg/JointTrajectoryPoint"]
    Dur = TS.types["builtin_interfaces/msg/Duration"]
    pt = Pt(positions=np.ascontiguousarray(pos, np.float64), velocities=np.zeros(0),
            accelerations=np.zeros(0), effort=np.zeros(0), time_from_start=Dur(sec=0, nanosec=20_000_000))
    return TS.types["trajectory_msgs/msg/JointTrajectory"](header=_header(ns), joint_names=list(names),
                                                          points=[pt])


def write_bag(
    path: Path,
    duration_s: float = 3.0,
    storage: str = "sqlite3",
    cam_hz: float = 30.0,
    joint_hz: float = 100.0,
    action_hz: float = 50.0,
    size_hw: tuple[int, int] = (48, 64),
    encoding: str = "rgb8",
    compressed: str | None = None,
    action_kind: str = "array",
    latency_ns: int = 3_000_000,
    gaps: list[tuple[float, float]] = (),
    markers: list[float] = (),
    extra_topics: dict[str, object] | None = None,
    start_ns: int = T0,
    stamp_shift: tuple[float, float] | None = None,
    bad_frames: tuple[int, ...] = (),
    extra_connections: list[dict] = (),
    glitches: tuple[float, ...] = (),
    noise: bool = False,
) -> Path:
    """Write a rosbag2 directory (or a single .mcap file if path ends with .mcap).

    stamp_shift (at_s, shift_s): header stamps of messages from at_s on are shifted by shift_s
    (a clock step / sim reset; receive times go on). bad_frames: camera frame indices whose data
    is cut short (a truncated JPEG/PNG, an Image buffer with half its bytes). extra_connections:
    dicts {topic, msgtype, msgdef, messages: [(t_s, raw bytes)]} written as given (odd types).
    glitches: receive times (s) of one extra joint-state message each, stamped 100 s back.
    noise: raw camera frames get an incompressible quadrant.
    """
    path = Path(path)
    single_mcap = path.suffix == ".mcap"
    bag_dir = path.with_suffix("") if single_mcap else path
    plugin = StoragePlugin.MCAP if storage == "mcap" or single_mcap else StoragePlugin.SQLITE3
    H, W = size_hw
    events = []  # (receive_ns, topic, msgtype, msg)

    def in_gap(t):
        return any(a <= t < b for a, b in gaps)

    def times(hz):
        n = int(duration_s * hz)
        return [k / hz for k in range(n)]

    def hdr(t):  # header stamp (ns) of a message sampled at t
        shift = stamp_shift[1] if stamp_shift and t >= stamp_shift[0] else 0.0
        return start_ns + int(round((t + shift) * 1e9))

    for k, t in enumerate(times(cam_hz)):
        if in_gap(t):
            continue
        ns = start_ns + int(t * 1e9)
        if compressed:
            msg = compressed_msg(k, hdr(t), H, W, compressed)
            if k in bad_frames:
                msg.data = msg.data[: len(msg.data) // 3]
            events.append((ns + latency_ns, "/cam/top/compressed", "sensor_msgs/msg/CompressedImage", msg))
        else:
            msg = image_msg(k, hdr(t), H, W, encoding, noise)
            if k in bad_frames:
                msg.data = msg.data[: len(msg.data) // 2]
            events.append((ns + latency_ns, "/cam/top", "sensor_msgs/msg/Image", msg))
    for t in times(joint_hz):
        if in_gap(t):
            continue
        ns = start_ns + int(t * 1e9)
        events.append((ns + latency_ns // 3, "/follower/joint_states", "sensor_msgs/msg/JointState",
                       joint_state_msg(hdr(t), [*JOINTS, "extra"], [*q_of(t), 9.0])))
    for t in glitches:
        ns = start_ns + int(t * 1e9)
        events.append((ns + 1, "/follower/joint_states", "sensor_msgs/msg/JointState",
                       joint_state_msg(ns - 100_000_000_000, [*JOINTS, "extra"], [*q_of(t - 100), 9.0])))
    for t in times(action_hz):
        if in_gap(t):
            continue
        ns = start_ns + int(t * 1e9)
        if action_kind == "array":
            events.append((ns, "/commands", "std_msgs/msg/Float64MultiArray", float_array_msg(a_of(t))))
        elif action_kind == "leader":
            events.append((ns + latency_ns // 3, "/leader/joint_states", "sensor_msgs/msg/JointState",
                           joint_state_msg(hdr(t), [f"leader_{j}" for j in JOINTS], a_of(t))))
        else:
            events.append((ns, "/trajectory", "trajectory_msgs/msg/JointTrajectory",
                           trajectory_msg(hdr(t), list(reversed(JOINTS)), a_of(t)[::-1])))
    for t in markers:
        events.append((start_ns + int(t * 1e9), "/episode", "std_msgs/msg/Empty",
                       TS.types["std_msgs/msg/Empty"]()))
    for topic, (msgtype, msg) in (extra_topics or {}).items():
        events.append((start_ns, topic, msgtype, msg))
    events.sort(key=lambda e: e[0])
    if bag_dir.exists():
        shutil.rmtree(bag_dir)
    with Writer(bag_dir, version=9, storage_plugin=plugin) as w:
        conns = {}
        for _, topic, mt, _ in events:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, mt, typestore=TS)
        for c in extra_connections:
            conns[c["topic"]] = w.add_connection(c["topic"], c["msgtype"], msgdef=c["msgdef"],
                                             rihs01=c.get("rihs01", "RIHS01_" + "ab" * 32))
            events += [(start_ns + int(t * 1e9), c["topic"], None, raw) for t, raw in c["messages"]]
        events.sort(key=lambda e: e[0])
        for rx, topic, mt, msg in events:
            w.write(conns[topic], rx, msg if mt is None else TS.serialize_cdr(msg, mt))
    if single_mcap:
        f = bag_dir / f"{bag_dir.name}.mcap"
        f.rename(path)
        shutil.rmtree(bag_dir)
        return path
    return bag_dir


def base_config(**over) -> dict:
    d = {
        "control_hz": 50,
        "image_size": [24, 32],
        "time": "header",
        "max_staleness_s": 0.1,
        "cameras": {"top": "/cam/top"},
        "qpos": {"topic": "/follower/joint_states", "joints": list(JOINTS)},
        "action": {"topic": "/commands"},
        "episodes": {"split": "bag", "min_length": 10},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    return d


def nearest_hold(t_grid: np.ndarray, hz: float) -> np.ndarray:
    """Index of the last sample at `hz` (from t = 0) at or before each time in t_grid."""
    return np.floor(t_grid * hz + 1e-6).astype(int)


__all__ = ["JOINTS", "T0", "a_of", "base_config", "frame_image", "math", "q_of", "write_bag"]
