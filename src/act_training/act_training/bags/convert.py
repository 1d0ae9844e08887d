"""Recorded rosbag2 bags → one demo HDF5 file in the project's layout (docs/bags.md).

    act_bag_to_hdf5 BAG [BAG ...] --config mapping.yaml --out demos.hdf5

Reads rosbag2 directories (sqlite3 or mcap storage) and single .mcap/.db3 files with the pure
Python `rosbags` library (no ROS needed). One pass per bag in receive-time order: every stream
(cameras, qpos, action) is resampled on a grid at `control_hz` on its header stamps (or receive
times) with zero-order hold and a maximum staleness, and each resampled step is appended to the
output at once, so memory stays bounded however long the bag is (pending messages are only
kept until the grid passes them). The output is written to a temporary file and renamed at the
end (`DemoWriter`): an error, Ctrl-C or SIGTERM leaves no output file, and inputs are only read.
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from mirror_arm_sim.hdf5_layout import DemoWriter, EpisodeAppender
from tqdm import tqdm

from act_training.bags.mapping import BagConfig, BagConfigError, parse_override
from act_training.runtime.pipeline import ResizeStep
from act_training.runtime.sensors import InputError, JointSelector, decode_image

log = logging.getLogger("act_training.bags.convert")

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
FLOAT_ARRAY = "std_msgs/msg/Float64MultiArray"
TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
CAMERA_TYPES = (IMAGE, COMPRESSED)
QPOS_TYPES = (JOINT_STATE,)
ACTION_TYPES = (JOINT_STATE, FLOAT_ARRAY, TRAJECTORY)
# A header stamp this far from the receive time is on another clock (e.g. sim time).
CLOCK_MISMATCH_NS = 5_000_000_000


class BagError(RuntimeError):
    """A bag cannot be converted with this mapping; the message names the bag and the problem."""


@dataclass
class ConvertReport:
    out: Path
    episodes: int = 0
    steps: int = 0
    bag_bytes: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    per_bag: list[dict] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return self.bag_bytes / 1e6 / max(self.seconds, 1e-9)


def bag_size_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


# ----------------------------------------------------------------------------------------------
# decoding


def decode_frame(msg, msgtype: str, topic: str, size_hw: tuple[int, int]) -> np.ndarray:
    """Image / CompressedImage message -> RGB uint8 (H, W, 3) at `size_hw`: raw images with the
    project's one decoder (`runtime.sensors.decode_image`), resized with the pipeline's resize."""
    if msgtype == IMAGE:
        try:
            img = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        except InputError as e:
            raise BagError(f"{topic}: {e} (or CompressedImage jpeg/png)") from None
    else:
        fmt = msg.format.lower()
        if fmt and not any(k in fmt for k in ("jpeg", "jpg", "png")) or "compresseddepth" in fmt:
            raise BagError(
                f"{topic}: unsupported CompressedImage format '{msg.format}' (supported: jpeg, png)"
            )
        bgr = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise BagError(f"{topic}: CompressedImage '{msg.format}' could not be decoded")
        img = bgr[..., ::-1]
    return ResizeStep(tuple(size_hw)).uint8(img)


class JointExtractor:
    """Pulls the configured joint vector out of JointState / Float64MultiArray / JointTrajectory."""

    def __init__(self, stream, msgtype: str, bag: Path):
        self.s, self.msgtype, self.bag = stream, msgtype, bag
        self._selector = JointSelector(stream.joints if stream.joints is not None else stream.names) \
            if (stream.joints is not None or stream.names is not None) else None
        self.scale = np.asarray(stream.scale, np.float64) if stream.scale else None
        self.offset = np.asarray(stream.offset, np.float64) if stream.offset else None

    def _by_name(self, names, what: str) -> np.ndarray:
        try:
            return self._selector.indices(names)
        except InputError as e:
            raise BagError(f"{self.bag}: {self.s.key}: {what} on {self.s.topic}: {e}") from None

    def __call__(self, msg) -> np.ndarray | None:
        s = self.s
        if self.msgtype == JOINT_STATE:
            vals = np.asarray(getattr(msg, s.field), dtype=np.float64)
            idx = self._by_name(list(msg.name), "JointState.name")
            if vals.size < len(msg.name):
                raise BagError(
                    f"{self.bag}: {s.key}: JointState on {s.topic} has {len(msg.name)} names but "
                    f"{vals.size} {s.field} values"
                )
            v = vals[idx]
        elif self.msgtype == FLOAT_ARRAY:
            data = np.asarray(msg.data, dtype=np.float64)
            if s.indices is not None:
                if data.size <= max(s.indices):
                    raise BagError(
                        f"{self.bag}: {s.key}: Float64MultiArray on {s.topic} has {data.size} values, "
                        f"indices {s.indices} need {max(s.indices) + 1}"
                    )
                v = data[s.indices]
            else:
                if data.size != s.dim:
                    raise BagError(
                        f"{self.bag}: {s.key}: Float64MultiArray on {s.topic} has {data.size} values, "
                        f"expected {s.dim} ({s.output_names}); set {s.key}.indices to pick elements"
                    )
                v = data
        else:  # JointTrajectory
            if not msg.points:
                return None
            pt = msg.points[0] if s.point == "first" else msg.points[-1]
            vals = np.asarray(pt.positions, dtype=np.float64)
            idx = self._by_name(list(msg.joint_names), "JointTrajectory.joint_names")
            if vals.size < len(msg.joint_names):
                return None
            v = vals[idx]
        if self.scale is not None:
            v = v * self.scale
        if self.offset is not None:
            v = v + self.offset
        return v.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# resampling


class Stream:
    """One input stream: messages pending (sorted by stamp) and the zero-order-held value."""

    def __init__(self, name: str, topic: str, msgtype: str, time_source: str, slack_ns: int):
        self.name, self.topic, self.msgtype = name, topic, msgtype
        self.time_source, self.slack_ns = time_source, slack_ns
        self.pending: list[tuple[int, int, object]] = []  # (stamp, seq, payload)
        self.held: tuple[int, int, object] | None = None
        self.held_value = None  # decoded value of `held` (images are decoded lazily, once)
        self.seq = 0
        self.zero_stamp_warned = False

    def push(self, stamp: int, payload) -> None:
        self.seq += 1
        item = (stamp, self.seq, payload)
        if not self.pending or stamp >= self.pending[-1][0]:
            self.pending.append(item)
        else:
            bisect.insort(self.pending, item, key=lambda x: (x[0], x[1]))

    def ready(self, t: int, now: int) -> bool:
        """Is the held value at time t final (no message with stamp <= t can still come)?"""
        return bool(self.pending and self.pending[-1][0] > t) or now > t + self.slack_ns

    def advance_to(self, t: int) -> None:
        n = 0
        while n < len(self.pending) and self.pending[n][0] <= t:
            n += 1
        if n:
            last = self.pending[n - 1]
            if self.held is None or last[0] >= self.held[0]:
                self.held, self.held_value = last, None
            del self.pending[:n]

    def age(self, t: int) -> float:
        return math.inf if self.held is None else (t - self.held[0]) / 1e9


WAIT, RUN, STALE, SKIP = "wait", "run", "stale", "skip"


class BagConverter:
    """Converts one bag into episodes appended to a `DemoWriter`."""

    def __init__(self, cfg: BagConfig, writer: DemoWriter, report: ConvertReport, progress: bool = True):
        self.cfg, self.writer, self.report, self.progress = cfg, writer, report, progress
        self.episode: EpisodeAppender | None = None

    def warn(self, msg: str) -> None:
        log.warning(msg)
        self.report.warnings.append(msg)

    # --- opening and checking -----------------------------------------------------------------
    def _open(self, bag: Path):
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        if not bag.exists():
            raise BagError(f"{bag}: bag not found")
        try:
            reader = AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_KILTED))
            reader.open()
        except Exception as e:  # rosbags raises several types (reader, storage, sqlite, yaml)
            if "Message type" in str(e) or type(e).__name__ == "TypesysError":
                raise BagError(
                    f"{bag}: unknown message type: the bag's type definitions cannot be used ({e})"
                ) from None
            hint = ""
            if bag.is_dir() and not (bag / "metadata.yaml").exists():
                hint = " (no metadata.yaml: was the recording killed before it was closed?)"
            raise BagError(f"{bag}: unreadable or corrupt bag: {type(e).__name__}: {e}{hint}") from None
        return reader

    def _check_topics(self, bag: Path, reader) -> dict[str, str]:
        cfg = self.cfg
        have = {name: info.msgtype for name, info in reader.topics.items()}
        wanted = [(f"camera '{c.name}'", c.topic, CAMERA_TYPES) for c in cfg.cameras]
        wanted += [("qpos", cfg.qpos.topic, QPOS_TYPES), ("action", cfg.action.topic, ACTION_TYPES)]
        if cfg.episodes.split == "marker":
            wanted.append(("episodes.marker_topic", cfg.episodes.marker_topic, None))
        listing = ", ".join(f"{t} [{m}]" for t, m in sorted(have.items())) or "no topics"
        for what, topic, types in wanted:
            if topic not in have:
                raise BagError(f"{bag}: {what}: topic {topic} not in the bag; the bag has: {listing}")
            if types is not None and have[topic] not in types:
                raise BagError(
                    f"{bag}: {what}: topic {topic} has message type {have[topic]}, which cannot be "
                    f"used for {what.split(' ')[0]} (supported: {list(types)})"
                )
        for topic in [t for _, t, _ in wanted]:
            if have[topic] not in reader.typestore.fielddefs:
                raise BagError(
                    f"{bag}: topic {topic}: unknown message type {have[topic]} (no definition in the "
                    "bag or in the ROS 2 Kilted type store)"
                )
        return have

    # --- conversion -----------------------------------------------------------------------------
    def convert(self, bag: Path) -> dict:
        reader = self._open(bag)
        stats = {"bag": str(bag), "episodes": 0, "steps": 0, "messages": 0, "dropped_episodes": 0}
        try:
            types = self._check_topics(bag, reader)
            self._setup(bag, types)
            conns = [c for c in reader.connections if c.topic in self.by_topic or c.topic == self.marker]
            total = sum(c.msgcount for c in conns)
            bar = tqdm(total=total, desc=bag.name, unit="msg", disable=not self.progress,
                       mininterval=0.5, leave=False, file=sys.stderr)
            try:
                it = reader.messages(connections=conns)
                while True:
                    try:
                        conn, rx, raw = next(it)
                        msg = reader.deserialize(raw, conn.msgtype)
                    except StopIteration:
                        break
                    except Exception as e:
                        raise BagError(
                            f"{bag}: unreadable or corrupt bag after {stats['messages']} messages: "
                            f"{type(e).__name__}: {e}"
                        ) from None
                    if _RECEIVED_SIGNALS:
                        raise Interrupted(_RECEIVED_SIGNALS[0])
                    stats["messages"] += 1
                    bar.update(1)
                    self._on_message(conn.topic, rx, msg)
                    self._advance()
                self._advance(final=True)
                self._end_episode(final=True)
            finally:
                bar.close()
        finally:
            if self.episode is not None:
                self.episode.discard()
                self.episode = None
            reader.close()
        stats["episodes"], stats["steps"] = self.n_episodes, self.n_steps
        stats["dropped_episodes"] = self.n_dropped
        return stats

    def _setup(self, bag: Path, types: dict[str, str]) -> None:
        cfg = self.cfg
        self.bag = bag
        slack = int(cfg.latency_s * 1e9)
        self.streams: list[Stream] = []
        self.by_topic: dict[str, list[Stream]] = {}
        self.extract: dict[str, JointExtractor] = {}
        specs = [(f"camera:{c.name}", c.topic, c.time) for c in cfg.cameras]
        specs += [("qpos", cfg.qpos.topic, cfg.qpos.time), ("action", cfg.action.topic, cfg.action.time)]
        for name, topic, tsrc in specs:
            mt = types[topic]
            src = tsrc or cfg.time
            if src == "header" and mt == FLOAT_ARRAY:
                src = "receive"  # no header: receive time is all there is
            s = Stream(name, topic, mt, src, slack if src == "header" else 0)
            self.streams.append(s)
            self.by_topic.setdefault(topic, []).append(s)
        self.extract = {
            "qpos": JointExtractor(cfg.qpos, types[cfg.qpos.topic], bag),
            "action": JointExtractor(cfg.action, types[cfg.action.topic], bag),
        }
        self.marker = cfg.episodes.marker_topic if cfg.episodes.split == "marker" else None
        self.boundaries: list[int] = []
        self.period = cfg.period_ns
        self.staleness = cfg.max_staleness_s
        self.next_t: int | None = None
        self.state = WAIT
        self.episode: EpisodeAppender | None = None
        self.episode_start: int | None = None
        self.gap: tuple[int, list[str]] | None = None  # (grid time it started, stale streams)
        self.pending_split_gap: tuple[int, list[str]] | None = None
        self.n_episodes = self.n_steps = self.n_dropped = 0
        self.bag_t0: int | None = None
        self.now = -(2**62)
        self.mismatch_checked: set[str] = set()

    def _rel(self, t: int) -> str:
        return f"t={(t - (self.bag_t0 or t)) / 1e9:.2f}s"

    def _stamp(self, s: Stream, rx: int, msg) -> int:
        if s.time_source == "receive":
            return rx
        st = msg.header.stamp
        stamp = int(st.sec) * 1_000_000_000 + int(st.nanosec)
        if stamp == 0:
            if not s.zero_stamp_warned:
                self.warn(f"{self.bag}: {s.topic}: header stamps are zero; using receive time for it")
                s.zero_stamp_warned = True
            s.time_source, s.slack_ns = "receive", 0
            return rx
        if s.name not in self.mismatch_checked:
            self.mismatch_checked.add(s.name)
            receive_streams = [o.topic for o in self.streams if o.time_source == "receive"]
            if abs(stamp - rx) > CLOCK_MISMATCH_NS and receive_streams:
                raise BagError(
                    f"{self.bag}: {s.topic}: header stamps are {(stamp - rx) / 1e9:+.1f} s from the receive "
                    f"time (another clock, e.g. sim time) while {receive_streams} use receive time; "
                    "set `time: receive` in the mapping"
                )
        return stamp

    def _on_message(self, topic: str, rx: int, msg) -> None:
        if topic == self.marker:
            self._on_marker(rx, msg)
            return
        for s in self.by_topic[topic]:
            stamp = self._stamp(s, rx, msg)
            if s.name in ("qpos", "action"):
                payload = self.extract[s.name](msg)
                if payload is None:
                    continue
            else:
                payload = msg  # decoded lazily, only if it is ever held at a grid step
            if self.bag_t0 is None:
                self.bag_t0 = stamp
            if self.next_t is None:
                self.next_t = stamp  # the grid is anchored at the bag's first data message
            s.push(stamp, payload)
            self.now = max(self.now, stamp)

    def _on_marker(self, rx: int, msg) -> None:
        t = rx
        if self.cfg.time == "header" and hasattr(msg, "header"):
            st = msg.header.stamp
            t = int(st.sec) * 1_000_000_000 + int(st.nanosec) or rx
        data = getattr(msg, "data", None)
        # Bool false / String "stop"|"end" only end an episode; anything else starts a new one.
        ends_only = data is False or (isinstance(data, str) and data.strip().lower() in ("stop", "end"))
        self.boundaries.append(t if not ends_only else -t)
        self.boundaries.sort(key=abs)

    def _advance(self, final: bool = False) -> None:
        """Evaluate every grid step whose inputs are final.

        `now` is the newest stamp seen on any stream (all streams share one time base, which is
        what resampling them against each other needs); a stream is final at t once it has a
        message stamped after t, or `now` is past t by more than its latency slack. At the end of
        the bag every step up to the last stamp is evaluated.
        """
        if self.next_t is None:
            return
        while True:
            t = self.next_t
            if final:
                if t > self.now + self.period:
                    return
            elif not all(s.ready(t, self.now) for s in self.streams):
                return
            self.next_t = t + self.period
            self._step(t)
            if self.state in (WAIT, STALE, SKIP):
                self._skip_idle(t)

    def _skip_idle(self, t: int) -> None:
        """Jump over grid steps where nothing can change (no message, no marker before them)."""
        firsts = [s.pending[0][0] for s in self.streams if s.pending]
        if self.boundaries:
            firsts.append(abs(self.boundaries[0]))
        if not firsts:
            return
        m = min(firsts)
        if m - t > 2 * self.period:
            self.next_t = max(self.next_t, t + ((m - t - 1) // self.period) * self.period)

    def _step(self, t: int) -> None:
        cfg = self.cfg
        while self.boundaries and abs(self.boundaries[0]) <= t:
            b = self.boundaries.pop(0)
            self._end_episode(final=False)
            self.state = WAIT if b > 0 else SKIP
            for s in self.streams:  # the next episode only uses messages stamped after the marker
                s.held, s.held_value = None, None
                s.pending = [x for x in s.pending if x[0] >= abs(b)]
        for s in self.streams:
            s.advance_to(t)
        if self.state == SKIP:
            return
        stale = [s for s in self.streams if s.age(t) > self.staleness]
        if self.state == WAIT:
            if stale:
                return
            self.state = RUN
            if self.pending_split_gap is not None:
                gt, names = self.pending_split_gap
                self.warn(
                    f"{self.bag}: gap longer than max_staleness_s={self.staleness} on {names} from "
                    f"{self._rel(gt)} to {self._rel(t)} ({(t - gt) / 1e9:.2f} s): split, a new episode starts"
                )
                self.pending_split_gap = None
        elif self.state in (RUN, STALE) and stale:
            if self.state == STALE:  # name every stream that went stale during the gap
                self.gap[1].extend(s.topic for s in stale if s.topic not in self.gap[1])
            if self.state == RUN:
                self.gap = (t, [s.topic for s in stale])
                if cfg.on_gap == "split":
                    self._end_episode(final=False)
                    self.pending_split_gap = self.gap
                    self.state = WAIT
                    return
                self.state = STALE
            return
        elif self.state == STALE:  # fresh again after a gap: it was a gap, not the end of the bag
            gt, names = self.gap
            what = (f"{self.bag}: episode {self.n_episodes} (from {self._rel(self.episode_start)}): gap "
                    f"longer than max_staleness_s={self.staleness} on {names} from {self._rel(gt)} to "
                    f"{self._rel(t)} ({(t - gt) / 1e9:.2f} s)")
            if cfg.on_gap == "error":
                raise BagError(f"{what}; set on_gap: drop or split to convert anyway")
            self.warn(f"{what}: episode dropped (on_gap: drop)")
            if self.episode is not None:
                self.episode.discard()
                self.episode = None
            self.n_dropped += 1
            self.state = SKIP  # the rest of this episode (until a marker or the bag's end)
            return
        self._emit(t)

    def _emit(self, t: int) -> None:
        cfg = self.cfg
        images = {}
        for c, s in zip(cfg.cameras, self.streams):
            if s.held_value is None:
                s.held_value = decode_frame(s.held[2], s.msgtype, s.topic, cfg.image_size)
            images[c.name] = s.held_value
        qpos = self.streams[-2].held[2]
        action = self.streams[-1].held[2]
        if self.episode is None:
            self.episode = self.writer.begin_episode(
                {"source_bag": str(self.bag), "start_time_ns": int(t), "episode_in_bag": self.n_episodes}
            )
            self.episode_start = t
        self.episode.append(images, qpos, action)

    def _end_episode(self, final: bool) -> None:
        ep, self.episode = self.episode, None
        self.state = WAIT
        if ep is None:
            return
        cfg = self.cfg
        n = ep.num_steps
        if n < cfg.episodes.min_length:
            what = (f"{self.bag}: episode {self.n_episodes} (from {self._rel(self.episode_start)}) has {n} "
                    f"steps ({n / cfg.control_hz:.2f} s at {cfg.control_hz:g} Hz), shorter than "
                    f"episodes.min_length={cfg.episodes.min_length} (the policy's chunk)")
            ep.discard()
            if cfg.episodes.on_short == "error":
                raise BagError(f"{what}; record longer demos, lower min_length or set on_short: drop")
            self.warn(f"{what}: dropped (on_short: drop)")
            self.n_dropped += 1
            return
        ep.commit()
        self.n_episodes += 1
        self.n_steps += n


# ----------------------------------------------------------------------------------------------
# API and CLI


def convert_bags(
    bags: list[str | Path],
    cfg: BagConfig,
    out: str | Path,
    progress: bool = True,
    overwrite: bool = False,
) -> ConvertReport:
    """Convert `bags` into one HDF5 file at `out` (atomically). Raises BagError naming the bag."""
    bags = [Path(b) for b in bags]
    out = Path(out)
    if not bags:
        raise BagError("no bags given")
    for b in bags:
        if not b.exists():
            raise BagError(f"{b}: bag not found")
        if out.resolve() == b.resolve() or b.resolve() in out.resolve().parents:
            raise BagError(f"--out {out} is (inside) the input bag {b}; inputs are never written")
    if out.exists() and not overwrite:
        raise BagError(f"{out} exists; pass --overwrite to replace it (it stays intact if conversion fails)")
    report = ConvertReport(out=out)
    t0 = time.perf_counter()
    with DemoWriter(
        out,
        camera_names=[c.name for c in cfg.cameras],
        joint_names=cfg.joint_names,
        action_names=cfg.action_names,
        control_hz=cfg.control_hz,
        arm=cfg.arm,
        source="rosbag: " + ", ".join(str(b) for b in bags),
        extra_attrs={"bag_config": json.dumps(cfg.to_dict())},
    ) as writer:
        conv = BagConverter(cfg, writer, report, progress=progress)
        for b in bags:
            report.bag_bytes += bag_size_bytes(b)
            stats = conv.convert(b)
            report.per_bag.append(stats)
            if stats["episodes"] == 0:
                conv.warn(f"{b}: no episode converted from this bag")
        if writer.num_demos == 0:
            raise BagError(
                "no episodes converted from " + ", ".join(map(str, bags)) + "; see the warnings above"
            )
        report.episodes = writer.num_demos
        report.steps = sum(s["steps"] for s in report.per_bag)
    report.seconds = time.perf_counter() - t0
    return report


class Interrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM during a conversion; the output's temporary file is removed."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_RECEIVED_SIGNALS: list[int] = []


def _on_signal(signum, frame):
    # Remember it as well as raising it: an exception raised by a signal handler can be swallowed
    # when it lands inside library code (a __del__, a callback), so the message loop checks too.
    _RECEIVED_SIGNALS.append(signum)
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="act_bag_to_hdf5",
        description="Convert rosbag2 recordings (dirs with sqlite3/mcap storage, .mcap files) into one "
        "demo HDF5 file in the project's layout.",
    )
    p.add_argument("bags", nargs="+", help="rosbag2 directories or .mcap/.db3 files")
    p.add_argument("--config", "-c", required=True, help="mapping YAML (see config/bag_*.yaml)")
    p.add_argument("--out", "-o", required=True, help="output HDF5 file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a mapping key, e.g. --set episodes.min_length=50 --set time=receive")
    p.add_argument("--control-hz", type=float, help="= --set control_hz=...")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="= --set image_size=[H,W]")
    p.add_argument("--min-length", type=int, help="= --set episodes.min_length=...")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    # SIGTERM and Ctrl-C abort cleanly and remove the temporary file. SIGINT is set explicitly:
    # a process started in the background by a non-interactive shell inherits it as ignored.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        overrides = dict(parse_override(s) for s in args.set)
        if args.control_hz is not None:
            overrides["control_hz"] = args.control_hz
        if args.image_size is not None:
            overrides["image_size"] = list(args.image_size)
        if args.min_length is not None:
            overrides["episodes.min_length"] = args.min_length
        cfg = BagConfig.load(args.config, overrides)
        rep = convert_bags(args.bags, cfg, args.out, progress=not args.no_progress, overwrite=args.overwrite)
        if _RECEIVED_SIGNALS:  # a signal whose exception was swallowed after the last message
            Path(args.out).unlink(missing_ok=True)
            raise Interrupted(_RECEIVED_SIGNALS[0])
    except (BagError, BagConfigError) as e:
        print(f"act_bag_to_hdf5: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("act_bag_to_hdf5: interrupted; no output written", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    print(
        f"wrote {rep.out}: {rep.episodes} episodes, {rep.steps} steps from {len(args.bags)} bag(s), "
        f"{rep.bag_bytes / 1e6:.1f} MB in {rep.seconds:.1f} s ({rep.mb_per_s:.1f} MB/s)"
        + (f", {len(rep.warnings)} warning(s)" if rep.warnings else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
