"""Turning predicted action chunks into one action per control step (numpy only).

Shared by the evaluator (`act_training.evaluation.rollouts`) and the ROS policy node, so both execute a
policy identically. Two strategies (docs/architecture.md, "Executors"):

- `ChunkedExecutor`: query the policy, run the chunk's first `n_execute` actions open-loop,
  query again (ACT without ensembling; `n_execute` defaults to the chunk size).
- `TemporalEnsembleExecutor`: query every `query_period` steps (ACT: every step); the action for
  step t is the normalised weighted sum of every stored prediction for t,

      a_t = sum_i w_i * pred_i(t) / sum_i w_i,   w_i = exp(-k * i),  i = 0 the OLDEST prediction,

  kept in O(chunk_size * action_dim) memory: since a new prediction for t is always the
  youngest, its weight is exp(-k * n_t) with n_t the number already stored for t, so a ring
  buffer of running weighted sums (one row per future step) is exact.

Time model (both executors). `step` is the control tick: `next_action()` returns the action for
the current tick (or None when no stored chunk covers it) and ALWAYS advances one tick, so the
executor keeps real time even while a slow inference is in flight. `add_chunk(chunk, step=s)`
registers a chunk predicted from the observation taken at tick `s` (default: the current tick):
`chunk[j]` is the action for tick `s + j`. A late chunk (`s < step`) is aligned — its entries
for ticks already executed are dropped. Chunks must be added in non-decreasing `s`.

Typical synchronous loop (the evaluator):

    ex = make_executor("ensemble", chunk_size=C, action_dim=A)
    ex.reset()
    while running:
        if ex.needs_query():
            ex.add_chunk(policy(obs))
        obs = env.step(ex.next_action())

Asynchronous loop (the node): on a tick where `needs_query()` is true, start inference on that
tick's observation and remember the tick `s`; keep calling `next_action()` every tick; when the
inference returns, call `add_chunk(chunk, step=s)`. With the chunked executor the node may
ask `needs_query(lookahead=L)` (L = inference time in ticks + a margin) so that the next chunk,
predicted from the observation at tick s, arrives before the executed part of the current one
runs out; it then replaces the current chunk (aligned at s) — the prefetch of docs/ros.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

__all__ = ["ChunkedExecutor", "Executor", "TemporalEnsembleExecutor", "make_executor", "EXECUTOR_MODES"]

EXECUTOR_MODES = ("chunked", "ensemble")


class Executor(ABC):
    """Common state and checks for the executors (see module docstring for the time model)."""

    mode = "base"

    def __init__(self, chunk_size: int, action_dim: int) -> None:
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if int(action_dim) < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        self.chunk_size = int(chunk_size)
        self.action_dim = int(action_dim)
        self.step = 0
        self.last_query_step: int | None = None  # tick of the newest chunk's observation

    def reset(self) -> None:
        """Forget every chunk and restart at tick 0."""
        self.step = 0
        self.last_query_step = None

    def _check_chunk(self, chunk, step: int | None) -> tuple[np.ndarray, int]:
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.shape != (self.chunk_size, self.action_dim):
            raise ValueError(
                f"{type(self).__name__}: chunk shape {chunk.shape}, expected "
                f"({self.chunk_size}, {self.action_dim})"
            )
        s = self.step if step is None else int(step)
        if s > self.step:
            raise ValueError(f"chunk from future tick {s} (current tick {self.step})")
        if self.last_query_step is not None and s < self.last_query_step:
            raise ValueError(
                f"chunks must be added in non-decreasing tick order: got {s} after {self.last_query_step}"
            )
        return chunk, s

    @abstractmethod
    def needs_query(self) -> bool:
        """Does the current tick want a new prediction?"""

    @abstractmethod
    def add_chunk(self, chunk, step: int | None = None) -> None:
        """Register a chunk predicted from the observation at tick `step` (default: now)."""

    @abstractmethod
    def next_action(self) -> np.ndarray | None:
        """The action for the current tick (None if nothing covers it); advance one tick."""

    @abstractmethod
    def peek(self, n: int) -> np.ndarray:
        """(m, action_dim) float32, m <= n: the actions `next_action()` would return for the next
        m ticks if no chunk were added, stopping at the first tick nothing covers. Does not
        advance. The node streams them as a multi-point JointTrajectory (the plan ahead)."""

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(chunk_size={self.chunk_size}, action_dim={self.action_dim}, step={self.step})"


class ChunkedExecutor(Executor):
    """Run `n_execute` actions of each chunk open-loop, then ask for a new chunk.

    After `n_execute` actions the executor wants a query, but while the new chunk is not there
    yet it keeps returning the current chunk's later actions (useful with asynchronous
    inference); past the chunk's end `next_action()` returns None.
    """

    mode = "chunked"

    def __init__(self, chunk_size: int, action_dim: int, n_execute: int | None = None) -> None:
        super().__init__(chunk_size, action_dim)
        n = self.chunk_size if n_execute is None else int(n_execute)
        if not 1 <= n <= self.chunk_size:
            raise ValueError(f"n_execute must be in [1, chunk_size={self.chunk_size}], got {n_execute}")
        self.n_execute = n
        self._chunk = np.zeros((self.chunk_size, self.action_dim), dtype=np.float64)
        self._has_chunk = False

    def reset(self) -> None:
        """Forget the chunk and restart at tick 0."""
        super().reset()
        self._has_chunk = False

    def needs_query(self, lookahead: int = 0) -> bool:
        """True when the current chunk's first `n_execute` actions have run, or, with
        `lookahead` L > 0 (prefetch: an inference takes about L ticks), L ticks earlier, i.e.
        from offset max(1, n_execute - L) into the chunk. `lookahead=0` is the plain rule."""
        if not self._has_chunk:
            return True
        return self.step - self.last_query_step >= max(1, self.n_execute - max(0, int(lookahead)))

    def add_chunk(self, chunk, step: int | None = None) -> None:
        """Replace the current chunk with `chunk` (chunk_size, action_dim), predicted at tick `step`
        (default: now); `chunk[j]` is the action for tick step + j."""
        chunk, s = self._check_chunk(chunk, step)
        self._chunk[:] = chunk
        self._has_chunk = True
        self.last_query_step = s

    def next_action(self) -> np.ndarray | None:
        """The current chunk's action for this tick (None before the first chunk or past its end);
        advance one tick."""
        action = None
        if self._has_chunk:
            j = self.step - self.last_query_step
            if j < self.chunk_size:
                action = self._chunk[j].astype(np.float32)
        self.step += 1
        return action

    def peek(self, n: int) -> np.ndarray:
        """The current chunk's next min(n, remaining) actions (see `Executor.peek`)."""
        if not self._has_chunk:
            return np.zeros((0, self.action_dim), dtype=np.float32)
        j = self.step - self.last_query_step
        return self._chunk[j:min(j + max(0, int(n)), self.chunk_size)].astype(np.float32)


