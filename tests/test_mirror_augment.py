"""data.mirror_augment (arm-0 demos plus their mirrored copies) and train.init_from (few-shot)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from act_training.config import ConfigError, make_config
from act_training.data.dataset import make_datasets
from act_training.data.synthetic import write_synthetic_demos
from act_training.training.checkpoint import load_checkpoint
from act_training.training.train import main, train
from mirror_arm_sim.mirror_map import load_mirror_map


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    return write_synthetic_demos(tmp_path_factory.mktemp("d") / "demos.hdf5", num_demos=4, T=16)


def test_dataset_serves_recorded_and_mirrored_copies(demo_file):
    plain, _ = make_datasets(make_config("tiny", [f"data.path={demo_file}", "data.val_fraction=0"]).data, 4)
    aug, _ = make_datasets(make_config("tiny", [f"data.path={demo_file}", "data.val_fraction=0",
                                                "data.mirror_augment=true"]).data, 4)
    assert len(aug) == 2 * len(plain)
    mm = load_mirror_map()
    e, t = 2, 5
    i0 = int(np.flatnonzero((aug.index[:, 0] == e) & (aug.index[:, 1] == t) & (aug.index[:, 2] == 0))[0])
    i1 = int(np.flatnonzero((aug.index[:, 0] == e) & (aug.index[:, 1] == t) & (aug.index[:, 2] == 1))[0])
    s0, s1 = aug[i0], aug[i1]
    # images through the map's flip, qpos and actions through its joint map
    assert torch.equal(s1["images"], torch.flip(s0["images"], dims=[2]))
    st = aug.stats
    np.testing.assert_allclose(st.normalize_qpos(mm.qpos(aug.qpos[e][t])), s1["qpos"].numpy(), atol=1e-5)
    want = st.normalize_actions(mm.action(aug.actions[e][t:t + 4]))
    np.testing.assert_allclose(want, s1["actions"].numpy(), atol=1e-5)
    # the statistics cover both arms: a joint whose sign flips has its mean between the two
    both = np.concatenate([aug.qpos[k] for k in aug.episodes] + [mm.qpos(aug.qpos[k]) for k in aug.episodes])
    np.testing.assert_allclose(st.qpos_mean, both.mean(0), atol=1e-5)


def test_mirror_augment_needs_a_centred_crop():
    with pytest.raises(ConfigError, match="mirror_augment needs model.crop centred"):
        make_config("cpu", ["data.mirror_augment=true", "model.crop=[0, 0, 1, 0.5]"])
    make_config("cpu", ["data.mirror_augment=true", "model.crop=[0, 0.25, 1, 0.5]"])
    make_config("cpu", ["data.mirror_augment=true"])


def test_init_from_starts_from_the_checkpoint_weights(demo_file, tmp_path):
    base = train(make_config("tiny", [f"data.path={demo_file}", f"train.out_dir={tmp_path / 'base'}",
                                      "train.steps=3"]))
    other = write_synthetic_demos(tmp_path / "k.hdf5", num_demos=2, T=16, seed=7)
    # the configured width differs: the init checkpoint's architecture wins
    tuned = train(make_config("tiny", [f"data.path={other}", f"train.out_dir={tmp_path / 'ft'}",
                                       "train.steps=1", "train.lr=1e-9", "train.lr_backbone=1e-9",
                                       "model.hidden_dim=64", f"train.init_from={base}"]))
    b, f = load_checkpoint(base), load_checkpoint(tuned)
    assert f["model_config_obj"].hidden_dim == b["model_config_obj"].hidden_dim == 32
    for k, v in b["model_state"].items():
        if v.dtype.is_floating_point and "running" not in k:
            torch.testing.assert_close(f["model_state"][k], v, atol=1e-6, rtol=0)
    # normalisation statistics are the new data's, not the init's
    assert not np.allclose(f["norm_stats_obj"].qpos_mean, b["norm_stats_obj"].qpos_mean)
    # the CLI flag, and a checkpoint that does not fit the data: one line, exit status 1
    bad = write_synthetic_demos(tmp_path / "w.hdf5", num_demos=2, T=16, cameras=("top", "wrist"))
    assert main(["--data", str(bad), "--preset", "tiny", "--out", str(tmp_path / "x"), "--init-from",
                 str(base)]) == 1
