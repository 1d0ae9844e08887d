"""How a joint trajectory controller turns a JointTrajectory into position targets (numpy only).

The MuJoCo bridge and the in-process evaluator (`act_training.evaluation.rollouts`) sample the
arm's position targets from a `TrajectoryPlayer` at every physics step, the way ros2_controllers'
JointTrajectoryController samples its spline at every controller update:

- a new trajectory replaces the old one and starts from the current reference (the position the
  controller was commanding when it arrived, with its velocity);
- between points the targets follow a linear segment when the points carry no velocities and a
  cubic Hermite segment when they do (JTC's "splines" interpolation for position-only and
  position + velocity points);
- after the last point the last positions are held.

A forward position controller (Float64MultiArray) instead jumps to each command at once: the
player's `hold()` is that case. `plan_points` is how a streamed plan becomes trajectory points (the
policy node's messages and the in-process evaluator's stream mode alike).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TrajectoryPlayer", "plan_points"]


def plan_points(plan, dt: float, first_time: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Commands one control tick apart, (n >= 2, dim) -> (times (n,), positions (n, dim), velocities
    (n, dim)): point k at `first_time + k * dt`, velocities by finite differences of the plan."""
    pts = np.asarray(plan, dtype=np.float64)
    if pts.ndim != 2 or len(pts) < 2:
        raise ValueError(f"plan must be (n >= 2, dim), got shape {pts.shape}")
    return first_time + dt * np.arange(len(pts)), pts, np.gradient(pts, dt, axis=0)


class TrajectoryPlayer:
    """Position reference of `dim` joints over time, from the trajectories it is given."""

    def __init__(self, dim: int, start) -> None:
        self.dim = int(dim)
        q = self._vec(start, "start")
        self._t0 = 0.0
        self._times = np.zeros(1)
        self._pos = q[None].copy()
        self._vel: np.ndarray | None = np.zeros((1, self.dim))

    def _vec(self, v, what: str) -> np.ndarray:
        a = np.asarray(v, dtype=np.float64).reshape(-1)
        if a.size != self.dim or not np.all(np.isfinite(a)):
            raise ValueError(f"{what}: expected {self.dim} finite values, got {a.tolist()}")
        return a

    def hold(self, t: float, positions) -> None:
        """Jump to `positions` at time `t` and hold them (a forward position controller)."""
        q = self._vec(positions, "positions")
        self._t0, self._times, self._pos, self._vel = float(t), np.zeros(1), q[None], np.zeros((1, self.dim))

    def set_trajectory(self, t: float, times, positions, velocities=None) -> None:
        """Follow a trajectory received at time `t`: point i (positions (n, dim), optional
        velocities (n, dim)) is due at t + times[i] (strictly increasing, > 0), starting from the
        current reference at t."""
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        pos = np.asarray(positions, dtype=np.float64).reshape(len(times), self.dim)
        if len(times) == 0 or times[0] <= 0 or np.any(np.diff(times) <= 0) or not np.all(np.isfinite(pos)):
            raise ValueError(f"trajectory: expected finite points with times > 0 strictly increasing, got "
                             f"times {times.tolist()}")
        q0, v0 = self.sample(t)
        self._t0 = float(t)
        self._times = np.concatenate([[0.0], times])
        self._pos = np.vstack([q0, pos])
        if velocities is None:
            self._vel = None
        else:
            vel = np.asarray(velocities, dtype=np.float64).reshape(len(times), self.dim)
            self._vel = np.vstack([v0, vel])

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(position, velocity) of the reference at time `t`."""
        tau = float(t) - self._t0
        T, P = self._times, self._pos
        if tau >= T[-1] or len(T) == 1:
            return P[-1].copy(), np.zeros(self.dim)
        tau = max(tau, 0.0)
        i = int(np.searchsorted(T, tau, side="right")) - 1
        h = T[i + 1] - T[i]
        s = (tau - T[i]) / h
        if self._vel is None:  # linear
            return P[i] + s * (P[i + 1] - P[i]), (P[i + 1] - P[i]) / h
        V = self._vel  # cubic Hermite
        h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
        q = h00 * P[i] + h10 * h * V[i] + h01 * P[i + 1] + h11 * h * V[i + 1]
        d00, d10, d01, d11 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
        v = (d00 * P[i] + d10 * h * V[i] + d01 * P[i + 1] + d11 * h * V[i + 1]) / h
        return q, v

    def targets(self, t: float, dt: float, n: int) -> np.ndarray:
        """(n, dim) positions at t + dt, t + 2 dt, ..., t + n dt: one target per physics step."""
        return np.stack([self.sample(t + (j + 1) * dt)[0] for j in range(int(n))])
