"""A small rosbag2 recorder for pip-only installs (no rosbag2 / `ros2 bag` available).

    act_bag_record OUT_BAG --topics /cam/top/image_raw /joint_states /commands [--storage mcap]
    act_bag_record OUT_BAG --mapping config/bag_mujoco_sim.yaml   # the mapping's topics

Subscribes to the given topics with `raw=True`, so the CDR bytes are written exactly as they
arrived over DDS, with the receive time (rmw `received_timestamp`) as the bag timestamp, like
`ros2 bag record`. Topics are discovered as their publishers appear (type from the graph); the
subscription QoS adapts to the publishers' (reliable only if every publisher is reliable,
transient-local only if every publisher is) and the offered QoS is stored in the bag metadata.
Stops on Ctrl-C / SIGTERM or after --duration and closes the bag properly (rosbags `Writer`,
sqlite3 or mcap storage). Users with ROS 2 use `ros2 bag record` (launch/record_demos.launch.py).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
from pathlib import Path

import rclpy
import rclpy.signals
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}


def _find_msg_file(msgtype: str) -> Path | None:
    """share/<pkg>/msg/<Type>.msg of an installed interface package (for types not in the store)."""
    pkg, _, name = msgtype.split("/")
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    try:
        from ament_index_python.packages import get_package_share_directory

        prefixes.insert(0, str(Path(get_package_share_directory(pkg)).parents[1]))
    except Exception:  # not in the index: fall back to AMENT_PREFIX_PATH
        pass
    for pre in prefixes:
        f = Path(pre) / "share" / pkg / "msg" / f"{name}.msg"
        if f.exists():
            return f
    return None


def ensure_type(typestore, msgtype: str) -> None:
    """Register `msgtype` (and what it uses) in the rosbags typestore from its .msg file."""
    if msgtype in typestore.fielddefs:
        return
    f = _find_msg_file(msgtype)
    if f is None:
        raise RuntimeError(f"message type {msgtype}: not in the ROS 2 Kilted type store and no .msg found")
    typestore.register(get_types_from_msg(f.read_text(), msgtype))


def _qos_to_rosbags(q) -> Qos:
    def t(d):
        ns = getattr(d, "nanoseconds", 0)
        return QosTime(ns // 1_000_000_000, ns % 1_000_000_000)

    return Qos(
        history=QosHistory(int(q.history)) if int(q.history) <= 3 else QosHistory.UNKNOWN,
        depth=int(q.depth),
        reliability=QosReliability(int(q.reliability)),
        durability=QosDurability(int(q.durability)),
        deadline=t(q.deadline),
        lifespan=t(q.lifespan),
        liveliness=QosLiveliness(int(q.liveliness)),
        liveliness_lease_duration=t(q.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(q.avoid_ros_namespace_conventions),
    )


def adapted_qos(publisher_qos: list) -> QoSProfile:
    """Subscription QoS compatible with every publisher (what `ros2 bag record` does)."""
    reliable = bool(publisher_qos) and all(q.reliability == ReliabilityPolicy.RELIABLE for q in publisher_qos)
    latched = bool(publisher_qos) and all(
        q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in publisher_qos
    )
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=100,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


class BagRecorder(Node):
    """Records raw CDR messages of `topics` into a rosbag2 written by rosbags."""

    def __init__(self, out: str | Path, topics: list[str], storage: str = "sqlite3", log=print):
        super().__init__("act_bag_record")
        if storage not in STORAGES:
            raise ValueError(f"storage {storage!r}: expected one of {list(STORAGES)}")
        self.out = Path(out)
        self.topics = [self.resolve_topic_name(t) for t in topics]
        self.log = log
        self.typestore = get_typestore(Stores.ROS2_KILTED)
        self.writer = Writer(self.out, version=9, storage_plugin=STORAGES[storage])
        self.writer.open()
        self.conns: dict[str, object] = {}
        self.subs = {}
        self.counts: dict[str, int] = {}
        self.closed = False
        self._discover()
        self.timer = self.create_timer(0.2, self._discover)

    @property
    def all_subscribed(self) -> bool:
        """True once every requested topic has a publisher and a subscription."""
        return all(t in self.subs for t in self.topics)

    def _discover(self) -> None:
        for topic in self.topics:
            if topic in self.subs:
                continue
            pubs = self.get_publishers_info_by_topic(topic)
            if not pubs:
                continue
            msgtype = pubs[0].topic_type
            if len({p.topic_type for p in pubs}) > 1:
                self.log(f"[act_bag_record] {topic}: publishers disagree on the type; recording {msgtype}")
            pkg, _, name = msgtype.split("/")
            cls = getattr(importlib.import_module(f"{pkg}.msg"), name)
            ensure_type(self.typestore, msgtype)
            offered = [_qos_to_rosbags(p.qos_profile) for p in pubs]
            self.conns[topic] = self.writer.add_connection(
                topic, msgtype, typestore=self.typestore, offered_qos_profiles=offered
            )
            self.counts[topic] = 0
            self.subs[topic] = self.create_subscription(
                cls, topic, self._callback(topic), adapted_qos([p.qos_profile for p in pubs]), raw=True
            )
            self.log(f"[act_bag_record] subscribed {topic} [{msgtype}]")
        if self.all_subscribed and self.timer_ready_logged is False:
            self.timer_ready_logged = True
            self.log(f"[act_bag_record] recording {len(self.topics)} topics to {self.out}")

    timer_ready_logged = False

    def _callback(self, topic: str):
        conn = self.conns[topic]

        def cb(data: bytes, info) -> None:
            if self.closed:
                return
            ts = int(info.get("received_timestamp", 0)) if isinstance(info, dict) else 0
            if ts <= 0:
                ts = time.time_ns()
            self.writer.write(conn, ts, data)
            self.counts[topic] += 1

        return cb

    def close(self) -> None:
        """Unsubscribe, close the bag and log the message count per topic (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for sub in self.subs.values():
            self.destroy_subscription(sub)
        self.writer.close()
        missing = [t for t in self.topics if t not in self.subs]
        self.log(
            f"[act_bag_record] closed {self.out}: "
            + ", ".join(f"{t} {n}" for t, n in self.counts.items())
            + (f"; never published: {missing}" if missing else "")
        )


def topics_from_mapping(path: str | Path) -> list[str]:
    """The topics a bag -> HDF5 mapping YAML reads (cameras, qpos, action, marker), without duplicates."""
    from act_training.bags.mapping import BagConfig

    cfg = BagConfig.load(path)
    topics = [c.topic for c in cfg.cameras] + [cfg.qpos.topic, cfg.action.topic]
    if cfg.episodes.marker_topic:
        topics.append(cfg.episodes.marker_topic)
    return list(dict.fromkeys(topics))


def main(argv: list[str] | None = None) -> int:
    """`act_bag_record` CLI: record topics into a bag until Ctrl-C/SIGTERM or --duration; returns
    the exit code."""
    p = argparse.ArgumentParser(prog="act_bag_record", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="bag directory to create (must not exist)")
    p.add_argument("--topics", nargs="+", default=[], help="topics to record")
    p.add_argument("--mapping", help="record the topics of a bag → HDF5 mapping YAML")
    p.add_argument("--storage", choices=list(STORAGES), default="sqlite3")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: Ctrl-C)")
    p.add_argument("--wait", type=float, default=0.0,
                   help="fail if not every topic has a publisher within this many seconds (0: wait)")
    args = p.parse_args(argv)
    topics = list(args.topics) + (topics_from_mapping(args.mapping) if args.mapping else [])
    if not topics:
        p.error("give --topics or --mapping")
    if Path(args.out).exists():
        print(f"act_bag_record: error: {args.out} exists", file=sys.stderr)
        return 2
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    rclpy.init(args=None, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    log = lambda s: print(s, flush=True)  # noqa: E731
    rec = BagRecorder(args.out, topics, args.storage, log=log)
    t0 = time.monotonic()
    rc = 0
    try:
        while not stop["flag"]:
            rclpy.spin_once(rec, timeout_sec=0.05)
            now = time.monotonic() - t0
            if args.duration and now >= args.duration:
                break
            if args.wait and now >= args.wait and not rec.all_subscribed:
                missing = [t for t in rec.topics if t not in rec.subs]
                log(f"[act_bag_record] error: no publisher within {args.wait} s for {missing}")
                rc = 3
                break
    finally:
        rec.close()
        rec.destroy_node()
        rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
