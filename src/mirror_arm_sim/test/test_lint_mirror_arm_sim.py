"""The mirror_arm_sim package's linter as a test (the ros2/examples habit): `colcon test` runs it with
the package's own tests; `make test` collects it too (pyproject testpaths)."""

import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    res = subprocess.run([ruff, "check", str(PACKAGE)], cwd=PACKAGE, capture_output=True, text=True)
    assert res.returncode == 0, f"ruff found problems in {PACKAGE.name}:\n{res.stdout}{res.stderr}"
