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
    # the transfer preset's recipe: DART demos, no dropout
    assert cfg["demos"]["action_noise"] == 0.03 and cfg["train"]["overrides"]["model.dropout"] == 0.0
    assert cfg["train_cell"] == "exact"
    each = variants.resolve_config(variants.build_parser().parse_args(
        ["--out", "x", "--train-in-each-variant"]))
    assert each["train_cell"] is None
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
    argv = ["--quick", "--variants", "exact", "joint_zero_offset", "--out", str(out)]
    assert variants.main(argv) == 0
    md = (out / "report" / "variants.md").read_text()
    for variant in ("exact", "joint_zero_offset"):
        for name, *_ in variants.ROWS:
            assert f"| {variant} | {name} | ensemble | " in md, (variant, name)
    data = json.loads((out / "report" / "variants.json").read_text())
    assert len(data) == 2 * len(variants.ROWS) and all(r["n_trials"] == 2 for r in data)
    few = [r for r in data if r["policy"] == "fewshot"][0]
    assert few["arm"] == 1 and not few["mirror"]
    # base and augment are trained once (exact cell); each variant fine-tunes base on its own
    # cell's arm-1 demos
    from act_training.training.checkpoint import load_checkpoint

    assert not (out / "joint_zero_offset" / "base").exists()
    for variant in ("exact", "joint_zero_offset"):
        ft = load_checkpoint(out / variant / "fewshot" / "train" / "policy.pt")
        assert ft["config"]["train"]["init_from"].endswith("exact/base/train/policy.pt")
        assert (out / variant / "data" / "demos_arm1.hdf5").is_file()
    aug = load_checkpoint(out / "exact" / "augment" / "train" / "policy.pt")
    assert aug["config"]["data"]["mirror_augment"] is True
    markers = {p: p.stat().st_mtime_ns for p in out.rglob("stages/*.json")}
    capsys.readouterr()
    assert variants.main(argv) == 0  # resumes: every stage skipped
    assert {p: p.stat().st_mtime_ns for p in out.rglob("stages/*.json")} == markers
