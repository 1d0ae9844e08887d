"""The policy node over real DDS (timer mode): rate, joint ordering, clamping, staleness, bad inputs,
enable/reset services, hold vs silent, wrong joint names.

Processes: the node (`python -m act_policy_node.policy_node`), a stand-in driver
(tests/node_sensor_pub.py: camera + shuffled joint states with extra joints) and a probe node in
the test process (records commands and status, calls services, steers the driver).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("torch")
from node_testlib import Probe, make_tiny_checkpoint, start, stop, wait_for  # noqa: E402

HERE = Path(__file__).resolve().parent
ARM0 = [f"arm0_{j}" for j in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_pitch", "wrist_roll",
                              "gripper")]
Q0 = np.array([0.11, -0.52, 0.93, 0.04, 0.61, -0.07, 0.025])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", image_size=(32, 32))


def start_driver(tmp_path):
    positions = dict(zip(ARM0, Q0.tolist()))
    import subprocess

    from node_testlib import ros_env

    log = open(tmp_path / "driver.log", "w")  # noqa: SIM115
    return subprocess.Popen([sys.executable, str(HERE / "node_sensor_pub.py"), json.dumps(positions)],
                            stdout=log, stderr=subprocess.STDOUT, env=ros_env())


class Recorder:
    def __init__(self, probe: Probe, cmd_type) -> None:
        from std_msgs.msg import String

        from act_msgs.msg import PolicyStatus

        self.lock = threading.Lock()
        self.cmds: list[tuple[float, list[float]]] = []
        self.status: list = []
        probe.node.create_subscription(cmd_type, "commands", self._on_cmd, 100)
        probe.node.create_subscription(PolicyStatus, "status", self.status.append, 10)
        self.ctl = probe.node.create_publisher(String, "sensor_ctl", 10)
        self._String = String

    def _on_cmd(self, m) -> None:
        vals = list(m.data) if hasattr(m, "data") else list(m.points[0].positions)
        with self.lock:
            self.cmds.append((time.monotonic(), vals))

    def since(self, t: float) -> list[tuple[float, list[float]]]:
        with self.lock:
            return [c for c in self.cmds if c[0] >= t]

    def send(self, state: str) -> None:
        for _ in range(3):
            self.ctl.publish(self._String(data=state))
            time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.ros
def test_node_timer_mode_safety(tmp_path, ckpt):
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import SetBool, Trigger

    lo, hi = Q0 - 0.01, Q0 + 0.01
    max_step = 0.002
    driver = start_driver(tmp_path)
    node = start("act_policy_node.policy_node", {
        "checkpoint": str(ckpt), "arm": 0, "execution": "ensemble", "control_rate": 50.0, "autostart": True,
        "enabled_on_start": False, "on_stale": "silent", "stale_timeout": 0.5,
        "joint_limits_source": "params", "joint_lower_limits": lo.tolist(), "joint_upper_limits": hi.tolist(),
        "max_step": [max_step], "status_rate": 10.0}, name="node", log_dir=tmp_path)
    probe = Probe("probe_safety")
    rec = Recorder(probe, Float64MultiArray)
    try:
        assert probe.call(SetBool, "act_policy_node/enable", SetBool.Request(data=False), timeout=90).success
        time.sleep(1.0)
        assert rec.since(0) == [], "commands while disabled"
        assert probe.call(SetBool, "act_policy_node/enable", SetBool.Request(data=True)).success
        assert wait_for(lambda: len(rec.cmds) > 0, 30), "no command after enabling"

        # ~50 Hz, joints ordered by name, clamped to the limits and the step limit
        t0 = time.monotonic()
        time.sleep(3.0)
        window = [c for c in rec.since(t0) if c[0] < t0 + 3.0]
        rate = len(window) / 3.0
        assert 30.0 <= rate <= 60.0, f"command rate {rate:.1f} Hz"
        cmds = np.array([c[1] for c in rec.since(0)])
        assert np.all(np.abs(cmds[0] - Q0) <= max_step + 1e-9), "first command not within max_step of qpos"
        assert np.all(cmds >= lo - 1e-12) and np.all(cmds <= hi + 1e-12)
        assert np.all(np.abs(np.diff(cmds, axis=0)) <= max_step + 1e-9)
        assert np.any(np.isclose(cmds, lo) | np.isclose(cmds, hi)), "predictions never reached a limit?"

        # stale camera -> silent, then resumes
        rec.send("pause_camera")
        t_pause = time.monotonic()
        time.sleep(2.0)
        assert rec.since(t_pause + 1.0) == [], "commands while the camera is stale (on_stale=silent)"
        assert rec.status and rec.status[-1].mode_name == "holding"
        rec.send("ok")
        t_ok = time.monotonic()
        assert wait_for(lambda: len(rec.since(t_ok)) > 10, 15), "no resume after fresh camera data"

        # NaN joint state -> rejected (no crash), no command; then resumes
        rejected0 = rec.status[-1].rejected_inputs
        rec.send("nan_joints")
        t_nan = time.monotonic()
        time.sleep(1.5)
        assert rec.since(t_nan + 1.0) == [], "commands with NaN joint states"
        assert node.poll() is None
        rec.send("short_joints")
        time.sleep(0.5)
        rec.send("bad_encoding")
        time.sleep(0.5)
        rec.send("ok")
        t_ok = time.monotonic()
        assert wait_for(lambda: len(rec.since(t_ok)) > 10, 15), "no resume after valid joint states"
        assert wait_for(lambda: rec.status[-1].rejected_inputs > rejected0 + 20, 3)

        # reset service, then the gate
        r = probe.call(Trigger, "act_policy_node/reset", Trigger.Request())
        assert r.success
        t_reset = time.monotonic()
        assert wait_for(lambda: len(rec.since(t_reset)) > 5, 15)
        assert probe.call(SetBool, "act_policy_node/enable", SetBool.Request(data=False)).success
        t_off = time.monotonic()
        time.sleep(1.0)
        assert rec.since(t_off + 0.2) == []
        st = rec.status[-1]
        assert st.mode_name == "idle" and not st.enabled and st.ticks > 100
        assert node.poll() is None, "node died"
    finally:
        probe.close()
        stop(node)
        stop(driver)
    log = (tmp_path / "node.log").read_text()
    assert "non-finite" in log and "unsupported image encoding" in log and "positions" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.slow
@pytest.mark.ros
def test_node_hold_trajectory_chunked_and_wrong_names(tmp_path, ckpt):
    from std_srvs.srv import SetBool
    from trajectory_msgs.msg import JointTrajectory

    driver = start_driver(tmp_path)
    node = start("act_policy_node.policy_node", {
        "checkpoint": str(ckpt), "arm": 0, "execution": "chunked", "n_execute": 4, "autostart": True,
        "command_type": "joint_trajectory", "enabled_on_start": True, "on_stale": "hold",
        "stale_timeout": 0.5, "joint_limits_source": "cell"}, name="node", log_dir=tmp_path)
    # joint names that the driver does not publish: a clear error, no commands
    wrong = start("act_policy_node.policy_node", {
        "checkpoint": str(ckpt), "arm": 0, "joint_names": [f"left_{j}" for j in range(7)],
        "autostart": True}, name="wrong", log_dir=tmp_path,
        ros_args=["-r", "__node:=wrong_names", "-r", "commands:=wrong_commands"])
    # joint_names of the wrong length: refuses to start
    bad_len = start("act_policy_node.policy_node", {"checkpoint": str(ckpt), "joint_names": ["a", "b"],
                                                    "autostart": True},
                    name="badlen", log_dir=tmp_path, ros_args=["-r", "__node:=bad_len"])
    probe = Probe("probe_hold")
    rec = Recorder(probe, JointTrajectory)
    from std_msgs.msg import Float64MultiArray

    wrong_cmds = []
    probe.node.create_subscription(Float64MultiArray, "wrong_commands", wrong_cmds.append, 10)
    try:
        assert wait_for(lambda: len(rec.cmds) > 20, 90), "no trajectory commands"
        rec.send("pause_camera")
        t_pause = time.monotonic()
        time.sleep(1.5)
        held = [c[1] for c in rec.since(t_pause + 0.8)]
        assert len(held) > 20, "on_stale=hold must keep publishing"
        assert all(np.allclose(h, held[0]) for h in held), "held commands must not move"
        rec.send("ok")
        t_ok = time.monotonic()
        assert wait_for(lambda: any(not np.allclose(c[1], held[0]) for c in rec.since(t_ok)), 15)
        assert bad_len.wait(timeout=60) == 2
        assert wrong.poll() is None
        assert not wrong_cmds
        assert probe.call(SetBool, "wrong_names/enable", SetBool.Request(data=True)).success
        time.sleep(1.0)
        assert not wrong_cmds
    finally:
        probe.close()
        for p in (node, wrong, bad_len, driver):
            stop(p)
    badlen = (tmp_path / "badlen.log").read_text()
    assert "configuration error: parameter joint_names: expected 7 names" in badlen, badlen
    wlog = (tmp_path / "wrong.log").read_text()
    assert "joint_states lacks joints ['left_0'" in wlog and "ERROR" in wlog, wlog[-2000:]


@pytest.mark.slow
@pytest.mark.ros
def test_node_streams_its_plan_as_a_multi_point_trajectory(tmp_path, ckpt):
    """trajectory_points:=5: each JointTrajectory carries this tick's command and the plan of the
    next ticks (what the executor will command), point k at (k+1) ticks, with velocities, and the
    plan obeys max_step point to point, like the commands it stands for."""
    from trajectory_msgs.msg import JointTrajectory

    max_step = 0.003
    driver = start_driver(tmp_path)
    node = start("act_policy_node.policy_node", {
        "checkpoint": str(ckpt), "arm": 0, "execution": "chunked", "n_execute": 8, "autostart": True,
        "command_type": "joint_trajectory", "trajectory_points": 5, "enabled_on_start": True,
        "max_step": [max_step], "joint_limits_source": "none"}, name="node", log_dir=tmp_path)
    probe = Probe("probe_stream")
    msgs: list = []
    probe.node.create_subscription(JointTrajectory, "commands", msgs.append, 100)
    try:
        assert wait_for(lambda: len(msgs) > 30, 90), "no trajectory commands"
    finally:
        probe.close()
        stop(node)
        stop(driver)
    dt = 1.0 / 50.0
    lengths = {len(m.points) for m in msgs[:30]}
    assert max(lengths) == 5 and min(lengths) >= 1, lengths  # fewer near the end of a chunk
    for m in msgs[:30]:
        assert list(m.joint_names) == ARM0
        times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in m.points]
        np.testing.assert_allclose(times, dt * np.arange(1, len(times) + 1), atol=1e-6)
        pos = np.array([p.positions for p in m.points])
        assert np.all(np.abs(np.diff(pos, axis=0)) <= max_step + 1e-9)
        if len(m.points) > 1:
            assert all(len(p.velocities) == 7 for p in m.points)
    # the streamed plan is what is then commanded: point 1 of tick t = point 0 of tick t+1 while
    # no new chunk came in between (the chunk of 8 is run whole, so most consecutive pairs)
    agree = sum(np.allclose(a.points[1].positions, b.points[0].positions, atol=1e-9)
                for a, b in zip(msgs[:30], msgs[1:31]) if len(a.points) > 1)
    assert agree >= 15, agree


@pytest.mark.slow
@pytest.mark.ros
def test_reset_forgets_the_old_observation(tmp_path, ckpt):
    """~/reset starts a new episode: the node must not plan from the observation it held before
    (the previous episode's last frame, still within stale_timeout); it waits for new inputs.
    Before the fix a real-time chunked evaluation planned each episode's first chunk from the
    last one's final frame."""
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import Trigger

    from act_msgs.msg import PolicyStatus

    driver = start_driver(tmp_path)
    node = start("act_policy_node.policy_node", {
        "checkpoint": str(ckpt), "arm": 0, "execution": "chunked", "autostart": True,
        "enabled_on_start": True, "on_stale": "silent", "stale_timeout": 3.0,
        "joint_limits_source": "none", "status_rate": 20.0}, name="node", log_dir=tmp_path)
    probe = Probe("probe_reset")
    rec = Recorder(probe, Float64MultiArray)
    try:
        assert wait_for(lambda: len(rec.cmds) > 10, 90), "no commands"
        rec.send("pause_camera")  # the camera stops; its last frame stays "fresh" for 3 s
        assert probe.call(Trigger, "act_policy_node/reset", Trigger.Request()).success
        t_reset = time.monotonic()
        time.sleep(1.0)
        assert rec.since(t_reset + 0.1) == [], "commands planned from the pre-reset observation"
        assert wait_for(lambda: rec.status and rec.status[-1].mode == PolicyStatus.MODE_WAITING, 10)
        rec.send("ok")  # new frames: the policy runs again
        t_ok = time.monotonic()
        assert wait_for(lambda: len(rec.since(t_ok)) > 5, 30), "no commands after new inputs"
    finally:
        probe.close()
        stop(node)
        stop(driver)


def test_node_runs_the_onnx_backend(tmp_path, ckpt):
    """`backend:=onnx`: the node configures with ONNX Runtime (exported next to the checkpoint on
    first use) and drives the arm; parity with eager torch is tests/test_runtime_backends.py's."""
    import shutil

    from std_msgs.msg import Float64MultiArray

    onnx_ckpt = tmp_path / "tiny.pt"
    shutil.copyfile(ckpt, onnx_ckpt)  # the ONNX cache goes next to this copy
    driver = start_driver(tmp_path)
    node = start("act_policy_node.policy_node", {
        "checkpoint": str(onnx_ckpt), "backend": "onnx", "arm": 0, "execution": "ensemble",
        "control_rate": 50.0, "autostart": True, "enabled_on_start": True}, name="node_onnx",
        log_dir=tmp_path)
    probe = Probe("probe_onnx")
    rec = Recorder(probe, Float64MultiArray)
    try:
        assert wait_for(lambda: len(rec.cmds) >= 20, 120), "no commands from the onnx node"
        vals = np.array([v for _, v in rec.since(0)])
        assert vals.shape[1] == 7 and np.isfinite(vals).all()
        log = (tmp_path / "node_onnx.log").read_text()
        assert "backend=onnx" in log, log[-2000:]
        assert list(tmp_path.glob("*.onnx")), "no ONNX export next to the checkpoint"
    finally:
        probe.close()
        stop(node)
        driver.terminate()
        driver.wait(timeout=10)
