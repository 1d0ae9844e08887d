"""Camera messages -> stored frames: decode (numpy / cv2, no cv_bridge) and resize.

`FrameDecoder(msgtype, topic, size_hw, deserialize)` turns the raw CDR bytes of one
`sensor_msgs/Image` or `CompressedImage` message into an RGB uint8 (H, W, 3) frame at `size_hw`.
It is called from worker threads (`--jobs`): cv2, torch and numpy's copies release the GIL, so
frames decode and resize in parallel with the reading of the bag. Raw images are decoded with
the project's one decoder (`runtime.sensors`) and resized with the pipeline's one resize
(`runtime.pipeline.ResizeStep`).

JPEGs whose frame is at least twice the stored size in both dimensions are decoded at 1/2, 1/4
or 1/8 scale (libjpeg's DCT scaling, `cv2.IMREAD_REDUCED_COLOR_*`) and then resized: a fraction
of the decode work, and the frame is averaged down either way. The frame size is read from the
JPEG's SOF header, so every frame of a stream takes the same path.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from act_training.bags.reader import BagError
from act_training.runtime.sensors import SUPPORTED_ENCODINGS, InputError, decode_image

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class BadMessage(BagError):
    """One message's content cannot be used (bad JPEG, short Image buffer, CDR that does not parse)."""


def resize_frame(img: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """The pipeline's one resize (`runtime.pipeline.ResizeStep.uint8`) to (H, W); uint8."""
    return resize_step(tuple(size_hw)).uint8(img)


@functools.cache
def resize_step(size_hw: tuple[int, int]):
    """The pipeline's `ResizeStep` to (H, W), built once per size (importing torch on first use:
    not with this module, which the writer process and the tests load without needing it)."""
    from act_training.runtime.pipeline import ResizeStep

    return ResizeStep(size_hw)


def jpeg_size(data: np.ndarray) -> tuple[int, int] | None:
    """(height, width) from a JPEG's start-of-frame segment, or None if there is none."""
    b = data.tobytes() if len(data) < 65536 else data[:65536].tobytes()
    i = 2
    while i + 9 < len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker in _SOF:
            return (b[i + 5] << 8) | b[i + 6], (b[i + 7] << 8) | b[i + 8]
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
            continue
        i += 2 + ((b[i + 2] << 8) | b[i + 3])
    return None


def jpeg_reduction(frame_hw: tuple[int, int], size_hw: tuple[int, int]) -> int:
    """Largest libjpeg scale-down (1, 2, 4, 8) that keeps the frame at least `size_hw`."""
    r = 1
    while r < 8 and frame_hw[0] >= 2 * r * size_hw[0] and frame_hw[1] >= 2 * r * size_hw[1]:
        r *= 2
    return r


def image_to_rgb(msg, topic: str) -> np.ndarray:
    """A deserialized sensor_msgs/Image -> RGB uint8 (h, w, 3) with the project's one decoder
    (`runtime.sensors.decode_image`). An encoding it does not know is a mapping error (every
    message has it); a buffer too short for its size is one bad message."""
    if str(msg.encoding).lower() not in SUPPORTED_ENCODINGS:
        raise BagError(f"{topic}: unsupported image encoding '{msg.encoding}' (supported: "
                       f"{sorted(SUPPORTED_ENCODINGS)} and CompressedImage jpeg/png)")
    try:
        # a view of the message's bytes where it can be: the resize makes the stored frame
        return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, copy=False)
    except InputError as e:
        raise BadMessage(f"{topic}: Image {msg.width}x{msg.height}: {e}") from None


class FrameDecoder:
    """Raw CDR bytes of one camera topic's messages -> stored frames (thread-safe)."""

    def __init__(self, msgtype: str, topic: str, size_hw: tuple[int, int], deserialize,
                 resize_raw: bool = True):
        self.msgtype, self.topic, self.size_hw = msgtype, topic, tuple(size_hw)
        self._deserialize = deserialize
        self._resize_raw = resize_raw  # False: raw Image frames come out as recorded (RGB), for
        # a writer that resizes them itself (`writer_process`); JPEG/PNG ones are always resized

    def __call__(self, raw) -> np.ndarray:
        try:
            msg = self._deserialize(raw, self.msgtype)
        except Exception as e:  # noqa: BLE001 - rosbags raises several types for bad CDR
            raise BadMessage(f"{self.topic}: message does not deserialize as {self.msgtype} "
                             f"({type(e).__name__}: {str(e)[:120]})") from None
        if self.msgtype == IMAGE:
            rgb = image_to_rgb(msg, self.topic)
            return resize_frame(rgb, self.size_hw) if self._resize_raw else rgb
        return resize_frame(self._compressed(msg), self.size_hw)

    def _compressed(self, msg) -> np.ndarray:
        fmt = msg.format.lower()
        if fmt and not any(k in fmt for k in ("jpeg", "jpg", "png")) or "compresseddepth" in fmt:
            raise BagError(f"{self.topic}: unsupported CompressedImage format '{msg.format}' "
                           "(supported: jpeg, png)")
        data = np.asarray(msg.data, dtype=np.uint8)
        flag = cv2.IMREAD_COLOR
        if data.size > 4 and data[0] == 0xFF and data[1] == 0xD8:  # JPEG (whatever `format` says)
            hw = jpeg_size(data)
            if hw is not None:
                flag = _REDUCED.get(jpeg_reduction(hw, self.size_hw), cv2.IMREAD_COLOR)
        bgr = cv2.imdecode(data, flag)
        if bgr is None:
            raise BadMessage(f"{self.topic}: CompressedImage '{msg.format}' of {data.size} bytes could not "
                             "be decoded, expected a complete jpeg/png")
        return bgr[..., ::-1]
