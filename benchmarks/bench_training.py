"""Training benchmark: step time, samples/s and the share of step time spent waiting for data.

Runs the real trainer (`act_training.training.train.train`) on expert demos from the sim for a few steps
per preset (batch 32, the preset's own loader settings and AMP mode) and reads the per-step
rows it logs (`train.log_every=1`: step_time_s, data_wait_frac). The first steps are warm-up and
dropped. Separately, the loader alone (same dataset, same DataLoader settings, no model) is
timed, which gives the rate at which data could be delivered versus the rate training consumes.

    cpu    4 demos, 96x96, top camera (as in the main job)      full: 30 steps (+3 warm-up)
    paper  2 demos, 240x320, top + wrist cameras -> 224x224     full: 3 steps (+1 warm-up)
    tiny   (--quick only) 1 demo at 96 px                        3 steps (+1 warm-up)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import area_main, log, metric  # noqa: E402

# preset -> (demos, image (H, W), cameras, timed steps, warm-up steps, loader batches timed)
FULL = {"cpu": (4, (96, 96), ("top",), 30, 3, 20), "paper": (2, (240, 320), ("top", "wrist"), 3, 1, 4)}
QUICK = {"tiny": (1, (96, 96), ("top",), 3, 1, 3)}


def get_demos(work: Path, num_demos: int, hw, cameras) -> tuple[Path, str]:
    """Expert demos from the sim (shared with bench_sim through the work dir); synthetic if the
    sim cannot make them."""
    from bench_sim import demos_file

    try:
        return demos_file(work, num_demos, hw, cameras)[0], "mirror_arm_sim expert"
    except Exception as e:  # noqa: BLE001 - fall back to synthetic data, reported in the JSON
        log(f"training: sim demos failed ({type(e).__name__}: {e}); using synthetic demos")
        from act_training.data.synthetic import write_synthetic_demos

        path = work / f"synthetic_{hw[0]}x{hw[1]}_{'-'.join(cameras)}_{num_demos}.hdf5"
        if not path.exists():
            write_synthetic_demos(path, num_demos=num_demos, T=200, hw=tuple(hw), cameras=tuple(cameras))
        return path, "synthetic"


def time_loader(cfg, n_batches: int) -> dict:
    """The DataLoader alone, as the trainer builds it: ms per batch (first batch dropped)."""
    import torch
    from act_training.data.dataset import make_datasets
    from torch.utils.data import DataLoader

    train_ds, _ = make_datasets(cfg.data, cfg.model.chunk_size, seed=0)
    nw = cfg.data.num_workers
    loader = DataLoader(train_ds, batch_size=cfg.train.batch_size, shuffle=True, num_workers=nw,
                        drop_last=True, persistent_workers=nw > 0, prefetch_factor=4 if nw > 0 else None)
    times, it = [], iter(loader)
    t = time.perf_counter()
    for i in range(n_batches + 1):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        now = time.perf_counter()
        if i:
            times.append(now - t)
        t = now
    # image preparation on the training thread (uint8 -> float, resize to the model size)
    from act_training.runtime.pipeline import ResizeStep

    ims = batch["images"]
    prep = []
    for _ in range(3):
        t = time.perf_counter()
        ResizeStep(cfg.model.image_size)(ims)
        prep.append(time.perf_counter() - t)
    train_ds.close()
    return {"batch_s": times, "prepare_images_s": min(prep), "image_shape": list(ims.shape),
            "torch_threads": torch.get_num_threads()}


def run_preset(preset: str, spec, work: Path) -> tuple[list, dict]:
    import torch
    from act_training.config import make_config
    from act_training.model.act import ACT, count_parameters
    from act_training.training.train import complete_model_config, resolve_amp, train

    num_demos, hw, cams, steps, warm, loader_batches = spec
    data, source = get_demos(work, num_demos, hw, cams)
    out = work / f"train_{preset}"
    shutil.rmtree(out, ignore_errors=True)
    total = steps + warm
    cfg = make_config(preset, {
        "data.path": str(data), "data.val_fraction": 0.0, "train.out_dir": str(out), "train.steps": total,
        "train.batch_size": 32, "train.log_every": 1, "train.eval_every": 0, "train.ckpt_every": 0,
        "train.warmup_steps": 0,
    })
    log(f"training: {preset}: {total} steps on {data.name} ({source})")
    t0 = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - t0
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    rows = [r for r in rows if r.get("split") == "train" and r["step"] > warm]
    step_s = [r["step_time_s"] for r in rows]
    wait = [r["data_wait_frac"] for r in rows]
    bs = cfg.train.batch_size
    sps = len(step_s) * bs / sum(step_s)
    log(f"training: {preset}: loader alone, {loader_batches} batches")
    ld = time_loader(cfg, loader_batches)
    load_sps = bs / (sum(ld["batch_s"]) / len(ld["batch_s"]))
    from act_training.data.dataset import make_datasets
    from mirror_arm_sim.hdf5_layout import read_layout

    info = read_layout(data)
    cams_used = make_datasets(cfg.data, cfg.model.chunk_size)[0].cameras
    mc = complete_model_config(cfg.model, cams_used, info.state_dim, info.action_dim, info.image_shape)
    n_params = count_parameters(ACT(mc))
    amp = resolve_amp(cfg.train.amp, torch.device("cpu"))
    p = f"{preset} preset, batch {bs}"
    metrics = [
        metric(f"train step time, {p}", "ms", [1e3 * s for s in step_s]),
        metric(f"train samples/s, {p}", "samples/s", value=sps, better="higher"),
        metric(f"train data-wait share of step, {p}", "%", [100 * w for w in wait],
               note=f"loader num_workers={cfg.data.num_workers}"),
        metric(f"loader alone, {p}", "samples/s", value=load_sps, better="higher",
               note=f"{load_sps / sps:.1f}x what training consumes"),
    ]
    details = {
        "preset": preset, "data": str(data), "data_source": source, "num_demos": num_demos,
        "file_image_hw": list(hw), "cameras": list(cams_used), "model_image_hw": list(mc.image_size),
        "params_m": round(n_params / 1e6, 2), "amp": str(amp), "num_workers": cfg.data.num_workers,
        "augment": cfg.data.augment, "steps_timed": len(step_s), "warmup_steps": warm,
        "wall_s_incl_setup_and_checkpoint": round(wall, 2),
        "step_time_s": step_s, "data_wait_frac": wait,
        "loader_batch_ms": [round(1e3 * x, 2) for x in ld["batch_s"]],
        "prepare_images_ms_per_batch": round(1e3 * ld["prepare_images_s"], 2),
        "batch_image_shape": ld["image_shape"], "torch_threads": ld["torch_threads"],
    }
    shutil.rmtree(out, ignore_errors=True)  # checkpoints with optimizer state: up to ~1 GB (paper)
    return metrics, details


def run(quick: bool, work: Path, domain_id: int) -> dict:
    metrics, details = [], {}
    for preset, spec in (QUICK if quick else FULL).items():
        try:
            m, d = run_preset(preset, spec, work)
        except Exception as e:  # noqa: BLE001 - keep the other preset's figures; run_all reports it
            log(f"training: {preset} failed: {type(e).__name__}: {e}")
            details[preset] = {"error": f"{type(e).__name__}: {e}"}
            continue
        metrics += m
        details[preset] = d
    if not metrics:
        raise RuntimeError(f"every preset failed: {details}")
    return {"metrics": metrics, "details": details}


if __name__ == "__main__":
    area_main(run)
