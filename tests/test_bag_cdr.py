"""The converter's direct CDR readers (`act_training.bags.cdr`) against rosbags' deserializer.

They must read exactly what rosbags reads, decline (NotFast) every message rosbags refuses, and
`BagSource.deserialize` must fall back to rosbags for big-endian CDR and for a bag whose own
definition of a type name differs from the standard one.
"""

from __future__ import annotations

import numpy as np
import pytest
from act_training.bags import cdr
from act_training.bags.reader import BagSource
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

TS = get_typestore(Stores.ROS2_KILTED)
T = TS.types


def _header(rng) -> object:
    frame = "".join(rng.choice(list("abcxyz_/"), size=int(rng.integers(0, 9))))
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
        sec=int(rng.integers(-5, 2**31 - 1)), nanosec=int(rng.integers(0, 10**9))), frame_id=frame)


def _joint_state(rng, names=None):
    n = int(rng.integers(0, 9)) if names is None else len(names)
    names = names if names is not None else [
        "j" * int(rng.integers(1, 7)) + str(i) for i in range(n)]

    def arr():
        return rng.normal(size=n) if rng.random() < 0.7 else np.empty(0)

    return T["sensor_msgs/msg/JointState"](header=_header(rng), name=list(names), position=arr(),
                                           velocity=arr(), effort=arr())


def _float_array(rng):
    dim = T["std_msgs/msg/MultiArrayDimension"]
    dims = [dim(label="d" * int(rng.integers(0, 5)), size=int(rng.integers(0, 9)),
                stride=int(rng.integers(0, 9))) for _ in range(int(rng.integers(0, 3)))]
    layout = T["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=int(rng.integers(0, 4)))
    return T["std_msgs/msg/Float64MultiArray"](layout=layout, data=rng.normal(size=int(rng.integers(0, 12))))


def _image(rng):
    h, w = int(rng.integers(1, 6)), int(rng.integers(1, 7))
    enc = str(rng.choice(["rgb8", "bgr8", "mono8", "rgba8"]))
    ch = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4}[enc]
    step = w * ch + int(rng.integers(0, 3))
    data = rng.integers(0, 256, size=step * h, dtype=np.uint8)
    return T["sensor_msgs/msg/Image"](header=_header(rng), height=h, width=w, encoding=enc,
                                      is_bigendian=0, step=step, data=data)


def same_message(fast, ref) -> bool:
    """Does a direct reader's result hold what rosbags' message holds, field by field?"""
    for name in fast._fields:
        a, b = getattr(fast, name), getattr(ref, name, None)
        if isinstance(a, (cdr.Header, cdr.Time)):
            if not same_message(a, b):
                return False
        elif isinstance(a, np.ndarray):
            b = np.asarray(b)
            if a.shape != b.shape or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                return False
        elif isinstance(a, tuple):
            if b is None or list(a) != list(b):
                return False
        elif a != b:
            return False
    return True


MAKERS = {cdr.JOINT_STATE: _joint_state, cdr.FLOAT_ARRAY: _float_array, cdr.IMAGE: _image}


def _raw(msg, msgtype, little=True) -> bytes:
    return bytes(TS.serialize_cdr(msg, msgtype, little_endian=little))


@pytest.mark.parametrize("msgtype", sorted(MAKERS))
def test_direct_readers_read_what_rosbags_reads(msgtype):
    rng = np.random.default_rng(7)
    for _ in range(200):
        raw = _raw(MAKERS[msgtype](rng), msgtype)
        fast, ref = cdr.READERS[msgtype](raw), TS.deserialize_cdr(raw, msgtype)
        assert same_message(fast, ref)
        if msgtype != cdr.FLOAT_ARRAY:
            assert (fast.header.stamp.sec, fast.header.stamp.nanosec, fast.header.frame_id) == (
                ref.header.stamp.sec, ref.header.stamp.nanosec, ref.header.frame_id)
        if msgtype == cdr.JOINT_STATE:
            assert list(fast.name) == list(ref.name)
            for f in ("position", "velocity", "effort"):
                assert np.array_equal(getattr(fast, f), getattr(ref, f))