class TemporalEnsembleExecutor(Executor):
    """ACT temporal ensembling in O(chunk_size * action_dim) memory (see module docstring).

    Row `t % chunk_size` of the ring buffer holds, for tick t in [step, step + chunk_size), the
    running sums  S_t = sum_i w_i pred_i(t),  W_t = sum_i w_i  and the count n_t.
    """

    mode = "ensemble"

    def __init__(self, chunk_size: int, action_dim: int, k: float = 0.01, query_period: int = 1) -> None:
        super().__init__(chunk_size, action_dim)
        if not np.isfinite(k):
            raise ValueError(f"k must be finite, got {k}")
        if not 1 <= int(query_period) <= self.chunk_size:
            raise ValueError(f"query_period must be in [1, chunk_size={self.chunk_size}], got {query_period}")
        self.k = float(k)
        self.query_period = int(query_period)
        self._sum = np.zeros((self.chunk_size, self.action_dim), dtype=np.float64)
        self._wsum = np.zeros(self.chunk_size, dtype=np.float64)
        self._count = np.zeros(self.chunk_size, dtype=np.int64)

    def reset(self) -> None:
        """Clear the ring buffer and restart at tick 0."""
        super().reset()
        self._sum[:] = 0.0
        self._wsum[:] = 0.0
        self._count[:] = 0

    def needs_query(self) -> bool:
        """True every `query_period` ticks (and before the first chunk)."""
        return self.last_query_step is None or self.step - self.last_query_step >= self.query_period

    def add_chunk(self, chunk, step: int | None = None) -> None:
        """Add `chunk` (chunk_size, action_dim), predicted at tick `step` (default: now), to the
        weighted sums of the ticks it covers; entries for ticks already executed are dropped."""
        chunk, s = self._check_chunk(chunk, step)
        self.last_query_step = s
        first = self.step - s  # entries before this are for ticks already executed
        if first >= self.chunk_size:
            return
        ticks = np.arange(self.step, s + self.chunk_size)
        rows = ticks % self.chunk_size
        w = np.exp(-self.k * self._count[rows])
        self._sum[rows] += w[:, None] * chunk[first:]
        self._wsum[rows] += w
        self._count[rows] += 1

    def num_predictions(self) -> int:
        """How many predictions are stored for the current tick."""
        return int(self._count[self.step % self.chunk_size])

    def next_action(self) -> np.ndarray | None:
        """The weighted average of every stored prediction for this tick (None if there is none);
        the row is cleared for tick step + chunk_size and the executor advances one tick."""
        r = self.step % self.chunk_size
        action = None
        if self._count[r] > 0:
            action = (self._sum[r] / self._wsum[r]).astype(np.float32)
        # Row r now becomes tick step + chunk_size: clear it.
        self._sum[r] = 0.0
        self._wsum[r] = 0.0
        self._count[r] = 0
        self.step += 1
        return action

    def peek(self, n: int) -> np.ndarray:
        """The ensembled actions of the next ticks the stored predictions cover, up to n (see
        `Executor.peek`): for each, the same weighted average `next_action()` will return."""
        rows = (self.step + np.arange(min(max(0, int(n)), self.chunk_size))) % self.chunk_size
        covered = self._count[rows] > 0
        m = int(np.argmin(covered)) if not covered.all() else len(rows)
        rows = rows[:m]
        return (self._sum[rows] / self._wsum[rows, None]).astype(np.float32)


def make_executor(
    mode: str,
    chunk_size: int,
    action_dim: int,
    n_execute: int | None = None,
    k: float = 0.01,
    query_period: int = 1,
) -> Executor:
    """Build an executor: "chunked" (uses `n_execute`) or "ensemble" (uses `k`, `query_period`)."""
    if mode == "chunked":
        return ChunkedExecutor(chunk_size, action_dim, n_execute=n_execute)
    if mode in ("ensemble", "temporal_ensemble"):
        return TemporalEnsembleExecutor(chunk_size, action_dim, k=k, query_period=query_period)
    raise ValueError(f"unknown executor mode {mode!r}; choose one of {EXECUTOR_MODES}")
