"""Running the real ROS 2 command-line tools from tests: `ros2 launch`, `ros2 run`, and the
one-shot verbs a user types (`ros2 service call`, `ros2 param get/set`, `ros2 topic echo --once`,
`ros2 lifecycle set/get`).

Where they come from: a sourced system ROS 2, or the overlay that scripts/setup.sh builds from
../shared/vendor/ros2-cli (.venv/ros2-cli). `require_ros2_cli()` skips, saying why, only on a
machine that has neither; where either exists but `ros2` is not usable the test FAILS, so a
broken setup cannot hide behind a skip.

Long-running commands (`launch`, `run`) start in their own process group and are stopped like a
Ctrl-C in a terminal (SIGINT to the group). Verbs that would spawn the ros2 daemon get
`NO_DAEMON`: the daemon would outlive the test.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from node_testlib import ROOT, ros_env

VENDOR = ROOT.parent / "shared" / "vendor" / "ros2-cli"
# For verbs that look at the graph: no daemon (it would outlive the test) and 3 s of discovery
# instead of 0.5 s (on two busy cores the node is not always discovered that fast).
NO_DAEMON = ["--no-daemon", "--spin-time", "3"]


def _system_ros() -> bool:
    distro = os.environ.get("ROS_DISTRO", "")
    return bool(distro) and Path(f"/opt/ros/{distro}").is_dir()


def _cli_usable() -> bool:
    spec = importlib.util.find_spec("launch")
    return (shutil.which("ros2") is not None and spec is not None and spec.origin is not None
            and importlib.util.find_spec("launch_ros") is not None)


def require_ros2_cli() -> None:
    """Skip where no ROS 2 CLI can exist; fail where one should exist but is not usable."""
    if _cli_usable():
        return
    if _system_ros() or VENDOR.is_dir():
        where = f"system ROS 2 {os.environ['ROS_DISTRO']}" if _system_ros() else str(VENDOR)
        pytest.fail(f"{where} exists but `ros2` / `launch_ros` are not usable here: run scripts/setup.sh "
                    f"and `source scripts/activate.sh` (the overlay is .venv/ros2-cli)")
    pytest.skip("no ROS 2 CLI: no system ROS 2 sourced and no ../shared/vendor/ros2-cli to build "
                "`ros2 launch` from; the launch files are checked statically only (test_node_launch.py)")


class CliProcess:
    """A long-running `ros2 ...` command; its merged stdout/stderr is collected by a thread and
    also written to `log`."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None) -> None:
        self.args = list(args)
        self.log = log
        self._lines: list[str] = []
        self._cv = threading.Condition()
        self.proc = subprocess.Popen(["ros2", *self.args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env or ros_env(), cwd=str(ROOT), start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with open(self.log, "w") as f:
            for line in self.proc.stdout:
                f.write(line)
                f.flush()
                with self._cv:
                    self._lines.append(line)
                    self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    @property
    def output(self) -> str:
        with self._cv:
            return "".join(self._lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """The first match of `pattern` in the output; fails after `timeout` s or if the process
        ends without printing it."""
        rx = re.compile(pattern, re.MULTILINE)
        end = time.monotonic() + timeout
        with self._cv:
            while True:
                m = rx.search("".join(self._lines))
                if m:
                    return m
                left = end - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._cv.wait(min(left, 0.5))
        self.dump_stacks()
        raise AssertionError(f"`ros2 {' '.join(self.args)}`: no {pattern!r} within {timeout:.0f} s "
                             f"(exit code {self.proc.poll()}); output:\n{self.output[-4000:]}")

    def dump_stacks(self, timeout: float = 10.0) -> None:
        """Ask the launched policy nodes for their threads' Python stacks (SIGUSR1: the node's
        faulthandler), so that a failure's output shows where a node was stuck."""
        pids = [int(m) for m in re.findall(r"\[act_policy_node-\d+\]: process started with pid \[(\d+)\]",
                                            self.output)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                continue
            end = time.monotonic() + timeout
            with self._cv:
                while "most recent call first" not in "".join(self._lines) and time.monotonic() < end:
                    self._cv.wait(0.5)

    def wait(self, timeout: float) -> int:
        """Exit code after the command ends on its own (fails after `timeout` s)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.interrupt()
            raise AssertionError(f"`ros2 {' '.join(self.args)}` did not finish within {timeout:.0f} s; "
                                 f"output:\n{self.output[-4000:]}") from None
        self._reader.join(timeout=10)
        return rc

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C (SIGINT to the process group); SIGKILL to the group if it does not end."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(timeout=10)
        return self.proc.returncode


def ros2(*args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess:
    """A one-shot `ros2 ...` command; with `check` a non-zero exit fails the test."""
    cmd = ["ros2", *args]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=ros_env(), cwd=str(ROOT),
                             timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s: {e.stdout}") from None
    if check and res.returncode != 0:
        raise AssertionError(f"`{' '.join(cmd)}` exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def ros2_until(args: list[str], accept, timeout: float, per_try: float = 30.0) -> subprocess.CompletedProcess:
    """Repeat a one-shot command until `accept(result)` holds (e.g. a topic that has not been
    discovered yet, a mode not reached yet); fails after `timeout` s with the last output."""
    end = time.monotonic() + timeout
    while True:
        res = ros2(*args, timeout=per_try, check=False)
        if accept(res):
            return res
        if time.monotonic() >= end:
            raise AssertionError(f"`ros2 {' '.join(args)}` never gave the expected output within "
                                 f"{timeout:.0f} s; last (exit {res.returncode}):\n"
                                 f"{res.stdout}\n{res.stderr}")
        time.sleep(0.2)  # between retries of a polled condition, not a synchronisation
