"""The policy node's ROS-free core: the inference worker and the prefetch planner.

The arm <-> policy view (mirror) and the image preparation are `act_training.runtime.pipeline`'s.

- `InferenceWorker`: one background thread with a latest-request slot, so the control tick
  never waits for a forward pass: the tick submits (observation, tick index) and later polls for
  the chunk, which the executor aligns with `add_chunk(chunk, step=tick)`. A newer request
  replaces a pending one that has not started; `generation` lets a reset discard chunks that
  were in flight.
- `PrefetchPlanner`: how many ticks ahead of need a chunked-mode query must start (timer mode):
  lookahead = ceil(EMA of the measured inference seconds x control rate) + margin ticks.
- `TickTrigger`: observation-driven ticks (`tick_source: joint_states`): which arrivals start a tick.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["InferenceRequest", "InferenceResult", "InferenceWorker", "PrefetchPlanner", "TickTrigger"]


@dataclass
class InferenceRequest:
    """One observation to run the policy on: camera images (or, split inference, their cached image
    tokens), qpos (policy space), the executor tick it was taken at and the reset generation it
    belongs to."""

    images: dict[str, np.ndarray]
    qpos: np.ndarray
    step: int                 # executor tick of the observation
    generation: int           # bumped by every reset
    stamp: float = 0.0        # observation time (seconds, caller's clock), carried through
    context: dict = field(default_factory=dict)
    submitted: float = 0.0    # time.monotonic() of `submit` (set by the worker)
    started: float = 0.0      # time.monotonic() when the forward pass began (set by the worker)


@dataclass
class InferenceResult:
    """The answer to an InferenceRequest: the (C, A) chunk in policy space (None on error), the
    forward pass's wall time in seconds and the error text, if any."""

    request: InferenceRequest
    chunk: np.ndarray | None  # (C, A) policy space, None on error
    inference_s: float
    error: str | None = None


