"""The policy node's safety logic without DDS (act_policy_node.params / safety / engine and the
runtime's image decoder): what a robot engineer relies on before the node ever runs on an arm."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import yaml
from act_policy_node.engine import InferenceRequest, InferenceWorker
from act_policy_node.params import NodeConfigError, NodeParams
from act_policy_node.safety import CommandLimiter, InferenceWatchdog, StalenessMonitor, tracking_violation
from act_training.runtime.sensors import decode_image
from node_testlib import ROOT


def physical_values() -> dict:
    path = ROOT / "src/act_policy_node/config/physical_pair.yaml"
    return yaml.safe_load(path.read_text())["/**"]["ros__parameters"]


def test_physical_params_validate_and_refuse_an_unlimited_rate():
    p = NodeParams.from_values(physical_values())
    p.check_against(7)
    steps = p.per_joint("max_step", 7)
    assert min(steps) > 0 and steps[-1] < steps[0]  # the gripper (m) has its own step
    for unlimited in ([0.0], [0.02] * 6 + [0.0], [float("inf")]):
        with pytest.raises(NodeConfigError, match="max_step.*unlimited rate"):
            NodeParams.from_values({**physical_values(), "max_step": unlimited})


def test_params_errors_name_the_parameter_expected_and_found():
    want = r"parameter execution: expected one of \['', 'chunked', 'ensemble'\], got 'chunky'"
    with pytest.raises(NodeConfigError, match=want):
        NodeParams.from_values({"execution": "chunky"})
    want = r"parameter backend: expected one of \['torch', 'jit', 'onnx', 'onnx_int8'\], got 'tensorrt'"
    with pytest.raises(NodeConfigError, match=want):
        NodeParams.from_values({"backend": "tensorrt"})
    with pytest.raises(NodeConfigError, match="parameter max_step: expected 1 or 7 values"):
        NodeParams.from_values({"max_step": [0.1, 0.2]}).check_against(7)
    with pytest.raises(NodeConfigError, match="parameter joint_names: expected 7 names"):
        NodeParams.from_values({"joint_names": ["a", "b"]}).check_against(7)


def test_only_runtime_safe_parameters_are_dynamic():
    dynamic = {name for name, _, _, read_only in NodeParams.specs() if not read_only}
    assert dynamic == {"stale_timeout", "on_stale", "warn_throttle_s"}


def test_frozen_or_backwards_stamps_are_not_fresh():
    mon = StalenessMonitor(["joint_states"], timeout=0.25)
    assert mon.update("joint_states", 10.0, stamp_ns=1_000) is None
    assert mon.update("joint_states", 10.2, stamp_ns=1_000) == "frozen"
    assert mon.update("joint_states", 10.3, stamp_ns=900) == "backwards"
    assert mon.stale(10.3) == ["joint_states"] and mon.stale(10.1) == []  # age counts from the fresh one
    assert mon.update("joint_states", 10.4, stamp_ns=2_000) is None and mon.stale(10.4) == []
    assert mon.update("joint_states", 10.5, stamp_ns=0) is None  # unstamped: arrival only


def test_watchdog_hung_and_repeated_failures():
    wd = InferenceWatchdog(timeout=0.5, max_failures=3)
    wd.started(1.0)
    assert wd.problem(1.4) is None and "hung" in wd.problem(1.6)
    wd.finished(None)
    assert wd.problem(5.0) is None
    for i in range(3):
        assert wd.problem(5.0) is None, i
        wd.finished("FloatingPointError: policy predicted non-finite actions")
    assert "failed 3 times in a row" in wd.problem(5.0) and "non-finite" in wd.problem(5.0)
    wd.finished(None)
    assert wd.problem(5.0) is None


def test_tracking_violation_names_the_joints_and_skips_unchecked_ones():
    names = ["a", "b", "gripper"]
    assert tracking_violation([0.0, 0.0, 0.0], [0.1, 0.0, 0.5], [0.2, 0.2, 0.0], names) is None
    msg = tracking_violation([0.0, 0.5, 0.0], [0.1, 0.0, 0.5], [0.2, 0.2, 0.0], names)
    assert msg is not None and "b 0.500 > 0.200" in msg and "gripper" not in msg


def test_8uc3_is_bgr():
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255  # blue in BGR order
    rgb = decode_image("8UC3", 2, 2, 6, bgr.tobytes())
    assert rgb[0, 0].tolist() == [0, 0, 255]
    assert np.array_equal(rgb, decode_image("bgr8", 2, 2, 6, bgr.tobytes()))


def test_worker_reports_a_failing_result_callback():
    errors, done = [], threading.Event()

    def on_result(res):
        raise RuntimeError("boom in the node's callback")

    def on_error(text):
        errors.append(text)
        done.set()

    worker = InferenceWorker(lambda images, qpos: np.zeros((4, 2)), on_result=on_result, on_error=on_error)
    try:
        worker.submit(InferenceRequest({}, np.zeros(2), step=0, generation=0))
        assert done.wait(10), "the callback's exception was swallowed"
        worker.submit(InferenceRequest({}, np.zeros(2), step=1, generation=0))
        assert worker.wait_idle(10) and worker.n_done == 2, "the worker stopped after the exception"
    finally:
        worker.stop()
    assert "boom in the node's callback" in errors[0] and "Traceback" in errors[0]


def test_a_streamed_plan_obeys_limits_and_max_step_point_to_point():
    """trajectory_points > 1: the planned points after this tick's command are limited like the
    commands they stand for, each against the one before it, and do not count as clamps."""
    lim = CommandLimiter(2, lower=[-1.0, -1.0], upper=[1.0, 0.5], max_step=[0.1, 0.2])
    path = lim.apply_path([[0.5, 0.0], [0.55, 0.9], [-0.5, 0.9]], start=[0.0, 0.0])
    np.testing.assert_allclose(path, [[0.1, 0.0], [0.2, 0.2], [0.1, 0.4]])
    assert lim.n_clamped == 0
    assert lim.apply_path(np.zeros((0, 2)), start=[0.0, 0.0]).shape == (0, 2)
