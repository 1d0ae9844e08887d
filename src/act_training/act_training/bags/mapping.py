"""The rosbag → HDF5 mapping: which topics are cameras, qpos and action; rates and episodes.

A validated dataclass, loaded from YAML (see config/bag_*.yaml and docs/bags.md):

    control_hz: 50              # resampling grid (Hz) = the HDF5 file's control_hz
    image_size: [96, 96]        # [H, W] stored in the HDF5 file
    time: header                # header | receive: which time stamps the streams are resampled on
    max_staleness_s: 0.1        # a held value older than this is a gap
    on_gap: drop                # drop | split | error: what a gap (or a stamp jump) does to its episode
    on_bad_message: error       # error | skip: an undecodable message (bad JPEG, short Image, bad CDR)
    cameras:                    # camera name -> topic (Image or CompressedImage), in order
      top: /camera/top/image_raw
    qpos:                       # sensor_msgs/JointState
      topic: /joint_states
      joints: [waist, shoulder, elbow, forearm_roll, wrist_pitch, wrist_roll, gripper]
    action:                     # JointState (leader arm), Float64MultiArray or JointTrajectory
      topic: /forward_position_controller/commands
    episodes:
      split: bag                # bag | marker | gap
      min_length: 100           # steps (>= the policy's chunk size)
      on_short: error           # error | drop

Dict-valued streams may also set `time` (per-stream override), `names` (the names written to
the HDF5 file, default `joints`), `scale`/`offset` (per joint, applied as `v * scale + offset`),
`field` (JointState: position | velocity | effort), `indices` (Float64MultiArray) and `point`
(JointTrajectory: first | last).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

TIME_SOURCES = ("header", "receive")
GAP_POLICIES = ("drop", "split", "error")
SPLIT_MODES = ("bag", "marker", "gap")
SHORT_POLICIES = ("error", "drop")
BAD_MESSAGE_POLICIES = ("error", "skip")


class BagConfigError(ValueError):
    """The mapping is invalid; the message names the key."""


def _choice(key: str, value, choices) -> str:
    if value not in choices:
        raise BagConfigError(f"{key}: {value!r} is not one of {list(choices)}")
    return value


@dataclass
class CameraStream:
    """A camera image topic (sensor_msgs Image or CompressedImage) written as camera `name`."""

    name: str
    topic: str
    time: str | None = None  # None: the global `time`

    def __post_init__(self):
        if not self.topic or not isinstance(self.topic, str):
            raise BagConfigError(f"cameras.{self.name}: a topic is required")
        if self.time is not None:
            _choice(f"cameras.{self.name}.time", self.time, TIME_SOURCES)


@dataclass
class JointStream:
    """A joint vector taken from one topic (JointState, Float64MultiArray or JointTrajectory)."""

    key: str  # "qpos" | "action" (for messages)
    topic: str
    joints: list[str] | None = None  # names inside the message, in output order
    names: list[str] | None = None  # names written to the HDF5 file (default: joints)
    indices: list[int] | None = None  # Float64MultiArray: element indices in output order
    field: str = "position"  # JointState field
    point: str = "first"  # JointTrajectory: which point of the trajectory
    scale: list[float] | None = None
    offset: list[float] | None = None
    time: str | None = None

    def __post_init__(self):
        k = self.key
        if not self.topic or not isinstance(self.topic, str):
            raise BagConfigError(f"{k}.topic: a topic is required")
        _choice(f"{k}.field", self.field, ("position", "velocity", "effort"))
        _choice(f"{k}.point", self.point, ("first", "last"))
        if self.time is not None:
            _choice(f"{k}.time", self.time, TIME_SOURCES)
        if self.joints is not None:
            self.joints = [str(j) for j in self.joints]
            if len(set(self.joints)) != len(self.joints):
                raise BagConfigError(f"{k}.joints: duplicate names in {self.joints}")
        if self.indices is not None:
            self.indices = [int(i) for i in self.indices]
        if self.joints is None and self.indices is None and self.names is None:
            raise BagConfigError(f"{k}: give `joints` (names in the message) or `indices` and `names`")
        n = self.dim
        if self.names is not None:
            self.names = [str(j) for j in self.names]
            if len(self.names) != n:
                raise BagConfigError(f"{k}.names: {len(self.names)} names for {n} joints")
        for attr in ("scale", "offset"):
            v = getattr(self, attr)
            if v is not None:
                if len(v) != n:
                    raise BagConfigError(f"{k}.{attr}: {len(v)} values for {n} joints")
                setattr(self, attr, [float(x) for x in v])

    @property
    def dim(self) -> int:
        """Number of joints in the output vector."""
        for v in (self.joints, self.indices, self.names):
            if v is not None:
                return len(v)
        return 0

    @property
    def output_names(self) -> list[str]:
        """Names written to the HDF5 file: `names`, else `joints`, else '<key>_<i>'."""
        return list(self.names or self.joints or [f"{self.key}_{i}" for i in self.indices])


@dataclass
class EpisodeConfig:
    """How the recordings are cut into demos (`split`: bag | marker | gap) and what happens to
    one shorter than `min_length` steps (`on_short`)."""

    split: str = "bag"  # bag: one bag per demo; marker: a marker topic; gap: gaps in the streams
    marker_topic: str | None = None
    min_length: int = 1
    on_short: str = "error"

    def __post_init__(self):
        _choice("episodes.split", self.split, SPLIT_MODES)
        _choice("episodes.on_short", self.on_short, SHORT_POLICIES)
        if self.split == "marker" and not self.marker_topic:
            raise BagConfigError("episodes.marker_topic: required when episodes.split is 'marker'")
        self.min_length = int(self.min_length)
        if self.min_length < 1:
            raise BagConfigError(f"episodes.min_length: {self.min_length}, expected >= 1")


@dataclass
class BagConfig:
    """The bag -> HDF5 mapping: which topics are cameras, qpos and action, the control grid
    (control_hz, image_size (H, W)), time source, staleness and gap handling (docs/bags.md)."""

    cameras: list[CameraStream]
    qpos: JointStream
    action: JointStream
    control_hz: float = 50.0
    image_size: tuple[int, int] = (96, 96)  # (H, W)
    time: str = "header"
    max_staleness_s: float = 0.1
    on_gap: str = "drop"  # also what a backward jump of header stamps does (docs/bags.md)
    on_bad_message: str = "error"  # skip: count and warn, the stream holds its previous message
    latency_s: float = 0.5  # how late (receive time) a message may arrive after its header stamp
    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)
    arm: int = 0

    def __post_init__(self):
        if not self.cameras:
            raise BagConfigError("cameras: at least one camera topic is required")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise BagConfigError(f"cameras: duplicate camera names {names}")
        self.control_hz = float(self.control_hz)
        if not 0 < self.control_hz <= 1000:
            raise BagConfigError(f"control_hz: {self.control_hz}, expected 0 < control_hz <= 1000")
        if len(self.image_size) != 2 or min(int(x) for x in self.image_size) < 8:
            raise BagConfigError(f"image_size: {self.image_size}, expected [H, W] with H, W >= 8")
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        _choice("time", self.time, TIME_SOURCES)
        _choice("on_gap", self.on_gap, GAP_POLICIES)
        _choice("on_bad_message", self.on_bad_message, BAD_MESSAGE_POLICIES)
        self.max_staleness_s = float(self.max_staleness_s)
        if self.max_staleness_s < 1.0 / self.control_hz:
            raise BagConfigError(
                f"max_staleness_s: {self.max_staleness_s} is shorter than one control period "
                f"({1.0 / self.control_hz:.4f} s)"
            )
        self.latency_s = float(self.latency_s)
        if self.latency_s < 0:
            raise BagConfigError("latency_s: must be >= 0")
        if self.episodes.split == "gap":
            self.on_gap = "split"  # splitting by gaps is what a gap does
        if self.qpos.dim == 0 or self.action.dim == 0:
            raise BagConfigError("qpos/action: at least one joint each")
        topics = [c.topic for c in self.cameras] + [self.qpos.topic, self.action.topic]
        if self.episodes.marker_topic in topics:
            raise BagConfigError(f"episodes.marker_topic: {self.episodes.marker_topic} is also a data topic")

    @property
    def period_ns(self) -> int:
        """Control period in nanoseconds."""
        return int(round(1e9 / self.control_hz))

    @property
    def joint_names(self) -> list[str]:
        return self.qpos.output_names

    @property
    def action_names(self) -> list[str]:
        return self.action.output_names

    def to_dict(self) -> dict:
        """A plain dict (recorded in the HDF5 file's attrs as `bag_config`)."""
        from dataclasses import asdict

        d = asdict(self)
        d["cameras"] = {c["name"]: {k: v for k, v in c.items() if k != "name"} for c in d["cameras"]}
        for k in ("qpos", "action"):
            d[k] = {a: v for a, v in d[k].items() if a != "key" and v is not None}
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BagConfig:
        """Build and validate a BagConfig from a parsed mapping; BagConfigError names the bad key."""
        d = dict(d or {})
        known = {"cameras", "qpos", "action", "control_hz", "image_size", "time", "max_staleness_s",
                 "on_gap", "on_bad_message", "latency_s", "episodes", "arm"}
        if unknown := sorted(set(d) - known):
            raise BagConfigError(f"unknown key(s) {unknown}; known: {sorted(known)}")
        for req in ("cameras", "qpos", "action"):
            if req not in d:
                raise BagConfigError(f"missing key '{req}'")
        cams_in = d.pop("cameras")
        if isinstance(cams_in, list):  # [{name:, topic:}, ...]
            cams_in = {c["name"]: {k: v for k, v in c.items() if k != "name"} for c in cams_in}
        if not isinstance(cams_in, dict):
            raise BagConfigError("cameras: expected a mapping camera name -> topic")
        cams = []
        for name, v in cams_in.items():
            v = {"topic": v} if isinstance(v, str) else dict(v or {})
            try:
                cams.append(CameraStream(name=str(name), **v))
            except TypeError as e:
                raise BagConfigError(f"cameras.{name}: {e}") from None
        streams = {}
        for key in ("qpos", "action"):
            v = d.pop(key)
            v = {"topic": v} if isinstance(v, str) else dict(v or {})
            if key == "action" and not {"joints", "indices", "names"} & set(v):
                v["names"] = streams["qpos"].output_names  # targets of the same joints as qpos
            try:
                streams[key] = JointStream(key=key, **v)
            except TypeError as e:
                raise BagConfigError(f"{key}: {e}") from None
        # The action's names default to the qpos names (joint-position targets of the same arm).
        act, qpos = streams["action"], streams["qpos"]
        if act.names is None and act.joints is None:
            if act.indices is not None and len(act.indices) == qpos.dim:
                act.names = qpos.output_names
        ep = d.pop("episodes", None) or {}
        try:
            episodes = EpisodeConfig(**ep)
        except TypeError as e:
            raise BagConfigError(f"episodes: {e}") from None
        if "image_size" in d:
            d["image_size"] = tuple(d["image_size"])
        return cls(cameras=cams, qpos=streams["qpos"], action=streams["action"], episodes=episodes, **d)

    @classmethod
    def load(cls, path: str | Path, overrides: dict | None = None) -> BagConfig:
        """Read a mapping YAML file, apply dotted `overrides` (e.g. {'episodes.min_length': 50}),
        validate; errors name the file."""
        path = Path(path)
        if not path.exists():
            raise BagConfigError(f"mapping file not found: {path}")
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise BagConfigError(f"{path}: not valid YAML ({e})") from None
        for k, v in (overrides or {}).items():
            _set_dotted(d, k, v)
        try:
            return cls.from_dict(d)
        except BagConfigError as e:
            raise BagConfigError(f"{path}: {e}") from None


def _set_dotted(d: dict, key: str, value) -> None:
    """`episodes.min_length=50` style override into a nested dict."""
    parts = key.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def parse_override(text: str) -> tuple[str, object]:
    """'key=value' with the value parsed as YAML ('episodes.min_length=50', 'image_size=[64,64]')."""
    if "=" not in text:
        raise BagConfigError(f"--set {text!r}: expected key=value")
    k, v = text.split("=", 1)
    return k.strip(), yaml.safe_load(v)