class InferenceWorker:
    """Runs `predict(images, qpos) -> (C, A)` on a daemon thread; see module docstring.

    `on_result(result)` (optional) is called on the worker thread; otherwise results are kept
    (oldest first) for `poll()`. An exception raised by `on_result` is reported to `on_error(text)`
    (default: stderr) with its traceback, and the worker goes on. `niceness` > 0 lowers the
    thread's CPU priority by that much (the node's image encoders: they must not delay the control
    path's inference); `realtime_priority` > 0 runs it under SCHED_FIFO at that priority (the
    control path's inference), or says why not to `on_warning` (default: `on_error`).
    """

    def __init__(self, predict: Callable[..., np.ndarray],
                 on_result: Callable[[InferenceResult], None] | None = None,
                 on_error: Callable[[str], None] | None = None, niceness: int = 0,
                 name: str = "act_inference", realtime_priority: int = 0,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self._predict = predict
        self.niceness = int(niceness)
        self.realtime_priority = int(realtime_priority)
        self._on_result = on_result
        self._on_error = on_error or (lambda text: print(text, file=sys.stderr, flush=True))
        self._on_warning = on_warning or self._on_error
        self._cv = threading.Condition()
        self._pending: InferenceRequest | None = None
        self._running = False
        self._results: list[InferenceResult] = []
        self._stop = False
        self.n_done = 0
        self.n_replaced = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """True while a request is running or waiting to start."""
        with self._cv:
            return self._running or self._pending is not None

    def submit(self, request: InferenceRequest) -> None:
        """Queue `request`, replacing a pending one that has not started (counted in n_replaced)."""
        with self._cv:
            if self._pending is not None:
                self.n_replaced += 1
            request.submitted = time.monotonic()
            self._pending = request
            self._cv.notify_all()

    def poll(self) -> list[InferenceResult]:
        """The results finished since the last poll, oldest first (empty when on_result is set)."""
        with self._cv:
            out, self._results = self._results, []
            return out

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is running or pending; False if `timeout` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._running or self._pending is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def stop(self) -> None:
        """Stop the thread: a pending request is dropped, a running one's result discarded; waits up
        to 5 s for the thread."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        if self.niceness > 0:
            _lower_thread_priority(self.niceness, self._on_error)
        if self.realtime_priority > 0:
            set_realtime_priority(self.realtime_priority, self._on_warning)
        while True:
            with self._cv:
                while self._pending is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                req, self._pending = self._pending, None
                self._running = True
            req.started = time.monotonic()
            t0 = time.perf_counter()
            try:
                chunk = np.asarray(self._predict(images=req.images, qpos=req.qpos), dtype=np.float32)
                if not np.all(np.isfinite(chunk)):
                    raise FloatingPointError("policy predicted non-finite actions")
                res = InferenceResult(req, chunk, time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - reported to the node, never kills the thread
                res = InferenceResult(req, None, time.perf_counter() - t0, f"{type(e).__name__}: {e}")
            with self._cv:
                stopping = self._stop
            if stopping:  # the node is going: its publishers may already be destroyed
                return
            if self._on_result is not None:
                try:
                    self._on_result(res)
                except Exception:  # noqa: BLE001 - a failing callback must not stop inference
                    self._on_error("inference result callback failed:\n" + traceback.format_exc())
            with self._cv:
                if self._on_result is None:
                    self._results.append(res)
                self._running = False
                self.n_done += 1
                self._cv.notify_all()


def set_realtime_priority(priority: int, on_warning: Callable[[str], None]) -> bool:
    """Run the calling thread under SCHED_FIFO at `priority` (sched_setscheduler(0) acts on the
    calling thread): it preempts every normal thread as soon as it wakes and is not preempted by
    them while it computes. Refused (no privilege, not Linux): a warning, normal scheduling, False."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(priority)))
        return True
    except (AttributeError, OSError) as e:
        on_warning(f"{threading.current_thread().name}: cannot use SCHED_FIFO priority {priority} ({e}): "
                   f"it runs at normal priority (root, CAP_SYS_NICE or an rtprio limit allows it)")
        return False


def set_normal_priority() -> None:
    """The calling thread back to normal (SCHED_OTHER) scheduling."""
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _lower_thread_priority(niceness: int, on_error: Callable[[str], None]) -> None:
    """Raise the calling thread's nice value by `niceness` (Linux schedules threads one by one;
    raising it needs no privilege), so that this thread yields the CPU to the control path."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
    except (AttributeError, OSError) as e:  # not Linux/macOS, or refused: run at normal priority
        on_error(f"{threading.current_thread().name}: cannot lower the thread's priority ({e}); "
                 f"it runs at the process's")


class PrefetchPlanner:
    """Lookahead for chunked execution on a timer: request the next chunk `lookahead()` ticks
    before the executed part of the current one runs out, so that it is back in time.

    lookahead = ceil(ema_s * rate_hz) + margin_ticks, `ema_s` the exponential moving average
    (weight `alpha` for the newest) of the measured inference seconds; before the first
    measurement only the margin (the first chunk is awaited anyway).
    """

    def __init__(self, rate_hz: float, margin_ticks: int = 1, alpha: float = 0.2) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        if int(margin_ticks) < 0:
            raise ValueError(f"margin_ticks must be >= 0, got {margin_ticks}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.rate_hz = float(rate_hz)
        self.margin_ticks = int(margin_ticks)
        self.alpha = float(alpha)
        self.ema_s: float | None = None

    def update(self, inference_s: float) -> None:
        """Fold one measured inference time (seconds) into the average (negative or non-finite: ignored)."""
        x = float(inference_s)
        if not math.isfinite(x) or x < 0:
            return
        self.ema_s = x if self.ema_s is None else self.ema_s + self.alpha * (x - self.ema_s)

    def lookahead(self) -> int:
        """Ticks before need at which the next query must start (see the class docstring)."""
        ticks = 0 if self.ema_s is None else math.ceil(self.ema_s * self.rate_hz - 1e-9)
        return max(0, ticks) + self.margin_ticks


class TickTrigger:
    """Ticks started by arrivals (joint states) at `rate_hz` on average: ticks are due on a grid
    of one period, and an arrival at time t (seconds, monotonic) starts a tick when t is no more
    than `tolerance` periods before the next due time.

    So joint states at 100 Hz start a tick every second one (50 Hz), at 50 Hz every one, and a
    late one starts its tick at once (the grid then catches up; after a gap of over a period it
    restarts from that arrival). The tolerance absorbs the driver's jitter: an arrival slightly
    early for its period is not skipped for a whole period; 0.3, not a round fraction, so that the
    window's edge does not fall on the arrival times of drivers at 100 or 200 Hz. Arrivals slower
    than the rate give a tick each, at their own rate, unless the caller fills the gaps
    (`overdue`, then `started`)."""

    def __init__(self, rate_hz: float, tolerance: float = 0.3) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        if not 0.0 <= tolerance < 1.0:
            raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
        self.period = 1.0 / float(rate_hz)
        self.tolerance = float(tolerance)
        self.due: float | None = None   # when the next tick is due
        self.last: float | None = None  # when the previous tick started

    def arrival(self, t: float) -> bool:
        """True when the arrival at `t` starts a tick."""
        t = float(t)
        if self.due is not None and t < self.due - self.tolerance * self.period:
            return False
        self.started(t)
        return True

    def started(self, t: float) -> None:
        """A tick started at `t` (by an arrival, or by the caller when `overdue`): it takes the
        due slot, and the next tick is due one period later on the grid."""
        t = float(t)
        on_grid = self.due is not None and t - self.due <= self.period
        self.due = (self.due if on_grid else t) + self.period
        self.last = t

    def overdue(self, t: float, periods: float = 1.25) -> bool:
        """No tick for more than `periods` periods at `t` (the arrivals are late; False before the
        first tick): the caller starts one itself, so that no period goes without a command."""
        return self.last is not None and float(t) - self.last > periods * self.period

    def reset(self) -> None:
        """Forget the grid: the next arrival starts a tick."""
        self.due = self.last = None
