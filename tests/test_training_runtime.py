"""act_training: checkpoint round trip, bad checkpoints, the policy runtime API."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from act_training.config import get_preset
from act_training.data.normalize import NormStats
from act_training.model.act import ACT
from act_training.runtime.pipeline import ResizeStep
from act_training.runtime.policy import ACTPolicyRuntime
from act_training.training.checkpoint import (
    CheckpointError,
    check_compatible,
    load_checkpoint,
    make_payload,
    save_checkpoint,
)

torch.set_num_threads(1)
JOINTS = [f"j{i}" for i in range(7)]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    mc = replace(cfg.model, camera_names=("top", "wrist"), state_dim=7, action_dim=7)
    model = ACT(mc).eval()
    rng = np.random.default_rng(0)
    stats = NormStats.compute(rng.normal(0.3, 0.5, (50, 7)), rng.normal(-0.2, 2.0, (50, 7)))
    path = tmp_path_factory.mktemp("ck") / "policy.pt"
    save_checkpoint(path, make_payload(model, replace(cfg, model=mc).to_dict(), stats, JOINTS, JOINTS, 1, 7))
    return path, model, stats


def obs(B, hw=(32, 32), seed=0):
    rng = np.random.default_rng(seed)
    ims = {c: rng.integers(0, 256, (B, *hw, 3), dtype=np.uint8) for c in ("top", "wrist")}
    return ims, rng.normal(0, 1, (B, 7)).astype(np.float32)


def test_round_trip_identical_predictions(ckpt):
    path, model, stats = ckpt
    rt = ACTPolicyRuntime.load(path, device="cpu")
    ims, q = obs(3)
    with torch.no_grad():
        x = torch.stack([ResizeStep((32, 32))(torch.from_numpy(ims[c])) for c in ("top", "wrist")], 1)
        ref = model(x, torch.from_numpy(stats.normalize_qpos(q)))[0].numpy()
    ref = stats.unnormalize_actions(ref)
    out = rt.predict_chunk_batch(ims, q)
    np.testing.assert_array_equal(out, ref.astype(np.float32))
    again = ACTPolicyRuntime.load(path).predict_chunk_batch(ims, q)
    np.testing.assert_array_equal(out, again)


def test_runtime_api_shapes_and_resize(ckpt):
    rt = ACTPolicyRuntime.load(ckpt[0], device="cpu")
    assert rt.camera_names == ["top", "wrist"] and rt.joint_names == JOINTS and rt.action_names == JOINTS
    assert (rt.chunk_size, rt.state_dim, rt.action_dim, rt.image_size) == (8, 7, 7, (32, 32))
    ims, q = obs(2)
    one = rt.predict_chunk({c: v[0] for c, v in ims.items()}, q[0])
    assert one.shape == (8, 7) and one.dtype == np.float32
    both = rt.predict_chunk_batch(ims, q)
    assert both.shape == (2, 8, 7) and both.dtype == np.float32
    np.testing.assert_allclose(one, both[0], atol=1e-5)
    big, _ = obs(1, hw=(48, 64))  # another size: resized
    assert rt.predict_chunk({c: v[0] for c, v in big.items()}, q[0]).shape == (8, 7)
    with pytest.raises(KeyError, match="wrist"):
        rt.predict_chunk({"top": ims["top"][0]}, q[0])
    with pytest.raises(ValueError, match="qpos"):
        rt.predict_chunk({c: v[0] for c, v in ims.items()}, q[0, :5])
    with pytest.raises(ValueError, match="uint8"):
        rt.predict_chunk({c: v[0].astype(np.float32) for c, v in ims.items()}, q[0])


def test_cropped_checkpoint_round_trip(tmp_path):
    """A policy trained on the left half of the frame keeps its crop through the checkpoint:
    it takes full frames (frame_size) and sees only their left half."""
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    mc = replace(cfg.model, camera_names=("top",), state_dim=7, action_dim=7, image_size=(32, 16),
                 crop=(0.0, 0.0, 1.0, 0.5))
    stats = NormStats.compute(np.zeros((4, 7)), np.zeros((4, 7)))
    path = tmp_path / "policy.pt"
    save_checkpoint(path, make_payload(ACT(mc).eval(), replace(cfg, model=mc).to_dict(), stats, JOINTS,
                                       JOINTS, 1, 7))
    rt = ACTPolicyRuntime.load(path)
    assert (rt.image_size, rt.frame_size, rt.crop) == ((32, 16), (32, 32), (0.0, 0.0, 1.0, 0.5))
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    other_right = frame.copy()
    other_right[:, 16:] = rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)
    other_left = frame.copy()
    other_left[:, :16] = rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)
    q = np.zeros(7, np.float32)
    base = rt.predict_chunk({"top": frame}, q)
    np.testing.assert_array_equal(rt.predict_chunk({"top": other_right}, q), base)  # right half unseen
    assert not np.allclose(rt.predict_chunk({"top": other_left}, q), base)


def test_runtime_thread_safe(ckpt):
    rt = ACTPolicyRuntime.load(ckpt[0])
    ims, q = obs(1)
    one = {c: v[0] for c, v in ims.items()}
    ref = rt.predict_chunk(one, q[0])
    results, errors = [], []

    def worker():
        try:
            for _ in range(5):
                results.append(rt.predict_chunk(one, q[0]))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 15
    for r in results:
        np.testing.assert_allclose(r, ref, atol=1e-6)


def test_bad_checkpoints(tmp_path, ckpt):
    with pytest.raises(CheckpointError, match="not found"):
        ACTPolicyRuntime.load(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        ACTPolicyRuntime.load(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an act_training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    data = torch.load(ckpt[0], weights_only=True)
    data["format_version"] = 99
    torch.save(data, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(tmp_path / "future.pt")
    data["format_version"] = 1
    data["model_config"]["action_dim"] = 6
    torch.save(data, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="stats dims"):
        load_checkpoint(tmp_path / "mismatch.pt")
    ck = load_checkpoint(ckpt[0])
    check_compatible(ck, ["top", "wrist"], 7, 7)
    with pytest.raises(CheckpointError, match=r"action_dim 7 vs 6"):
        check_compatible(ck, ["top", "wrist"], 7, 6)
    with pytest.raises(CheckpointError, match="cameras"):
        check_compatible(ck, ["top"], 7, 7)
