"""Smoke test of the benchmarks: `benchmarks/run_all.py --quick` runs every area on tiny
configurations and writes a result JSON of the documented schema (docs/performance.md).

Never asserts a timing: these machines are noisy and the figures are for people to read.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

METRIC_KEYS = {"name", "unit", "median", "p99", "spread", "n", "better"}


def _check_metric(m: dict) -> None:
    assert METRIC_KEYS <= set(m), m
    assert isinstance(m["name"], str) and m["name"] and isinstance(m["unit"], str)
    assert m["better"] in ("lower", "higher")
    assert isinstance(m["n"], int) and m["n"] >= 0
    for k in ("median", "p99", "spread"):
        assert m[k] is None or isinstance(m[k], int | float), (k, m)
    if m["n"] >= 2:
        assert m["p99"] is not None and m["spread"] is not None and m["spread"] >= 0


def test_run_all_quick_writes_schema(tmp_path):
    out = tmp_path / "result.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--out", str(out),
           "--work", str(tmp_path / "work"), "--domain-id", os.environ["ROS_DOMAIN_ID"], "--note", "pytest"]
    # the peer area (LeRobot from its own venv) takes minutes even in --quick: skipped here, and its
    # skip path is checked below; its real run is `make bench ARGS="--only lerobot"`
    env = {**os.environ, "LEROBOT_PYTHON": str(tmp_path / "no-lerobot" / "python")}
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["schema"] == "act-bench/1"
    assert res["quick"] is True and res["complete"] is True and res["note"] == "pytest"
    assert res["machine"] and res["machine_info"]["cores"] >= 1
    assert len(res["load_avg_start"]) == 3 and "max" in res["load_avg_during"]
    assert list(res["areas"]) == ["sim", "training", "inference", "bags", "node", "lerobot"]
    assert res["areas"].pop("lerobot")["status"] == "skipped"
    for area, r in res["areas"].items():
        assert r["status"] == "ok", (area, r.get("error"))
        assert r["metrics"], area
        for m in r["metrics"]:
            _check_metric(m)
    names = {a: " ".join(m["name"] for m in r["metrics"]) for a, r in res["areas"].items()}
    assert "render 96x96" in names["sim"] and "render 240x320" in names["sim"]
    assert "data-wait share" in names["training"] and "samples/s" in names["training"]
    assert "predict_chunk" in names["inference"]
    assert "convert" in names["bags"] and "read/convert speed ratio" in names["bags"]
    for mode in ("chunked", "ensemble"):
        assert f"missed ticks, {mode}" in names["node"] and f"(external), {mode}" in names["node"]
        assert res["areas"]["node"]["details"][mode]["ticks"] > 0
    # the printed table carries every figure
    assert p.stdout.count("\n| ") >= sum(len(r["metrics"]) for r in res["areas"].values())
    assert not list(out.parent.glob(".result.json.tmp-*"))  # written atomically


def test_only_rejects_unknown_area(tmp_path):
    from run_all import main

    with pytest.raises(SystemExit, match="unknown area"):
        main(["--only", "sim,gpu", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def test_peer_area_says_skipped_without_lerobot(tmp_path):
    out = tmp_path / "peer.json"
    env = {**os.environ, "LEROBOT_PYTHON": str(tmp_path / "no-such-venv" / "bin" / "python")}
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only", "lerobot", "--out",
                        str(out), "--work", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    peer = json.loads(out.read_text())["areas"]["lerobot"]
    assert peer["status"] == "skipped" and peer["reason"].startswith("lerobot not importable")
    assert "| lerobot | skipped: lerobot not importable" in p.stdout
