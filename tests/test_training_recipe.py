"""Issue 13: the weight average (EMA) survives a resume and is what policy.pt holds; config values
are accepted as the docs write them (`train.amp=off`), on act_train and act_transfer alike."""

from __future__ import annotations

import pytest
import torch
from act_training.config import ConfigError, make_config
from act_training.data.synthetic import write_synthetic_demos
from act_training.experiments import transfer
from act_training.training.checkpoint import load_checkpoint
from act_training.training.train import train


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    return write_synthetic_demos(tmp_path_factory.mktemp("d") / "demos.hdf5", num_demos=4, T=16)


def cfg_for(demo_file, out, *extra):
    return make_config("tiny", [f"data.path={demo_file}", f"train.out_dir={out}", "train.steps=12",
                                "train.eval_every=4", "train.ckpt_every=4", "train.ema_decay=0.9",
                                *extra])


def test_ema_is_the_deployed_policy_and_resumes_exactly(demo_file, tmp_path):
    full = load_checkpoint(train(cfg_for(demo_file, tmp_path / "full")))
    last = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    ema, live = last["train_state"]["ema"], last["model_state"]
    # policy.pt holds the average, last.pt the live weights (training continues from those)
    for k, v in full["model_state"].items():
        torch.testing.assert_close(v, ema[k], msg=k)
    assert any(not torch.equal(ema[k], live[k]) for k in live if live[k].is_floating_point())

    out = tmp_path / "split"
    train(cfg_for(demo_file, out, "train.stop_at=6"))
    resumed = load_checkpoint(train(cfg_for(demo_file, out), resume=True))
    for k, v in full["model_state"].items():
        torch.testing.assert_close(resumed["model_state"][k], v, rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize("written", ["off", '"off"', "'off'"])
def test_amp_off_is_accepted_as_written(written):
    assert make_config("cpu", [f"train.amp={written}"]).train.amp == "off"
    assert make_config("cpu", {"train.amp": False}).train.amp == "off"  # `amp: off` in a YAML file


def test_numbers_and_lists_still_parse_as_yaml():
    cfg = make_config("cpu", ["train.lr=1e-4", "model.image_size=[128, 64]", "model.crop=null"])
    assert cfg.train.lr == 1e-4 and cfg.model.image_size == (128, 64) and cfg.model.crop is None
    with pytest.raises(ConfigError, match=r"train.amp must be one of"):
        make_config("cpu", ["train.amp=fp16"])


def test_act_transfer_set_is_parsed_once_and_errors_are_one_line(tmp_path, capsys):
    args = transfer.build_parser().parse_args(["--out", str(tmp_path), "--set", "train.amp=off"])
    cfg = transfer.resolve_config(args)
    assert transfer.build_train_config(cfg, "", tmp_path / "train").train.amp == "off"
    for bad in (["--set", "train.amp=fp16"], ["--set", "nonsense"], ["--seeds", "0"]):
        assert transfer.main(["--quick", "--out", str(tmp_path / "x"), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("act_transfer: error:") and "\n" not in err and "Traceback" not in err


def test_seed_layout_keeps_seed_0_as_the_main_run(tmp_path):
    cfg = transfer.resolve_config(transfer.build_parser().parse_args(["--out", str(tmp_path)]))
    assert transfer.with_train_seed(cfg, 0) is cfg and transfer.seed_dir(tmp_path, 0) == tmp_path
    c2 = transfer.with_train_seed(cfg, 2)
    assert c2["train"]["overrides"]["train.seed"] == 2 and "train.seed" not in cfg["train"]["overrides"]
    assert transfer.seed_dir(tmp_path, 2) == tmp_path / "seeds" / "seed2"


def test_rendering_only_queried_observations_changes_no_result(tmp_path):
    """The evaluator renders the camera only for steps whose observation the policy reads; a
    run that records every trial as video (so it renders every step) must agree exactly."""
    import torchvision  # noqa: F401  (before MuJoCo's EGL context: see experiments/transfer.py)
    from act_training.evaluation.rollouts import evaluate
    from act_training.runtime.policy import ACTPolicyRuntime
    from node_testlib import make_tiny_checkpoint

    rt = ACTPolicyRuntime.load(make_tiny_checkpoint(tmp_path / "tiny.pt", chunk_size=8))
    for mode, extra in (("chunked", {"n_execute": 5}), ("ensemble", {"query_period": 3})):
        common = dict(arm=1, n_trials=2, mode=mode, mirror=True, seed=5, n_envs=2, max_steps=25,
                      progress=False, **extra)
        lazy = evaluate(rt, **common)
        every = evaluate(rt, video_dir=tmp_path / mode, n_videos=2, **common)
        assert len(every.videos) == 2
        assert lazy.final_qpos == every.final_qpos and lazy.lengths == every.lengths
