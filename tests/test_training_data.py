"""act_training: config presets/overrides, the lazy HDF5 dataset, padding, stats, validation."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch
from act_training.config import ConfigError, get_preset, make_config
from act_training.data.dataset import ACTDataset, Augment, make_datasets, split_episodes
from act_training.data.normalize import NormStats
from act_training.data.synthetic import write_synthetic_demos
from act_training.runtime.pipeline import CropStep, ResizeStep
from mirror_arm_sim.hdf5_layout import LayoutError


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    return write_synthetic_demos(tmp_path_factory.mktemp("d") / "demos.hdf5", num_demos=5, T=20,
                                 cameras=("top", "wrist"))


def test_presets_valid_and_overrides():
    for name in ("paper", "cpu", "tiny"):
        get_preset(name)
    p = get_preset("paper").model
    assert (p.chunk_size, p.hidden_dim, p.n_heads, p.n_encoder_layers) == (100, 512, 8, 4)
    cfg = make_config("cpu", ["model.hidden_dim=128", "train.lr=1e-4", "model.image_size=[64, 80]",
                              "data.cameras=top,wrist", "model.use_vae=false", "model.image_size=null"])
    assert cfg.model.hidden_dim == 128 and cfg.train.lr == 1e-4 and cfg.model.image_size is None
    assert cfg.data.cameras == ("top", "wrist") and cfg.model.use_vae is False
    with pytest.raises(ConfigError, match="no field 'hiden_dim'"):
        make_config("cpu", ["model.hiden_dim=3"])
    with pytest.raises(ConfigError, match="divisible"):
        make_config("cpu", ["model.hidden_dim=100", "model.n_heads=8"])
    with pytest.raises(ConfigError, match="expected an int"):
        make_config("cpu", ["train.steps=abc"])


def test_padding_mask_and_values(demo_file):
    ds = ACTDataset(demo_file, chunk_size=8)
    with h5py.File(demo_file) as f:
        acts = f["demo_1/actions"][()]
        qpos = f["demo_1/observations/qpos"][()]
        img = f["demo_1/observations/images/wrist"][15]
    i = int(np.flatnonzero((ds.index[:, 0] == 1) & (ds.index[:, 1] == 15))[0])
    s = ds[i]
    assert s["images"].shape == (2, 32, 32, 3) and s["images"].dtype == torch.uint8
    np.testing.assert_array_equal(s["images"][1].numpy(), img)
    assert s["action_is_pad"].tolist() == [False] * 5 + [True] * 3
    raw = ds.stats.unnormalize_actions(s["actions"].numpy())
    np.testing.assert_allclose(raw[:5], acts[15:20], atol=1e-5)
    np.testing.assert_allclose(raw[5:], np.repeat(acts[19:20], 3, 0), atol=1e-5)  # padded = last action
    q_raw = s["qpos"].numpy() * ds.stats.qpos_std + ds.stats.qpos_mean
    np.testing.assert_allclose(q_raw, qpos[15], atol=1e-5)
    assert not ds[int(np.flatnonzero(ds.index[:, 0] == 1)[0])]["action_is_pad"].any()


def test_stats_split_and_floor(demo_file):
    cfg = make_config("tiny", [f"data.path={demo_file}", "data.val_fraction=0.2"])
    tr, va = make_datasets(cfg.data, chunk_size=8)
    assert set(tr.episodes).isdisjoint(va.episodes) and sorted(tr.episodes + va.episodes) == list(range(5))
    q = np.concatenate([tr.qpos[e] for e in tr.episodes])
    np.testing.assert_allclose(tr.stats.qpos_mean, q.mean(0), atol=1e-5)
    np.testing.assert_allclose(tr.stats.qpos_std, np.maximum(q.std(0), 1e-2), atol=1e-5)
    assert va.stats is tr.stats  # val normalised with the TRAIN statistics
    st = NormStats.compute(np.ones((10, 3)), np.zeros((10, 2)), std_floor=0.05)
    assert np.all(st.qpos_std == np.float32(0.05)) and np.all(st.action_std == np.float32(0.05))
    assert split_episodes(1, 0.1) == ([0], [])
    assert len(split_episodes(10, 0.1)[1]) == 1


def test_camera_selection(demo_file):
    cfg = make_config("cpu", [f"data.path={demo_file}"])  # cpu preset: first camera only
    tr, _ = make_datasets(cfg.data, chunk_size=8)
    assert tr.cameras == ["top"] and tr[0]["images"].shape[0] == 1
    cfg = make_config("cpu", [f"data.path={demo_file}", "data.cameras=[front]"])
    with pytest.raises(LayoutError, match="front"):
        make_datasets(cfg.data, chunk_size=8)


def test_lazy_handles_pickle_and_loader(demo_file):
    ds = ACTDataset(demo_file, chunk_size=4)
    _ = ds[0]
    assert ds._h5 is not None
    clone = pickle.loads(pickle.dumps(ds))  # what a DataLoader worker receives: no open handle
    assert clone._h5 is None
    np.testing.assert_array_equal(clone[3]["images"].numpy(), ds[3]["images"].numpy())
    loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=1)
    b = next(iter(loader))
    assert b["images"].shape == (16, 2, 32, 32, 3) and b["action_is_pad"].shape == (16, 4)
    ds.close()


def test_validation_errors_name_demo_and_key(tmp_path):
    p = write_synthetic_demos(tmp_path / "bad.hdf5", num_demos=2, T=6)
    with h5py.File(p, "r+") as f:
        del f["demo_1/actions"]
    with pytest.raises(LayoutError, match=r"demo_1.*actions"):
        ACTDataset(p, chunk_size=4)
    p2 = write_synthetic_demos(tmp_path / "nan.hdf5", num_demos=2, T=6)
    with h5py.File(p2, "r+") as f:
        f["demo_0/actions"][2, 1] = np.nan
    with pytest.raises(LayoutError, match=r"demo_0/actions.*NaN"):
        ACTDataset(p2, chunk_size=4)
    with pytest.raises(FileNotFoundError):
        ACTDataset(tmp_path / "missing.hdf5", chunk_size=4)


def test_augment_shifts_but_never_flips():
    im = np.zeros((1, 32, 32, 3), np.uint8)
    im[:, :, 20:] = 200  # bright right side
    aug = Augment(shift_pixels=4, brightness=0.1, contrast=0.1)
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = aug(im, rng)
        assert out.shape == im.shape and out.dtype == np.uint8
        assert out[0, :, :8].mean() < out[0, :, -8:].mean()  # left stays left


def prepare_images(x, size, crop=None):
    """The pipeline's image half: crop, then the one resize."""
    return ResizeStep(size)(CropStep(crop)(x))


