"""The ROS loop is faithful: bridge + policy node + evaluator as separate processes over DDS.

In lockstep mode, on arm 1 (mirrored, ensemble) and arm 0 (chunked), the commands the arm
receives equal the actions of the in-process (mirrored) evaluation for the same seeds and
checkpoint, and the per-trial outcomes equal `act_training.evaluation.rollouts`'s.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mujoco")
pytest.importorskip("torch")
from node_testlib import ROOT, make_tiny_checkpoint, ros_env, start, stop  # noqa: E402

SEEDS = (11, 12)
MAX_STEPS = 40
IMAGE = (32, 32)


def reference_actions(ckpt, arm: int, mode: str, seeds, max_steps: int, mirror: bool = True,
                      stream: int = 0):
    """The in-process mirrored evaluation loop (as act_training.evaluation.rollouts, one env), recording the
    env actions: runtime -> executor -> mirror -> env. stream=N: each tick's command and the plan of
    the next N-1 ticks are followed as a JointTrajectoryController would (cubic through the
    points, mirror_arm_sim.trajectory), sampled every physics step."""
    from act_training.runtime.executors import make_executor
    from act_training.runtime.policy import ACTPolicyRuntime
    from mirror_arm_sim.env import MirrorArmEnv
    from mirror_arm_sim.mirror_map import load_mirror_map
    from mirror_arm_sim.trajectory import TrajectoryPlayer

    rt = ACTPolicyRuntime.load(ckpt)
    mm = load_mirror_map() if arm == 1 and mirror else None
    env = MirrorArmEnv(image_size=IMAGE, cameras=("top",), max_episode_steps=max_steps)
    out = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed, options={"arm": arm, "randomize": True})
        ex = make_executor(mode, rt.chunk_size, rt.action_dim)
        actions, success = [], False
        player = TrajectoryPlayer(7, env.arm_ctrl())
        dt, h = 1.0 / env.control_hz, env.model.opt.timestep
        lo, hi = env.joint_limits()
        for t in range(max_steps):
            images, q = {"top": obs["images"]["top"]}, np.asarray(obs["qpos"], dtype=np.float32)
            if mm is not None:
                images, q = mm.images(images), mm.qpos(q)
            if ex.needs_query():
                ex.add_chunk(rt.predict_chunk(images, q))
            plan = ex.peek(stream) if stream else None
            a = ex.next_action()
            a = mm.action(a) if mm is not None else a
            actions.append(np.asarray(a, dtype=np.float64))
            if not stream:
                obs, _, term, trunc, info = env.step(np.asarray(a, dtype=np.float32))
            else:  # the node clips every point to the cell's limits
                pts = np.clip([mm.action(x) if mm is not None else x for x in plan], lo, hi)
                pts = pts.astype(np.float64)
                if len(pts) > 1:
                    player.set_trajectory(t * dt, dt * np.arange(1, len(pts) + 1), pts,
                                          velocities=np.gradient(pts, dt, axis=0))
                else:
                    player.set_trajectory(t * dt, [dt], pts)
                obs, _, term, trunc, info = env.step_targets(player.targets(t * dt, h, env.substeps))
            success = bool(info["success"])
            if term or trunc or success:
                break
        out.append((np.asarray(actions), success))
    env.close()
    return out


@pytest.mark.slow
@pytest.mark.ros
# mirror=False on arm 1: a policy for raw arm-1 observations (data.mirror_augment) run with the
# launch file's mirror:=false; the node must then pass observations and actions through as is
# stream: JointTrajectory commands of 5 points, the bridge following them as a trajectory controller
@pytest.mark.parametrize("arm,mode,mirror,stream", [(1, "ensemble", True, 0), (0, "chunked", True, 0),
                                                    (1, "chunked", False, 0), (1, "ensemble", True, 5)])
def test_lockstep_ros_loop_reproduces_in_process_evaluation(tmp_path, arm, mode, mirror, stream):
    # like the cpu transfer preset, the policy sees the left half of the frame (32x16 of 32x32):
    # the node must pass full frames (runtime.frame_size) and the runtime crop after the mirror
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt", image_size=(IMAGE[0], IMAGE[1] // 2), chunk_size=8,
                                crop=(0.0, 0.0, 1.0, 0.5))
    # the shipped parameter files, with the launch file's overrides
    follow = {"command_type": "joint_trajectory", "trajectory_interpolation": True} if stream else {}
    bridge = start("mirror_arm_sim.bridge_node",
                   {"arm": arm, "image_size": list(IMAGE), "max_episode_steps": MAX_STEPS, "lockstep": True,
                    **follow},
                   name="bridge", log_dir=tmp_path,
                   ros_args=["--params-file", str(ROOT / "src/mirror_arm_sim/config/mujoco_bridge.yaml")])
    node = start("act_policy_node.policy_node",
                 {"checkpoint": str(ckpt), "arm": arm, "execution": mode, "lockstep": True, "mirror": mirror,
                  **({"command_type": "joint_trajectory", "trajectory_points": stream} if stream else {})},
                 name="node", log_dir=tmp_path,
                 ros_args=["--params-file", str(ROOT / f"src/act_policy_node/config/sim_arm{arm}.yaml")])
    try:
        ev = subprocess.run(
            [sys.executable, "-m", "act_training.evaluation.ros_eval", "--trials", str(len(SEEDS)),
             "--arm", str(arm),
             "--seed", str(SEEDS[0]), "--json", str(tmp_path / "ros.json"), "--record",
             str(tmp_path / "cmds.npz"), "--episode-timeout", "90", "--wait", "90",
             *(["--command-type", "joint_trajectory"] if stream else [])],
            env=ros_env(), cwd=str(ROOT), capture_output=True, text=True, timeout=200)
    finally:
        stop(node)
        stop(bridge)
    logs = "".join((tmp_path / f"{n}.log").read_text() for n in ("bridge", "node"))
    assert ev.returncode == 0, f"ros_eval failed:\n{ev.stdout}\n{ev.stderr}\n{logs}"
    assert f"ROS eval arm{arm}" in ev.stdout
    ros = json.loads((tmp_path / "ros.json").read_text())
    rec = np.load(tmp_path / "cmds.npz")
    cmds, offsets = rec["commands"], rec["offsets"]
    assert offsets[-1] == len(cmds), f"{len(cmds)} commands for episode lengths {ros['lengths']}"

    from mirror_arm_sim.cell import default_cell

    limits = np.asarray(default_cell().arm_spec(arm).limits)
    ref = reference_actions(ckpt, arm, mode, SEEDS, MAX_STEPS, mirror, stream)
    for i, (actions, success) in enumerate(ref):
        got = cmds[offsets[i]:offsets[i + 1]]
        assert len(got) == len(actions) == ros["lengths"][i]
        # the node clamps to the cell's joint limits, exactly what the env does to every action
        want = np.clip(actions, limits[:, 0], limits[:, 1])
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
        assert ros["successes"][i] == success

    # and the evaluator of the transfer experiment agrees trial by trial
    from act_training.evaluation.rollouts import evaluate
    from act_training.runtime.policy import ACTPolicyRuntime

    res = evaluate(ACTPolicyRuntime.load(ckpt), arm=arm, n_trials=len(SEEDS), mode=mode, mirror=mirror,
                   seed=SEEDS[0], command="stream" if stream else "position", stream_points=stream or 1,
                   n_envs=1, max_steps=MAX_STEPS, env_kwargs={"max_episode_steps": MAX_STEPS}, progress=False)
    assert res.successes == ros["successes"]
    assert res.lengths == ros["lengths"]
