"""End to end: `act_transfer --quick` (real sim, real training, real evaluation) writes a complete
report, and a second invocation resumes: every finished stage is skipped."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torchvision  # noqa: F401  -- load torch/triton before any test renders with MuJoCo EGL
from act_training.experiments import transfer


@pytest.mark.slow
def test_quick_transfer_report_and_resume(tmp_path):
    out = tmp_path / "run"
    assert transfer.main(["--preset", "cpu", "--quick", "--out", str(out)]) == 0
    report = out / "report"
    md = (report / "report.md").read_text()
    for needle in ("Arm 1 ≥ 70 %: hypothesis", "95 % Wilson interval", "| 0 | chunked |",
                   "| 1 | ensemble | yes |", "no (control)", "![training loss](loss.png)",
                   "![success](success.png)", "## Videos",
                   "git revision", "config.yaml"):
        assert needle in md, needle
    for name in ("loss.png", "success.png", "config.yaml", "results.json"):
        assert (report / name).stat().st_size > 0, name
    videos = sorted((report / "videos").glob("*.mp4"))
    assert len(videos) == 5 and all(v.stat().st_size > 0 for v in videos)
    data = json.loads((report / "results.json").read_text())
    labels = {r["label"] for r in data["results"]}
    assert labels == {"arm0-chunked-raw", "arm0-ensemble-raw", "arm1-chunked-mirror", "arm1-ensemble-mirror",
                      "arm1-chunked-raw"}
    for r in data["results"]:
        assert r["n_trials"] == 2 and len(r["seeds"]) == 2 and all(n > 0 for n in r["lengths"])
    markers = {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")}
    assert {"demos.json", "train.json", "deploy.json"} <= set(markers) and len(markers) == 8
    # the deployed checkpoint carries the evaluation's executor settings as its defaults
    from act_training.training.checkpoint import load_checkpoint

    dep = load_checkpoint(out / "policy.pt")["deployment_obj"]
    assert (dep.execution, dep.query_period, dep.frame_size) == ("ensemble", 2, (64, 64))
    policy_mtime = (out / "policy.pt").stat().st_mtime_ns

    # Resume: nothing is redone, the report is rewritten from the stored results.
    res = subprocess.run([sys.executable, "-m", "act_training.experiments.transfer", "--preset", "cpu",
                          "--quick", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "demos: done" in res.stderr and "train: done" in res.stderr and "deploy: done" in res.stderr
    for label in labels:  # every evaluation read back, none re-run
        assert f"eval:{label}: done" in res.stderr, label
    assert {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")} == markers
    assert (out / "policy.pt").stat().st_mtime_ns == policy_mtime


def test_presets_resolve():
    argv = ["--preset", "cpu", "--out", "x", "--trials", "7", "--num-demos", "3"]
    args = transfer.build_parser().parse_args(argv)
    cfg = transfer.resolve_config(args)
    assert cfg["eval"]["trials"] == 7 and cfg["demos"]["num_demos"] == 3 and not cfg["quick"]
    rows = transfer.eval_matrix(cfg)
    assert {(r["arm"], r["mirror"]) for r in rows} == {(0, False), (1, True), (1, False)}
    quick = transfer.resolve_config(transfer.build_parser().parse_args(["--quick", "--out", "x"]))
    assert quick["eval"]["trials"] == 2 and quick["train"]["preset"] == "tiny"
    paper = transfer.resolve_config(transfer.build_parser().parse_args(["--preset", "paper", "--out", "x"]))
    assert paper["train"]["preset"] == "paper"


@pytest.mark.slow
def test_mirrored_arm1_rollout_is_the_mirror_of_arm0(tmp_path):
    """The evaluator's mirror path: seed s on arm 1 is the mirror of seed s on arm 0, so the policy
    must see identical inputs and arm 1 must end where arm 0 ends (in the policy's frame)."""
    import numpy as np
    from act_training.evaluation.rollouts import evaluate
    from act_training.runtime.policy import ACTPolicyRuntime

    out = tmp_path / "run"
    argv = ["--preset", "cpu", "--quick", "--out", str(out), "--modes", "ensemble"]
    assert transfer.main(argv) == 0
    rt = ACTPolicyRuntime.load(out / "train" / "policy.pt")
    kw = dict(n_trials=2, mode="ensemble", seed=7, max_steps=40, n_envs=2, progress=False,
              env_kwargs={"image_size": (96, 96)})
    r0 = evaluate(rt, arm=0, **kw)
    r1 = evaluate(rt, arm=1, mirror=True, **kw)
    assert r1.mirror and not r0.mirror
    # The inputs are mirror-exact (test_pipeline_identity); the two arms' physics agree to float
    # rounding only (MuJoCo sums the mirrored bodies in another order), and 40 closed-loop steps
    # of a policy amplify that to ~1e-3 rad. A wrong sign or joint map is off by tenths of a rad.
    np.testing.assert_allclose(np.array(r1.final_qpos), np.array(r0.final_qpos), atol=1e-2)
    assert r0.lengths == r1.lengths and r0.successes == r1.successes
