"""Lockstep vs real-time success over ROS 2: one `ros2 launch mirror_arm_sim transfer_eval.launch.py`
per row (arm x executor x realtime), then a Markdown table with Wilson intervals.

    source scripts/activate.sh
    python scripts/ros_eval_table.py --checkpoint runs/transfer-cpu/train/policy.pt --trials 50 \
        --out runs/ros_eval          # -> runs/ros_eval/table.md; re-running skips finished rows

Ensemble rows query every 10 ticks (as the cpu preset evaluates them), chunked rows run the whole
chunk (the checkpoint's n_execute) with the node's prefetch in real time. Real time means the
bridge steps on its own 50 Hz timer and the node on its control timer, as on a robot: run it on
a quiet machine, a loaded CPU makes inference miss ticks.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import time
from pathlib import Path

from mirror_arm_sim.stats import wilson_interval


def run_row(args, arm: int, mode: str, realtime: bool, out: Path) -> dict:
    """One launch (skipped when its JSON exists) -> the EvalResult dict."""
    path = out / f"arm{arm}_{mode}_{'realtime' if realtime else 'lockstep'}{args.suffix}.json"
    if path.is_file():
        return json.loads(path.read_text())
    cmd = ["ros2", "launch", "mirror_arm_sim", "transfer_eval.launch.py", f"checkpoint:={args.checkpoint}",
           f"arm:={arm}", f"mode:={mode}", f"query_period:={10 if mode == 'ensemble' else 0}",
           f"realtime:={'true' if realtime else 'false'}", f"trials:={args.trials}", f"seed:={args.seed}",
           f"result_json:={path}"]
    if args.trajectory_points:
        cmd += ["command_type:=joint_trajectory", f"trajectory_points:={args.trajectory_points}"]
    print(f"[ros_eval_table] {' '.join(cmd)}", flush=True)
    t0 = time.monotonic()
    with open(path.with_suffix(".log"), "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0 or not path.is_file():
        raise SystemExit(f"ros_eval_table: row arm {arm} {mode} realtime={realtime} failed (exit {rc}); "
                         f"see {path.with_suffix('.log')}")
    d = json.loads(path.read_text())
    took = time.monotonic() - t0
    print(f"[ros_eval_table] -> {d['n_success']}/{d['n_trials']} in {took:.0f} s", flush=True)
    return d


def node_summary(out: Path, arm: int, mode: str, realtime: bool, suffix: str) -> dict:
    """The policy node's exit summary (ticks, missed ticks, latency percentiles) from the row's log."""
    log = out / f"arm{arm}_{mode}_{'realtime' if realtime else 'lockstep'}{suffix}.log"
    lines = [ln for ln in log.read_text().splitlines() if "] summary: {" in ln] if log.is_file() else []
    return ast.literal_eval(lines[-1].split("summary: ", 1)[1]) if lines else {}


def main(argv: list[str] | None = None) -> int:
    """Run every row and write <out>/table.md."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--seed", type=int, default=100_000)
    p.add_argument("--arms", type=int, nargs="+", default=[0, 1])
    p.add_argument("--modes", nargs="+", default=["chunked", "ensemble"])
    p.add_argument("--out", default="runs/ros_eval")
    p.add_argument("--trajectory-points", type=int, default=0,
                   help="N > 0: JointTrajectory commands streaming N points of the plan, the bridge "
                        "following them as a trajectory controller (docs/ros.md); 0: Float64MultiArray")
    args = p.parse_args(argv)
    args.suffix = f"_stream{args.trajectory_points}" if args.trajectory_points else ""
    if not Path(args.checkpoint).is_file():
        print(f"ros_eval_table: error: checkpoint {args.checkpoint} not found", file=sys.stderr)
        return 2
    args.checkpoint = str(Path(args.checkpoint).resolve())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| arm | executor | lockstep | real time | difference (points) | real time: missed ticks, "
             "obs->command latency p50 / p99 |", "|---|---|---|---|---|---|"]
    for arm in args.arms:
        for mode in args.modes:
            cells = []
            rates = []
            for realtime in (False, True):
                d = run_row(args, arm, mode, realtime, out)
                lo, hi = wilson_interval(d["n_success"], d["n_trials"])
                rates.append(d["n_success"] / d["n_trials"])
                cells.append(f"{d['n_success']}/{d['n_trials']} = {rates[-1]:.0%} ({lo:.0%}–{hi:.0%})")
            label = f"{arm}{' (mirrored)' if arm == 1 else ''}"
            diff = 100 * (rates[1] - rates[0])
            sm = node_summary(out, arm, mode, True, args.suffix)
            timing = (f"{sm['missed_ticks']}/{sm['ticks']}, {sm['latency_p50_ms']:.0f} / "
                      f"{sm['latency_p99_ms']:.0f} ms" if sm else "(no node summary)")
            lines.append(f"| {label} | {mode} | {cells[0]} | {cells[1]} | {diff:+.0f} | {timing} |")
    table = "\n".join(lines) + "\n"
    tmp = out / "table.md.tmp"
    how = (f"JointTrajectory of {args.trajectory_points} points, followed by the bridge"
           if args.trajectory_points else "Float64MultiArray per tick")
    head = f"Checkpoint {args.checkpoint}; seeds {args.seed}+i; {args.trials} trials a row; commands: {how}."
    tmp.write_text(f"{head}\n\n{table}")
    tmp.replace(out / "table.md")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
