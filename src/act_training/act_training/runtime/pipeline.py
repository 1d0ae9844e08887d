"""The one observation/action pipeline, from robot to network and back.

    robot observation -> MirrorStep -> CropStep -> ResizeStep -> NormalizeStep -> model
    model output      -> NormalizeStep.inverse -> MirrorStep (its own inverse) -> robot command

Each step is a small object; `Pipeline` holds them, is built from the model config and the
normalisation statistics stored in the checkpoint (`Pipeline.from_model`), and is used
unchanged by the trainer's data path (`network_images`), the policy runtime, the in-process
evaluator and the policy node (`to_policy` / `to_robot`). Nothing else in `src/` resizes images:
the bag converter stores frames at the mapping's size with `ResizeStep.uint8`.

Shapes: camera frames uint8 (..., H, W, 3) of any size; network images float32 (..., 3, h, w) in
[0, 1] with (h, w) = the model's `image_size`; qpos (..., state_dim), actions (..., action_dim),
in joint units (rad, m) on the robot side and normalised on the network side.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from act_training.data.normalize import NormStats

__all__ = ["MirrorStep", "CropStep", "ResizeStep", "NormalizeStep", "Pipeline"]


class MirrorStep:
    """Robot frame <-> policy frame through a mirror map (`mirror_arm_sim.mirror_map.MirrorMap`).

    For arm 1 driven by a policy trained on arm 0, the policy sees mirror(observation) (images
    swapped/flipped, qpos mirrored) and the arm receives mirror(action); the map is an
    involution, so the same call is its own inverse. `mirror_map=None` is the identity (arm 0,
    or the no-mirror control).
    """

    def __init__(self, mirror_map=None, camera_names: Sequence[str] | None = None) -> None:
        self.mirror_map = mirror_map
        self.camera_names = list(camera_names) if camera_names is not None else None

    @property
    def mirrored(self) -> bool:
        """True when a mirror map is set (otherwise the step is the identity)."""
        return self.mirror_map is not None

    def observation(self, images: Mapping[str, np.ndarray], qpos) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Robot-side {camera: uint8 (..., H, W, 3)}, qpos (..., D) -> the policy-side pair (qpos
        float32). Only `camera_names` are kept (all given cameras when it is None)."""
        cams = self.camera_names if self.camera_names is not None else list(images)
        missing = [c for c in cams if c not in images]
        if missing:
            raise ValueError(f"missing camera images {missing}")
        imgs = {c: images[c] for c in cams}
        q = np.asarray(qpos, dtype=np.float32)
        if self.mirror_map is not None:
            imgs = self.mirror_map.images(imgs)
            q = self.mirror_map.qpos(q)
        return imgs, q

    def source_camera(self, camera: str) -> str:
        """The robot camera whose frame becomes policy camera `camera` (itself without a swap)."""
        return self.mirror_map.camera_name(camera) if self.mirror_map is not None else camera

    def camera_image(self, camera: str, image: np.ndarray) -> np.ndarray:
        """Policy camera `camera`'s view of its source frame (`source_camera`): what `observation`
        gives for that one camera, so frames can go through one at a time."""
        src = self.source_camera(camera)
        return self.mirror_map.image(src, image) if self.mirror_map is not None else image

    def qpos(self, qpos) -> np.ndarray:
        """Robot-side qpos (..., D) -> policy side (float32): what `observation` gives for it."""
        q = np.asarray(qpos, dtype=np.float32)
        return self.mirror_map.qpos(q) if self.mirror_map is not None else q

    def action(self, action) -> np.ndarray:
        """Policy-side action(s) (..., A) -> robot-side joint targets (float32)."""
        a = np.asarray(action, dtype=np.float32)
        return self.mirror_map.action(a) if self.mirror_map is not None else a


