"""Train ACT on a demo HDF5 file. Resumable, and unchanged under torchrun (DDP).

    act_train --data demos.hdf5 --preset cpu --out runs/x [--steps N] [--resume]
              [--set model.hidden_dim=128 --set train.lr=1e-4 ...]
    torchrun --nproc_per_node=N -m act_training.training.train --data ... --out ...   # same flags

    from act_training.training.train import train
    policy_path = train(cfg)            # -> <out>/policy.pt (or last.pt when train.stop_at hits)

Writes into <out>:
    checkpoints/last.pt   every train.ckpt_every steps and at the end, atomically; holds the
                          optimizer, scheduler, step, RNG states and sampler position (--resume)
    policy.pt             the final checkpoint (weights + config + stats + names) for the runtime
    metrics.csv / .jsonl  step, split (train|val), loss, l1, kl, l1_prior (val, z = 0), lr, ...
    tb/                   TensorBoard scalars
    config.json           the resolved configuration
Only rank 0 writes. A non-finite loss or gradient stops the run (TrainingDiverged, naming the
step) without overwriting the last good checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from act_training.config import PRESETS, Config, ConfigError, ModelConfig, apply_overrides, get_preset
from act_training.data.dataset import ACTDataset, make_datasets
from act_training.data.normalize import NormStats
from act_training.model.act import ACT, act_loss, count_parameters
from act_training.runtime.deployment import Deployment
from act_training.runtime.pipeline import Pipeline
from act_training.training.amx_conv_guard import guard_amx_convs
from act_training.training.checkpoint import (
    CheckpointError,
    check_compatible,
    load_checkpoint,
    make_payload,
    save_checkpoint,
)
from act_training.training.host_memory import keep_freed_memory

CSV_COLUMNS = ["step", "split", "loss", "l1", "kl", "l1_prior", "lr", "grad_norm", "samples_per_s",
               "step_time_s", "data_wait_frac", "wall_time_s"]


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN/inf; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- helpers
class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start part-way through an epoch (for exact resume)."""

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=len(dataset) >= num_replicas)
        self.start = 0

    def __iter__(self):
        idx = list(super().__iter__())
        start, self.start = self.start, 0  # only the first epoch after a resume is partial
        return iter(idx[start:])

    def __len__(self):
        return self.num_samples


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.amp=mode` on `device`: bfloat16, or None for fp32 ('auto': bf16
    where CUDA or the CPU supports it)."""
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if _cpu_has_bf16() else None


def precision_name(mode: str, device: torch.device | None = None) -> str:
    """What `train.amp=mode` trains in on this machine: 'bf16' or 'fp32'."""
    return "bf16" if resolve_amp(mode, device or torch.device("cpu")) is not None else "fp32"


def make_optimizer(model: ACT, tc) -> torch.optim.AdamW:
    """AdamW with two groups (transformer at train.lr, backbone at train.lr_backbone).

    fused=True: one kernel over all parameters instead of a Python loop of ~10 ops per tensor
    (CPU and CUDA; 3-4 % of a cpu-preset step here, docs/performance.md). Deterministic, so
    resume stays bit-exact."""
    backbone_ids = {id(p) for p in model.backbone_parameters()}
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in backbone_ids], "lr": tc.lr},
        {"params": [p for p in model.parameters() if id(p) in backbone_ids], "lr": tc.lr_backbone},
    ]
    return torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay, fused=True)


def lr_lambda(cfg) -> callable:
    """LR multiplier per step for LambdaLR: linear warmup over warmup_steps, then constant or a
    cosine from 1 down to min_lr_ratio at `steps`."""
    total, warm, floor = cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        p = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))

    return f


def _rng_state() -> dict:
    st = np.random.get_state()  # noqa: NPY002 - the legacy global RNG is what we restore
    out = {
        "torch": torch.get_rng_state(),
        "numpy": [st[0], torch.from_numpy(st[1].astype(np.int64)), int(st[2]), int(st[3]), float(st[4])],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))  # noqa: NPY002
    p = st["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


class MetricsLog:
    """metrics.csv + metrics.jsonl (+ TensorBoard). On resume, rows after the resumed step are dropped."""

    def __init__(self, out: Path, start_step: int, enabled: bool):
        self.enabled = enabled
        self.csv_path, self.jsonl_path = out / "metrics.csv", out / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if start_step > 0:
            self._truncate(start_step)
        else:
            self.csv_path.unlink(missing_ok=True)
            self.jsonl_path.unlink(missing_ok=True)
        new = not self.csv_path.exists()
        self._csv_f = open(self.csv_path, "a", newline="")
        self._csv = csv.DictWriter(self._csv_f, CSV_COLUMNS, extrasaction="ignore")
        if new:
            self._csv.writeheader()
        self._jsonl = open(self.jsonl_path, "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"), purge_step=start_step or None)
        except ImportError:  # tensorboard is optional
            self.tb = None

    def _truncate(self, step: int) -> None:
        if self.csv_path.exists():
            with open(self.csv_path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
            with open(self.csv_path, "w", newline="") as f:
                w = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
        if self.jsonl_path.exists():
            lines = [ln for ln in self.jsonl_path.read_text().splitlines()
                     if ln.strip() and json.loads(ln)["step"] <= step]
            self.jsonl_path.write_text("".join(ln + "\n" for ln in lines))

    def log(self, row: dict) -> None:
        """Append one row to the CSV and JSONL files and its numbers to TensorBoard (no-op when disabled)."""
        if not self.enabled:
            return
        self._csv.writerow(row)
        self._csv_f.flush()
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "split") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{row['split']}/{k}", v, row["step"])

    def close(self) -> None:
        """Close the files and the TensorBoard writer."""
        if not self.enabled:
            return
        self._csv_f.close()
        self._jsonl.close()
        if self.tb is not None:
            self.tb.close()


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _device(cfg_device: str, local_rank: int) -> torch.device:
    if cfg_device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    d = torch.device(cfg_device)
    if d.type == "cuda" and d.index is None:
        d = torch.device(f"cuda:{local_rank}")
    return d


def complete_model_config(mc: ModelConfig, cameras, state_dim: int, action_dim: int, image_hw) -> ModelConfig:
    """Fill the data-dependent fields; refuse a config that contradicts the data."""
    if mc.camera_names and tuple(mc.camera_names) != tuple(cameras):
        raise ConfigError(f"model.camera_names {list(mc.camera_names)} != the data's cameras {list(cameras)}")
    dims = (("state_dim", mc.state_dim, state_dim), ("action_dim", mc.action_dim, action_dim))
    for name, have, want in dims:
        if have and have != want:
            raise ConfigError(f"model.{name} {have} != the data's {want}")
    return replace(mc, camera_names=tuple(cameras), state_dim=state_dim, action_dim=action_dim,
                   image_size=tuple(mc.image_size) if mc.image_size else tuple(image_hw))


class WeightEMA:
    """Exponential moving average of a model's parameters (buffers are copied, e.g. BatchNorm
    statistics). `model` is the averaged copy used for validation and the final policy."""

    def __init__(self, model: torch.nn.Module, decay: float):
        import copy

        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """One EMA step after optimizer step `step` (0-based): decay min(decay, (1 + step) / (10 + step));
        buffers are copied."""
        d = min(self.decay, (1 + step) / (10 + step))
        for pe, p in zip(self.model.parameters(), model.parameters()):
            pe.lerp_(p.detach(), 1.0 - d)
        for be, b in zip(self.model.buffers(), model.buffers()):
            be.copy_(b)

    def state_dict(self) -> dict:
        """The averaged weights, detached CPU copies (for last.pt)."""
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, sd: dict) -> None:
        """Restore the averaged weights from `state_dict()`."""
        self.model.load_state_dict(sd)


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def validation_loss(model: ACT, dataset, cfg: Config, device, amp_dtype) -> dict:
    """Validation on a fixed, evenly spaced subset of held-out samples.

    loss / l1 / kl: the training objective (posterior z); l1_prior: L1 with z = 0, as at inference.
    """
    n = min(len(dataset), cfg.train.eval_samples)
    idx = np.linspace(0, len(dataset) - 1, n).round().astype(int)
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        # the posterior's noise must not shift the training RNG stream (exact resume)
        torch.manual_seed(0)
        return _evaluate(model, dataset, idx, cfg, device, amp_dtype, was_training)


def _evaluate(model, dataset, idx, cfg, device, amp_dtype, was_training) -> dict:
    n = len(idx)
    sums = {"loss": 0.0, "l1": 0.0, "kl": 0.0, "l1_prior": 0.0}
    bs = cfg.train.batch_size
    for s in range(0, n, bs):
        batch = torch.utils.data.default_collate([dataset[int(i)] for i in idx[s:s + bs]])
        b = _to_device(batch, device, model.cfg)
        with _autocast(device, amp_dtype):
            a, mu, lv = model(b["images"], b["qpos"], b["actions"], b["action_is_pad"])
            a0, _, _ = model(b["images"], b["qpos"])
        ls = act_loss(a, b["actions"], b["action_is_pad"], mu, lv, model.cfg.kl_weight)
        l0 = act_loss(a0, b["actions"], b["action_is_pad"], None, None, 0.0)
        k = len(b["qpos"])
        for key in ("loss", "l1", "kl"):
            sums[key] += float(ls[key]) * k
        sums["l1_prior"] += float(l0["l1"]) * k
    model.train(was_training)
    return {k: v / n for k, v in sums.items()}


def _autocast(device: torch.device, dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _to_device(batch: dict, device, model_cfg: ModelConfig) -> dict:
    """A collated batch on `device`, images through the pipeline's crop + resize (the runtime's)."""
    nb = device.type == "cuda"
    images = Pipeline.from_model(model_cfg).network_images(batch["images"].to(device, non_blocking=nb))
    return {
        "images": images,
        "qpos": batch["qpos"].to(device, non_blocking=nb),
        "actions": batch["actions"].to(device, non_blocking=nb),
        "action_is_pad": batch["action_is_pad"].to(device, non_blocking=nb),
    }


# ----------------------------------------------------------------------------- training
def train(cfg: Config, resume: bool = False) -> Path:
    """Train; return the final checkpoint path (<out>/policy.pt, or last.pt if stopped early)."""
    world, rank, local_rank = _dist_info()
    distributed = world > 1
    device = _device(cfg.train.device, local_rank)
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        return _train(cfg, resume, world, rank, device)
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class _Run:
    """One process's fixed view of a run: the resolved config (model fields filled from the data or
    the checkpoint), its data splits and normalisation, and where rank 0 writes."""

    cfg: Config
    world: int
    rank: int
    device: torch.device
    train_ds: ACTDataset
    val_ds: ACTDataset | None
    stats: NormStats
    out: Path

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def last_path(self) -> Path:
        return self.out / "checkpoints" / "last.pt"


@dataclass
class _TrainState:
    """What changes while training; last.pt holds all of it so that a resume is bit-exact.
    `ddp_model` is what the forward pass runs (the DDP wrapper under torchrun, else `model`)."""

    model: ACT
    ddp_model: torch.nn.Module
    opt: torch.optim.AdamW
    sched: torch.optim.lr_scheduler.LambdaLR
    ema: WeightEMA | None
    sampler: ResumableSampler
    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    fp32_convs: list[str] = field(default_factory=list)  # trunk convs kept out of AMX bf16


def _checkpoint_to_resume(last_path: Path, resume: bool, train_ds: ACTDataset, is_main: bool) -> dict | None:
    """last.pt when resuming (checked against the data), else None; refuses to start over an
    existing run without --resume."""
    info = train_ds.info
    ckpt = None
    if resume:
        if last_path.is_file():
            ckpt = load_checkpoint(last_path)
            check_compatible(ckpt, train_ds.cameras, info.state_dim, info.action_dim, f"data {info.path}")
            if "train_state" not in ckpt:
                raise CheckpointError(f"{last_path}: has no training state to resume from")
        elif is_main:
            print(f"[act_train] --resume: no {last_path} yet, starting from step 0", file=sys.stderr)
    elif last_path.exists():  # every rank raises, so none is left waiting in a collective
        raise CheckpointError(f"{last_path} exists: pass --resume to continue that run, or use another --out")
    return ckpt


def _model_and_stats(cfg: Config, train_ds: ACTDataset, val_ds: ACTDataset | None, ckpt: dict | None,
                     last_path: Path) -> tuple[ModelConfig, NormStats, dict | None]:
    """The model config and normalisation statistics to train with, and the train.init_from
    checkpoint (fine-tuning) or None. A resumed run keeps its checkpoint's config and statistics
    (and sets them on the datasets)."""
    tc, info = cfg.train, train_ds.info
    if ckpt is not None:
        mc = ckpt["model_config_obj"]
        stats: NormStats = ckpt["norm_stats_obj"]
        if mc.chunk_size != cfg.model.chunk_size:
            raise CheckpointError(
                f"{last_path}: chunk_size {mc.chunk_size} != configured {cfg.model.chunk_size}")
        train_ds.stats = stats
        if val_ds is not None:
            val_ds.stats = stats
    else:
        mc = complete_model_config(cfg.model, train_ds.cameras, info.state_dim, info.action_dim,
                                   info.image_shape)
        stats = train_ds.stats
    init = None
    if ckpt is None and tc.init_from:
        # fine-tuning: the network (architecture and weights) is the init checkpoint's; the
        # statistics stay this data's (computed above), so inputs are normalised as they will be
        # at deployment on the new arm
        init = load_checkpoint(tc.init_from)
        check_compatible(init, train_ds.cameras, info.state_dim, info.action_dim, f"data {info.path}")
        mc = init["model_config_obj"]
        if mc.chunk_size != cfg.model.chunk_size:
            raise CheckpointError(f"{tc.init_from}: chunk_size {mc.chunk_size} != configured "
                                  f"{cfg.model.chunk_size} (the data's chunks are cut at that size)")
    return mc, stats, init


def _seed_rngs(seed: int) -> None:
    """Seed torch, NumPy's legacy global RNG and `random` (a resume then overwrites all three)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    random.seed(seed)


def _build_state(run: _Run) -> _TrainState:
    """A fresh model (initialised from the torch RNG), optimizer, EMA, LR schedule and sampler."""
    tc = run.cfg.train
    model = ACT(run.cfg.model).to(run.device)
    # before the EMA copy, so that validation runs the same kernels (training/amx_conv_guard.py)
    fp32_convs = guard_amx_convs(model, resolve_amp(tc.amp, run.device), run.device)
    opt = make_optimizer(model, tc)
    ema = WeightEMA(model, tc.ema_decay) if tc.ema_decay > 0 else None
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(tc))
    sampler = ResumableSampler(run.train_ds, num_replicas=run.world, rank=run.rank, seed=tc.seed)
    return _TrainState(model=model, ddp_model=model, opt=opt, sched=sched, ema=ema, sampler=sampler,
                       fp32_convs=fp32_convs)


def _restore(state: _TrainState, run: _Run, init: dict | None, ckpt: dict | None) -> None:
    """Load the init_from weights, or everything from last.pt (weights, optimizer, scheduler,
    EMA, position, RNG, sampler offset); then point the sampler at the current epoch."""
    tc = run.cfg.train
    if init is not None:
        state.model.load_state_dict(init["model_state"])
        if run.is_main:
            print(f"[act_train] weights from {tc.init_from} (step {init.get('step')})", file=sys.stderr)
    if ckpt is not None:
        state.model.load_state_dict(ckpt["model_state"])
        ts = ckpt["train_state"]
        state.opt.load_state_dict(ts["optimizer"])
        state.sched.load_state_dict(ts["scheduler"])
        if state.ema is not None:
            state.ema.load_state_dict(ts["ema"])
        state.step, state.epoch = int(ckpt["step"]), int(ts["epoch"])
        state.batches_in_epoch = int(ts["batches_in_epoch"])
        # the saved RNG state is rank 0's; any other rank, or another world size, reseeds instead
        if ts.get("world_size", 1) == run.world and run.is_main:
            _set_rng_state(ts["rng"])
        else:
            torch.manual_seed(tc.seed + run.rank + state.step)
        state.sampler.start = state.batches_in_epoch * tc.batch_size
    state.sampler.set_epoch(state.epoch)


def _make_loader(run: _Run, sampler: ResumableSampler, step: int) -> DataLoader:
    """The training DataLoader over `sampler` (which already knows where a resume starts)."""
    tc, workers = run.cfg.train, run.cfg.data.num_workers
    return DataLoader(
        run.train_ds, batch_size=tc.batch_size, sampler=sampler, num_workers=workers,
        drop_last=len(run.train_ds) // run.world >= tc.batch_size, pin_memory=run.device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # worker seeds come from this generator, not the global RNG (which resume restores exactly)
        generator=torch.Generator().manual_seed(tc.seed * 1000 + run.rank + step),
    )


def _write_config_and_announce(run: _Run, state: _TrainState, amp_dtype, host_memory: str) -> None:
    """Rank 0: create <out>, write config.json and print the one-line run summary."""
    mc = run.cfg.model
    run.out.mkdir(parents=True, exist_ok=True)
    (run.out / "config.json").write_text(json.dumps(run.cfg.to_dict(), indent=2) + "\n")
    train_ds, val_ds = run.train_ds, run.val_ds
    print(f"[act_train] {count_parameters(state.model) / 1e6:.1f}M params | train {len(train_ds)} samples "
          f"({len(train_ds.episodes)} episodes), val {len(val_ds) if val_ds else 0} | cameras "
          f"{list(mc.camera_names)} {mc.image_size} | world {run.world} | device {run.device} | "
          f"amp {amp_dtype} | threads {torch.get_num_threads()} | keep freed memory {host_memory} | "
          f"start step {state.step}", file=sys.stderr)
    if state.fp32_convs:
        print(f"[act_train] bf16 on AMX: {len(state.fp32_convs)} trunk convolutions with a 1 px wide "
              f"output run in fp32 (oneDNN's AMX kernel gets them wrong; training/amx_conv_guard.py): "
              f"{', '.join(state.fp32_convs)}", file=sys.stderr)


def _save(path: Path, run: _Run, state: _TrainState, deployment: Deployment, with_state: bool) -> None:
    """Write a checkpoint: with the training state (last.pt) or without it (policy.pt)."""
    ts = None
    if with_state:
        ts = {"optimizer": state.opt.state_dict(), "scheduler": state.sched.state_dict(),
              "epoch": state.epoch, "batches_in_epoch": state.batches_in_epoch, "rng": _rng_state(),
              "world_size": run.world}
        if state.ema is not None:
            ts["ema"] = state.ema.state_dict()
    # last.pt holds the live weights (training continues from them), policy.pt the average
    weights = state.ema.model if (state.ema is not None and not with_state) else state.model
    info = run.train_ds.info
    save_checkpoint(path, make_payload(weights, run.cfg.to_dict(), run.stats, info.joint_names,
                                       info.action_names, info.layout_version, state.step, ts, deployment))


class _TrainWindow:
    """Sums of the per-step train metrics since the last train row of metrics.csv."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums = dict.fromkeys(("loss", "l1", "kl", "grad_norm", "data", "total"), 0.0)
        self.n = 0

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.sums[k] += v
        self.n += 1

    def row(self, step: int, lr: float, samples_per_step: int, wall_time_s: float) -> dict:
        """The averaged train row (seconds; samples_per_s counts every rank's samples)."""
        s, n = self.sums, self.n
        tot = s["total"]
        return {"step": step, "split": "train", "loss": s["loss"] / n, "l1": s["l1"] / n,
                "kl": s["kl"] / n, "lr": lr, "grad_norm": s["grad_norm"] / n,
                "step_time_s": tot / n, "samples_per_s": n * samples_per_step / tot,
                "data_wait_frac": s["data"] / tot, "wall_time_s": wall_time_s}


class _StepLoop:
    """The optimisation loop from state.step to `stop`, with its logging, validation and last.pt.

    Construction opens the progress bar and the first loader iterator; `close` closes the bar."""

    def __init__(self, run: _Run, state: _TrainState, loader: DataLoader, amp_dtype, metrics: MetricsLog,
                 deployment: Deployment):
        tc = run.cfg.train
        self.run, self.state, self.loader, self.amp_dtype = run, state, loader, amp_dtype
        self.metrics, self.deployment = metrics, deployment
        self.stop = min(tc.steps, tc.stop_at) if tc.stop_at else tc.steps
        self.pbar = None
        if run.is_main:
            from tqdm import tqdm

            self.pbar = tqdm(total=tc.steps, initial=state.step, desc="act_train", dynamic_ncols=True,
                             file=sys.stderr)
        self.it = iter(loader)
        self.window = _TrainWindow()
        self.t_start = time.perf_counter()
        state.model.train()

    def run_steps(self) -> None:
        """Train until `stop`. Raises TrainingDiverged on a non-finite loss or gradient."""
        tc, st = self.run.cfg.train, self.state
        while st.step < self.stop:
            t0 = time.perf_counter()
            batch = self._next_batch()
            t_data = time.perf_counter() - t0
            lossv, l1v, klv, gnv = self._optimise(batch)
            dt = time.perf_counter() - t0
            self.window.add(loss=lossv, l1=l1v, kl=klv, grad_norm=gnv, data=t_data, total=dt)
            if self.pbar is not None:
                self.pbar.update(1)
            if st.step % tc.log_every == 0 or st.step == self.stop:
                self._log_train()
            last_step = st.step == self.stop
            eval_now = (tc.eval_every and st.step % tc.eval_every == 0) or last_step
            if self.run.is_main and self.run.val_ds is not None and eval_now:
                self._validate()
            if (tc.ckpt_every and st.step % tc.ckpt_every == 0) or last_step:
                if self.run.is_main:
                    _save(self.run.last_path, self.run, st, self.deployment, with_state=True)
                if self.run.world > 1:
                    dist.barrier()

    def close(self) -> None:
        if self.pbar is not None:
            self.pbar.close()

    def _next_batch(self) -> dict:
        """The next batch; at the end of the data, the first batch of the next (reshuffled) epoch."""
        st = self.state
        try:
            batch = next(self.it)
        except StopIteration:
            st.epoch += 1
            st.batches_in_epoch = 0
            st.sampler.set_epoch(st.epoch)
            self.it = iter(self.loader)
            batch = next(self.it)
        st.batches_in_epoch += 1
        return batch

    def _optimise(self, batch: dict) -> tuple[float, float, float, float]:
        """One update and step += 1; returns loss, l1, kl and the gradient norm (before clipping),
        averaged over ranks. A non-finite value on any rank raises before the update."""
        run, st, tc = self.run, self.state, self.run.cfg.train
        mc, device, world = run.cfg.model, run.device, run.world
        b = _to_device(batch, device, mc)
        with _autocast(device, self.amp_dtype):
            a, mu, lv = st.ddp_model(b["images"], b["qpos"], b["actions"], b["action_is_pad"])
        ls = act_loss(a, b["actions"], b["action_is_pad"], mu, lv, mc.kl_weight)
        st.opt.zero_grad(set_to_none=True)
        ls["loss"].backward()
        clip = tc.grad_clip if tc.grad_clip > 0 else float("inf")
        gn = torch.nn.utils.clip_grad_norm_(st.model.parameters(), clip)
        stats_t = torch.stack([ls["loss"], ls["l1"], ls["kl"], gn]).detach().float()
        bad = (~torch.isfinite(stats_t)).any().float().reshape(1)
        if world > 1:
            # one collective for the metrics and the divergence flag, so every rank stops together
            vec = torch.cat([stats_t, bad]).to(device)
            dist.all_reduce(vec)
            stats_t, bad = vec[:4].cpu() / world, vec[4:].cpu()
        if bad.item() > 0:
            last_path = run.last_path
            good = f"; last good checkpoint: {last_path}" if last_path.exists() else ""
            raise TrainingDiverged(
                f"non-finite loss/gradient at step {st.step + 1} (loss={stats_t[0].item()}, "
                f"grad_norm={stats_t[3].item()}){good}")
        st.opt.step()
        st.sched.step()
        if st.ema is not None:
            st.ema.update(st.model, st.step)
        st.step += 1
        lossv, l1v, klv, gnv = (float(x) for x in stats_t)
        return lossv, l1v, klv, gnv

    def _log_train(self) -> None:
        """Write the averaged train row and start a new window."""
        tc = self.run.cfg.train
        row = self.window.row(self.state.step, self.state.sched.get_last_lr()[0],
                              tc.batch_size * self.run.world, time.perf_counter() - self.t_start)
        self.metrics.log(row)
        if self.pbar is not None:
            self.pbar.set_postfix(loss=f"{row['loss']:.3f}", l1=f"{row['l1']:.3f}", kl=f"{row['kl']:.2f}",
                                  sps=f"{row['samples_per_s']:.0f}")
        self.window.reset()

    def _validate(self) -> None:
        """Rank 0: validation loss of the deployed weights (the EMA when on), logged and printed."""
        st, run, step = self.state, self.run, self.state.step
        v = validation_loss(st.ema.model if st.ema is not None else st.model, run.val_ds, run.cfg,
                            run.device, self.amp_dtype)
        self.metrics.log({"step": step, "split": "val", **v,
                          "wall_time_s": time.perf_counter() - self.t_start})
        if self.pbar is not None:
            self.pbar.write(f"[act_train] step {step}: val loss {v['loss']:.4f} l1 {v['l1']:.4f} "
                            f"kl {v['kl']:.3f} l1(z=0) {v['l1_prior']:.4f}", file=sys.stderr)


def _finish(run: _Run, state: _TrainState, deployment: Deployment) -> Path:
    """policy.pt when all train.steps ran (returned), else last.pt (a stop_at run)."""
    final = run.out / "policy.pt"
    if state.step >= run.cfg.train.steps:
        if run.is_main:
            _save(final, run, state, deployment, with_state=False)
        if run.world > 1:
            dist.barrier()
        return final
    return run.last_path


def _train(cfg: Config, resume: bool, world: int, rank: int, device: torch.device) -> Path:
    """One process's run, stage by stage; the order of the stages fixes the RNG stream."""
    tc = cfg.train
    torch.set_num_threads(tc.threads or max(1, (os.cpu_count() or 1) // world))
    host_memory = keep_freed_memory() if tc.keep_freed_memory else "off"
    out = Path(tc.out_dir)
    last_path = out / "checkpoints" / "last.pt"

    # data (validated on open) and, when resuming, the checkpoint: checked before any training
    train_ds, val_ds = make_datasets(cfg.data, cfg.model.chunk_size, seed=tc.seed + rank)
    ckpt = _checkpoint_to_resume(last_path, resume, train_ds, is_main=rank == 0)
    mc, stats, init = _model_and_stats(cfg, train_ds, val_ds, ckpt, last_path)
    run = _Run(cfg=replace(cfg, model=mc), world=world, rank=rank, device=device, train_ds=train_ds,
               val_ds=val_ds, stats=stats, out=out)

    _seed_rngs(tc.seed + rank)
    state = _build_state(run)
    _restore(state, run, init, ckpt)
    del init, ckpt  # free the checkpoints' tensors (weights, optimizer moments) before training
    if world > 1:
        state.ddp_model = torch.nn.parallel.DistributedDataParallel(
            state.model, device_ids=[device.index] if device.type == "cuda" else None)
    amp_dtype = resolve_amp(tc.amp, device)
    loader = _make_loader(run, state.sampler, state.step)

    if run.is_main:
        _write_config_and_announce(run, state, amp_dtype, host_memory)
    metrics = MetricsLog(out, state.step, run.is_main)
    # run it by default on frames like the training data's (executor defaults: Deployment's)
    info = train_ds.info
    deployment = Deployment(frame_size=tuple(info.image_shape), camera_names=tuple(mc.camera_names),
                            joint_names=tuple(info.joint_names))

    loop = _StepLoop(run, state, loader, amp_dtype, metrics, deployment)
    try:
        loop.run_steps()
    finally:
        loop.close()
        metrics.close()
        train_ds.close()
    return _finish(run, state, deployment)


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The `act_train` argument parser."""
    p = argparse.ArgumentParser(
        prog="act_train", description="Train an ACT policy on a demo HDF5 file (see docs/training.md).")
    p.add_argument("--data", help="demo HDF5 file (data.path)")
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="named configuration")
    p.add_argument("--out", help="output directory (train.out_dir)")
    p.add_argument("--steps", type=int, help="total optimisation steps (train.steps)")
    p.add_argument("--batch-size", type=int, help="per-process batch size (train.batch_size)")
    p.add_argument("--lr", type=float, help="train.lr")
    p.add_argument("--num-workers", type=int, help="DataLoader workers (data.num_workers)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (train.device)")
    p.add_argument("--seed", type=int, help="train.seed")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last.pt")
    p.add_argument("--init-from", metavar="CKPT",
                   help="start from this checkpoint's weights, e.g. few-shot fine-tuning (train.init_from)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. --set model.hidden_dim=128 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def config_from_args(args) -> Config:
    """The preset with the named flags, then every --set override, applied (ConfigError if invalid)."""
    cfg = get_preset(args.preset)
    flags = {"data.path": args.data, "train.out_dir": args.out, "train.steps": args.steps,
             "train.batch_size": args.batch_size, "train.lr": args.lr, "data.num_workers": args.num_workers,
             "train.device": args.device, "train.seed": args.seed, "train.init_from": args.init_from}
    cfg = apply_overrides(cfg, {k: v for k, v in flags.items() if v is not None})
    return apply_overrides(cfg, args.overrides) if args.overrides else cfg


def main(argv: list[str] | None = None) -> int:
    """`act_train` CLI: train and print the final checkpoint's path (rank 0); returns the exit code
    (2: invalid flags or config, or no --data; 1: training failed)."""
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as e:
        print(f"act_train: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    if not cfg.data.path:
        print("act_train: --data is required", file=sys.stderr)
        return 2
    try:
        path = train(cfg, resume=args.resume)
    except (ConfigError, CheckpointError, TrainingDiverged, FileNotFoundError, ValueError) as e:
        print(f"act_train: error: {e}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:
        print(path)
    return 0


__all__ = ["train", "main", "validation_loss", "TrainingDiverged", "ResumableSampler"]

if __name__ == "__main__":
    sys.exit(main())
