"""`colcon test` runs each ament_python package's own tests with pytest and reports the count.

A ROS 2 user's first check of a workspace is `colcon test && colcon test-result`; without a
pytest test dependency in setup.py colcon falls back to unittest and silently finds 0 tests.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mirror_arm_sim", "act_training", "act_policy_node")


def test_colcon_test_runs_every_package_test(tmp_path):
    if not (ROOT / "install" / "setup.bash").exists():
        pytest.skip("no colcon workspace built here (run scripts/setup.sh)")
    colcon = [sys.executable, "-m", "colcon"]
    results = tmp_path / "test_results"
    res = subprocess.run(colcon + ["test", "--base-paths", "src", "--packages-select", *PACKAGES,
                                   "--test-result-base", str(results),
                                   "--event-handlers", "console_direct-"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"colcon test failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}"
    summary = subprocess.run(colcon + ["test-result", "--test-result-base", str(results), "--all"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert summary.returncode == 0, f"colcon test-result reports failures:\n{summary.stdout}"
    counts = {}
    for line in summary.stdout.splitlines():
        m = re.search(r"(\w+)/pytest\.xml: (\d+) tests, (\d+) errors, (\d+) failures", line)
        if m:
            counts[m[1]] = (int(m[2]), int(m[3]) + int(m[4]))
    for pkg in PACKAGES:
        assert pkg in counts, f"colcon test wrote no pytest result for {pkg}:\n{summary.stdout}"
        n, bad = counts[pkg]
        assert n > 0 and bad == 0, f"{pkg}: {n} tests, {bad} errors/failures"
    shutil.rmtree(results, ignore_errors=True)
