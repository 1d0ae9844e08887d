"""Recorded rosbag2 bags → one demo HDF5 file in the project's layout (docs/bags.md).

    act_bag_to_hdf5 BAG [BAG ...] --config mapping.yaml --out demos.hdf5 [--jobs N]

Reads rosbag2 directories (sqlite3 or mcap storage) and single .mcap/.db3 files with the pure
Python `rosbags` library (no ROS needed; `bags.reader`). One pass per bag in receive-time order:
every stream (cameras, qpos, action) is resampled on a grid at `control_hz` on its header stamps
(or receive times) with zero-order hold and a maximum staleness, and each resampled step is
appended to the output at once, so memory stays bounded however long the bag is (pending
messages are only kept until the grid passes them, and their number is capped). Camera frames
are decoded and resized (`bags.frames`) in `--jobs` worker threads while the bag is read (JPEG/PNG
by default) or in the reading thread when a step holds them (raw Image by default: cheaper).
The HDF5 writes (LZF-compressed frames) run in a forked child on the other core
(`bags.writer_process`).

Faults end as little as possible: a backward jump of header stamps ends the episode there (or
splits it, `on_gap`); an undecodable message is an error or skipped (`on_bad_message`); storage
that turns corrupt mid-bag ends the bag's episode at that point; `--skip-bad-bags` converts the
other bags of a job. The output is written to a temporary file and renamed at the end
(`DemoWriter`): an error, a full disk, Ctrl-C or SIGTERM leaves no output file (an existing one
stays intact), and inputs are only read.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import errno
import json
import logging
import math
import os
import signal
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mirror_arm_sim.hdf5_layout import DemoWriter, EpisodeAppender
from tqdm import tqdm

from act_training.bags.frames import COMPRESSED, IMAGE, BadMessage, FrameDecoder
from act_training.bags.mapping import BagConfig, BagConfigError, parse_override
from act_training.bags.reader import RECOVERY_HINT, BagCorrupt, BagError, BagSource, one_line, open_bag
from act_training.bags.writer_process import WriterProcess
from act_training.runtime.sensors import InputError, JointSelector

log = logging.getLogger("act_training.bags.convert")

JOINT_STATE = "sensor_msgs/msg/JointState"
FLOAT_ARRAY = "std_msgs/msg/Float64MultiArray"
TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
CAMERA_TYPES = (IMAGE, COMPRESSED)
QPOS_TYPES = (JOINT_STATE,)
ACTION_TYPES = (JOINT_STATE, FLOAT_ARRAY, TRAJECTORY)
# A header stamp this far from the receive time is on another clock (e.g. sim time).
CLOCK_MISMATCH_NS = 5_000_000_000
# Steps buffered before an HDF5 write: one call writes many one-frame chunks (the loader reads
# single frames at random, so a chunk stays one frame). With the writer process it is also the
# hand-over block: 32 keeps both processes busier than 64 (the writer waits less for a block;
# 50 s sqlite3 bag, 10 alternated runs: median 0.48 vs 0.495 s, the 10 s one 0.15 vs 0.165 s).
WRITE_BATCH = 32
# Messages a stream may hold waiting for the grid (a safety net: with jumps detected the grid
# never stalls, so only a stream whose stamps run far ahead of the others gets near it).
MAX_PENDING = {"camera": 512, "joints": 8192}
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)

__all__ = ["BagError", "BagConverter", "ConvertReport", "cli", "convert_bags", "main"]


@dataclass
class ConvertReport:
    """What a conversion did: counts, time, every warning, the bags skipped (--skip-bad-bags)."""

    out: Path
    episodes: int = 0
    steps: int = 0
    bag_bytes: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    per_bag: list[dict] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (bag, one-line reason)
    written: bool = False  # the output file is in place (set right after the rename)

    @property
    def mb_per_s(self) -> float:
        """Conversion throughput: MB (1e6 bytes) of bag per second."""
        return self.bag_bytes / 1e6 / max(self.seconds, 1e-9)


def bag_size_bytes(path: Path) -> int:
    """Bytes on disk of a bag directory or file."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def header_stamp(raw) -> int:
    """Header stamp (ns) of a CDR message whose first field is a std_msgs/Header, from its bytes."""
    if len(raw) < 12:
        raise BadMessage(f"CDR message of {len(raw)} bytes, expected a header of at least 12")
    sec, nsec = struct.unpack_from("<iI" if raw[1] == 1 else ">iI", raw, 4)
    return sec * 1_000_000_000 + nsec


