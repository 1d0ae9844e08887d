"""Inference benchmark: batch-1 `ACTPolicyRuntime.predict_chunk` latency per preset.

Checkpoints are random-init ACT models written with the training package's checkpoint API
(`make_payload` + `save_checkpoint`) and loaded with `ACTPolicyRuntime.load`, exactly as the
node loads a trained one; latency does not depend on the weights. Images are given at the
model's size (the node resizes on receipt), qpos near the cell's home pose.

    cpu    top camera, 96x96, chunk 50     (torch threads 2, and 1: the node shares the cores)
    paper  top + wrist cameras, 224x224, chunk 100
    tiny   (--quick only)
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import area_main, log, metric  # noqa: E402

# preset -> (cameras, calls timed, torch thread counts)
FULL = {"cpu": (("top",), 200, (2, 1)), "paper": (("top", "wrist"), 40, (2,))}
QUICK = {"tiny": (("top",), 20, (1,))}


def make_checkpoint(path: Path, preset: str, cameras=("top",), seed: int = 0,
                    action_std: float = 0.05) -> Path:
    """A random-init ACT checkpoint of `preset` in the real format (7 joints, the cell's names)."""
    import numpy as np
    import torch
    from act_training.config import get_preset
    from act_training.data.normalize import NormStats
    from act_training.model.act import ACT
    from act_training.training.checkpoint import make_payload, save_checkpoint
    from mirror_arm_sim.cell import ARM_JOINTS, default_cell

    cfg = get_preset(preset)
    mc = dataclasses.replace(cfg.model, camera_names=tuple(cameras), state_dim=7, action_dim=7)
    torch.manual_seed(seed)
    model = ACT(mc)
    home = np.asarray(default_cell().arm.home, dtype=np.float32)
    stats = NormStats(qpos_mean=home, qpos_std=np.full(7, 0.3), action_mean=home,
                      action_std=np.full(7, action_std))
    payload = make_payload(model, cfg.to_dict(), stats, ARM_JOINTS, ARM_JOINTS, layout_version=1, step=0)
    return save_checkpoint(path, payload)


def latency(runtime, n: int, warmup: int = 3) -> list[float]:
    import numpy as np

    rng = np.random.default_rng(0)
    h, w = runtime.image_size
    ims = [{c: rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for c in runtime.camera_names}
           for _ in range(4)]
    q = runtime.stats.qpos_mean.copy()
    for i in range(warmup):
        runtime.predict_chunk(ims[i % 4], q)
    out = []
    for i in range(n):
        t = time.perf_counter()
        runtime.predict_chunk(ims[i % 4], q)
        out.append(time.perf_counter() - t)
    return out


def run(quick: bool, work: Path, domain_id: int) -> dict:
    import torch
    from act_training.runtime.policy import ACTPolicyRuntime

    metrics, details = [], {}
    for preset, (cams, n, threads) in (QUICK if quick else FULL).items():
        ck = work / f"random_{preset}.pt"
        if not ck.exists():  # the node area may have written it (same preset, cameras, seed)
            make_checkpoint(ck, preset, cams)
        rt = ACTPolicyRuntime.load(ck, device="cpu")
        n_params = sum(p.numel() for p in rt.model.parameters())
        details[preset] = {"checkpoint": str(ck), "cameras": list(cams), "image_size": list(rt.image_size),
                           "chunk_size": rt.chunk_size, "params_m": round(n_params / 1e6, 2)}
        for th in threads:
            torch.set_num_threads(th)
            log(f"inference: {preset}, {th} thread(s), {n} calls")
            t = latency(rt, n)
            name = f"predict_chunk batch 1, {preset} preset, {th} thread{'s' * (th > 1)}"
            metrics.append(metric(name, "ms",
                                  [1e3 * x for x in t],
                                  note=f"{len(cams)} cam {rt.image_size[0]}x{rt.image_size[1]}, "
                                       f"chunk {rt.chunk_size}, {n_params / 1e6:.1f}M params"))
            details[preset][f"latency_ms_threads{th}"] = [round(1e3 * x, 3) for x in t]
    return {"metrics": metrics, "details": details}


if __name__ == "__main__":
    area_main(run)
