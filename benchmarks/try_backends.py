"""Batch-1 predict_chunk per inference backend on a random-init preset checkpoint, alternated.

    python benchmarks/try_backends.py cpu
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from act_training.runtime.policy import ACTPolicyRuntime  # noqa: E402
from bench_inference import latency, make_checkpoint  # noqa: E402

torch.set_num_threads(2)
preset = sys.argv[1] if len(sys.argv) > 1 else "cpu"
ck = make_checkpoint(Path(f"/tmp/speed_rand_{preset}.pt"), preset)
t = time.perf_counter()
rts = {}
for be in ("torch", "jit", "onnx", "onnx_int8"):
    t = time.perf_counter()
    rts[be] = ACTPolicyRuntime.load(ck, backend=be)
    print(be, "load s", round(time.perf_counter() - t, 2), flush=True)
rng = np.random.default_rng(1)
h, w = rts["torch"].image_size
ims = {"top": rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)}
q = rng.normal(0, 0.3, (3, 7)).astype(np.float32)
ref = rts["torch"].predict_chunk_batch(ims, q)
for be in ("jit", "onnx", "onnx_int8"):
    print(be, "max abs diff real units", np.abs(rts[be].predict_chunk_batch(ims, q) - ref).max())
for r in range(2):
    for be, rt in rts.items():
        ts = np.array(latency(rt, 40)) * 1e3
        print(r, be, f"p50 {np.median(ts):.2f} p99 {np.percentile(ts, 99):.2f} ms", flush=True)
