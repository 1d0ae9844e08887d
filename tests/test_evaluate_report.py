"""Wilson intervals, EvalResult round trip and the report directory (real matplotlib, no sim)."""

from __future__ import annotations

import json

import pytest
from act_training.evaluation.report import load_metrics, verdict, write_report
from act_training.evaluation.rollouts import EvalResult, wilson_interval


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(45, 50)
    assert lo == pytest.approx(0.7864, abs=1e-3) and hi == pytest.approx(0.9565, abs=1e-3)
    lo, hi = wilson_interval(50, 50)
    assert hi == 1.0 and lo == pytest.approx(0.9287, abs=1e-3)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _result(arm, mode, mirror, n_ok, n=10):
    return EvalResult(arm=arm, mode=mode, mirror=mirror, seeds=list(range(n)),
                      successes=[i < n_ok for i in range(n)], lengths=[100 + i for i in range(n)])


def test_eval_result_round_trip():
    r = _result(1, "ensemble", True, 7)
    d = json.loads(json.dumps(r.to_dict()))
    r2 = EvalResult.from_dict(d)
    assert r2.success_rate == pytest.approx(0.7) and r2.label == "arm1-ensemble-mirror"
    assert d["ci95"] == pytest.approx(list(wilson_interval(7, 10)))


def test_verdict_uses_best_mirrored_arm1():
    rs = [_result(0, "chunked", False, 10), _result(1, "chunked", True, 6), _result(1, "ensemble", True, 8),
          _result(1, "chunked", False, 10)]
    line, best = verdict(rs)
    assert line.startswith("Arm 1 ≥ 70 %: hypothesis validated") and best.mode == "ensemble"
    line, _ = verdict(rs[:2])
    assert "not validated" in line


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_report_has_every_section(tmp_path, fmt):
    if fmt == "jsonl":
        metrics = tmp_path / "metrics.jsonl"
        metrics.write_text("\n".join(json.dumps({"step": s, "loss": 1.0 / (s + 1), "kl": 0.1, "lr": 1e-4})
                                     for s in range(20)))
    else:
        metrics = tmp_path / "metrics.csv"
        rows = [f"{s},{1.0 / (s + 1)},{0.5 / (s + 1)}" for s in range(20)]
        metrics.write_text("step,loss,l1\n" + "\n".join(rows))
    assert len(load_metrics(metrics)) == 20
    video = tmp_path / "report" / "videos" / "arm1-ensemble-mirror-trial000.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"")
    rs = [_result(0, "ensemble", False, 10), _result(1, "ensemble", True, 9), _result(1, "chunked", False, 0)]
    rs[1].videos = [str(video)]
    path = write_report(tmp_path / "report", rs, {"preset": "cpu", "demos": {"num_demos": 3}},
                        metrics_path=metrics, timings={"train": 12.0})
    md = path.read_text()
    for needle in ("Arm 1 ≥ 70 %: hypothesis validated", "95 % Wilson interval",
                   "| 1 | ensemble | yes | 9/10", "no (control)", "loss.png", "success.png",
                   "videos/arm1-ensemble-mirror-trial000.mp4",
                   "git revision", "config.yaml"):
        assert needle in md, needle
    for name in ("loss.png", "success.png", "config.yaml", "results.json"):
        assert (tmp_path / "report" / name).stat().st_size > 0, name
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    assert data["summary"]["validated"] is True and len(data["results"]) == 3
