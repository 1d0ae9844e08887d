"""`act_transfer_variants`: the comparison of mirror augmentation, inference-time mirror, both and
few-shot on cell variants, end to end at toy sizes, resumable; and its configuration."""

from __future__ import annotations

import json

import pytest
import torchvision  # noqa: F401  -- load torch/triton before any test renders with MuJoCo EGL
from act_training.experiments import variants


def test_config_rows_and_policies():
    cfg = variants.resolve_config(variants.build_parser().parse_args(["--out", "x"]))
    assert cfg["eval"]["trials"] == 200 and cfg["fewshot"]["k"] == 5
    assert cfg["variants"] == ["exact", "base_offset_15mm", "camera_offset_5mm", "joint_zero_offset"]
    assert cfg["train"]["overrides"]["model.crop"] is None  # a mirrored frame shows arm 1's side
    t = variants.policy_train_cfgs(cfg)
    assert t["augment"]["overrides"]["data.mirror_augment"] is True
    assert all("data.mirror_augment" not in t[p]["overrides"] for p in ("base", "fewshot"))
    assert {(p, a, m) for _, p, a, m in variants.ROWS} >= {("base", 1, True), ("augment", 1, False),
                                                            ("augment", 1, True), ("fewshot", 1, False)}
    with pytest.raises(SystemExit, match="unknown variants"):
        variants.resolve_config(variants.build_parser().parse_args(["--out", "x", "--variants", "nope"]))


@pytest.mark.slow
def test_quick_run_writes_the_table_and_resumes(tmp_path, capsys):
    out = tmp_path / "v"
    argv = ["--quick", "--variants", "exact", "--out", str(out)]
    assert variants.main(argv) == 0
    md = (out / "report" / "variants.md").read_text()
    for name, *_ in variants.ROWS:
        assert f"| exact | {name} | ensemble | " in md, name
    data = json.loads((out / "report" / "variants.json").read_text())
    assert len(data) == len(variants.ROWS) and all(r["n_trials"] == 2 for r in data)
    few = [r for r in data if r["policy"] == "fewshot"][0]
    assert few["arm"] == 1 and not few["mirror"]
    # the few-shot policy is the base policy fine-tuned on arm-1 demos of this cell
    from act_training.training.checkpoint import load_checkpoint

    ft = load_checkpoint(out / "exact" / "fewshot" / "train" / "policy.pt")
    assert ft["config"]["train"]["init_from"].endswith("exact/base/train/policy.pt")
    aug = load_checkpoint(out / "exact" / "augment" / "train" / "policy.pt")
    assert aug["config"]["data"]["mirror_augment"] is True
    markers = {p: p.stat().st_mtime_ns for p in out.rglob("stages/*.json")}
    capsys.readouterr()
    assert variants.main(argv) == 0  # resumes: every stage skipped
    assert {p: p.stat().st_mtime_ns for p in out.rglob("stages/*.json")} == markers
