"""Normalisation kept apart from the model: qpos/action statistics and image preparation.

One implementation used by both the training loop and the policy runtime, so that what the
network sees at inference is exactly what it saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class NormStats:
    """Per-dimension mean / std of qpos (state_dim,) and actions (action_dim,), std floored."""

    qpos_mean: np.ndarray
    qpos_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray

    def __post_init__(self):
        for k in ("qpos_mean", "qpos_std", "action_mean", "action_std"):
            v = np.asarray(getattr(self, k), dtype=np.float32).reshape(-1)
            if not np.all(np.isfinite(v)):
                raise ValueError(f"normalisation stats '{k}' are not finite: {v}")
            setattr(self, k, v)
        if np.any(self.qpos_std <= 0) or np.any(self.action_std <= 0):
            raise ValueError("normalisation std must be > 0")

    @classmethod
    def compute(cls, qpos: np.ndarray, actions: np.ndarray, std_floor: float = 1e-2) -> NormStats:
        """qpos (N, state_dim), actions (N, action_dim): every step of the TRAINING episodes."""
        qpos = np.asarray(qpos, dtype=np.float64)
        actions = np.asarray(actions, dtype=np.float64)
        return cls(
            qpos_mean=qpos.mean(0),
            qpos_std=np.maximum(qpos.std(0), std_floor),
            action_mean=actions.mean(0),
            action_std=np.maximum(actions.std(0), std_floor),
        )

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("qpos_mean", "qpos_std", "action_mean", "action_std")}

    @classmethod
    def from_dict(cls, d: dict) -> NormStats:
        return cls(**{k: np.asarray(d[k], dtype=np.float32) for k in
                      ("qpos_mean", "qpos_std", "action_mean", "action_std")})

    @property
    def state_dim(self) -> int:
        return len(self.qpos_mean)

    @property
    def action_dim(self) -> int:
        return len(self.action_mean)

    def normalize_qpos(self, q):
        return (q - self._like(self.qpos_mean, q)) / self._like(self.qpos_std, q)

    def normalize_actions(self, a):
        return (a - self._like(self.action_mean, a)) / self._like(self.action_std, a)

    def unnormalize_actions(self, a):
        return a * self._like(self.action_std, a) + self._like(self.action_mean, a)

    @staticmethod
    def _like(v: np.ndarray, x):
        if isinstance(x, torch.Tensor):
            return torch.as_tensor(v, dtype=x.dtype, device=x.device)
        return v


def prepare_images(images: torch.Tensor, size: tuple[int, int] | None,
                   crop: tuple[float, float, float, float] | None = None) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, h, w) in [0, 1]: the `crop` window (top, left,
    height, width as fractions of H, W; None = all) resized (bilinear, antialiased) to `size`."""
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (..., H, W, 3), got {images.dtype}")
    if images.ndim < 3 or images.shape[-1] != 3:
        raise ValueError(f"images must be (..., H, W, 3), got {tuple(images.shape)}")
    lead = images.shape[:-3]
    if crop is not None:
        H, W = images.shape[-3], images.shape[-2]
        t, lf = round(crop[0] * H), round(crop[1] * W)
        images = images[..., t:t + max(1, round(crop[2] * H)), lf:lf + max(1, round(crop[3] * W)), :]
    x = images.reshape(-1, *images.shape[-3:]).permute(0, 3, 1, 2).float().div_(255.0)
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
        x = x.clamp_(0.0, 1.0)
    return x.reshape(*lead, 3, x.shape[-2], x.shape[-1]).contiguous()
