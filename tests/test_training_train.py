"""act_training.training.train: a tiny run, resume (stop and kill), torchrun DDP, divergence, bad resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from act_training.config import make_config
from act_training.data.synthetic import write_synthetic_demos
from act_training.runtime.policy import ACTPolicyRuntime
from act_training.training.checkpoint import CheckpointError, load_checkpoint
from act_training.training.train import TrainingDiverged, main, train

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    return write_synthetic_demos(tmp_path_factory.mktemp("d") / "demos.hdf5", num_demos=4, T=16)


def cfg_for(demo_file, out, *extra):
    return make_config("tiny", [f"data.path={demo_file}", f"train.out_dir={out}", "train.steps=12",
                                "train.eval_every=4", "train.ckpt_every=4", "train.log_every=2", *extra])


def rows(out):
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_train_then_stop_and_resume_matches_uninterrupted(demo_file, tmp_path):
    full = train(cfg_for(demo_file, tmp_path / "full"))
    assert full == tmp_path / "full" / "policy.pt"
    ck_full = load_checkpoint(full)
    assert ck_full["step"] == 12 and "train_state" not in ck_full
    r = rows(tmp_path / "full")
    assert {x["split"] for x in r} == {"train", "val"} and int(r[-1]["step"]) == 12
    assert (tmp_path / "full" / "metrics.jsonl").exists() and any((tmp_path / "full" / "tb").iterdir())

    out = tmp_path / "split"
    p = train(cfg_for(demo_file, out, "train.stop_at=6"))  # "killed" after step 6
    assert p == out / "checkpoints" / "last.pt" and load_checkpoint(p)["step"] == 6
    assert not (out / "policy.pt").exists()
    with pytest.raises(CheckpointError, match="--resume"):
        train(cfg_for(demo_file, out))  # refuses to overwrite a run silently
    final = train(cfg_for(demo_file, out), resume=True)
    ck = load_checkpoint(final)
    assert ck["step"] == 12
    steps = [int(x["step"]) for x in rows(out) if x["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 12  # the curve continues, no duplicates
    # model, optimizer, scheduler, RNG and sampler position restored: same weights as uninterrupted
    for k, v in ck_full["model_state"].items():
        torch.testing.assert_close(ck["model_state"][k], v, rtol=1e-4, atol=1e-5, msg=k)


def test_kill_and_resume_cli(demo_file, tmp_path):
    out = tmp_path / "killed"
    args = ["--data", str(demo_file), "--preset", "tiny", "--out", str(out), "--steps", "400",
            "--set", "train.ckpt_every=3", "--set", "train.eval_every=0"]
    proc = subprocess.Popen([sys.executable, "-m", "act_training.training.train", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), "no checkpoint before the kill"
    k = load_checkpoint(last)["step"]
    assert 3 <= k < 400
    rc = main([*args[:-4], "--steps", str(k + 4), "--resume", "--set", "train.ckpt_every=3",
               "--set", "train.eval_every=0"])
    assert rc == 0
    assert load_checkpoint(out / "policy.pt")["step"] == k + 4
    steps = [int(x["step"]) for x in rows(out) if x["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == k + 4


def test_resume_with_incompatible_data_fails_before_training(demo_file, tmp_path):
    out = tmp_path / "r"
    train(cfg_for(demo_file, out, "train.stop_at=4"))
    other = write_synthetic_demos(tmp_path / "six.hdf5", num_demos=3, T=10, action_dim=6)
    with pytest.raises(CheckpointError, match="action_dim 7 vs 6"):
        train(cfg_for(other, out), resume=True)
    two = write_synthetic_demos(tmp_path / "two.hdf5", num_demos=3, T=10, cameras=("top", "wrist"))
    with pytest.raises(CheckpointError, match="cameras"):
        train(cfg_for(two, out, "data.max_cameras=0"), resume=True)
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4  # untouched


def test_nan_loss_stops_with_step_and_keeps_checkpoint(demo_file, tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match=r"step \d+.*last good checkpoint"):
        train(cfg_for(demo_file, out, "train.lr=1e30", "train.lr_backbone=1e30", "train.ckpt_every=1",
                      "train.grad_clip=0"))
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["step"] >= 1 and not (out / "policy.pt").exists()


def test_torchrun_two_processes(demo_file, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "act_training.training.train", "--data", str(demo_file), "--preset", "tiny",
           "--out", str(out),
           "--steps", "6", "--set", "train.eval_every=3", "--set", "train.ckpt_every=3"]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "world 2" in res.stderr
    ck = load_checkpoint(out / "policy.pt")
    assert ck["step"] == 6
    r = rows(out)
    assert [int(x["step"]) for x in r if x["split"] == "val"] == [3, 6]
    rt = ACTPolicyRuntime.load(out / "policy.pt")
    assert rt.predict_chunk({"top": torch.zeros(32, 32, 3, dtype=torch.uint8).numpy()},
                            [0.0] * 7).shape == (8, 7)
