"""Ctrl-C and SIGTERM for the long-running ROS processes (bridge, Gazebo adapter, policy node).

rclpy's default signal handler shuts the context down from inside the signal, on whatever the
process is doing, and then lets Python raise KeyboardInterrupt there. Both race with the spinning
executor: a KeyboardInterrupt in the middle of rclpy's `Task.__init__` leaves a half-built task
whose `__del__` prints "AttributeError: 'Task' object has no attribute '_exception'", and a context
shut down between the executor's `ok()` check and its next wait set ends in `RCLError: failed to
initialize wait set`. Both turned up as tracebacks when `ros2 launch` stopped the nodes.

`StopOnSignal` avoids both: the process calls `rclpy.init(..., signal_handler_options=
SignalHandlerOptions.NO)`, so nothing is shut down from inside a signal, and the first signal
never raises: it records the request and wakes the executor, and `spin` returns at its next loop
turn (at once if the signal came while the process was still starting up, e.g. loading a
checkpoint). A second signal before `spin` started raises KeyboardInterrupt, for a start-up that
hangs. The caller then destroys its node and shuts rclpy down in order. (No rclpy import: this module
only drives an executor it is given.)
"""

from __future__ import annotations

import signal

__all__ = ["StopOnSignal"]


class StopOnSignal:
    """Install at once (before rclpy.init); `spin(executor)` runs until SIGINT/SIGTERM."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: int | None = None   # the signal that asked to stop, once one did
        self._executor = None
        for s in self.SIGNALS:
            signal.signal(s, self._handle)

    def spin(self, executor) -> None:
        """`executor.spin()` until a signal (or the context's shutdown); returns at once if one came."""
        self._executor = executor
        while self.requested is None and executor.context.ok():
            executor.spin_once(timeout_sec=0.5)

    def _handle(self, signum, frame) -> None:
        if self._executor is None and self.requested is not None:  # asked twice while starting up
            raise KeyboardInterrupt
        self.requested = signum
        if self._executor is not None:
            self._executor.wake()  # the wait in spin_once returns now, not after its timeout
