"""Small synthetic demo files in the real layout (written with DemoWriter), for tests and timing.

Each episode shows a coloured square at a random place; the joints move smoothly from a random
start towards a target that is a fixed function of the square's position, so the action chunk
is predictable from (image, qpos) and a small model can overfit it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mirror_arm_sim.hdf5_layout import DemoWriter

JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_pitch", "wrist_roll", "gripper"]


def synthetic_episode(rng: np.random.Generator, T: int, hw: tuple[int, int], cameras: list[str],
                      state_dim: int = 7, action_dim: int = 7):
    """One synthetic episode of T steps: ({camera: (T, H, W, 3) uint8}, qpos (T, state_dim),
    actions (T, action_dim)) float32, the action at t being the joint position at t + 1."""
    H, W = hw
    cy, cx = rng.uniform(0.2, 0.8, size=2)
    proj = np.linspace(-1.0, 1.0, max(state_dim, action_dim))
    target = np.tanh(proj * (cx - 0.5) * 4 + (cy - 0.5) * 2)[:state_dim].astype(np.float32)
    q0 = rng.normal(0, 0.3, size=state_dim).astype(np.float32)
    s = 1 - np.exp(-np.arange(T + 1) / (T / 4))
    traj = q0 + (target - q0) * s[:, None]
    qpos = traj[:T].astype(np.float32)
    full = np.zeros((T + 1, action_dim), np.float32)
    full[:, : min(state_dim, action_dim)] = traj[:, : min(state_dim, action_dim)]
    actions = full[1:]
    yy, xx = np.mgrid[0:H, 0:W]
    images = {}
    for k, cam in enumerate(cameras):
        base = np.zeros((H, W, 3), np.uint8)
        base[..., 2] = (40 + 20 * k + 60 * yy / H).astype(np.uint8)
        m = (np.abs(yy / H - cy) < 0.12) & (np.abs(xx / W - cx) < 0.12)
        base[m] = (220, 60 + 40 * k, 30)
        frames = np.repeat(base[None], T, axis=0)
        # a bar that moves with time, so frames differ within an episode
        for t in range(T):
            col = int((t / max(T - 1, 1)) * (W - 1))
            frames[t, : H // 8, col] = 255
        images[cam] = frames
    return images, qpos, actions


def write_synthetic_demos(path: str | Path, num_demos: int = 4, T: int = 20, hw: tuple[int, int] = (32, 32),
                          cameras: tuple[str, ...] = ("top",), state_dim: int = 7, action_dim: int = 7,
                          seed: int = 0, compression: str | None = "lzf") -> Path:
    """Write `num_demos` synthetic episodes to an HDF5 file in the project's demo layout; returns
    its path."""
    rng = np.random.default_rng(seed)
    joints = JOINTS[:state_dim] if state_dim <= len(JOINTS) else [f"j{i}" for i in range(state_dim)]
    act_names = [f"a{i}" for i in range(action_dim)] if action_dim != state_dim else None
    with DemoWriter(path, list(cameras), joints, act_names, source="synthetic", compression=compression) as w:
        for _ in range(num_demos):
            images, qpos, actions = synthetic_episode(rng, T, hw, list(cameras), state_dim, action_dim)
            w.add_episode(images, qpos, actions)
    return Path(path)
