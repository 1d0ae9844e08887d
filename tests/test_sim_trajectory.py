"""The trajectory-controller model (`mirror_arm_sim.trajectory`) and the env's per-physics-step
targets: what `act_evaluate --command` and the bridge's `trajectory_interpolation` rely on."""

from __future__ import annotations

import numpy as np
import pytest
from mirror_arm_sim.trajectory import TrajectoryPlayer, plan_points


def test_linear_points_start_from_the_current_reference():
    p = TrajectoryPlayer(2, [0.0, 1.0])
    p.set_trajectory(1.0, [0.1, 0.3], [[1.0, 1.0], [3.0, 1.0]])
    np.testing.assert_allclose(p.sample(1.0)[0], [0.0, 1.0])       # where it was
    np.testing.assert_allclose(p.sample(1.05)[0], [0.5, 1.0])      # half-way to point 0
    np.testing.assert_allclose(p.sample(1.2)[0], [2.0, 1.0])       # half-way between the points
    np.testing.assert_allclose(p.sample(5.0)[0], [3.0, 1.0])       # held after the last point
    # a new trajectory mid-way starts from the reference at that time, not from its old start
    p.set_trajectory(1.2, [0.1], [[2.0, 0.0]])
    np.testing.assert_allclose(p.sample(1.2)[0], [2.0, 1.0])
    np.testing.assert_allclose(p.targets(1.2, 0.05, 2), [[2.0, 0.5], [2.0, 0.0]])


def test_cubic_points_are_c1_and_pass_through_the_points():
    p = TrajectoryPlayer(1, [0.0])
    t = np.arange(1, 6) * 0.02
    q = np.sin(t * 10)[:, None]
    p.set_trajectory(0.0, t, q, velocities=np.gradient(q, 0.02, axis=0))
    for ti, qi in zip(t, q):
        np.testing.assert_allclose(p.sample(ti - 1e-12)[0], qi, atol=1e-9)
    # velocity continuous across a point
    v_before, v_after = p.sample(t[1] - 1e-9)[1], p.sample(t[1] + 1e-9)[1]
    np.testing.assert_allclose(v_before, v_after, atol=1e-5)


def test_bad_trajectories_are_refused():
    p = TrajectoryPlayer(2, [0.0, 0.0])
    with pytest.raises(ValueError, match="times > 0 strictly increasing"):
        p.set_trajectory(0.0, [0.1, 0.1], [[0, 0], [1, 1]])
    with pytest.raises(ValueError, match="times > 0"):
        p.set_trajectory(0.0, [0.0], [[0, 0]])
    with pytest.raises(ValueError, match="expected 2 finite values"):
        p.hold(0.0, [np.nan, 0.0])


def test_plan_points_times_and_velocities():
    """A streamed plan: point k one tick after point k-1, velocities that a constant-velocity plan
    reproduces exactly (what the node sends and the evaluator's stream mode plays)."""
    plan = np.array([[0.0, 1.0], [0.1, 1.0], [0.2, 1.0], [0.3, 1.0]])
    times, pts, vel = plan_points(plan, 0.02, 0.05)
    np.testing.assert_allclose(times, [0.05, 0.07, 0.09, 0.11])
    np.testing.assert_array_equal(pts, plan)
    np.testing.assert_allclose(vel, [[5.0, 0.0]] * 4)
    with pytest.raises(ValueError, match="plan must be"):
        plan_points(plan[:1], 0.02, 0.0)


def test_env_step_targets_equals_step_for_constant_targets():
    from mirror_arm_sim.env import MirrorArmEnv

    envs = [MirrorArmEnv(image_size=(32, 32)) for _ in range(2)]
    for e in envs:
        e.reset(seed=4, options={"arm": 1})
    a = envs[0].arm_ctrl() + np.array([0.05, -0.05, 0.05, 0, 0, 0, 0.01])
    o1, *_ = envs[0].step(a)
    o2, *_ = envs[1].step_targets(np.repeat(a[None], envs[1].substeps, axis=0))
    np.testing.assert_array_equal(o1["qpos"], o2["qpos"])  # bit-exact: same physics
    assert envs[1].substep_qpos.shape == (envs[1].substeps, 7)
    np.testing.assert_allclose(envs[1].substep_qpos[-1], o2["qpos"], atol=1e-6)  # obs is float32
    with pytest.raises(ValueError, match="targets must have shape"):
        envs[1].step_targets(a[None])


def test_rms_jerk_of_a_cubic_is_its_third_derivative():
    from act_training.evaluation.rollouts import rms_jerk

    h = 0.002
    t = np.arange(200) * h
    q = np.stack([t**3, -2 * t**3], axis=1)  # jerk 6 and -12 everywhere
    assert rms_jerk(q, h) == pytest.approx(np.sqrt((36 + 144) / 2), rel=1e-6)
    assert rms_jerk(q[:3], h) == 0.0  # too short to differentiate three times
