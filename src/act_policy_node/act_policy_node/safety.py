"""Safety logic of the policy node (numpy only, no ROS imports).

- `CommandLimiter`: clamps a joint command to [lower, upper] and to a maximum change per tick
  relative to the previous command (or, for the first command, to the measured position).
- `StalenessMonitor`: per-input receipt times -> ages, and which inputs are missing or stale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["CommandLimiter", "StalenessMonitor"]


class CommandLimiter:
    """Joint-limit and rate clamp. `None`/empty limits or `max_step <= 0` disable that part."""

    def __init__(self, dim: int, lower: Sequence[float] | None = None, upper: Sequence[float] | None = None,
                 max_step: float | Sequence[float] | None = None) -> None:
        self.dim = int(dim)
        self.lower = self._vec(lower, "lower", -np.inf)
        self.upper = self._vec(upper, "upper", np.inf)
        if np.any(self.lower > self.upper):
            raise ValueError(f"joint limits: lower {self.lower.tolist()} above upper {self.upper.tolist()}")
        ms = self._vec(max_step, "max_step", np.inf)
        self.max_step = np.where(ms > 0, ms, np.inf)
        self.n_clamped = 0

    def _vec(self, v, what: str, default: float) -> np.ndarray:
        if v is None or (not np.isscalar(v) and len(v) == 0):
            return np.full(self.dim, default)
        a = np.asarray(v, dtype=np.float64).reshape(-1)
        if a.size == 1:
            a = np.full(self.dim, float(a[0]))
        if a.size != self.dim:
            raise ValueError(f"{what} has {a.size} values, expected {self.dim}")
        if np.any(np.isnan(a)):
            raise ValueError(f"{what} contains NaN")
        return a

    @property
    def enabled(self) -> bool:
        return bool(np.isfinite(self.lower).any() or np.isfinite(self.upper).any()
                    or np.isfinite(self.max_step).any())

    def apply(self, command, previous=None) -> tuple[np.ndarray, bool]:
        """(clamped command, whether anything was clamped). `previous` is the last command sent
        (or the measured position); the change from it is limited to `max_step` per joint."""
        cmd = np.asarray(command, dtype=np.float64).reshape(-1)
        if cmd.size != self.dim:
            raise ValueError(f"command has {cmd.size} values, expected {self.dim}")
        out = np.clip(cmd, self.lower, self.upper)
        if previous is not None:
            prev = np.asarray(previous, dtype=np.float64).reshape(-1)
            out = np.clip(out, prev - self.max_step, prev + self.max_step)
            out = np.clip(out, self.lower, self.upper)  # a previous value outside the limits
        clamped = bool(np.any(out != cmd))
        self.n_clamped += int(clamped)
        return out, clamped


class StalenessMonitor:
    """Tracks when each named input last arrived; times are seconds on one clock."""

    def __init__(self, names: Sequence[str], timeout: float) -> None:
        self.names = list(names)
        self.timeout = float(timeout)
        self._last: dict[str, float | None] = {n: None for n in self.names}

    def reset(self) -> None:
        self._last = {n: None for n in self.names}

    def update(self, name: str, t: float) -> None:
        self._last[name] = float(t)

    def last(self, name: str) -> float | None:
        return self._last[name]

    def ages(self, now: float) -> list[float]:
        """Age of every input in `names` order (inf if never received)."""
        return [np.inf if t is None else max(0.0, now - t) for t in (self._last[n] for n in self.names)]

    def missing(self) -> list[str]:
        return [n for n in self.names if self._last[n] is None]

    def stale(self, now: float) -> list[str]:
        """Inputs never received or older than the timeout (timeout <= 0: only missing ones)."""
        if self.timeout <= 0:
            return self.missing()
        return [n for n, a in zip(self.names, self.ages(now)) if a > self.timeout]
