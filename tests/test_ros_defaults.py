"""`act_evaluate --checkpoint X` and the ROS loop (bridge + policy node + mirror_arm_ros_eval as
plain processes over DDS) given only the checkpoint agree seed by seed: the executor settings and
the frame size come from the checkpoint's deployment defaults, as the launch file reads them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mujoco")
pytest.importorskip("torch")
from node_testlib import ROOT, make_tiny_checkpoint, ros_env, start, stop  # noqa: E402

SEED, TRIALS, MAX_STEPS = 21, 2, 40


@pytest.mark.slow
@pytest.mark.ros
def test_ros_loop_with_checkpoint_defaults_matches_act_evaluate(tmp_path):
    from act_training.runtime.deployment import Deployment
    from act_training.training.checkpoint import load_checkpoint

    # defaults unlike every parameter file's and CLI's: chunked, 3 actions per query, 32x32 frames
    dep = Deployment(execution="chunked", n_execute=3, k=0.05, query_period=2, frame_size=(32, 32))
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt", image_size=(32, 16), crop=(0.0, 0.0, 1.0, 0.5),
                                deployment=dep)
    stored = load_checkpoint(ckpt)["deployment_obj"]
    assert stored.execution == "chunked" and stored.frame_size == (32, 32)

    ref = subprocess.run(
        [sys.executable, "-m", "act_training.evaluation.rollouts", "--checkpoint", str(ckpt), "--arm", "1",
         "--trials", str(TRIALS), "--seed", str(SEED), "--max-steps", str(MAX_STEPS), "--n-envs", "1",
         "--json", str(tmp_path / "act_evaluate.json")],
        env=ros_env(), cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]

    # what transfer_eval.launch.py starts with only checkpoint:= (frame size and cameras from the
    # checkpoint for the bridge; the node resolves its executor from the checkpoint itself)
    bridge = start("mirror_arm_sim.bridge_node",
                   {"arm": 1, "image_size": list(stored.frame_size), "cameras": list(stored.camera_names),
                    "max_episode_steps": MAX_STEPS, "lockstep": True}, name="bridge", log_dir=tmp_path,
                   ros_args=["--params-file", str(ROOT / "src/mirror_arm_sim/config/mujoco_bridge.yaml")])
    node = start("act_policy_node.policy_node", {"checkpoint": str(ckpt), "lockstep": True},
                 name="node", log_dir=tmp_path,
                 ros_args=["--params-file", str(ROOT / "src/act_policy_node/config/sim_arm1.yaml")])
    try:
        ev = subprocess.run(
            [sys.executable, "-m", "act_training.evaluation.ros_eval", "--trials", str(TRIALS), "--arm", "1",
             "--seed", str(SEED), "--json", str(tmp_path / "ros.json"), "--episode-timeout", "120",
             "--wait", "300"],  # node start-up (torch import) is slow on shared cores
            env=ros_env(), cwd=str(ROOT), capture_output=True, text=True, timeout=600)
    finally:
        stop(node)
        stop(bridge)
    logs = "".join((tmp_path / f"{n}.log").read_text() for n in ("bridge", "node"))
    assert ev.returncode == 0, f"ros_eval failed:\n{ev.stdout}\n{ev.stderr}\n{logs}"

    a = json.loads((tmp_path / "act_evaluate.json").read_text())
    r = json.loads((tmp_path / "ros.json").read_text())
    for key in ("arm", "mode", "mirror", "seeds", "successes", "lengths", "executor", "label"):
        assert r[key] == a[key], f"{key}: ROS {r[key]} vs act_evaluate {a[key]}"
    assert a["executor"] == {"mode": "chunked", "n_execute": 3, "k": 0.05, "query_period": 2}
    assert a["mirror"] is True and a["label"] == "arm1-chunked-mirror"
