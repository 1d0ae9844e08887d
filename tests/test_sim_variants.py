"""Imperfect mirrors: cell variants made from the one cell description, selectable in the env,
and the symmetry check reporting how far each is from a mirror."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from mirror_arm_sim.cell import VARIANTS, CellVariant, default_cell, mirror_vec
from mirror_arm_sim.env import MirrorArmEnv
from mirror_arm_sim.mujoco_model import build_mjcf
from mirror_arm_sim.symmetry import SymmetryReport, check_static, main

from mirror_arm_sim import ENV_ID


def test_variants_change_only_their_defect():
    exact = default_cell()
    assert default_cell(variant="exact") == exact and exact.variant.is_exact
    base = default_cell(variant="base_offset_15mm")
    assert base.arm_spec(0) == exact.arm_spec(0)
    want = np.add(mirror_vec(exact.arm.base_pos), (0.0, 0.015, 0.0))
    np.testing.assert_allclose(base.arm_spec(1).base_pos, want)
    assert base.cameras == exact.cameras
    cam = default_cell(variant="camera_offset_5mm")
    assert cam.camera("top").pos[0] == pytest.approx(0.005) and cam.arm_spec(1) == exact.arm_spec(1)
    joint = default_cell(variant="joint_zero_offset")
    assert [lk.joint.zero_offset for lk in joint.arm_spec(1).links] == [0.0, 0.02, 0.0, 0.0, 0.0, 0.0]
    assert all(lk.joint.zero_offset == 0.0 for lk in joint.arm_spec(0).links)
    assert 'name="arm1/shoulder" type="hinge"' in build_mjcf(joint)
    with pytest.raises(ValueError, match="unknown cell variant 'nope'.*base_offset_15mm"):
        default_cell(variant="nope")
    with pytest.raises(ValueError, match="already has variant"):
        base.with_variant("camera_offset_5mm")
    with pytest.raises(ValueError, match="6"):
        CellVariant("bad", arm1_zero_offsets=(0.1,))


def test_env_variant_moves_arm1_as_described():
    envs = {n: MirrorArmEnv(image_size=(32, 32), variant=n) for n in ("exact", "base_offset_15mm",
                                                                      "joint_zero_offset")}
    q = np.array(default_cell().arm_spec(1).home)
    tcp = {}
    for n, env in envs.items():
        env.reset(seed=0, options={"arm": 1})
        env.set_arm_qpos(1, q)
        tcp[n] = env.tcp_pose(1)[0]
        np.testing.assert_allclose(env.arm_qpos(1), q, atol=1e-12)  # the arm READS q in every variant
    np.testing.assert_allclose(tcp["base_offset_15mm"] - tcp["exact"], [0.0, 0.015, 0.0], atol=1e-9)
    off = np.linalg.norm(tcp["joint_zero_offset"] - tcp["exact"])
    assert 0.004 < off < 0.02, off
    # a zero offset is a reading offset: reading q + offset puts the arm where the exact one is at q
    shifted = q + np.array([0.0, 0.02, 0, 0, 0, 0, 0])
    envs["joint_zero_offset"].set_arm_qpos(1, shifted)
    np.testing.assert_allclose(envs["joint_zero_offset"].tcp_pose(1)[0], tcp["exact"], atol=1e-9)
    for env in envs.values():
        env.close()
    made = gymnasium.make(ENV_ID, image_size=32, variant="camera_offset_5mm")
    assert made.unwrapped.cell.camera("top").pos[0] == pytest.approx(0.005)
    made.close()
    with pytest.raises(ValueError, match="either cell= or variant="):
        MirrorArmEnv(cell=default_cell(), variant="exact")


def test_symmetry_check_reports_distance_per_variant(capsys):
    d = {}
    for name in VARIANTS:
        r = SymmetryReport(check_static(default_cell(variant=name), n_states=2, cameras=("top",)))
        d[name] = (r.ok, r.distance())
    assert d["exact"][0] and d["exact"][1]["ee"] < 1e-7 and d["exact"][1]["image_off[top]"] < 1e-3
    assert not d["base_offset_15mm"][0]
    assert d["base_offset_15mm"][1]["ee"] == pytest.approx(0.015, abs=1e-6)
    assert d["base_offset_15mm"][1]["image_off[top]"] > 1e-3  # arm 1 is seen 15 mm off
    assert d["camera_offset_5mm"][1]["ee"] < 1e-7 and d["camera_offset_5mm"][1]["image_off[top]"] > 1e-3
    assert 0.004 < d["joint_zero_offset"][1]["ee"] < 0.02
    # the command: one table row per variant, exit status 1 (variants are not mirrors)
    assert main(["--variant", "all", "--no-rollout", "--states", "1", "--cameras", "top"]) == 1
    out = capsys.readouterr().out
    assert "variant | mirror? | ee error [m] | top off-pixel fraction" in out
    for name in VARIANTS:
        assert f"\n{name} | " in out
    assert "\nexact | yes | " in out
    assert main(["--variant", "nope", "--no-rollout"]) == 2