# ----------------------------------------------------------------------------------------------
# decoding


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
            idx = self._by_name(msg.name, "JointState.name")
            if vals.size < len(msg.name):
                raise BadMessage(
                    f"{s.topic}: JointState has {len(msg.name)} names but {vals.size} {s.field} values, "
                    f"expected one per name"
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


class Frame:
    """A camera message not decoded yet: its raw bytes, or the worker's future for its frame."""

    __slots__ = ("raw", "future", "value")

    def __init__(self, raw, future=None):
        self.raw, self.future, self.value = raw, future, None

    def get(self, decode) -> np.ndarray:
        """The stored frame: the worker's result, or `decode(raw)` now; cached, the raw bytes released."""
        if self.value is None:
            raw, fut, self.raw, self.future = self.raw, self.future, None, None
            self.value = fut.result() if fut is not None else decode(raw)
        return self.value

    def cancel(self) -> None:
        """Cancel the pending decode, if any (the frame is dropped)."""
        if self.future is not None:
            self.future.cancel()


# ----------------------------------------------------------------------------------------------
# resampling


class Stream:
    """One input stream: messages pending (sorted by stamp) and the zero-order-held value."""

    def __init__(self, name: str, topic: str, msgtype: str, time_source: str, slack_ns: int):
        self.name, self.topic, self.msgtype = name, topic, msgtype
        self.time_source, self.slack_ns = time_source, slack_ns
        self.is_camera = name.startswith("camera:")
        self.max_pending = MAX_PENDING["camera" if self.is_camera else "joints"]
        self.pending: list[tuple[int, int, object]] = []  # (stamp, seq, payload)
        self.held: tuple[int, int, object] | None = None
        self.good: tuple[int, int, object] | None = None  # last held camera message that decoded
        self.seq = 0
        self.zero_stamp_warned = False
        self.newest: int | None = None  # newest stamp accepted (jump detection)
        self.suspect: tuple[int, object] | None = None  # a message stamped far back, unconfirmed
        self.epoch = 0  # time bases seen: a confirmed backward jump starts a new one
        self.old_clock_dropped = 0
        self.bad = 0

    def push(self, stamp: int, payload) -> None:
        """Add a message (stamp in ns) to the pending list, kept sorted by (stamp, arrival order)."""
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
        """Move the pending messages stamped <= t (ns) out; the newest becomes the held value (unless
        the held one is newer)."""
        n = 0
        while n < len(self.pending) and self.pending[n][0] <= t:
            n += 1
        if n:
            last = self.pending[n - 1]
            if self.held is None or last[0] >= self.held[0]:
                self.held = last
            del self.pending[:n]

    def clear(self) -> None:
        """Drop everything pending (cancelling frame decodes) and the held value."""
        for item in self.pending:
            if isinstance(item[2], Frame):
                item[2].cancel()
        self.pending, self.held, self.good, self.suspect = [], None, None, None

    def age(self, t: int) -> float:
        """Seconds from the held message's stamp to t (ns); inf when nothing is held."""
        return math.inf if self.held is None else (t - self.held[0]) / 1e9


WAIT, RUN, STALE, SKIP = "wait", "run", "stale", "skip"


class BagConverter:
    """Converts one bag after another into episodes appended to a `DemoWriter`."""

    def __init__(self, cfg: BagConfig, writer: DemoWriter, report: ConvertReport, progress: bool = True,
                 pool: ThreadPoolExecutor | None = None, pool_for_raw: bool = True):
        self.cfg, self.writer, self.report, self.progress = cfg, writer, report, progress
        self._pool, self._pool_for_raw = pool, pool_for_raw
        self.pool: ThreadPoolExecutor | None = None  # the one this bag's frames use (`_setup`)
        self.episode: EpisodeAppender | None = None

    def warn(self, msg: str) -> None:
        """Log a warning and keep it in the report."""
        log.warning(msg)
        self.report.warnings.append(msg)

    # --- opening and checking -----------------------------------------------------------------
    def _topics(self) -> list[str]:
        cfg = self.cfg
        topics = [c.topic for c in cfg.cameras] + [cfg.qpos.topic, cfg.action.topic]
        return topics + ([cfg.episodes.marker_topic] if cfg.episodes.split == "marker" else [])

    def _check_topics(self, bag: Path, have: dict[str, str]) -> None:
        cfg = self.cfg
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

    # --- conversion -----------------------------------------------------------------------------
    def convert(self, bag: Path) -> dict:
        """Convert one bag; its episodes are committed to the writer. Raises BagError."""
        src, notes = open_bag(bag, self._topics())
        for n in notes:
            self.warn(n)
        if src.skipped:
            self.warn(f"{bag}: skipped {len(src.skipped)} connection(s) the mapping does not use whose type "
                      f"definitions cannot be parsed: {', '.join(src.skipped)}")
        stats = {"bag": str(bag), "episodes": 0, "steps": 0, "messages": 0, "dropped_episodes": 0,
                 "bad_messages": 0, "corrupt_after": None, "max_pending": 0}
        try:
            self._check_topics(bag, src.topics)
            self._setup(bag, src)
            total = src.message_count(self._topics())
            bar = tqdm(total=total, desc=bag.name, unit="msg", disable=not self.progress,
                       mininterval=0.5, leave=False, file=sys.stderr)
            try:
                n = 0
                try:
                    for topic, rx, raw in src.messages():
                        if _RECEIVED_SIGNALS:
                            raise Interrupted(_RECEIVED_SIGNALS[0])
                        n += 1
                        if n % 256 == 0:
                            bar.update(256)
                        for s in self._on_message(topic, rx, raw):
                            self._advance()
                            if len(s.pending) > stats["max_pending"]:
                                stats["max_pending"] = len(s.pending)
                                if len(s.pending) > s.max_pending:
                                    self._too_many_pending(s)
                except BagCorrupt as e:
                    stats["corrupt_after"] = n
                    self.warn(f"{bag}: storage unreadable after {n} messages ({e}): the episode ends at "
                              f"the last step before it ({self._rel(self.now)}); {RECOVERY_HINT}")
                stats["messages"] = n
                self._advance(final=True)
                self._end_episode(final=True)
            finally:
                bar.close()
        except OSError:
            # A failed write (full disk): the writer is aborted as a whole, and closing the file
            # first keeps the open episode's datasets from failing again in their destructors.
            self._close(src)
            raise
        except BaseException:
            self._discard()
            self._close(src)
            raise
        self._discard()
        self._close(src)
        for s in self.streams:
            if s.old_clock_dropped:
                self.warn(f"{bag}: {s.topic}: {s.old_clock_dropped} message(s) stamped on the clock before "
                          "the jump arrived after it and were not used")
            if s.bad:
                self.warn(f"{bag}: {s.topic}: {s.bad} undecodable message(s) skipped (on_bad_message: skip)")
        stats["episodes"], stats["steps"] = self.n_episodes, self.n_steps
        stats["dropped_episodes"] = self.n_dropped
        stats["bad_messages"] = sum(s.bad for s in self.streams)
        return stats

    def _discard(self) -> None:
        if self.episode is not None:
            self.episode.discard()
            self.episode = None

    def _close(self, src: BagSource) -> None:
        for s in getattr(self, "streams", []):
            s.clear()
        src.close()

    def _setup(self, bag: Path, src: BagSource) -> None:
        cfg = self.cfg
        self.bag, self.src = bag, src
        types = src.topics
        slack = int(cfg.latency_s * 1e9)
        self.streams: list[Stream] = []
        self.by_topic: dict[str, list[Stream]] = {}
        specs = [(f"camera:{c.name}", c.topic, c.time) for c in cfg.cameras]
        specs += [("qpos", cfg.qpos.topic, cfg.qpos.time), ("action", cfg.action.topic, cfg.action.time)]
        for name, topic, tsrc in specs:
            mt = types[topic]
            src_time = tsrc or cfg.time
            if src_time == "header" and mt == FLOAT_ARRAY:
                src_time = "receive"  # no header: receive time is all there is
            s = Stream(name, topic, mt, src_time, slack if src_time == "header" else 0)
            self.streams.append(s)
            self.by_topic.setdefault(topic, []).append(s)
        # a writer process resizes raw frames itself, on the other core (`bags.writer_process`)
        resize_raw = not getattr(self.writer, "resizes_frames", False)
        self.decoders = {s.name: FrameDecoder(s.msgtype, s.topic, cfg.image_size, src.deserialize, resize_raw)
                         for s in self.streams if s.is_camera}
        # Raw Image frames cost one copy and a ~0.1 ms resize: handing them to threads costs more
        # (GIL hand-offs) than it saves, so by default only JPEG/PNG decoding goes to the pool.
        compressed = any(s.msgtype == COMPRESSED for s in self.streams if s.is_camera)
        self.pool = self._pool if (compressed or self._pool_for_raw) else None
        self.extract = {
            "qpos": JointExtractor(cfg.qpos, types[cfg.qpos.topic], bag),
            "action": JointExtractor(cfg.action, types[cfg.action.topic], bag),
        }
        self.marker = cfg.episodes.marker_topic if cfg.episodes.split == "marker" else None
        self.boundaries: list[int] = []
        self.period = cfg.period_ns
        self.staleness = cfg.max_staleness_s
        # A stamp this far behind its stream's newest is a jump, not reordering in transport.
        self.jump_tol = max(slack, int(self.staleness * 1e9), 2 * self.period)
        self.epoch = 0
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
        if self.bag_t0 is None or t < -(2**61):
            return "t=?"
        return f"t={(t - self.bag_t0) / 1e9:.2f}s"

    def _bad(self, s: Stream, e: BadMessage, t: int) -> None:
        """An undecodable message on stream s: an error, or counted and left out (on_bad_message)."""
        where = f"{self.bag}: {e} (message stamped {self._rel(t)})"
        if self.cfg.on_bad_message == "error":
            raise BagError(f"{where}; set on_bad_message: skip to leave such messages out")
        if s.bad == 0:
            self.warn(f"{where}: skipped (on_bad_message: skip); further ones on {s.topic} are counted")
        s.bad += 1

    def _too_many_pending(self, s: Stream) -> None:
        t = self.next_t if self.next_t is not None else s.pending[0][0]
        others = [o.topic for o in self.streams if o is not s and not o.ready(t, self.now)]
        raise BagError(
            f"{self.bag}: {s.topic}: {len(s.pending)} messages wait for the resampling grid at "
            f"{self._rel(t)} "
            f"(stamps up to {self._rel(s.pending[-1][0])}, held back by {others or 'the grid'}); expected "
            f"every stream's stamps to advance together within latency_s={self.cfg.latency_s}"
        )

    def _stamp(self, s: Stream, rx: int, stamp: int) -> int:
        if s.time_source == "receive":
            return rx
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

    def _on_message(self, topic: str, rx: int, raw) -> list[Stream]:
        """Take one message; returns the streams it was pushed to."""
        if topic == self.marker:
            try:
                msg = self.src.deserialize(raw, self.src.topics[topic])
            except Exception as e:  # noqa: BLE001
                self._bad_marker(topic, e)
                return []
            self._on_marker(rx, msg)
            return []
        out = []
        for s in self.by_topic[topic]:
            try:
                if s.is_camera:
                    stamp = header_stamp(raw) if s.time_source == "header" else rx
                    payload = Frame(raw, self.pool.submit(self.decoders[s.name], raw) if self.pool else None)
                else:
                    msg = self.src.deserialize(raw, s.msgtype)
                    stamp = rx
                    if s.time_source == "header":
                        st = msg.header.stamp
                        stamp = int(st.sec) * 1_000_000_000 + int(st.nanosec)
                    payload = self.extract[s.name](msg)
                    if payload is None:
                        continue
            except BadMessage as e:
                self._bad(s, e if str(e).startswith(s.topic) else BadMessage(f"{s.topic}: {e}"), rx)
                continue
            except BagError:
                raise
            except Exception as e:  # noqa: BLE001 - CDR that does not parse as the topic's type
                self._bad(s, BadMessage(f"{s.topic}: message does not deserialize as {s.msgtype} "
                                        f"({type(e).__name__}: {one_line(e, 120)})"), rx)
                continue
            stamp = self._stamp(s, rx, stamp)
            if self._accept(s, stamp, rx, payload):
                out.append(s)
        return out

    def _bad_marker(self, topic: str, e: Exception) -> None:
        if self.cfg.on_bad_message == "error":
            raise BagError(f"{self.bag}: {topic}: marker message does not deserialize ({one_line(e, 120)}); "
                           "set on_bad_message: skip to leave such messages out")
        self.warn(f"{self.bag}: {topic}: undecodable marker message skipped (on_bad_message: skip)")

    def _accept(self, s: Stream, stamp: int, rx: int, payload) -> bool:
        """Jump detection, then push. A stamp far behind the stream's newest is held as a suspect
        until the next message: if that one continues from it, the clock jumped (a new time base,
        `_jump`); if not, the suspect was a one-off and is dropped."""
        if s.time_source == "header" and s.newest is not None and stamp < s.newest - self.jump_tol:
            if s.epoch < self.epoch:  # another stream jumped first: this one follows it
                s.epoch, s.newest = self.epoch, None
            elif s.suspect is None:
                s.suspect = (stamp, payload)
                return False
            else:
                first = s.suspect
                self._jump(s, first[0], rx)
                s.newest = None
                self._push(s, *first)
        else:
            if s.suspect is not None:
                back_s = (s.newest - s.suspect[0]) / 1e9
                self.warn(f"{self.bag}: {s.topic}: one message stamped {back_s:.3f} s "
                          f"back ({self._rel(s.suspect[0])}) among later ones: left out")
                s.suspect = None
            if s.time_source == "header" and s.epoch < self.epoch:
                s.old_clock_dropped += 1  # still on the clock before another stream's jump
                return False
        self._push(s, stamp, payload)
        return True

    def _push(self, s: Stream, stamp: int, payload) -> None:
        if self.bag_t0 is None:
            self.bag_t0 = stamp
        if self.next_t is None:
            self.next_t = stamp  # the grid is anchored at the (time base's) first data message
        s.newest = stamp if s.newest is None else max(s.newest, stamp)
        s.push(stamp, payload)
        self.now = max(self.now, stamp)

    def _jump(self, s: Stream, to: int, rx: int) -> None:
        """A confirmed backward jump of s's header stamps: end the episode, start a new time base."""
        cfg = self.cfg
        what = (f"{self.bag}: {s.topic}: header stamps jump back {(s.newest - to) / 1e9:.3f} s, from "
                f"{s.newest / 1e9:.3f} s ({self._rel(s.newest)}) to {to / 1e9:.3f} s (clock step, driver "
                f"restart or sim reset?)")
        if cfg.on_gap == "error":
            raise BagError(f"{what}; set on_gap: split (a new episode after the jump) or drop")
        self._advance(final=True)
        self._end_episode(final=False)
        then = ("a new episode starts after it (on_gap: split)" if cfg.on_gap == "split" else
                "the rest is left out until the next marker or the bag's end (on_gap: drop)")
        self.warn(f"{what}: the episode ends there; {then}")
        self.epoch += 1
        for o in self.streams:
            o.clear()
            if o.time_source == "receive":
                o.epoch = self.epoch
        s.epoch = self.epoch
        self.boundaries.clear()
        self.next_t, self.now, self.bag_t0 = None, -(2**62), None
        self.mismatch_checked.clear()
        self.gap = self.pending_split_gap = None
        self.state = WAIT if cfg.on_gap == "split" else SKIP

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
            else:  # all(s.ready(t, now)), inlined: this runs for every message
                now = self.now
                for s in self.streams:
                    if not ((s.pending and s.pending[-1][0] > t) or now > t + s.slack_ns):
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

    def _resolve_frames(self, t: int) -> None:
        """Decode the camera messages newly held at t; an undecodable one is an error or left out
        (the stream holds its previous frame, whose age then counts for staleness)."""
        for s in self.streams:
            if not s.is_camera or s.held is None or s.held is s.good:
                continue
            try:
                s.held[2].get(self.decoders[s.name])
                s.good = s.held
            except BadMessage as e:
                self._bad(s, e, s.held[0])
                s.held = s.good
            except BagError as e:
                raise BagError(f"{self.bag}: {e}") from None

    def _step(self, t: int) -> None:
        cfg = self.cfg
        while self.boundaries and abs(self.boundaries[0]) <= t:
            b = self.boundaries.pop(0)
            self._end_episode(final=False)
            self.state = WAIT if b > 0 else SKIP
            for s in self.streams:  # the next episode only uses messages stamped after the marker
                s.held = s.good = None
                s.pending = [x for x in s.pending if x[0] >= abs(b)]
        for s in self.streams:
            s.advance_to(t)
        if self.state == SKIP:
            return
        self._resolve_frames(t)
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
        images = {c.name: s.held[2].value for c, s in zip(cfg.cameras, self.streams)}
        qpos = self.streams[-2].held[2]
        action = self.streams[-1].held[2]
        if self.episode is None:
            self.episode = self.writer.begin_episode(
                {"source_bag": str(self.bag), "start_time_ns": int(t), "episode_in_bag": self.n_episodes},
                flush_every=WRITE_BATCH,
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


def default_jobs() -> int:
    """Decode/resize threads by default: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class WriteError(BagError):
    """Writing the output failed (full disk, size limit, I/O error); the temporary file is gone."""


def _write_error(out: Path, tmp: Path, e: OSError) -> WriteError:
    full = e.errno in DISK_FULL or any(k in str(e) for k in ("No space left", "File too large",
                                                             "errno = 28", "errno = 27", "errno = 122"))
    what = "disk full (or file size limit reached)" if full else "write failed"
    return WriteError(f"{out}: {what} while writing {tmp.name}: {one_line(e, 160)}; the temporary file was "
                      "removed and no output written")


def convert_bags(
    bags: list[str | Path],
    cfg: BagConfig,
    out: str | Path,
    progress: bool = True,
    overwrite: bool = False,
    jobs: int | None = None,
    skip_bad_bags: bool = False,
    report: ConvertReport | None = None,
    writer_process: bool | WriterProcess = True,
) -> ConvertReport:
    """Convert `bags` into one HDF5 file at `out` (atomically). Raises BagError naming the bag.

    jobs: decode/resize threads (1 decodes in the reading thread). Default: the core count for
        CompressedImage cameras, the reading thread for raw Image ones (cheaper than threads).
    skip_bad_bags: a bag that fails contributes nothing and is listed in `report.skipped`.
    report: filled in as the conversion goes (`written` turns true right after the rename).
    writer_process: write the HDF5 file (LZF compression included) in a forked child on the other
        core (`bags.writer_process`): True forks it here, a `WriterProcess` (not opened yet) is
        used as given; False writes in this process.
    """
    bags = [Path(b) for b in bags]
    out = Path(out)
    if not bags:
        raise BagError("no bags given")
    for b in bags:
        if not b.exists() and not skip_bad_bags:
            raise BagError(f"{b}: bag not found")
        if b.exists() and (out.resolve() == b.resolve() or b.resolve() in out.resolve().parents):
            raise BagError(f"--out {out} is (inside) the input bag {b}; inputs are never written")
    if out.exists() and not overwrite:
        raise BagError(f"{out} exists; pass --overwrite to replace it (it stays intact if conversion fails)")
    explicit_jobs = jobs is not None
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise BagError(f"--jobs {jobs}: expected >= 1")
    report = report or ConvertReport(out=out)
    t0 = time.perf_counter()
    writer = pool = None
    try:
        # the writer first: its process is forked before this one starts any thread
        cameras = [c.name for c in cfg.cameras]
        file_kw = dict(joint_names=cfg.joint_names, action_names=cfg.action_names, control_hz=cfg.control_hz,
                       arm=cfg.arm, source="rosbag: " + ", ".join(str(b) for b in bags),
                       extra_attrs={"bag_config": json.dumps(cfg.to_dict())})
        if writer_process is True and hasattr(os, "fork"):
            writer_process = WriterProcess(cameras, cfg.image_size, WRITE_BATCH)
        if isinstance(writer_process, WriterProcess):
            writer = writer_process
            writer.open(out, **file_kw)
        else:
            writer = DemoWriter(out, camera_names=cameras, **file_kw)
        pool = ThreadPoolExecutor(jobs, thread_name_prefix="bag-frames") if jobs > 1 else None
        conv = BagConverter(cfg, writer, report, progress=progress, pool=pool, pool_for_raw=explicit_jobs)
        for b in bags:
            before = writer.num_demos
            try:
                if not b.exists():
                    raise BagError(f"{b}: bag not found")
                stats = conv.convert(b)
            except BagError as e:
                if not skip_bad_bags:
                    raise
                writer.drop_demos_from(before)  # a skipped bag contributes nothing
                report.skipped.append((str(b), str(e)))
                conv.warn(f"skipped (--skip-bad-bags): {e}")
                continue
            report.bag_bytes += bag_size_bytes(b)
            report.per_bag.append(stats)
            if stats["episodes"] == 0:
                conv.warn(f"{b}: no episode converted from this bag")
        if writer.num_demos == 0:
            raise BagError(
                "no episodes converted from " + ", ".join(map(str, bags)) + "; see the warnings above"
            )
        report.episodes = writer.num_demos
        report.steps = sum(s["steps"] for s in report.per_bag)
        if _RECEIVED_SIGNALS:  # a signal whose exception was swallowed: abort before the rename
            raise Interrupted(_RECEIVED_SIGNALS[0])
        writer.close()
        report.written = True
    except BaseException as e:
        if writer is not None:
            try:
                writer.abort()
            except Exception:  # noqa: BLE001 - closing a file on a full disk can fail too
                pass
        # also when the interrupt landed while DemoWriter was creating the file
        tmp = DemoWriter.temporary_path(out)
        with contextlib.suppress(OSError):  # e.g. --out's directory is a file: the error is the cause's
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):  # reading errors are BagError / BagCorrupt: this is the output
            raise _write_error(out, tmp, e) from None
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
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
    # when it lands inside library code (a __del__, a callback), so the message loop checks too,
    # and so does convert_bags before it renames the output into place.
    _RECEIVED_SIGNALS.append(signum)
    raise Interrupted(signum)


def _quiet_unraisable(u) -> None:
    # After a failed write (full disk) h5py's object destructors fail to flush too and would print
    # a traceback each; the one-line error says what happened.
    if isinstance(u.exc_value, OSError):
        log.debug("ignored while cleaning up: %s", one_line(u.exc_value, 200))
        return
    sys.__unraisablehook__(u)


def main(argv: list[str] | None = None) -> int:
    """`act_bag_to_hdf5` CLI: convert bags into one demo HDF5 file; returns the exit code (2 on a bag
    or mapping error, 128 + signal number when interrupted)."""
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
    p.add_argument("--jobs", "-j", type=int, default=None,
                   help=f"decode/resize threads (default: the core count, here {default_jobs()}, for "
                        "CompressedImage cameras; raw Image frames resize faster in the reading thread)")
    p.add_argument("--skip-bad-bags", action="store_true",
                   help="convert the other bags when one fails; the failed ones are listed")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    # SIGTERM and Ctrl-C abort cleanly and remove the temporary file. SIGINT is set explicitly:
    # a process started in the background by a non-interactive shell inherits it as ignored.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    sys.unraisablehook = _quiet_unraisable
    rep = server = None
    try:
        overrides = dict(parse_override(s) for s in args.set)
        if args.control_hz is not None:
            overrides["control_hz"] = args.control_hz
        if args.image_size is not None:
            overrides["image_size"] = list(args.image_size)
        if args.min_length is not None:
            overrides["episodes.min_length"] = args.min_length
        cfg = BagConfig.load(args.config, overrides)
        import torch  # the pipeline's resize (`bags.frames`); start-up, not conversion

        from act_training.bags.frames import resize_step

        if args.jobs is None or args.jobs > 1:
            torch.set_num_threads(1)  # one torch thread per frame worker, not 2 x jobs
        resize_step(tuple(cfg.image_size))  # the resize, built (not run) before the fork
        if hasattr(os, "fork"):
            # The writer resizes raw frames (`bags.writer_process`): forked with torch loaded, it
            # shares its pages instead of importing it again (~2 s). No torch op has run yet, so
            # no thread pool is copied half-alive into the child.
            server = WriterProcess([c.name for c in cfg.cameras], cfg.image_size, WRITE_BATCH)
        rep = ConvertReport(out=Path(args.out))
        convert_bags(args.bags, cfg, args.out, progress=not args.no_progress, overwrite=args.overwrite,
                     jobs=args.jobs, skip_bad_bags=args.skip_bad_bags, report=rep,
                     writer_process=server if server is not None else True)
        if _RECEIVED_SIGNALS:
            raise Interrupted(_RECEIVED_SIGNALS[0])
    except (BagError, BagConfigError) as e:
        print(f"act_bag_to_hdf5: error: {one_line(e, 2000)}", file=sys.stderr)
        if isinstance(e, WriteError):
            # HDF5 still holds the file it could not close; its exit-time cleanup would try to
            # flush it again (and can crash). The temporary file is already removed: leave now.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        if rep is not None and rep.written:  # the signal came after the rename: the output is whole
            print(f"act_bag_to_hdf5: interrupted after {args.out} was written (it is complete)",
                  file=sys.stderr)
        else:
            print("act_bag_to_hdf5: interrupted; no output written (an existing --out is unchanged)",
                  file=sys.stderr)
        return 128 + signum
    finally:
        if server is not None:  # ends it if convert_bags never opened it (e.g. a bag not found)
            server.abort()
    skipped = "".join(f"\nskipped {b}: {why}" for b, why in rep.skipped)
    print(
        f"wrote {rep.out}: {rep.episodes} episodes, {rep.steps} steps from {len(rep.per_bag)} bag(s), "
        f"{rep.bag_bytes / 1e6:.1f} MB in {rep.seconds:.2f} s ({rep.mb_per_s:.1f} MB/s)"
        + (f", {len(rep.warnings)} warning(s)" if rep.warnings else "")
        + (f"; {len(rep.skipped)} bag(s) skipped:" if rep.skipped else "") + skipped
    )
    return 0


def cli() -> None:
    """Console script `act_bag_to_hdf5`: `main()`, then leave without the interpreter's teardown.

    With torch loaded (the pipeline's resize) the teardown alone is ~0.55 s of a 2-3 s process; by
    then the output is closed and renamed into place (or removed), and nothing else is pending.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    cli()
