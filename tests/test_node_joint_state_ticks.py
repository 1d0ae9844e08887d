"""Ticks started by joint states (`tick_source: joint_states`) and the image half run once per
frame (`encode_on_arrival`): the decimation rule, the encoder thread's lower priority, and the
node over real DDS: one command per tick at the control rate, taken from the joint states, and a
hold when they stop (the timer only watches)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from act_policy_node.engine import InferenceRequest, InferenceWorker, TickTrigger, set_realtime_priority
from act_policy_node.params import NodeConfigError, NodeParams


def ticks_of(trigger: TickTrigger, times) -> list[float]:
    return [t for t in times if trigger.arrival(t)]


@pytest.mark.parametrize("hz, every", [(100.0, 2), (50.0, 1), (200.0, 4)])
def test_joint_states_faster_than_the_rate_start_a_tick_every_nth(hz, every):
    rng = np.random.default_rng(0)
    times = np.arange(0, 4, 1 / hz) + rng.uniform(-0.001, 0.001, int(round(4 * hz)))  # +-1 ms jitter
    got = ticks_of(TickTrigger(50.0), np.sort(times))
    assert abs(len(got) - 200) <= 1
    gaps = np.diff(got)
    assert gaps.min() > 0.0125 and gaps.max() < 0.0275  # never two ticks in one period, never one skipped
    exact = list(np.arange(0, 4, 1 / hz))  # without jitter: exactly every `every`-th arrival
    index = [exact.index(t) for t in ticks_of(TickTrigger(50.0), exact)]
    assert set(np.diff(index[1:])) == {every}


def test_the_grid_keeps_the_average_rate_and_restarts_after_a_gap():
    tr = TickTrigger(50.0)
    assert len(ticks_of(tr, np.arange(0, 3, 1 / 60))) == pytest.approx(150, abs=1)  # 60 -> 50 Hz, on average
    tr = TickTrigger(50.0)
    assert len(ticks_of(tr, np.arange(0, 3, 1 / 30))) == 90  # slower than the rate: every one, at its rate
    tr = TickTrigger(50.0)
    first = ticks_of(tr, [0.0, 0.01, 0.02])
    assert first == [0.0, 0.02]
    assert tr.arrival(0.5)  # after a gap: at once, and the grid restarts from it
    assert not tr.arrival(0.51) and tr.arrival(0.52)
    tr.reset()
    assert tr.arrival(0.521)
    with pytest.raises(ValueError, match="rate_hz must be > 0"):
        TickTrigger(0.0)


def test_late_arrivals_are_overdue_and_a_filled_tick_keeps_the_grid():
    tr = TickTrigger(50.0)
    assert not tr.overdue(5.0)  # nothing to be late for before the first tick
    assert tr.arrival(0.0) and not tr.overdue(0.024) and tr.overdue(0.026)  # 1.25 periods
    tr.started(0.026)  # the caller's tick takes the slot due at 0.02
    assert not tr.arrival(0.032)  # the late arrival: its slot is taken
    assert tr.arrival(0.035)  # the next slot (0.04), within the tolerance
    assert tr.due == pytest.approx(0.06)


def test_tick_source_is_validated_and_read_only():
    with pytest.raises(NodeConfigError, match=r"parameter tick_source: expected one of \['timer', "
                                              r"'joint_states'\], got 'camera'"):
        NodeParams.from_values({"tick_source": "camera"})
    ro = {name for name, _, _, read_only in NodeParams.specs() if read_only}
    assert {"tick_source", "encode_on_arrival"} <= ro


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no thread priorities here")
def test_an_encoder_worker_runs_at_a_lower_priority():
    """The image half yields the CPU to the query's transformer and the ROS callbacks."""
    seen, done = {}, threading.Event()

    def predict(images, qpos):
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        done.set()
        return np.zeros((1, 1))

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    worker = InferenceWorker(predict, niceness=5, name="encoder")
    try:
        worker.submit(InferenceRequest({}, None, step=0, generation=0))
        assert done.wait(10)
        assert seen["nice"] == min(base + 5, 19)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller's is not
    finally:
        worker.stop()


@pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="no SCHED_FIFO here (not Linux)")
def test_the_query_worker_runs_realtime_where_allowed_and_says_so_where_not():
    """realtime_priority: the worker thread (only it) runs under SCHED_FIFO at that priority; where
    the system refuses it, a warning names the reason and the worker still answers."""
    seen, warnings, done = {}, [], threading.Event()

    def predict(images, qpos):
        seen["policy"], seen["priority"] = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
        done.set()
        return np.zeros((1, 1))

    worker = InferenceWorker(predict, realtime_priority=20, on_warning=warnings.append, name="query")
    try:
        worker.submit(InferenceRequest({}, None, step=0, generation=0))
        assert done.wait(10)
        if warnings:  # no privilege (not root, no CAP_SYS_NICE / rtprio limit)
            assert "cannot use SCHED_FIFO priority 20" in warnings[0] and "normal priority" in warnings[0]
            assert seen["policy"] == os.SCHED_OTHER
        else:
            assert (seen["policy"], seen["priority"]) == (os.SCHED_FIFO, 20)
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's thread is not changed
    finally:
        worker.stop()
    # a refusal by the kernel (here EINVAL, where root cannot get EPERM): a warning, normal scheduling
    refused, got = [], {}

    def try_invalid() -> None:
        got["ok"], got["policy"] = set_realtime_priority(0, refused.append), os.sched_getscheduler(0)

    t = threading.Thread(target=try_invalid)
    t.start()
    t.join(10)
    assert got == {"ok": False, "policy": os.SCHED_OTHER}
    assert len(refused) == 1 and "cannot use SCHED_FIFO priority 0" in refused[0], refused
    with pytest.raises(NodeConfigError, match=r"parameter realtime_priority: expected 0 \(off\) or a "
                                              r"SCHED_FIFO priority 1-99, got 120"):
        NodeParams.from_values({"realtime_priority": 120})


@pytest.mark.slow
@pytest.mark.ros
@pytest.mark.parametrize("execution", ["ensemble", "chunked"])
def test_node_ticks_on_joint_states_and_holds_without_them(tmp_path, execution):
    pytest.importorskip("rclpy")
    from node_testlib import Probe, make_tiny_checkpoint, start, stop, wait_for
    from std_msgs.msg import Float64MultiArray
    from test_node_safety import Recorder, start_driver

    from act_msgs.msg import PolicyStatus

    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt")
    # joint states at 50 Hz, control at 25 Hz: every second joint state starts a tick
    params = {"checkpoint": str(ckpt), "arm": 0, "execution": execution, "control_rate": 25.0,
              "tick_source": "joint_states", "autostart": True, "on_stale": "hold",
              "stale_timeout": 0.3, "status_rate": 10.0, "backend": "onnx"}
    driver = start_driver(tmp_path)
    node = start("act_policy_node.policy_node", params, name="js_node", log_dir=tmp_path)
    probe = Probe(f"probe_js_{execution}")
    rec = Recorder(probe, Float64MultiArray)
    js_times: list[float] = []
    from sensor_msgs.msg import JointState

    probe.node.create_subscription(JointState, "joint_states", lambda m: js_times.append(time.monotonic()),
                                   100)

    def status() -> PolicyStatus | None:
        return rec.status[-1] if rec.status else None

    try:
        assert wait_for(lambda: (s := status()) is not None and s.mode_name == "running", 120), status()
        s0, t0, n_js0 = status(), time.monotonic(), len(js_times)
        assert wait_for(lambda: len(js_times) - n_js0 >= 150, 60)  # 3 s of joint states
        s1, n_js = status(), len(js_times) - n_js0
        cmds = rec.since(t0)
        ticks = s1.ticks - s0.ticks
        info = f"{len(cmds)} commands, {ticks} ticks, {n_js} joint states; {s1.message}"
        assert 0.35 * n_js <= len(cmds) <= 0.65 * n_js, info  # one command per second joint state
        assert 0.35 * n_js <= ticks <= 0.65 * n_js, info
        assert s1.missed_ticks == s0.missed_ticks, info  # every tick had its action
        assert all(np.all(np.isfinite(c[1])) for c in cmds)
        rec.send("pause_joints")  # no joint states: no ticks; the timer holds the arm
        assert wait_for(lambda: (s := status()) is not None and s.mode_name == "holding", 10), status()
        assert "joint_states" in status().message
        t_hold = time.monotonic()
        assert wait_for(lambda: len(rec.since(t_hold)) >= 5, 5)  # the timer re-publishes the held command
        held = [c[1] for c in rec.since(t_hold)]
        assert all(v == held[0] for v in held), held
        rec.send("ok")
        assert wait_for(lambda: (s := status()) is not None and s.mode_name == "running", 20), status()
        assert node.poll() is None, "the node died"
    finally:
        probe.close()
        stop(node)
        stop(driver)
    log = (tmp_path / "js_node.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "ticks=joint_states image half on arrival" in log