def test_resize_step_resizes():
    x = torch.randint(0, 256, (2, 3, 40, 48, 3), dtype=torch.uint8)
    y = prepare_images(x, (32, 32))
    assert y.shape == (2, 3, 3, 32, 32) and y.dtype == torch.float32 and 0 <= y.min() and y.max() <= 1
    z = prepare_images(x, None)
    assert torch.equal(z[1, 2, :, 5, 7], x[1, 2, 5, 7].float() / 255)
    # the converter's uint8 variant is the same resize, rounded back to bytes
    u = ResizeStep((32, 32)).uint8(x[0, 0].numpy())
    assert u.dtype == np.uint8 and np.array_equal(u, (y[0, 0] * 255).round().to(torch.uint8).permute(1, 2, 0))
    # stored frames go through the network path unchanged: training sees the bytes the converter wrote
    assert torch.equal(prepare_images(torch.from_numpy(u), (32, 32)), y[0, 0])
    # a batch resizes frame by frame, and (..., H, W, 3) of any leading shape keeps it
    rs = ResizeStep((32, 32))
    assert np.array_equal(rs.uint8(x[0].numpy())[1], rs.uint8(x[0, 1].numpy()))


def test_resize_bytes_are_within_one_level_of_the_float_kernel():
    """The CPU resize works on bytes (torch's uint8 antialiased-bilinear kernel); the float kernel
    (other devices) is the same filter, so the two differ by at most one grey level."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    for hw, size in [((240, 320), (96, 96)), ((480, 640), (96, 96)), ((50, 70), (96, 80))]:
        x = torch.randint(0, 256, (2, *hw, 3), dtype=torch.uint8, generator=g)
        ours = ResizeStep(size)(x)
        ref = F.interpolate(x.permute(0, 3, 1, 2).float() / 255, size=size, mode="bilinear",
                            align_corners=False, antialias=True).clamp(0, 1)
        assert ours.shape == ref.shape == (2, 3, *size)
        assert (ours - ref).abs().max() <= 1.0 / 255 + 1e-6


def test_crop_then_resize():
    x = torch.randint(0, 256, (2, 1, 40, 48, 3), dtype=torch.uint8)
    # the left half at its own resolution: exactly those pixels, nothing resampled
    left = prepare_images(x, (40, 24), crop=(0.0, 0.0, 1.0, 0.5))
    assert torch.equal(left, x[..., :, :24, :].permute(0, 1, 4, 2, 3).float() / 255)
    # a window in the middle, then resized like an uncropped image of that window
    mid = prepare_images(x, (16, 16), crop=(0.25, 0.25, 0.5, 0.5))
    assert torch.allclose(mid, prepare_images(x[..., 10:30, 12:36, :].contiguous(), (16, 16)))


def test_crop_config_and_frame_size():
    from act_training.config import ConfigError, make_config

    mc = make_config("cpu", ["model.crop=[0, 0, 1, 0.5]", "model.image_size=[128, 64]"]).model
    assert mc.crop == (0.0, 0.0, 1.0, 0.5) and mc.frame_size == (128, 128)
    assert make_config("cpu", []).model.frame_size == (96, 96)  # no crop: the input size
    with pytest.raises(ConfigError, match="model.crop"):
        make_config("cpu", ["model.crop=[0, 0.6, 1, 0.5]"])  # runs off the right edge
    with pytest.raises(ConfigError, match="model.crop"):
        make_config("cpu", ["model.crop=[0, 0, 1]"])
