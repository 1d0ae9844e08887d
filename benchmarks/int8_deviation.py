"""How far backend onnx_int8's chunks are from onnx's on recorded frames, in real units (rad).

    python benchmarks/int8_deviation.py --checkpoint runs/transfer-cpu/policy.pt \
        --demos runs/transfer-cpu/data/demos_arm0.hdf5 [--episodes 32] [--frames 4]

Frames are drawn from random episodes of the demo file (`--frames` each, seed 0); prints the mean,
p99 and largest |int8 - onnx| over every action of every chunk, and the same of the chunks' first
actions (the ones a chunked executor sends first). docs/performance.md, "onnx_int8".
"""

from __future__ import annotations

import argparse
import sys

import h5py
import numpy as np
from act_training.runtime.policy import ACTPolicyRuntime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--demos", required=True, help="demo HDF5 (demo_<i>/observations/{images/<cam>,qpos})")
    p.add_argument("--episodes", type=int, default=32)
    p.add_argument("--frames", type=int, default=4, help="frames per episode")
    a = p.parse_args(argv)
    float_rt = ACTPolicyRuntime.load(a.checkpoint, backend="onnx")
    int8_rt = ACTPolicyRuntime.load(a.checkpoint, backend="onnx_int8")
    rng = np.random.default_rng(0)
    diffs = []
    with h5py.File(a.demos, "r") as f:
        names = sorted(k for k in f if k.startswith("demo_"))
        for e in rng.choice(len(names), min(a.episodes, len(names)), replace=False):
            obs = f[names[e]]["observations"]
            t = np.unique(rng.integers(0, obs["qpos"].shape[0], a.frames))  # h5py wants increasing indices
            images = {c: obs["images"][c][t] for c in float_rt.camera_names}
            qpos = obs["qpos"][t].astype(np.float32)
            got, want = int8_rt.predict_chunk_batch(images, qpos), float_rt.predict_chunk_batch(images, qpos)
            diffs.append(np.abs(got - want))
    d = np.concatenate(diffs)
    print(f"{d.shape[0]} frames: |int8 - onnx| mean {d.mean():.4f}, p99 {np.percentile(d, 99):.4f}, "
          f"max {d.max():.4f} rad; first actions: mean {d[:, 0].mean():.4f}, max {d[:, 0].max():.4f} rad; "
          f"load-time check {int8_rt.network.int8_deviation:.3g} action std")
    return 0


if __name__ == "__main__":
    sys.exit(main())
