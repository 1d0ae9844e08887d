"""Safety logic of the policy node (numpy only, no ROS imports).

- `CommandLimiter`: clamps a joint command to [lower, upper] and to a maximum change per tick
  relative to the previous command (or, for the first command, to the measured position).
- `StalenessMonitor`: per-input receipt times -> ages, and which inputs are missing or stale;
  an input whose header stamp is frozen or goes backwards does not count as fresh.
- `InferenceWatchdog`: an inference running too long, or too many failures in a row.
- `tracking_violation`: command vs measured position beyond a per-joint limit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["CommandLimiter", "StalenessMonitor", "InferenceWatchdog", "tracking_violation"]


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
        """True when any position limit or step limit is finite (the limiter changes something)."""
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

    def apply_path(self, points, start) -> np.ndarray:
        """(n, dim) planned commands after `start` (the command sent this tick), each limited
        like `apply` against the one before it: a streamed plan obeys the same limits and
        per-tick rate as the commands it stands for. Not counted in `n_clamped`."""
        prev = np.asarray(start, dtype=np.float64).reshape(-1)
        out = []
        for p in np.asarray(points, dtype=np.float64).reshape(-1, self.dim):
            q = np.clip(np.clip(p, self.lower, self.upper), prev - self.max_step, prev + self.max_step)
            prev = np.clip(q, self.lower, self.upper)
            out.append(prev)
        return np.array(out).reshape(-1, self.dim)


class StalenessMonitor:
    """Tracks when each named input last arrived; times are seconds on one clock.

    With a header stamp (ns, any clock: wall or sim time) a message only counts as fresh if its
    stamp is newer than the last fresh one of that input: a driver that keeps re-sending an old
    sample (frozen stamp) or whose clock jumps back goes stale like one that stopped. Stamp 0 means
    "not stamped" and is judged by arrival only.
    """

    def __init__(self, names: Sequence[str], timeout: float) -> None:
        self.names = list(names)
        self.timeout = float(timeout)
        self._last: dict[str, float | None] = {n: None for n in self.names}
        self._stamp: dict[str, int] = {n: 0 for n in self.names}

    def reset(self) -> None:
        """Forget every arrival and stamp (all inputs missing again)."""
        self._last = {n: None for n in self.names}
        self._stamp = {n: 0 for n in self.names}

    def update(self, name: str, t: float, stamp_ns: int = 0) -> str | None:
        """Record an arrival at `t`; returns why it does not count as fresh ('frozen' or
        'backwards' stamp), else None."""
        stamp_ns = int(stamp_ns)
        if stamp_ns > 0:
            last = self._stamp[name]
            if last and stamp_ns == last:
                return "frozen"
            if last and stamp_ns < last:
                return "backwards"
            self._stamp[name] = stamp_ns
        self._last[name] = float(t)
        return None

    def last(self, name: str) -> float | None:
        """Time of the last fresh arrival of `name` (None if never)."""
        return self._last[name]

    def ages(self, now: float) -> list[float]:
        """Age of every input in `names` order (inf if never received)."""
        return [np.inf if t is None else max(0.0, now - t) for t in (self._last[n] for n in self.names)]

    def missing(self) -> list[str]:
        """Inputs that have never arrived, in `names` order."""
        return [n for n in self.names if self._last[n] is None]

    def stale(self, now: float) -> list[str]:
        """Inputs never received or older than the timeout (timeout <= 0: only missing ones)."""
        if self.timeout <= 0:
            return self.missing()
        return [n for n, a in zip(self.names, self.ages(now)) if a > self.timeout]


class InferenceWatchdog:
    """Judges the inference worker: one running longer than `timeout` s is hung; `max_failures`
    failed inferences in a row is a broken policy. Times are seconds on one clock."""

    def __init__(self, timeout: float, max_failures: int) -> None:
        self.timeout = float(timeout)
        self.max_failures = int(max_failures)
        self.failures = 0
        self.last_error = ""
        self._started: float | None = None

    def started(self, t: float) -> None:
        """An inference started at time `t` (seconds)."""
        self._started = float(t)

    def finished(self, error: str | None) -> None:
        """The running inference ended; `error` text counts a failure, None resets the count."""
        self._started = None
        if error is None:
            self.failures = 0
        else:
            self.failures += 1
            self.last_error = error

    def reset(self) -> None:
        """Clear the failure count and the last error."""
        self.failures, self.last_error = 0, ""

    def problem(self, now: float) -> str | None:
        """Why the policy must stop (None: fine)."""
        if self.failures >= self.max_failures:
            return f"inference failed {self.failures} times in a row (last: {self.last_error})"
        if self.timeout > 0 and self._started is not None and now - self._started > self.timeout:
            return (f"inference hung: running for {now - self._started:.2f} s "
                    f"(inference_timeout {self.timeout} s)")
        return None


def tracking_violation(command, measured, limits, names: Sequence[str]) -> str | None:
    """The joints where |command - measured| exceeds `limits` (per joint, <= 0: unchecked), as a
    message; None if within."""
    err = np.abs(np.asarray(command, dtype=np.float64) - np.asarray(measured, dtype=np.float64))
    lim = np.asarray(limits, dtype=np.float64)
    bad = np.flatnonzero((lim > 0) & (err > lim))
    if bad.size == 0:
        return None
    parts = [f"{names[i]} {err[i]:.3f} > {lim[i]:.3f}" for i in bad]
    return "tracking error (command vs measured): " + ", ".join(parts)
