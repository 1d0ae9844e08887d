"""Shared helpers for the benchmarks: statistics, metric records, machine info, atomic JSON.

A metric is a dict:

    {"name": "cpu step time", "unit": "ms", "median": 452.1, "p99": 470.3, "spread": 8.2,
     "n": 30, "better": "lower", "note": "..."}

`spread` is the inter-quartile range (p75 - p25) in the metric's unit; single measurements have
n = 1 and p99 / spread = None. Every area module (bench_<area>.py) has
`run(quick, work, domain_id) -> {"metrics": [...], "details": {...}}` and a `main()` so that
run_all.py can start it in its own process (isolated threads, memory and crashes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "act-bench/1"
AREAS = ("sim", "training", "inference", "bags", "node", "lerobot")


def summarize(samples: Sequence[float]) -> dict:
    a = np.asarray([x for x in samples if x is not None and math.isfinite(x)], dtype=np.float64)
    if a.size == 0:
        return {"median": None, "p99": None, "spread": None, "n": 0}
    if a.size == 1:
        return {"median": float(a[0]), "p99": None, "spread": None, "n": 1}
    p25, p50, p75, p99 = np.percentile(a, [25, 50, 75, 99])
    return {"median": float(p50), "p99": float(p99), "spread": float(p75 - p25), "n": int(a.size),
            "min": float(a.min()), "max": float(a.max())}


def metric(name: str, unit: str, samples: Sequence[float] | None = None, value: float | None = None,
           better: str = "lower", note: str = "", **extra) -> dict:
    """A metric from repeated samples (median/p99/IQR) or from one value."""
    if samples is not None:
        m = summarize(samples)
    else:
        ok = value is not None and math.isfinite(value)
        m = {"median": float(value) if ok else None, "p99": None, "spread": None, "n": 1 if ok else 0}
    m = {"name": name, "unit": unit, **m, "better": better}
    if note:
        m["note"] = note
    m.update(extra)
    return m


def timeit(fn: Callable[[], object], n: int, warmup: int = 1) -> list[float]:
    """Wall times (s) of `n` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def machine_info() -> dict:
    cpu, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    mem = None
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    info = {
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": mem,
        "avx512_bf16": "avx512_bf16" in flags or "amx_bf16" in flags,
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("torch", "mujoco", "rosbags", "h5py", "numpy", "ros-rclpy"):
        try:
            info[dist] = version(dist)
        except PackageNotFoundError:
            info[dist] = None
    return info


def git_info() -> dict:
    def run(*a):
        try:
            r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10)
            return r.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
    return {"commit": run("rev-parse", "HEAD"), "dirty": dirty}


def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def busy_processes(threshold: float = 20.0, interval: float = 0.5) -> list[dict]:
    """Other processes using more than `threshold` % of a core right now (what else is running)."""
    try:
        import psutil
    except ImportError:
        return []
    me = os.getpid()
    procs = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            p.cpu_percent(None)
            procs.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    time.sleep(interval)
    out = []
    for p in procs:
        try:
            c = p.cpu_percent(None)
            if c >= threshold and p.pid != me:
                cmd = " ".join(p.info["cmdline"] or [])[:160]
                out.append({"pid": p.pid, "cpu_percent": round(c), "cmd": cmd})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return sorted(out, key=lambda d: -d["cpu_percent"])


def write_json_atomic(path: Path, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def area_main(run: Callable[[bool, Path, int], dict]) -> None:
    """CLI of one area module: `python bench_<area>.py --out r.json [--quick] [--work DIR]`."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="result JSON for run_all.py")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", default=None, help="scratch directory (shared between areas)")
    ap.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "101")))
    args = ap.parse_args()
    work = Path(args.work) if args.work else Path(tempfile_dir())
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    res = run(args.quick, work, args.domain_id)
    res["seconds"] = round(time.perf_counter() - t, 2)
    write_json_atomic(Path(args.out), res)


def tempfile_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="act-bench-")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)
