"""Timing of a preset on this machine: train step, data loading, batch-1 inference, dataset RSS.

    python -m act_training.training.bench --preset cpu [--steps 5] [--amp off|bf16] [--data demos.hdf5]
    python -m act_training.training.bench --rss --demos 200 --T 300     # dataset peak RSS, 96 px file

Numbers go to stdout as JSON (docs/training.md quotes them). Without --data a synthetic 96 px
file is written to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from act_training.config import make_config
from act_training.data.dataset import make_datasets
from act_training.data.synthetic import write_synthetic_demos
from act_training.model.act import ACT, act_loss, count_parameters
from act_training.runtime.pipeline import Pipeline
from act_training.training.amx_conv_guard import guard_amx_convs
from act_training.training.host_memory import keep_freed_memory
from act_training.training.train import make_optimizer, resolve_amp


def _median_time(fn, n: int, warmup: int = 1, clock=time.perf_counter) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(n):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    return float(np.median(ts))


def bench_preset(preset: str, steps: int, amp: str, data: str | None, overrides: list[str]) -> dict:
    """Median timings of a preset on this machine: train step (wall and CPU seconds), batch loading,
    batch-1 inference; on `data` or a synthetic 96 px file. Returns a JSON-ready dict."""
    tmp = tempfile.mkdtemp(prefix="act_bench_")
    path = data or str(write_synthetic_demos(Path(tmp) / "d.hdf5", num_demos=6, T=120, hw=(96, 96)))
    cfg = make_config(preset, [f"data.path={path}", *overrides])
    host_memory = keep_freed_memory() if cfg.train.keep_freed_memory else "off"  # as the trainer
    tr, _ = make_datasets(cfg.data, cfg.model.chunk_size)
    info = tr.info
    mc = replace(cfg.model, camera_names=tuple(tr.cameras), state_dim=info.state_dim,
                 action_dim=info.action_dim, image_size=cfg.model.image_size or info.image_shape)
    model = ACT(mc)
    dtype = resolve_amp(amp, torch.device("cpu"))  # auto: bf16 where the CPU has it, as the trainer
    fp32_convs = guard_amx_convs(model, dtype, torch.device("cpu"))  # as the trainer
    opt = make_optimizer(model, cfg.train)  # the trainer's optimizer
    B = cfg.train.batch_size
    rng = np.random.default_rng(0)
    loader_idx = iter(rng.permutation(len(tr)).tolist() * 100)

    def load_batch():
        return torch.utils.data.default_collate([tr[next(loader_idx)] for _ in range(B)])

    t_data = _median_time(load_batch, 5)
    batch = load_batch()

    def step():
        im = Pipeline.from_model(mc).network_images(batch["images"])
        ctx = torch.autocast("cpu", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)
        with ctx:
            a, mu, lv = model(im, batch["qpos"], batch["actions"], batch["action_is_pad"])
        ls = act_loss(a, batch["actions"], batch["action_is_pad"], mu, lv, mc.kl_weight)
        opt.zero_grad()
        ls["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()

    t_step = _median_time(step, steps)
    # CPU seconds per step (all threads): on a shared machine, wall time hides what a step costs
    cpu_step = _median_time(step, max(2, steps // 2), warmup=0, clock=time.process_time)
    model.eval()
    one = torch.from_numpy(tr[0]["images"].numpy())[None]
    q1 = batch["qpos"][:1]

    def infer():
        with torch.inference_mode():
            model(Pipeline.from_model(mc).network_images(one), q1)

    t_inf = _median_time(infer, 20, warmup=3)
    return {
        "preset": preset, "amp": amp, "threads": torch.get_num_threads(), "batch": B,
        "params_M": round(count_parameters(model) / 1e6, 2), "image_size": list(mc.image_size),
        "cameras": list(mc.camera_names), "step_s": round(t_step, 3), "step_cpu_s": round(cpu_step, 3),
        "samples_per_s": round(B / t_step, 1),
        "data_batch_s": round(t_data, 4), "data_share_if_serial": round(t_data / (t_data + t_step), 3),
        "infer_batch1_ms": round(1000 * t_inf, 1), "keep_freed_memory": host_memory,
        "fp32_convs_on_amx": fp32_convs,
        "loadavg": os.getloadavg()[0],
    }


def bench_rss(demos: int, T: int, samples: int) -> dict:
    """Open time, per-sample read time (ms) and peak RSS (MB) before/after for a synthetic 96 px
    file of `demos` x `T` steps, reading `samples` random samples. Returns a JSON-ready dict."""
    tmp = tempfile.mkdtemp(prefix="act_bench_")
    path = write_synthetic_demos(Path(tmp) / "big.hdf5", num_demos=demos, T=T, hw=(96, 96))
    size = path.stat().st_size
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cfg = make_config("cpu", [f"data.path={path}"])
    t0 = time.perf_counter()
    tr, va = make_datasets(cfg.data, cfg.model.chunk_size)
    t_open = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in rng.integers(0, len(tr), samples):
        tr[int(i)]
    t_read = (time.perf_counter() - t0) / samples
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    os.unlink(path)
    n = len(tr) + (len(va) if va else 0)
    return {"demos": demos, "T": T, "samples": n, "file_MB": round(size / 2**20),
            "raw_images_MB": round(demos * T * 96 * 96 * 3 / 2**20), "open_s": round(t_open, 2),
            "per_sample_ms": round(1000 * t_read, 3), "peak_rss_MB_before": round(rss0 / 1024),
            "peak_rss_MB_after": round(rss1 / 1024)}


def main(argv=None) -> int:
    """Bench CLI: print the preset timings (or, with --rss, the dataset memory numbers) as JSON."""
    p = argparse.ArgumentParser(prog="python -m act_training.training.bench")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--amp", default="off", choices=["off", "bf16", "auto"])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--rss", action="store_true")
    p.add_argument("--demos", type=int, default=200)
    p.add_argument("--T", type=int, default=300)
    p.add_argument("--samples", type=int, default=3000)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    old_tmp = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="act_bench_") as tmp:
        tempfile.tempdir = tmp  # the synthetic files go here and are removed afterwards
        try:
            if a.rss:
                print(json.dumps(bench_rss(a.demos, a.T, a.samples)))
            else:
                print(json.dumps(bench_preset(a.preset, a.steps, a.amp, a.data, a.overrides)))
        finally:
            tempfile.tempdir = old_tmp
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