@pytest.mark.parametrize("msgtype", sorted(MAKERS))
def test_direct_readers_decline_every_message_rosbags_refuses(msgtype):
    """Every truncation and a byte of trailing garbage: where rosbags raises, NotFast."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        raw = _raw(MAKERS[msgtype](rng), msgtype)
        for bad in [raw[:k] for k in range(len(raw))] + [raw + b"\x00" * 8]:
            try:
                ref = TS.deserialize_cdr(bad, msgtype)
            except Exception:  # noqa: BLE001 - rosbags raises several types
                with pytest.raises(cdr.NotFast):
                    cdr.READERS[msgtype](bad)
                continue
            try:
                fast = cdr.READERS[msgtype](bad)
            except cdr.NotFast:
                continue
            assert same_message(fast, ref)


def test_joint_names_of_a_changed_list_are_read_again():
    """The cache of the last name list must not return stale names (same count, other names)."""
    rng = np.random.default_rng(0)
    for names in (["a1", "b2", "c3"], ["a1", "b2", "c3"], ["a1", "b2", "cX"], ["zz", "b2", "c3"], ["a1"]):
        raw = _raw(_joint_state(rng, names), cdr.JOINT_STATE)
        assert list(cdr.joint_state(raw).name) == names


def test_a_stream_of_joint_states_reads_right_when_only_values_or_counts_change():
    """The layout of the last message is reused for the next one only where it is the same."""
    H, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    JS = T["sensor_msgs/msg/JointState"]

    def js(k, names, counts, frame="base"):
        arr = [np.arange(n, dtype=float) + k + 0.5 * i for i, n in enumerate(counts)]
        return JS(header=H(stamp=Time(sec=k, nanosec=7 * k), frame_id=frame), name=names, position=arr[0],
                  velocity=arr[1], effort=arr[2])

    seq = [js(k, ["a1", "b2"], (2, 2, 2)) for k in range(3)]
    # other names of the same length; then the same message length with the values moved
    # between the three arrays ((2, 2, 2) and (1, 2, 3) are 116 bytes here, (2, 0, 2) and (1, 1, 2) 92)
    seq += [js(3, ["a1", "b3"], (2, 2, 2)), js(4, ["a1", "b3"], (1, 2, 3)), js(5, ["a1", "b3"], (2, 0, 2)),
            js(6, ["a1", "b3"], (1, 1, 2)), js(7, ["a1", "b3"], (1, 1, 2), frame="bass")]
    for msg in seq:
        raw = _raw(msg, cdr.JOINT_STATE)
        assert same_message(cdr.joint_state(raw), TS.deserialize_cdr(raw, cdr.JOINT_STATE)), msg


def test_source_falls_back_to_rosbags_for_big_endian_and_for_a_bag_s_own_definition(tmp_path):
    rng = np.random.default_rng(1)
    msg = _joint_state(rng, ["a", "b"])
    big, little = _raw(msg, cdr.JOINT_STATE, little=False), _raw(msg, cdr.JOINT_STATE)
    with pytest.raises(cdr.NotFast):
        cdr.joint_state(big)
    src = BagSource(tmp_path, {}, TS)
    assert isinstance(src.deserialize(little, cdr.JOINT_STATE), cdr.JointState)
    out = src.deserialize(big, cdr.JOINT_STATE)  # declined: rosbags reads it
    assert isinstance(out, type(msg)) and list(out.name) == ["a", "b"]
    assert np.array_equal(out.position, msg.position)
    with pytest.raises(SerdeError):  # a bad message: rosbags' error
        src.deserialize(little[:-9], cdr.JOINT_STATE)

    # A bag that defines sensor_msgs/msg/JointState its own way (here: no header): rosbags reads it.
    own = get_typestore(Stores.EMPTY)
    own.register(get_types_from_msg("string[] name\nfloat64[] position\nfloat64[] velocity\nfloat64[] effort",
                                    cdr.JOINT_STATE))
    Own = own.types[cdr.JOINT_STATE]
    raw = bytes(own.serialize_cdr(Own(name=["a"], position=np.array([1.0]), velocity=np.empty(0),
                                      effort=np.empty(0)), cdr.JOINT_STATE))
    src = BagSource(tmp_path, {}, own)
    out = src.deserialize(raw, cdr.JOINT_STATE)
    assert not isinstance(out, cdr.JointState) and list(out.name) == ["a"]
    assert src._fast[cdr.JOINT_STATE] is False
