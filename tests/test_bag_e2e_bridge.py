"""END TO END: MuJoCo bridge (lockstep) driven by the scripted expert over ROS → act_bag_record
(sqlite3 and mcap) → act_bag_to_hdf5 → equals the same episode written by generate_demos → trained
on (`tiny` preset, a few steps) → the checkpoint loads in ACTPolicyRuntime and predicts a chunk
with the bag's joint names (issue 7: "converted and trained on in a test")."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest
from mirror_arm_sim.hdf5_layout import read_layout

rclpy = pytest.importorskip("rclpy")
from act_training.bags.convert import convert_bags  # noqa: E402
from act_training.bags.mapping import BagConfig  # noqa: E402
from mirror_arm_sim.cell import ARM_JOINTS  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from act_msgs.msg import EpisodeResult  # noqa: E402

TOPICS = ["/camera/top/image_raw", "/joint_states", "/commands", "/episode_result"]
ARM0 = [f"arm0_{j}" for j in ARM_JOINTS]


def _collect(proc) -> list[str]:
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    return lines


def _wait_for(lines, text, timeout, spin=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(text in x for x in list(lines)):
            return
        spin() if spin else time.sleep(0.05)
    raise AssertionError(f"'{text}' not seen within {timeout} s: {lines}")


@pytest.mark.ros
@pytest.mark.slow
def test_bridge_expert_bag_equals_generate_demos(tmp_path):
    from mirror_arm_sim.env import MirrorArmEnv
    from mirror_arm_sim.expert import ScriptedExpert
    from mirror_arm_sim.generate_demos import generate_demos

    ref = tmp_path / "ref.hdf5"
    generate_demos(ref, num_demos=1, arm=0, image_size=96, seed=3, progress=False)
    with h5py.File(ref) as f:
        seed = int(f["demo_0"].attrs["seed"])
        ref_q, ref_a = f["demo_0/observations/qpos"][:], f["demo_0/actions"][:]
        ref_img = f["demo_0/observations/image"][:]
    env = MirrorArmEnv(image_size=(96, 96))
    env.reset(seed=seed, options={"arm": 0, "randomize": True})
    expert = ScriptedExpert(env)
    expert.reset()

    recs = {s: subprocess.Popen([sys.executable, "-m", "act_training.bags.record", str(tmp_path / f"bag_{s}"),
                                 "--storage", s, "--topics", *TOPICS], stdout=subprocess.PIPE, text=True)
            for s in ("sqlite3", "mcap")}
    bridge = subprocess.Popen([sys.executable, "-m", "mirror_arm_sim.bridge_node", "--ros-args",
                               "-p", f"seed:={seed}", "-p", "arm:=0", "-p", "auto_start:=true",
                               "-p", "stop_on_success:=false", "-p", "lockstep:=true",
                               "-p", "command_type:=joint_trajectory", "-p", "publish_clock:=false"])
    results, cmds, go = [], {}, {"flag": False}
    logs = {s: _collect(p) for s, p in recs.items()}
    try:
        rclpy.init()
        node = rclpy.create_node("e2e_expert_driver")
        pub = node.create_publisher(JointTrajectory, "/commands", 10)
        spin = lambda: rclpy.spin_once(node, timeout_sec=0.05)  # noqa: E731
        for lines in logs.values():  # the recorders see every topic, /commands included
            _wait_for(lines, "recording 4 topics", 90, spin)
        deadline = time.time() + 30
        while pub.get_subscription_count() < 3 and time.time() < deadline:  # bridge + 2 recorders
            spin()
        time.sleep(0.5)
        go["flag"] = True  # only now answer observations: no command can be missed by a recorder

        def on_js(js):
            if not go["flag"]:
                return
            key = (js.header.stamp.sec, js.header.stamp.nanosec)
            if key in cmds:  # a re-published observation: its command is on its way already
                return
            cmds[key] = np.asarray(expert.act(None), dtype=np.float64)
            msg = JointTrajectory(joint_names=ARM0)
            msg.header.stamp = js.header.stamp  # the observation's sim stamp: header-time alignment
            msg.points = [JointTrajectoryPoint(positions=[float(v) for v in cmds[key]])]
            pub.publish(msg)

        node.create_subscription(JointState, "/joint_states", on_js, qos_profile_sensor_data)
        node.create_subscription(EpisodeResult, "/episode_result", results.append, 10)
        deadline = time.time() + 120
        while not results and time.time() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        t_end = time.time() + 1.0
        while time.time() < t_end:
            rclpy.spin_once(node, timeout_sec=0.05)
        node.destroy_node()
        assert results, "the bridge never finished the episode"
    finally:
        rclpy.try_shutdown()
        for p in recs.values():
            p.send_signal(signal.SIGINT)
        for p in recs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        bridge.send_signal(signal.SIGINT)
        try:
            bridge.wait(timeout=20)
        except subprocess.TimeoutExpired:
            bridge.kill()
    assert results[0].steps == len(ref_a), (results[0].steps, len(ref_a))
    cfg = BagConfig.from_dict({
        "control_hz": 50, "image_size": [96, 96], "time": "header", "max_staleness_s": 0.1,
        "cameras": {"top": "/camera/top/image_raw"},
        "qpos": {"topic": "/joint_states", "joints": ARM0, "names": list(ARM_JOINTS)},
        "action": {"topic": "/commands", "joints": ARM0, "names": list(ARM_JOINTS)},
        "episodes": {"split": "marker", "marker_topic": "/episode_result", "min_length": 10},
    })
    for s in ("sqlite3", "mcap"):
        out = tmp_path / f"{s}.hdf5"
        convert_bags([tmp_path / f"bag_{s}"], cfg, out, progress=False)
        info = read_layout(out)
        assert info.num_demos == 1 and info.episode_lengths == [len(ref_a)], (s, info.episode_lengths)
        with h5py.File(out) as f:
            g = f["demo_0"]
            np.testing.assert_allclose(g["observations/qpos"][:], ref_q, atol=1e-5)
            np.testing.assert_allclose(g["actions"][:], ref_a, atol=1e-6)
            diff = np.abs(g["observations/image"][:].astype(int) - ref_img.astype(int))
            assert diff.mean() < 0.5 and np.mean(diff > 8) < 0.01, (s, diff.mean())
    _train_on_converted(tmp_path / "mcap.hdf5", tmp_path / "run", ref_img[0], ref_q[0])


def _train_on_converted(data, out, image, qpos) -> None:
    """A few `tiny`-preset training steps on the HDF5 converted from the bags, then the runtime."""
    from act_training.config import make_config
    from act_training.runtime.policy import ACTPolicyRuntime
    from act_training.training.train import train

    cfg = make_config("tiny", [f"data.path={data}", f"train.out_dir={out}", "train.steps=4",
                               "train.eval_every=4", "train.ckpt_every=4", "train.log_every=2"])
    policy = train(cfg)
    assert policy == out / "policy.pt" and policy.exists()
    rt = ACTPolicyRuntime.load(policy, device="cpu")
    # the names the mapping wrote (its `names:` for the bag's arm0_* joints), cameras from `cameras:`
    assert rt.joint_names == list(ARM_JOINTS) and rt.action_names == list(ARM_JOINTS)
    assert rt.camera_names == ["top"] and rt.state_dim == rt.action_dim == len(ARM_JOINTS)
    chunk = rt.predict_chunk(images={"top": image}, qpos=qpos)
    assert chunk.shape == (rt.chunk_size, len(ARM_JOINTS)) == (8, 7) and chunk.dtype == np.float32
    assert np.all(np.isfinite(chunk))