@dataclass(frozen=True)
class CropStep:
    """Keep the window (top, left, height, width), fractions of the frame; None = the whole frame.
    Taken after the mirror step, so a left-half crop sees arm 0's side or mirrored arm 1's."""

    crop: tuple[float, float, float, float] | None = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (..., H, W, 3) -> uint8 (..., h', w', 3) (a view)."""
        if self.crop is None:
            return images
        H, W = images.shape[-3], images.shape[-2]
        t, lf = round(self.crop[0] * H), round(self.crop[1] * W)
        h, w = max(1, round(self.crop[2] * H)), max(1, round(self.crop[3] * W))
        return images[..., t:t + h, lf:lf + w, :]



@dataclass(frozen=True)
class ResizeStep:
    """The one resize: uint8 (..., H, W, 3) -> float32 (..., 3, h, w) in [0, 1], bilinear with
    antialiasing, a plain conversion when the size already matches or `size` is None.

    On the CPU the frames are resized as bytes, by torch's uint8 antialiased-bilinear kernel
    (channels-last), and only then converted to float: 3-5x faster than resizing float frames,
    for the node's camera frames and the bag converter's alike, and the stored (`uint8`) and
    network (`__call__`) images are the same bytes. The float kernel, used on other devices
    (torch has no uint8 one there), differs from it by at most one grey level (1/255).
    """

    size: tuple[int, int] | None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 (..., H, W, 3), got {images.dtype}")
        if images.ndim < 3 or images.shape[-1] != 3:
            raise ValueError(f"images must be (..., H, W, 3), got {tuple(images.shape)}")
        lead = images.shape[:-3]
        x = images.reshape(-1, *images.shape[-3:]).permute(0, 3, 1, 2)  # NCHW view, channels-last
        if self._resizes(x) and x.device.type == "cpu":
            x = self._bytes(x).float().div_(255.0)
        elif self._resizes(x):
            x = F.interpolate(x.float().div_(255.0), size=tuple(self.size), mode="bilinear",
                              align_corners=False, antialias=True).clamp_(0.0, 1.0)
        else:
            x = x.float().div_(255.0)
        return x.reshape(*lead, 3, x.shape[-2], x.shape[-1]).contiguous()

    def uint8(self, image: np.ndarray) -> np.ndarray:
        """uint8 (..., H, W, 3) frame(s) -> uint8 (..., h, w, 3): the same resize, kept as bytes
        (what the bag converter stores; `__call__` of the result is exactly `__call__` of the input)."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        x = torch.from_numpy(image) if image.flags.writeable else _from_readonly(image)
        x = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2)
        if not self._resizes(x):
            return image
        y = self._bytes(x).permute(0, 2, 3, 1).contiguous().numpy()
        return y.reshape(*image.shape[:-3], *y.shape[1:])

    def _resizes(self, x: torch.Tensor) -> bool:
        return self.size is not None and tuple(x.shape[-2:]) != tuple(self.size)

    def _bytes(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> uint8 (N, 3, h, w), torch's uint8 antialiased-bilinear kernel."""
        return F.interpolate(x.contiguous(memory_format=torch.channels_last), size=tuple(self.size),
                             mode="bilinear", align_corners=False, antialias=True)


_readonly_lock = threading.Lock()
_readonly_seen = False


def _from_readonly(image: np.ndarray) -> torch.Tensor:
    """torch.from_numpy of a read-only array that is only read (a view of a recorded message).

    torch warns once per process that such tensors must not be written; the resize never writes
    them, so the first call takes the warning silently (torch then never repeats it, for any
    caller in the process). The lock keeps `catch_warnings` to one thread."""
    global _readonly_seen
    if _readonly_seen:
        return torch.from_numpy(image)
    with _readonly_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        x = torch.from_numpy(image)
        _readonly_seen = True
    return x


@dataclass(frozen=True)
class NormalizeStep:
    """qpos -> (qpos - mean) / std; its inverse maps network actions back to joint units."""

    stats: NormStats

    def qpos(self, q):
        """qpos (..., state_dim) numpy or tensor -> normalised, same type."""
        return self.stats.normalize_qpos(q)

    def actions(self, a):
        """Actions (..., action_dim) in joint units -> normalised (training targets)."""
        return self.stats.normalize_actions(a)

    def inverse(self, a):
        """Network actions (..., action_dim) -> joint units."""
        return self.stats.unnormalize_actions(a)


class Pipeline:
    """Mirror, crop, resize, normalise and their inverses; see the module docstring."""

    def __init__(self, crop: CropStep, resize: ResizeStep, normalize: NormalizeStep | None,
                 mirror: MirrorStep | None = None) -> None:
        self.mirror = mirror or MirrorStep()
        self.crop = crop
        self.resize = resize
        self.normalize = normalize

    @classmethod
    def from_model(cls, model_cfg, stats: NormStats | None = None, mirror_map=None,
                   camera_names: Sequence[str] | None = None) -> Pipeline:
        """From a ModelConfig (image_size, crop, camera_names) and the checkpoint's statistics."""
        return cls(CropStep(tuple(model_cfg.crop) if model_cfg.crop else None),
                   ResizeStep(tuple(model_cfg.image_size) if model_cfg.image_size else None),
                   NormalizeStep(stats) if stats is not None else None,
                   MirrorStep(mirror_map, camera_names or model_cfg.camera_names or None))

    def with_mirror(self, mirror_map) -> Pipeline:
        """The same pipeline for a deployment that does (or, with None, does not) mirror."""
        mirror = MirrorStep(mirror_map, self.mirror.camera_names)
        return Pipeline(self.crop, self.resize, self.normalize, mirror)

    # robot <-> policy frame ----------------------------------------------------------------
    def to_policy(self, images: Mapping[str, np.ndarray], qpos) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Robot-side observation -> policy-side (mirrored on a mirrored deployment)."""
        return self.mirror.observation(images, qpos)

    def to_robot(self, action) -> np.ndarray:
        """Policy-side action(s) (..., A) -> robot-side joint targets."""
        return self.mirror.action(action)

    # policy frame <-> network ----------------------------------------------------------------
    def network_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (..., H, W, 3) of any size -> float32 (..., 3, h, w): crop, then resize."""
        return self.resize(self.crop(images))

    def network_qpos(self, q):
        """qpos (..., state_dim) -> normalised."""
        return self.normalize.qpos(q)

    def network_actions(self, a):
        """Normalised network actions (..., action_dim) -> joint units (policy frame)."""
        return self.normalize.inverse(a)

