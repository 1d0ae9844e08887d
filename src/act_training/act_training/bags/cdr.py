"""Direct readers of the little-endian CDR of the three message types a demo bag is made of:
sensor_msgs/JointState, std_msgs/Float64MultiArray and sensor_msgs/Image.

rosbags' generated deserializers build a message object field by field in Python (~35 us a
JointState); these read the same bytes with `struct` and take the arrays as numpy views (~6 us),
which is most of a conversion's per-message cost at 100 Hz joint states. They apply rosbags'
checks (string terminators, lengths inside the buffer, no trailing data) and raise `NotFast` on
anything else: big-endian CDR, a truncated or odd message. `BagSource.deserialize` then falls back
to rosbags, so a bad message fails with rosbags' error and the fast path never accepts bytes that
rosbags would refuse. They are used only where the bag defines the type (and the types it holds,
`HOLDS`) as ROS 2 does; a bag's own, different definition under the same name goes to rosbags.

The returned objects (named tuples) carry the fields the converter reads, under the message's own
field names.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

JOINT_STATE = "sensor_msgs/msg/JointState"
FLOAT_ARRAY = "std_msgs/msg/Float64MultiArray"
IMAGE = "sensor_msgs/msg/Image"
_HEADER = ("std_msgs/msg/Header", "builtin_interfaces/msg/Time")
# each type read here -> it and the types it holds, whose definitions must be the standard ones
HOLDS = {
    JOINT_STATE: (JOINT_STATE, *_HEADER),
    FLOAT_ARRAY: (FLOAT_ARRAY, "std_msgs/msg/MultiArrayLayout", "std_msgs/msg/MultiArrayDimension"),
    IMAGE: (IMAGE, *_HEADER),
}

_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")
_F8 = np.dtype("<f8")


class NotFast(ValueError):
    """These bytes are not for the direct reader (rosbags decides)."""


class Time(NamedTuple):
    sec: int
    nanosec: int


class Header(NamedTuple):
    stamp: Time
    frame_id: str


class JointState(NamedTuple):
    """sensor_msgs/JointState: names and float64 views of the message's bytes."""

    header: Header
    name: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


class Float64MultiArray(NamedTuple):
    """std_msgs/Float64MultiArray: the data (the layout is not read by the converter)."""

    data: np.ndarray


class Image(NamedTuple):
    """sensor_msgs/Image: the pixel bytes as a uint8 view."""

    header: Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


class _Cursor:
    """Position in the CDR body (after the 4-byte encapsulation header; alignment is relative to it)."""

    __slots__ = ("buf", "n", "p")

    def __init__(self, raw) -> None:
        if len(raw) < 4 or raw[0] != 0 or raw[1] != 1:
            raise NotFast("not little-endian CDR")
        self.buf = memoryview(raw)[4:]
        self.n, self.p = len(self.buf), 0

    def u32(self) -> int:
        p = (self.p + 3) & ~3
        if p + 4 > self.n:
            raise NotFast("truncated")
        self.p = p + 4
        return _U32.unpack_from(self.buf, p)[0]

    def string(self) -> str:
        size = self.u32()
        end = self.p + size
        if size < 1 or end > self.n or self.buf[end - 1] != 0:
            raise NotFast("bad string")
        s = str(self.buf[self.p:end - 1], "utf-8")
        self.p = end
        return s

    def f64s(self) -> np.ndarray:
        count = self.u32()
        if count == 0:
            return np.empty(0, _F8)
        p = (self.p + 7) & ~7
        if p + 8 * count > self.n:
            raise NotFast("truncated")
        self.p = p + 8 * count
        return np.frombuffer(self.buf, _F8, count, p)

    def header(self) -> Header:
        if self.n < 8:
            raise NotFast("truncated")
        sec, nsec = _STAMP.unpack_from(self.buf, 0)
        self.p = 8
        return Header(Time(sec, nsec), self.string())

    def done(self) -> None:
        """rosbags' rule: at most 3 bytes of padding after the last field."""
        if self.p + 3 < self.n:
            raise NotFast("trailing data")


# The layout of the last JointState read in full: a driver sends the same frame_id and names and
# the same number of values in every message, so a message of the same length whose frame_id and
# names bytes and three counts are the same has its arrays at the same offsets, and only the
# stamp and the values need reading (~5x cheaper than parsing it). Only the reading thread reads
# joint states; a race would only cost a full parse.
# (length, prefix bytes, prefix end, frame_id, names, 3 x (count offset, count, data offset))
_layout: tuple | None = None
_NO_VALUES = np.empty(0, _F8)
_NO_VALUES.flags.writeable = False


def joint_state(raw) -> JointState:
    lay = _layout
    if lay is not None and len(raw) == lay[0] and raw[0] == 0 and raw[1] == 1 and raw[12:lay[2]] == lay[1]:
        arrays = []
        for at, count, data in lay[5]:
            if _U32.unpack_from(raw, at)[0] != count:
                break
            arrays.append(np.frombuffer(raw, _F8, count, data) if count else _NO_VALUES)
        else:
            sec, nsec = _STAMP.unpack_from(raw, 4)
            return JointState(Header(Time(sec, nsec), lay[3]), lay[4], *arrays)
    return _joint_state_parsed(raw)


def _joint_state_parsed(raw) -> JointState:
    global _layout
    c = _Cursor(raw)
    header = c.header()
    count = c.u32()
    if c.p + 5 * count > c.n:
        raise NotFast("truncated")
    names = tuple(c.string() for _ in range(count))
    prefix_end = c.p + 4  # in raw's offsets (the body starts after the 4-byte encapsulation)
    arrays, where = [], []
    for _ in range(3):
        at = ((c.p + 3) & ~3) + 4
        a = c.f64s()
        arrays.append(a)
        where.append((at, a.size, c.p + 4 - 8 * a.size))
    c.done()
    prefix = bytes(memoryview(raw)[12:prefix_end])  # frame_id and names, with their lengths
    _layout = (len(raw), prefix, prefix_end, header.frame_id, names, tuple(where))
    return JointState(header, names, *arrays)


def float64_multi_array(raw) -> Float64MultiArray:
    c = _Cursor(raw)
    dims = c.u32()
    if c.p + 13 * dims > c.n:
        raise NotFast("truncated")
    for _ in range(dims):  # MultiArrayDimension: label, size, stride
        c.string()
        c.u32()
        c.u32()
    c.u32()  # data_offset
    msg = Float64MultiArray(c.f64s())
    c.done()
    return msg


def image(raw) -> Image:
    c = _Cursor(raw)
    header = c.header()
    height, width = c.u32(), c.u32()
    encoding = c.string()
    if c.p + 1 > c.n:
        raise NotFast("truncated")
    big = c.buf[c.p]
    c.p += 1
    step, size = c.u32(), c.u32()
    if c.p + size > c.n:
        raise NotFast("truncated")
    data = np.frombuffer(c.buf, np.uint8, size, c.p)
    c.p += size
    c.done()
    return Image(header, height, width, encoding, big, step, data)


READERS = {JOINT_STATE: joint_state, FLOAT_ARRAY: float64_multi_array, IMAGE: image}
