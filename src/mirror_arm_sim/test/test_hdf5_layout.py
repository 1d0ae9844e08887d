"""The demo HDF5 layout: atomic writer, validating reader with errors naming demo and key."""

import h5py
import numpy as np
import pytest
from mirror_arm_sim.hdf5_layout import DemoWriter, LayoutError, read_layout


def _episode(T=12, cams=("top",), hw=(8, 10)):
    rng = np.random.default_rng(T)
    images = {c: rng.integers(0, 255, (T, *hw, 3), dtype=np.uint8) for c in cams}
    return images, rng.normal(size=(T, 7)), rng.normal(size=(T, 7))


def test_write_then_read(tmp_path):
    path = tmp_path / "demos.hdf5"
    with DemoWriter(path, ["top", "wrist"], [f"j{i}" for i in range(7)], arm=0, source="test") as w:
        w.add_episode(*_episode(12, ("top", "wrist")))
        w.add_episode(*_episode(9, ("top", "wrist")))
    info = read_layout(path)
    assert info.num_demos == 2 and info.episode_lengths == [12, 9]
    assert info.camera_names == ["top", "wrist"] and info.image_shape == (8, 10)
    with h5py.File(path) as f:
        # the seed's key is the first camera
        assert np.array_equal(f["demo_0/observations/image"][:], f["demo_0/observations/images/top"][:])
        assert f["demo_1/actions"].dtype == np.float32


def test_exception_leaves_no_file(tmp_path):
    path = tmp_path / "demos.hdf5"
    with pytest.raises(RuntimeError):
        with DemoWriter(path, ["top"], [f"j{i}" for i in range(7)]) as w:
            w.add_episode(*_episode())
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_reader_names_demo_and_key(tmp_path):
    path = tmp_path / "demos.hdf5"
    with DemoWriter(path, ["top"], [f"j{i}" for i in range(7)]) as w:
        w.add_episode(*_episode(12))
        w.add_episode(*_episode(10))
    with h5py.File(path, "a") as f:
        del f["demo_1/actions"]
        f["demo_1/actions"] = np.zeros((8, 7), np.float32)
    with pytest.raises(LayoutError, match=r"demo_1: actions has 8 steps, qpos has 10"):
        read_layout(path)
    with h5py.File(path, "a") as f:
        del f["demo_1/observations/qpos"]
    with pytest.raises(LayoutError, match=r"demo_1: missing dataset 'observations/qpos'"):
        read_layout(path)
