"""Demo generation: HDF5 layout read back, reproducible, atomic on failure."""

import h5py
import numpy as np
import pytest
from mirror_arm_sim.cell import ARM_JOINTS
from mirror_arm_sim.generate_demos import generate_demos, main
from mirror_arm_sim.hdf5_layout import read_layout


def test_generate_and_read_back(tmp_path):
    out = tmp_path / "d.hdf5"
    stats = generate_demos(out, num_demos=2, arm=1, image_size=64, cameras=("top", "wrist"), seed=3,
                           progress=False)
    assert stats.num_demos == 2 and not stats.failed_seeds
    info = read_layout(out)
    assert info.num_demos == 2 and info.camera_names == ["top", "wrist"]
    assert info.joint_names == ARM_JOINTS and info.state_dim == info.action_dim == 7
    assert info.image_shape == (64, 64) and info.control_hz == 50.0 and info.attrs["arm"] == 1
    assert all(150 < n < 300 for n in info.episode_lengths)
    with h5py.File(out) as f:
        assert f["demo_0"].attrs["seed"] == 3 and f["demo_1"].attrs["seed"] == 4
        np.testing.assert_array_equal(f["demo_0/observations/image"][:5],
                                      f["demo_0/observations/images/top"][:5])


def test_reproducible_and_cli(tmp_path):
    a, b = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    generate_demos(a, num_demos=1, seed=11, progress=False)
    assert main(["--num-demos", "1", "--seed", "11", "--out", str(b), "--no-progress"]) == 0
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for key in ("observations/image", "observations/qpos", "actions"):
            np.testing.assert_array_equal(fa[f"demo_0/{key}"][()], fb[f"demo_0/{key}"][()])


def test_atomic_on_failure(tmp_path):
    out = tmp_path / "x.hdf5"
    with pytest.raises(RuntimeError, match="successful demos"):
        generate_demos(out, num_demos=3, max_attempts=1, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        generate_demos(out, num_demos=1, arm=2, progress=False)
