"""Evaluation videos: the scene render beside what the policy saw, captioned, written as mp4."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["render_video_frame", "compose_frame", "write_video"]


def render_video_frame(env, obs: dict, size: tuple[int, int], camera: str) -> np.ndarray:
    """A frame for the video: a large (H, W) render of `camera` if the env can, else the obs image."""
    frame = None
    render_camera = getattr(env.unwrapped, "render_camera", None)
    if callable(render_camera):
        try:
            frame = render_camera(camera, size=tuple(size))
        except Exception:  # noqa: BLE001 - e.g. larger than the offscreen buffer: fall back
            frame = None
    if frame is None:
        frame = obs["images"][camera]
    return np.asarray(frame, dtype=np.uint8)


def _upscale(img: np.ndarray, height: int) -> np.ndarray:
    f = max(1, height // img.shape[0])
    return np.repeat(np.repeat(img, f, axis=0), f, axis=1)


def compose_frame(scene: np.ndarray, policy_view: np.ndarray, text: str, ok: bool | None) -> np.ndarray:
    """Scene render | what the policy saw (upscaled), with a caption; padded to multiples of 16."""
    view = _upscale(policy_view, scene.shape[0])
    h = max(scene.shape[0], view.shape[0])
    pad = lambda im: np.pad(im, ((0, h - im.shape[0]), (0, 0), (0, 0)))  # noqa: E731
    frame = np.concatenate([pad(scene), pad(view)], axis=1)
    H, W = frame.shape[:2]
    frame = np.pad(frame, ((0, (-H) % 16), (0, (-W) % 16), (0, 0)))
    frame = np.concatenate([np.zeros((32, frame.shape[1], 3), np.uint8), frame], axis=0)  # caption bar
    try:
        import cv2

        frame = np.ascontiguousarray(frame)
        color = (255, 255, 255) if ok is None else ((60, 230, 60) if ok else (240, 70, 70))
        cv2.putText(frame, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 1, cv2.LINE_AA)
    except ImportError:  # pragma: no cover - opencv is a dependency; captions are optional
        pass
    return frame


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Frames (H, W, 3) uint8 -> an H.264 mp4 at `path`, written to a temporary name first."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7, macro_block_size=16,
                            ffmpeg_log_level="error") as w:
        for f in frames:
            w.append_data(f)
    os.replace(tmp, path)
