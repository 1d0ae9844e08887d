"""Peer area: LeRobot 0.4.4's ACT against this project's on the same configs, alternately, one run.

LeRobot lives in a separate venv (benchmarks/setup_lerobot.sh; the project never imports it):
its Python is $LEROBOT_PYTHON, else <repo>/.venv-lerobot/bin/python. When it cannot import
`lerobot.policies.act.modeling_act`, the area records "skipped: lerobot not importable".

Per config (A = LeRobot defaults d512/ff3200/4 enc/1 dec/VAE 4/chunk 100, B = the cpu preset
d256/ff1024/2/1/2/50, C = A with 7 decoder layers), two worker processes (peer_worker.py) hold
one model each; rounds alternate LeRobot fp32, project fp32, project default precision
(train.amp=auto: bf16 where the CPU has avx512_bf16), so load changes hit every side alike.
Batch-1 inference alternates LeRobot `predict_action_chunk` (network only, normalised tensors)
with the project's `predict_chunk` (uint8 image in, real units out, pipeline included) on the
torch, onnx and onnx_int8 backends (onnx_int8: the transformer in int8, not within 1e-4 of torch;
the worker reports its largest deviation from onnx on the timed observation).
Ratios are LeRobot time / project time (> 1: the project is faster).

The project's trainer keeps freed memory in its process (train.keep_freed_memory,
act_training.training.host_memory); LeRobot's does not. So that the ratio is not read as the
model's alone, a third worker runs LeRobot with the same glibc setting (GLIBC_TUNABLES), and its
fp32 step and ratio are reported beside the shipped one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import ROOT, area_main, log, metric  # noqa: E402

# config -> (train rounds, train steps per round, inference rounds, calls per round)
FULL = {"B": (3, 2, 3, 20), "A": (3, 1, 3, 10), "C": (3, 1, 2, 5)}
QUICK = {"B": (1, 1, 1, 3)}
# what training.host_memory.keep_freed_memory() sets in-process, as glibc tunables for LeRobot's
KEEP_FREED_MEMORY = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"


def lerobot_python() -> str:
    return os.environ.get("LEROBOT_PYTHON") or str(ROOT / ".venv-lerobot" / "bin" / "python")


def lerobot_importable(py: str) -> str | None:
    """None if LeRobot's ACT imports with `py`, else the reason."""
    if not Path(py).exists():
        return f"no {py} (run benchmarks/setup_lerobot.sh or set LEROBOT_PYTHON)"
    r = subprocess.run([py, "-c", "import lerobot.policies.act.modeling_act"], capture_output=True, text=True,
                       timeout=900)  # minutes on a loaded machine (lerobot imports a lot)
    if r.returncode:
        return (r.stderr.strip().splitlines() or ["import failed"])[-1]
    return None


class Worker:
    def __init__(self, py: str, side: str, cfg: str, env_extra: dict | None = None):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2", **(env_extra or {})}
        self.side = side
        self.proc = subprocess.Popen([py, str(HERE / "peer_worker.py"), "--side", side, "--config", cfg],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.side} worker ended (exit code {self.proc.wait()})")
        return json.loads(line)

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=600)


def run_config(py: str, cfg: str, spec) -> tuple[list, dict]:
    rounds, steps, irounds, calls = spec
    lr, pr = Worker(py, "lerobot", cfg), Worker(sys.executable, "project", cfg)
    lk = Worker(py, "lerobot", cfg, {"GLIBC_TUNABLES": KEEP_FREED_MEMORY})
    try:
        train_sides = {"lerobot fp32": (lr, "off"), "lerobot fp32, freed memory kept": (lk, "off"),
                       "project fp32": (pr, "off"), "project default": (pr, "auto")}
        t = {k: {"wall_s": [], "cpu_s": []} for k in train_sides}
        amp_default = None
        for w, amp in train_sides.values():  # warm-up (first step allocates, oneDNN picks kernels)
            w.ask(op="train", n=1, amp=amp)
        for r in range(rounds):
            for k, (w, amp) in train_sides.items():
                log(f"lerobot: config {cfg} round {r + 1}/{rounds}: {k} train x{steps}")
                res = w.ask(op="train", n=steps, amp=amp)
                t[k]["wall_s"] += res["wall_s"]
                t[k]["cpu_s"] += res["cpu_s"]
                amp_default = res.get("amp", amp_default) if k == "project default" else amp_default
        inf_sides = {"lerobot": (lr, "torch"), "project torch": (pr, "torch"), "project onnx": (pr, "onnx"),
                     "project onnx_int8": (pr, "onnx_int8")}
        inf = {k: [] for k in inf_sides}
        for w, be in inf_sides.values():
            w.ask(op="infer", n=3, backend=be)
        for _r in range(irounds):
            for k, (w, be) in inf_sides.items():
                inf[k] += w.ask(op="infer", n=calls, backend=be)["wall_s"]
    finally:
        for w in (lr, lk, pr):
            w.close()
    med = {k: float(np.median(v["wall_s"])) for k, v in t.items()}
    imed = {k: float(np.median(v)) for k, v in inf.items()}
    note = f"{pr.info['params'] / 1e6:.1f}M params project, {lr.info['params'] / 1e6:.1f}M LeRobot"
    m = [metric(f"config {cfg}: train step, {k}", "ms", [1e3 * x for x in v["wall_s"]], note=note)
         for k, v in t.items()]
    m += [metric(f"config {cfg}: train step ratio LeRobot/project, fp32 both", "x",
                 value=med["lerobot fp32"] / med["project fp32"], better="higher"),
          metric(f"config {cfg}: train step ratio LeRobot with freed memory kept/project, fp32 both", "x",
                 value=med["lerobot fp32, freed memory kept"] / med["project fp32"], better="higher",
                 note="both processes with the project's glibc malloc setting (training.host_memory)"),
          metric(f"config {cfg}: train step ratio LeRobot/project, each side's default", "x",
                 value=med["lerobot fp32"] / med["project default"], better="higher",
                 note=f"project default amp: {amp_default}; LeRobot fp32")]
    m += [metric(f"config {cfg}: batch-1 inference, {k}", "ms", [1e3 * x for x in v]) for k, v in inf.items()]
    int8_note = f"int8 vs onnx: max |diff| {pr.info['int8_max_abs_diff']:.3g} (real units, random weights)"
    m += [metric(f"config {cfg}: batch-1 inference ratio LeRobot/project {be}", "x",
                 value=imed["lerobot"] / imed[f"project {be}"], better="higher",
                 note=int8_note if be == "onnx_int8" else "") for be in ("torch", "onnx", "onnx_int8")]
    details = {"train": t, "infer_wall_s": inf, "project_default_amp": amp_default, "workers": {
        "lerobot": lr.info, "project": pr.info}, "rounds": rounds, "steps_per_round": steps}
    return m, details


def run(quick: bool, work: Path, domain_id: int) -> dict:
    py = lerobot_python()
    why = lerobot_importable(py)
    if why:
        log(f"lerobot: skipped: lerobot not importable ({why})")
        return {"metrics": [], "details": {}, "skipped": f"lerobot not importable ({why})"}
    metrics, details = [], {"lerobot_python": py}
    for cfg, spec in (QUICK if quick else FULL).items():
        m, d = run_config(py, cfg, spec)
        metrics += m
        details[cfg] = d
    return {"metrics": metrics, "details": details}


if __name__ == "__main__":
    area_main(run)
