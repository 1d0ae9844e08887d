"""Raw sensor data -> arrays (numpy only, no ROS imports): the one decoder and joint picker.

- `decode_image`: the fields of a `sensor_msgs/Image` (rgb8, bgr8, mono8, rgba8, bgra8, 8UC1,
  8UC3) -> uint8 (H, W, 3) RGB, honouring the row `step` (padding) and without cv_bridge. Used
  by the policy node (live frames) and the bag converter (recorded frames). Frames keep their
  size: the processor pipeline (`runtime.pipeline`) crops and resizes.
- `JointSelector`: picks and orders joints by name from `sensor_msgs/JointState`-like
  (name[], position[]) data (real drivers publish extra joints, in any order).
- `finite_vector`: rejects NaN/Inf and wrong sizes.

Every check raises `InputError` (a ValueError) with a message fit for a (throttled) warning;
the node never lets it escape a ROS callback, the converter adds the bag and topic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["InputError", "SUPPORTED_ENCODINGS", "decode_image", "JointSelector", "finite_vector",
           "default_joint_names"]


class InputError(ValueError):
    """An input message that must be dropped (bad encoding, size, NaN/Inf, missing joints)."""


# encoding -> (channels, channel order to get RGB)
SUPPORTED_ENCODINGS: dict[str, tuple[int, tuple[int, ...]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
    "8uc1": (1, (0, 0, 0)),
    "8uc3": (3, (2, 1, 0)),  # no colour order of its own: BGR, as OpenCV and cv_bridge treat it
}


def decode_image(encoding: str, height: int, width: int, step: int, data, copy: bool = True) -> np.ndarray:
    """Decode `sensor_msgs/Image` fields into a fresh uint8 (H, W, 3) RGB array.

    `data` may be bytes, a bytearray, an array.array or a numpy array (rclpy gives array.array).
    `copy=False` returns a (possibly read-only, strided) view of `data` where no channel
    conversion is needed (rgb8): for a caller that only reads it, once (the bag converter's resize).
    """
    enc = str(encoding).lower()
    if enc not in SUPPORTED_ENCODINGS:
        raise InputError(f"unsupported image encoding '{encoding}' "
                         f"(supported: {sorted(SUPPORTED_ENCODINGS)})")
    channels, order = SUPPORTED_ENCODINGS[enc]
    h, w, step = int(height), int(width), int(step)
    if h <= 0 or w <= 0:
        raise InputError(f"empty image {h}x{w}")
    row = w * channels
    if step < row:
        raise InputError(f"image step {step} smaller than width*channels {row}")
    if isinstance(data, np.ndarray):  # a view, not `tobytes()`: the one copy is made below
        buf = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if buf.size < step * (h - 1) + row:
        raise InputError(f"image data has {buf.size} bytes, expected {step * h} for {h}x{w} {encoding}")
    if step == row:  # no row padding: a plain reshape (as_strided costs ~10 us a call)
        img = buf[: h * row].reshape(h, w, channels)
    else:
        img = np.lib.stride_tricks.as_strided(buf, shape=(h, row), strides=(step, 1)).reshape(h, w, channels)
    if channels == 3 and order == (0, 1, 2):
        return img.copy() if copy else img  # rgb8: one plain copy (a channel gather costs ~25x more)
    return img.take(list(order), axis=2)  # a fresh C-contiguous array


def finite_vector(values, size: int | None = None, what: str = "vector") -> np.ndarray:
    """float64 copy of `values`, rejecting NaN/Inf and (if given) a wrong length."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if size is not None and v.size != size:
        raise InputError(f"{what} has {v.size} values, expected {size}")
    if not np.all(np.isfinite(v)):
        bad = np.flatnonzero(~np.isfinite(v)).tolist()
        raise InputError(f"{what} has non-finite values at indices {bad}")
    return v


def default_joint_names(arm: int, policy_joints: Sequence[str]) -> list[str]:
    """The MuJoCo bridge's names of `policy_joints` on `arm` (`mirror_arm_sim.cell.ros_joint_names`)."""
    from mirror_arm_sim.cell import ros_joint_names

    return ros_joint_names(arm, policy_joints)


class JointSelector:
    """Pick `names` (in that order) out of JointState (name[], position[]) messages.

    The name -> index map is cached per distinct name list, so a driver that always publishes
    the same list costs one dict lookup per message.
    """

    def __init__(self, names: Sequence[str], what: str = "the message", hint: str = "") -> None:
        """`names`: the joints to pick, in output order; `what` names the source and `hint` is
        appended in missing-joint errors."""
        names = [str(n) for n in names]
        if not names:
            raise ValueError("JointSelector: no joint names given")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"JointSelector: duplicate joint names {dup}")
        self.names = names
        self.what, self.hint = what, hint
        self._cache_key: tuple[str, ...] | None = None
        self._cache_idx: np.ndarray | None = None
        self._cache_src: tuple | None = None  # the last name tuple itself (held: its id stays its own)

    def indices(self, msg_names: Sequence[str]) -> np.ndarray:
        """Indices of `self.names` in `msg_names` (cached per distinct name list)."""
        if msg_names is self._cache_src:  # the same tuple again (the bag converter's cached layout)
            return self._cache_idx
        key = tuple(msg_names)
        if key != self._cache_key:
            lookup = {n: i for i, n in enumerate(key)}
            missing = [n for n in self.names if n not in lookup]
            if missing:
                raise InputError(f"{self.what} lacks joints {missing}; it has {list(key)}"
                                 + (f" ({self.hint})" if self.hint else ""))
            self._cache_idx = np.array([lookup[n] for n in self.names], dtype=np.int64)
            self._cache_key = key
        self._cache_src = msg_names if isinstance(msg_names, tuple) else None  # tuples do not change
        return self._cache_idx

    def select(self, msg_names: Sequence[str], positions) -> np.ndarray:
        """Positions of `self.names`, in order, as float64; raises InputError if unusable."""
        idx = self.indices(msg_names)
        pos = np.asarray(positions, dtype=np.float64).reshape(-1)
        if pos.size != len(msg_names):
            raise InputError(f"joint_states has {len(msg_names)} names but {pos.size} positions")
        return finite_vector(pos[idx], len(self.names), "joint positions")
