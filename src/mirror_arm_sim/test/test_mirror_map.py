"""The mirror map: an involution, loaded from configuration, with clear errors."""

import numpy as np
import pytest
from mirror_arm_sim.mirror_map import MirrorMap, load_mirror_map


def test_cell_map_is_involution_on_joints_and_images():
    m = load_mirror_map()
    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, m.dim)).astype(np.float32)
    assert np.allclose(m.joints(m.joints(q)), q)
    assert m.joints(q).dtype == np.float32
    # signs of the embedded cell (waist, shoulder, elbow flip; forearm roll keeps)
    assert np.allclose(m.joints(np.ones(7)), [-1, -1, -1, 1, -1, 1, 1])
    img = rng.integers(0, 255, size=(96, 96, 3), dtype=np.uint8)
    out = m.images({"top": img})
    assert np.array_equal(out["top"], img[:, ::-1])
    assert np.array_equal(m.images(out)["top"], img)


def test_permutation_and_camera_swap():
    m = MirrorMap(joint_signs=(1, 1, -1), joint_permutation=(1, 0, 2),
                  camera_swaps={"left": "right", "right": "left"}, flip_cameras=("left", "right"))
    assert np.allclose(m.joints(np.array([1.0, 2.0, 3.0])), [2.0, 1.0, -3.0])
    a, b = np.zeros((2, 2, 3), np.uint8), np.ones((2, 2, 3), np.uint8)
    out = m.images({"left": a, "right": b})
    assert np.array_equal(out["left"], b) and np.array_equal(out["right"], a)


def test_bad_configs_fail_loudly(tmp_path):
    with pytest.raises(ValueError, match="involution"):
        MirrorMap(joint_signs=(1, 1), joint_offsets=(0.5, 0.0))  # offset on a +1 joint
    with pytest.raises(ValueError, match="permutation"):
        MirrorMap(joint_signs=(1, 1), joint_permutation=(0, 0))
    with pytest.raises(ValueError, match="no inverse"):
        MirrorMap(joint_signs=(1,), camera_swaps={"a": "b"})
    p = tmp_path / "bad.yaml"
    p.write_text("mirror_map:\n  joint_sign: [1, -1]\n")
    with pytest.raises(ValueError, match="bad.yaml.*unknown keys"):
        MirrorMap.from_yaml(p)
    with pytest.raises(ValueError, match="expected last dim 7"):
        load_mirror_map().joints(np.zeros(6))
