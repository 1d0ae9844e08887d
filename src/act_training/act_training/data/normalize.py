"""Normalisation statistics of qpos and actions, kept apart from the model.

Computed on the training episodes, stored in the checkpoint and applied by the dataset (training
targets) and by `runtime.pipeline.NormalizeStep` (inference), so both use the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


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
        """The four vectors as lists (JSON-ready)."""
        return {k: getattr(self, k).tolist() for k in ("qpos_mean", "qpos_std", "action_mean", "action_std")}

    @classmethod
    def from_dict(cls, d: dict) -> NormStats:
        """The inverse of to_dict."""
        return cls(**{k: np.asarray(d[k], dtype=np.float32) for k in
                      ("qpos_mean", "qpos_std", "action_mean", "action_std")})

    @property
    def state_dim(self) -> int:
        return len(self.qpos_mean)

    @property
    def action_dim(self) -> int:
        return len(self.action_mean)

    def normalize_qpos(self, q):
        """(q - qpos_mean) / qpos_std, for NumPy arrays or tensors (..., state_dim)."""
        return (q - self._like(self.qpos_mean, q)) / self._like(self.qpos_std, q)

    def normalize_actions(self, a):
        """(a - action_mean) / action_std, for NumPy arrays or tensors (..., action_dim)."""
        return (a - self._like(self.action_mean, a)) / self._like(self.action_std, a)

    def unnormalize_actions(self, a):
        """The inverse of normalize_actions: a * action_std + action_mean."""
        return a * self._like(self.action_std, a) + self._like(self.action_mean, a)

    @staticmethod
    def _like(v: np.ndarray, x):
        if isinstance(x, torch.Tensor):
            return torch.as_tensor(v, dtype=x.dtype, device=x.device)
        return v
