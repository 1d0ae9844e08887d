"""Run the benchmarks and write benchmarks/results/<machine>-<date>.json (see docs/performance.md).

    python benchmarks/run_all.py                      # everything (~12 min on 2 cores)
    python benchmarks/run_all.py --only node,bags     # some areas
    python benchmarks/run_all.py --quick              # smoke run: tiny configs, seconds per area
    make bench ARGS="--only training"

Areas (each in its own process, in this order): sim, training, inference, bags, node, lerobot
(the peer: LeRobot's ACT from its own venv, benchmarks/bench_lerobot.py; "skipped" without it). The areas
share a scratch directory (demos from `sim` feed `training`; the cpu checkpoint written by
`inference` drives `node`). Prints a table (median, p99, spread = IQR) and writes the JSON
atomically after every area (`complete: false` until the end). Figures are never asserted:
these machines are noisy, so compare ratios measured side by side in one run, and read the
load average recorded with them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import AREAS, SCHEMA, busy_processes, git_info, load_avg, machine_info, write_json_atomic  # noqa: E402

DEFAULT_DOMAIN_ID = 101  # tests use 1..100 (tests/conftest.py); keep benchmark DDS traffic apart
# generous: the cores are shared
TIMEOUT_S = {"sim": 300, "training": 900, "inference": 600, "bags": 600, "node": 900, "lerobot": 1800}


class LoadSampler(threading.Thread):
    """1-minute load average every few seconds while the benchmarks run."""

    def __init__(self, period: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.period, self.samples, self._stop_evt = period, [], threading.Event()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            la = load_avg()
            if la:
                self.samples.append(la[0])
            self._stop_evt.wait(self.period)

    def stop(self) -> dict:
        self._stop_evt.set()
        s = self.samples or [float("nan")]
        return {"min": min(s), "max": max(s), "mean": round(sum(s) / len(s), 2), "n": len(self.samples)}


def parse_only(text: str | None) -> list[str]:
    if not text:
        return list(AREAS)
    areas = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in areas if a not in AREAS]
    if bad:
        raise SystemExit(f"run_all.py: unknown area(s) {bad}; choose from {','.join(AREAS)}")
    return [a for a in AREAS if a in areas]  # the dependency order


def start_area(area: str, quick: bool, work: Path, domain_id: int) -> dict:
    out = work / f"result_{area}.json"
    out.unlink(missing_ok=True)
    log_path = work / f"{area}.log"
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "egl")
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, str(HERE / f"bench_{area}.py"), "--out", str(out), "--work", str(work),
           "--domain-id", str(domain_id)] + (["--quick"] if quick else [])
    with open(log_path, "w") as lf:
        proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env, cwd=str(HERE.parent))
    return {"area": area, "proc": proc, "out": out, "log": log_path, "t": time.perf_counter()}


def wait_any(runs: list[dict], timeouts: dict) -> dict:
    """Block until one of `runs` ends (or overruns its timeout and is killed); return it."""
    while True:
        for run in runs:
            rc = run["proc"].poll()
            if rc is None and time.perf_counter() - run["t"] > timeouts[run["area"]]:
                run["proc"].kill()
                run["proc"].wait()
                rc = "timeout"
            if rc is not None:
                run["rc"], run["seconds"] = rc, round(time.perf_counter() - run["t"], 2)
                return run
        time.sleep(0.2)


def finish_area(run: dict) -> dict:
    rc, seconds = run["rc"], run["seconds"]
    if rc == 0 and run["out"].exists():
        res = json.loads(run["out"].read_text())
        if res.get("skipped"):  # e.g. the peer area without an importable lerobot
            return {"status": "skipped", "seconds": seconds, "reason": res["skipped"], "metrics": [],
                    "details": res.get("details", {})}
        return {"status": "ok", "seconds": seconds, "metrics": res.get("metrics", []),
                "details": res.get("details", {})}
    tail = run["log"].read_text(errors="replace")[-3000:] if run["log"].exists() else ""
    return {"status": "error", "seconds": seconds, "returncode": rc, "error": tail, "metrics": [],
            "details": {}}


def fmt(v) -> str:
    if v is None:
        return "-"
    a = abs(v)
    return f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 0.1 else f"{v:.3g}"


def table(result: dict) -> str:
    lines = ["| area | figure | median | p99 | spread (IQR) | unit | n | note |",
             "|---|---|---|---|---|---|---|---|"]
    for area, res in result["areas"].items():
        if res["status"] == "skipped":
            lines.append(f"| {area} | skipped: {res['reason']} | | | | | | |")
            continue
        if res["status"] != "ok":
            lines.append(f"| {area} | **{res['status']}** (see JSON `error`) | | | | | | |")
            continue
        for m in res["metrics"]:
            lines.append(f"| {area} | {m['name']} | {fmt(m.get('median'))} | {fmt(m.get('p99'))} | "
                         f"{fmt(m.get('spread'))} | {m['unit']} | {m.get('n', '')} | {m.get('note', '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the benchmarks (docs/performance.md).")
    ap.add_argument("--only", help=f"comma-separated areas: {','.join(AREAS)}")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny configs, a few seconds per area")
    ap.add_argument("--out", help="result JSON (default benchmarks/results/<machine>-<date>[-quick].json)")
    ap.add_argument("--machine", default=None, help="machine name for the file name (default: hostname)")
    ap.add_argument("--domain-id", type=int, default=None,
                    help=f"ROS_DOMAIN_ID of the node benchmark's processes (default {DEFAULT_DOMAIN_ID})")
    ap.add_argument("--work", help="scratch directory (default: a new temporary one, removed at the end)")
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. what else was running)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other areas of an existing --out file (re-run some areas of a full run)")
    args = ap.parse_args(argv)
    areas = parse_only(args.only)
    info = machine_info()
    machine = args.machine or info["hostname"]
    started = dt.datetime.now(dt.UTC)
    out = Path(args.out) if args.out else (
        HERE / "results" / f"{machine}-{started:%Y-%m-%d}{'-quick' if args.quick else ''}.json")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="act-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    domain_id = args.domain_id if args.domain_id is not None else DEFAULT_DOMAIN_ID
    la0 = load_avg()
    if la0 and la0[0] > 2.5:
        print(f"[bench] warning: load average {la0[0]:.2f} on {info['cores']} cores: figures will be "
              "pessimistic (the load is recorded in the JSON)", file=sys.stderr)
    result = {
        "schema": SCHEMA, "machine": machine, "machine_info": info, "git": git_info(),
        "started": started.isoformat(timespec="seconds"), "quick": args.quick, "areas_requested": areas,
        "ros_domain_id": domain_id, "note": args.note, "load_avg_start": la0, "complete": False,
        "areas": {},
    }
    if args.merge and out.exists():
        old = json.loads(out.read_text())
        result["merged_from"] = {"started": old.get("started"), "areas": list(old.get("areas", {})),
                                 "load_avg_start": old.get("load_avg_start"),
                                 "load_avg_during": old.get("load_avg_during"), "note": old.get("note")}
        result["areas"] = {a: r for a, r in old.get("areas", {}).items() if a not in areas}
        areas_all = [a for a in AREAS if a in result["areas"] or a in areas]
    else:
        areas_all = areas
    sampler = LoadSampler()
    sampler.start()
    t0 = time.perf_counter()
    # full: one area at a time (the figures); --quick: all at once (a smoke run, figures meaningless)
    groups = [areas] if args.quick else [[a] for a in areas]
    runs: list[dict] = []
    try:
        for group in groups:
            print(f"[bench] {' + '.join(group)} ...", file=sys.stderr, flush=True)
            busy, la = busy_processes(), load_avg()
            ran_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            runs = [start_area(a, args.quick, work, domain_id) for a in group]
            timeouts = {a: TIMEOUT_S[a] * (0.5 if args.quick else 1) for a in group}
            while runs:
                run = wait_any(runs, timeouts)
                runs.remove(run)
                res = finish_area(run)
                res["ran_at"], res["load_avg_at_start"], res["busy_processes_at_start"] = ran_at, la, busy
                result["areas"][run["area"]] = res
                print(f"[bench] {run['area']}: {res['status']} in {res['seconds']:.0f} s", file=sys.stderr,
                      flush=True)
                result["duration_s"] = round(time.perf_counter() - t0, 1)
                write_json_atomic(out, result)
    finally:
        for run in runs:  # interrupted: end the area processes this script started
            if run["proc"].poll() is None:
                run["proc"].kill()
                run["proc"].wait()
        result["load_avg_during"] = sampler.stop()
        result["load_avg_end"] = load_avg()
        result["duration_s"] = round(time.perf_counter() - t0, 1)
        result["areas"] = {a: result["areas"][a] for a in areas_all if a in result["areas"]}
        result["complete"] = all(a in result["areas"] for a in areas)
        write_json_atomic(out, result)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{machine}: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB | "
          f"load avg start {la0}, during {result['load_avg_during']} | {result['duration_s']:.0f} s"
          f"{' | QUICK (smoke run, not figures)' if args.quick else ''}\n")
    print(table(result))
    print(f"\nwrote {out}")
    return 0 if all(r["status"] in ("ok", "skipped") for r in result["areas"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
