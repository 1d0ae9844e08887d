"""Symmetry test: passes on the cell, fails with a wrong sign in the map or an asymmetric camera."""

import dataclasses

from mirror_arm_sim.mirror_map import load_mirror_map
from mirror_arm_sim.symmetry import asymmetric_camera_cell, check_static, main, run_symmetry_check


def test_cell_is_symmetric():
    report = run_symmetry_check(n_states=3)
    assert report.ok, str(report)
    names = [c.name for c in report.checks]
    assert any("rollout" in n for n in names) and any("image 'wrist'" in n for n in names)


def test_wrong_sign_fails():
    mm = load_mirror_map()
    for j in (0, 3):
        signs = list(mm.joint_signs)
        signs[j] *= -1
        bad = dataclasses.replace(mm, joint_signs=tuple(signs))
        checks = {c.name: c for c in check_static(mirror_map=bad, n_states=2)}
        assert not checks["static: end-effector position [m]"].ok
        assert not checks["static: image 'wrist' mean |err| [0..255]"].ok
    signs = list(mm.joint_signs)
    signs[1] *= -1  # shoulder: the arm visibly moves in the top image
    checks = {c.name: c for c in check_static(mirror_map=dataclasses.replace(mm, joint_signs=tuple(signs)),
                                              n_states=2, cameras=("top",))}
    assert not checks["static: image 'top' mean |err| [0..255]"].ok


def test_asymmetric_camera_fails():
    checks = check_static(cell=asymmetric_camera_cell(0.005), n_states=2, cameras=("top",))
    failed = [c.name for c in checks if not c.ok]
    assert failed == ["static: image 'top' mean |err| [0..255]", "static: image 'top' pixels off > 16"]


def test_command_exit_status(capsys):
    assert main(["--no-rollout", "--states", "2", "--cameras", "top"]) == 0
    assert main(["--no-rollout", "--states", "2", "--cameras", "top", "--flip-sign", "1"]) == 1
    assert "FAILED" in capsys.readouterr().out
