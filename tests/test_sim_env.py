"""MirrorArmPickPlace-v0: API conventions, determinism, mirrored seeds, bad input, success detection."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from mirror_arm_sim.cell import ARM_JOINTS, default_cell
from mirror_arm_sim.env import MirrorArmEnv
from mirror_arm_sim.mirror_map import load_mirror_map

import mirror_arm_sim  # noqa: F401  (registers the env id)


@pytest.fixture(scope="module")
def env():
    e = MirrorArmEnv()
    yield e
    e.close()


def test_import_does_not_load_mujoco():
    code = "import sys, mirror_arm_sim, gymnasium; assert 'mujoco' not in sys.modules; " \
           "assert 'MirrorArmPickPlace-v0' in gymnasium.registry"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gym_make_and_checker():
    e = gym.make("MirrorArmPickPlace-v0")
    check_env(e.unwrapped, skip_render_check=False)
    obs, info = e.reset(seed=0)
    assert set(obs) == {"images", "qpos"}
    assert obs["images"]["top"].shape == (96, 96, 3) and obs["images"]["top"].dtype == np.uint8
    assert obs["qpos"].shape == (7,) and obs["qpos"].dtype == np.float32
    assert info["success"] is False
    u = e.unwrapped
    assert u.joint_names == ARM_JOINTS and u.control_hz == 50.0 and u.max_episode_steps == 300
    assert e.render().shape == (96, 96, 3)
    e.close()


def test_image_size_and_cameras():
    e = MirrorArmEnv(image_size=(48, 64), cameras=("top", "wrist"))
    obs, _ = e.reset(seed=1, options={"arm": 1})
    assert obs["images"]["top"].shape == (48, 64, 3) and obs["images"]["wrist"].shape == (48, 64, 3)
    assert e.observation_space.contains(obs)
    e.close()
    with pytest.raises(ValueError, match="unknown camera"):
        MirrorArmEnv(cameras=("side",))


def test_determinism(env):
    def run(seed):
        obs, _ = env.reset(seed=seed, options={"arm": 0})
        out = [obs["images"]["top"].copy(), obs["qpos"].copy()]
        a = obs["qpos"].copy()
        for _ in range(10):
            a[1] += 0.01
            obs, *_ = env.step(a)
        out += [obs["images"]["top"], obs["qpos"], env.cube_pose()[0]]
        return out

    r1, r2, r3 = run(5), run(5), run(6)
    for x, y in zip(r1, r2):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(r1[0], r3[0])


def test_arm1_seed_is_mirror_of_arm0(env):
    mm = load_mirror_map()
    o0, _ = env.reset(seed=3, options={"arm": 0})
    t0, c0 = env.target_pos(), env.cube_pose()[0]
    o1, _ = env.reset(seed=3, options={"arm": 1})
    t1, c1 = env.target_pos(), env.cube_pose()[0]
    np.testing.assert_allclose(c1, c0 * [-1, 1, 1])
    np.testing.assert_allclose(t1, t0 * [-1, 1, 1])
    np.testing.assert_allclose(mm.qpos(o1["qpos"]), o0["qpos"], atol=1e-6)
    flipped = mm.images(o1["images"])["top"].astype(int)
    assert np.abs(flipped - o0["images"]["top"]).mean() < 0.05


def test_randomisation_ranges(env):
    t = default_cell().task
    cubes = []
    for s in range(20):
        env.reset(seed=s, options={"arm": 0})
        cubes.append(env.cube_pose()[0][:2])
        tx, ty = env.target_pos()[:2]
        assert t.target_x[0] <= tx <= t.target_x[1] and t.target_y[0] <= ty <= t.target_y[1]
    cubes = np.array(cubes)
    assert np.ptp(cubes[:, 0]) > 0.1 and np.ptp(cubes[:, 1]) > 0.1
    assert t.cube_x[1] - t.cube_x[0] >= 0.15 and t.cube_y[1] - t.cube_y[0] >= 0.15
    assert t.target_x[1] - t.target_x[0] >= 0.15 and t.target_y[1] - t.target_y[0] >= 0.15
    env.reset(seed=0, options={"arm": 0, "randomize": False})
    np.testing.assert_allclose(env.arm_qpos(0), default_cell().arm.home)


def test_bad_input_leaves_state_unchanged(env):
    obs, _ = env.reset(seed=2)
    before = env.get_state()
    for bad in (np.zeros(6), np.zeros((7, 1)), np.full(7, np.nan), [0, 0, 0, np.inf, 0, 0, 0]):
        with pytest.raises(ValueError):
            env.step(bad)
    for arm in (2, -1, "0", 1.0, True):
        with pytest.raises(ValueError, match="arm"):
            env.reset(seed=0, options={"arm": arm})
    with pytest.raises(ValueError, match="option"):
        env.reset(seed=0, options={"arms": 1})
    after = env.get_state()
    for k in ("qpos", "qvel", "ctrl", "mocap_pos"):
        np.testing.assert_array_equal(before[k], after[k])
    assert after["steps"] == before["steps"] and after["arm"] == before["arm"]
    with pytest.raises(RuntimeError):
        MirrorArmEnv().step(np.zeros(7))


def test_get_set_state_roundtrip(env):
    obs, _ = env.reset(seed=4)
    for _ in range(5):
        obs, *_ = env.step(obs["qpos"] + 0.02)
    s = env.get_state()
    a = obs["qpos"] - 0.05
    o1, *_ = env.step(a)
    env.set_state(s)
    o2, *_ = env.step(a)
    np.testing.assert_array_equal(o1["qpos"], o2["qpos"])
    np.testing.assert_array_equal(o1["images"]["top"], o2["images"]["top"])


def test_success_detection(env):
    home = np.array(default_cell().arm.home, dtype=np.float32)
    # holding home: the cube never moves to the target -> never a success, truncated at the limit
    e = MirrorArmEnv(max_episode_steps=30)
    e.reset(seed=0)
    for _ in range(30):
        _, r, term, trunc, info = e.step(home)
        assert not info["success"] and r == 0.0 and not term
    assert trunc
    # cube put on the target at rest, nothing touching it -> success, early termination after 0.5 s
    e.reset(seed=0)
    tx, ty, _ = e.target_pos()
    e.set_object_poses((tx + 0.02, ty - 0.02), 0.3)
    steps = 0
    while True:
        _, r, term, trunc, info = e.step(home)
        steps += 1
        assert info["success"]
        if term:
            break
    assert steps == e.hold_steps == 25
    # cube next to (not on) the target -> no success
    e.reset(seed=0)
    e.set_object_poses((tx + default_cell().target.radius + 0.01, ty), 0.0)
    assert not e.step(home)[-1]["success"]
    # cube on the target but lifted (not resting) -> no success
    e.reset(seed=0)
    e.set_object_poses((tx, ty), 0.0, cube_z=0.2)
    assert not e.step(home)[-1]["success"]
    e.close()
