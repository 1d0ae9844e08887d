"""The transfer experiment (the project's main job): demos on arm 0 -> ACT -> arm 0 and mirrored arm 1.

    act_transfer --preset cpu --out runs/transfer-cpu            # README default (`make transfer`)
    act_transfer --preset cpu --quick --out /tmp/smoke           # smoke run (tests)
    act_transfer --preset paper --out runs/paper                 # the seed's sizes, for a GPU
    act_transfer --preset cpu --data demos.hdf5 --checkpoint policy.pt --out runs/x   # skip stages

Stages, each resumable (a finished stage leaves `<out>/stages/<name>.json`, written atomically
after its outputs, and is skipped next time unless its inputs changed):

    demos    `mirror_arm_sim.generate_demos` on arm 0            -> <out>/data/demos_arm0.hdf5
    train    `act_training.training.train.train(cfg)`      -> <out>/train/ (a killed run
             resumes from its last checkpoint)
    deploy   the trained checkpoint + the evaluation's deployment defaults -> <out>/policy.pt
    eval:*   `act_training.evaluation.rollouts.evaluate`   -> <out>/eval/<label>.json, one per
             (arm, executor, mirror)
    report   `act_training.evaluation.report.write_report` -> <out>/report/

See docs/transfer.md.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from act_training.evaluation.results import EvalResult
from act_training.evaluation.rollouts import EvalConfig, evaluate


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemosSpec:
    """Expert demonstrations on arm 0 (mirror_arm_sim.generate_demos).

    Args:
        num_demos: successful episodes to record.
        seed: seed of the first episode.
        image_size: rendered camera frames [H, W] in px.
        cameras: cell cameras to record.
        action_noise: std (rad) of the smooth noise on the executed arm commands while the
            clean commands are recorded (DART; `mirror_arm_sim.expert.rollout`); 0 = off.
    """

    num_demos: int
    seed: int = 0
    image_size: list[int] = field(default_factory=lambda: [96, 96])
    cameras: list[str] = field(default_factory=lambda: ["top"])
    action_noise: float = 0.0

    def __post_init__(self) -> None:
        _require(self.num_demos >= 1, f"demos.num_demos: expected >= 1, got {self.num_demos}")
        _require(len(self.image_size) == 2 and min(self.image_size) >= 16,
                 f"demos.image_size: expected [H, W] >= 16, got {self.image_size}")
        _require(len(self.cameras) >= 1, "demos.cameras: at least one camera")
        _require(0.0 <= self.action_noise < 0.2,
                 f"demos.action_noise: expected 0 <= std < 0.2 rad, got {self.action_noise}")


@dataclass(frozen=True)
class TrainSpec:
    """Training: an act_train preset plus `--set`-style field overrides (validated by the trainer)."""

    preset: str
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EvalSpec:
    """The evaluation matrix and the executor settings (also the deployed checkpoint's defaults).

    Args:
        trials: trials per (arm, executor) row, mirrored arm 1 and arm 0.
        control_trials: trials per no-mirror control row.
        seed: env seed of trial 0 (trial i: seed + i).
        n_envs: environments in lockstep (batched inference).
        n_videos: videos per row.
        modes: executors evaluated on both arms.
        control_modes: executors of the no-mirror control on arm 1.
        n_execute: chunked: actions per query (None = the whole chunk).
        k: ensemble weight exp(-k*i).
        query_period: ensemble: query every N steps.
        max_steps: trial step limit (None = the env's).
        workers: rows evaluated at once, each in its own process (1 = in this process).
    """

    trials: int
    control_trials: int
    seed: int
    n_envs: int
    n_videos: int
    modes: list[str]
    control_modes: list[str]
    n_execute: int | None
    k: float
    query_period: int
    max_steps: int | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        for name in ("trials", "control_trials", "n_envs", "query_period", "workers"):
            _require(getattr(self, name) >= 1, f"eval.{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("modes", "control_modes"):
            bad = [m for m in getattr(self, name) if m not in ("chunked", "ensemble")]
            _require(not bad and getattr(self, name), f"eval.{name}: expected chunked/ensemble, got "
                     f"{getattr(self, name)}")


@dataclass(frozen=True)
class TransferPreset:
    """One transfer experiment: demos, training, evaluation."""

    demos: DemosSpec
    train: TrainSpec
    eval: EvalSpec

    def to_dict(self) -> dict:
        """Plain nested dicts (what the stages hash and config.yaml records)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TransferPreset:
        """Validate a resolved configuration's demos/train/eval sections."""
        try:
            return cls(DemosSpec(**d["demos"]), TrainSpec(**d["train"]), EvalSpec(**d["eval"]))
        except TypeError as e:
            raise ValueError(f"transfer preset: {e}") from None


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


TRANSFER_PRESETS: dict[str, TransferPreset] = {
    # cpu: the top camera rendered at 128 px, and the network sees only its left half (arm 0's
    # side; for arm 1 the left half of the flipped frame) at full resolution: 128x64 input, 8x4
    # image tokens. Cheaper than the whole frame at 96 px and finer where the cube and target
    # are. See docs/transfer.md for what was measured against it.
    "cpu": TransferPreset(
        # DART demos (the expert's commands executed with 0.03 rad of smooth noise, the clean
        # plan recorded) and no dropout: the two changes that took both arms from about 88 % to
        # 98-99 % (docs/transfer.md, "Recipe study").
        demos=DemosSpec(num_demos=200, seed=0, image_size=[128, 128], cameras=["top"],
                        action_noise=0.03),
        train=TrainSpec(preset="cpu", overrides={
            "model.image_size": [128, 64], "model.crop": [0.0, 0.0, 1.0, 0.5],
            "model.backbone_layers": 3, "model.dropout": 0.0, "data.shift_pixels": 5,
            "train.batch_size": 16, "train.steps": 1500, "train.ema_decay": 0.995}),
        # 200 trials per row: a 95 % Wilson interval of about +-3 points at 95 %, enough to tell
        # 95 % from 90 %. Rows run two at a time in worker processes (eval.workers).
        eval=EvalSpec(
            trials=200, control_trials=200, seed=100_000, n_envs=8, n_videos=2, workers=2,
            modes=["chunked", "ensemble"], control_modes=["chunked"],
            n_execute=None, k=0.01, query_period=10),
    ),
    "paper": TransferPreset(
        demos=DemosSpec(num_demos=50, seed=0, image_size=[96, 96], cameras=["top"]),
        train=TrainSpec(preset="paper", overrides={}),
        eval=EvalSpec(
            trials=50, control_trials=50, seed=100_000, n_envs=8, n_videos=3,
            modes=["chunked", "ensemble"], control_modes=["chunked", "ensemble"],
            n_execute=None, k=0.01, query_period=1),
    ),
}

# --quick: a smoke run of every stage in a couple of minutes (tests).
QUICK = {
    "demos": {"num_demos": 2, "image_size": [64, 64]},
    # no weight average: over 20 steps it is mostly the initial weights
    "train": {"preset": "tiny", "overrides": {"train.steps": 20, "model.image_size": [32, 16],
                                              "train.ema_decay": 0.0}},
    "eval": {"trials": 2, "control_trials": 2, "n_envs": 2, "n_videos": 1, "max_steps": 40,
             "query_period": 2, "workers": 1},
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_config(args: argparse.Namespace) -> dict:
    cfg = TRANSFER_PRESETS[args.preset].to_dict()
    cfg["preset"] = args.preset
    cfg["quick"] = bool(args.quick)
    if args.quick:
        cfg = _merge(cfg, QUICK)
    if args.num_demos is not None:
        cfg["demos"]["num_demos"] = int(args.num_demos)
    if getattr(args, "action_noise", None) is not None:
        cfg["demos"]["action_noise"] = float(args.action_noise)
    if args.trials is not None:
        cfg["eval"]["trials"] = int(args.trials)
        cfg["eval"]["control_trials"] = int(args.trials)
    if args.train_steps is not None:
        cfg["train"].setdefault("overrides", {})["train.steps"] = int(args.train_steps)
    if args.modes:
        cfg["eval"]["modes"] = list(args.modes)
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"--set expects section.field=value, got {item!r}")
        # kept as written: act_training.config parses it once, by the field's type (so that
        # `train.amp=off` stays the string "off" instead of YAML's false)
        cfg["train"].setdefault("overrides", {})[key.strip()] = value.strip()
    TransferPreset.from_dict(cfg)  # every value validated, field named in the error
    cfg["data"] = str(Path(args.data).resolve()) if args.data else None
    cfg["checkpoint"] = str(Path(args.checkpoint).resolve()) if args.checkpoint else None
    return cfg


# --------------------------------------------------------------------------------------------
# Stage bookkeeping
# --------------------------------------------------------------------------------------------
def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _atomic_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


class Stages:
    """Marker files `<out>/stages/<name>.json`: {"key": inputs hash, "outputs": {...}, ...}."""

    def __init__(self, out: Path) -> None:
        self.dir = out / "stages"

    def _path(self, name: str) -> Path:
        return self.dir / f"{name.replace(':', '_')}.json"

    def get(self, name: str, key: str) -> dict | None:
        p = self._path(name)
        if not p.is_file():
            return None
        try:
            marker = json.loads(p.read_text())
        except json.JSONDecodeError:
            return None
        if marker.get("key") != key:
            print(f"[transfer] stage {name}: inputs changed since the last run, redoing it", file=sys.stderr)
            return None
        return marker

    def mark(self, name: str, key: str, outputs: dict, seconds: float) -> dict:
        marker = {"stage": name, "key": key, "outputs": outputs, "seconds": seconds,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _atomic_json(self._path(name), marker)
        return marker


def _log(msg: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(f"[transfer {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------
def stage_demos(cfg: dict, out: Path, stages: Stages) -> tuple[str, str, float]:
    """-> (hdf5 path, stage key, seconds)."""
    if cfg["data"]:
        key = _key({"data": cfg["data"], "mtime": os.path.getmtime(cfg["data"])})
        return cfg["data"], key, 0.0
    key = _key(cfg["demos"])
    marker = stages.get("demos", key)
    if marker and Path(marker["outputs"]["hdf5"]).is_file():
        _log(f"demos: done ({marker['outputs']['hdf5']})")
        return marker["outputs"]["hdf5"], key, marker["seconds"]
    from mirror_arm_sim.generate_demos import generate_demos

    path = out / "data" / "demos_arm0.hdf5"
    path.parent.mkdir(parents=True, exist_ok=True)
    d = cfg["demos"]
    _log(f"demos: generating {d['num_demos']} expert demos on arm 0 -> {path}")
    t0 = time.perf_counter()
    stats = generate_demos(
        str(path), num_demos=d["num_demos"], arm=0, seed=d["seed"],
        image_size=tuple(d["image_size"]), cameras=tuple(d["cameras"]),
        action_noise=float(d.get("action_noise", 0.0)),
    )
    dt = time.perf_counter() - t0
    _log(f"demos: {stats}")
    stages.mark("demos", key, {"hdf5": str(path), "attempts": getattr(stats, "attempts", None),
                               "failed_seeds": getattr(stats, "failed_seeds", None)}, dt)
    return str(path), key, dt


def build_train_config(cfg: dict, data_path: str, train_dir: Path):
    """The trainer's config (act_training.config.make_config) for this experiment."""
    from act_training.config import make_config

    t = cfg["train"]
    overrides = dict(t.get("overrides") or {})
    overrides.update({"data.path": data_path, "train.out_dir": str(train_dir)})
    return make_config(t["preset"], overrides)


def stage_train(
    cfg: dict, out: Path, stages: Stages, data_path: str, data_key: str
) -> tuple[dict, str, float]:
    """-> ({"checkpoint": ..., "metrics": ...}, key, seconds). A killed run resumes from its
    last checkpoint (`<out>/train/checkpoints/last.pt`) as long as its inputs are unchanged."""
    if cfg["checkpoint"]:
        key = _key({"checkpoint": cfg["checkpoint"], "mtime": os.path.getmtime(cfg["checkpoint"])})
        here = Path(cfg["checkpoint"]).parent  # the trainer's metrics, if the checkpoint is in its run dir
        metrics = next((str(here / m) for m in ("metrics.jsonl", "metrics.csv")
                        if (here / m).is_file()), None)
        return {"checkpoint": cfg["checkpoint"], "metrics": metrics}, key, 0.0
    key = _key({"train": cfg["train"], "data": data_key})
    marker = stages.get("train", key)
    if marker and Path(marker["outputs"]["checkpoint"]).is_file():
        _log(f"train: done ({marker['outputs']['checkpoint']})")
        return marker["outputs"], key, marker["seconds"]
    from act_training.training.train import train

    train_dir = out / "train"
    key_file = train_dir / "stage_key.txt"
    if train_dir.exists() and (not key_file.is_file() or key_file.read_text().strip() != key):
        _log(f"train: {train_dir} belongs to other inputs, starting afresh")
        shutil.rmtree(train_dir)
    train_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    tc = build_train_config(cfg, data_path, train_dir)
    resuming = (train_dir / "checkpoints" / "last.pt").is_file()
    _log(f"train: ACT ({cfg['train']['preset']}, {tc.train.steps} steps) on {data_path} -> {train_dir}"
         + (" (resuming from its last checkpoint)" if resuming else ""))
    t0 = time.perf_counter()
    policy = Path(train(tc, resume=True))
    dt = time.perf_counter() - t0
    if policy.name != "policy.pt":
        raise RuntimeError(f"training stopped early at {policy}; re-run to resume")
    metrics = next((str(train_dir / m) for m in ("metrics.jsonl", "metrics.csv")
                    if (train_dir / m).is_file()), "")
    outputs = {"checkpoint": str(policy), "metrics": metrics}
    stages.mark("train", key, outputs, dt)
    return outputs, key, dt


def eval_matrix(cfg: dict) -> list[dict]:
    """(arm, mode, mirror, trials) rows: both arms with every executor, then the control."""
    e = cfg["eval"]
    rows = [{"arm": 0, "mode": m, "mirror": False, "trials": e["trials"]} for m in e["modes"]]
    rows += [{"arm": 1, "mode": m, "mirror": True, "trials": e["trials"]} for m in e["modes"]]
    rows += [{"arm": 1, "mode": m, "mirror": False, "trials": e["control_trials"]}
             for m in e["control_modes"]]
    return rows


def deployment_of(cfg: dict, checkpoint: str):
    """The deployment defaults the evaluation runs with: the eval section's executor settings
    (ensemble if it is evaluated, else the first mode) over the trained checkpoint's (frame
    size, camera and joint names from the training data)."""
    from dataclasses import replace

    from act_training.training.checkpoint import load_checkpoint

    e = cfg["eval"]
    base = load_checkpoint(checkpoint)["deployment_obj"]
    execution = "ensemble" if "ensemble" in e["modes"] else e["modes"][0]
    return replace(base, execution=execution, k=e["k"], query_period=e["query_period"],
                   n_execute=e.get("n_execute"))


def stage_deploy(cfg: dict, out: Path, stages: Stages, checkpoint: str, ckpt_key: str) -> tuple[str, str]:
    """-> (<out>/policy.pt, key): the trained checkpoint with the deployment defaults the
    evaluation uses, so `act_evaluate` and the ROS launch files reproduce it with no options."""
    from act_training.training.checkpoint import write_with_deployment

    dep = deployment_of(cfg, checkpoint)
    key = _key({"ckpt": ckpt_key, "deployment": dep.to_dict()})
    path = out / "policy.pt"
    marker = stages.get("deploy", key)
    if marker and path.is_file():
        _log(f"deploy: done ({path})")
        return str(path), key
    write_with_deployment(checkpoint, path, dep)
    stages.mark("deploy", key, {"checkpoint": str(path)}, 0.0)
    _log(f"deploy: {path} ({dep.execution}, k {dep.k}, query period {dep.query_period}, "
         f"n_execute {dep.n_execute}, frames {dep.frame_size})")
    return str(path), key


def _row_name(row: dict) -> str:
    return f"eval:arm{row['arm']}-{row['mode']}-{'mirror' if row['mirror'] else 'raw'}"


def _eval_row(job: dict) -> tuple[dict, float]:
    """One row of the matrix (in a worker process, or in this one): -> (EvalResult dict, s)."""
    import torch

    _import_torch_before_rendering()
    torch.set_num_threads(job["threads"])
    from act_training.runtime.policy import ACTPolicyRuntime

    runtime = ACTPolicyRuntime.load(job["checkpoint"], device="cpu")
    e, row = job["eval"], job["row"]
    t0 = time.perf_counter()
    res = evaluate(runtime, EvalConfig(
        arm=row["arm"], n_trials=row["trials"], mode=row["mode"], mirror=row["mirror"],
        seed=e["seed"], video_dir=job["video_dir"], n_videos=e["n_videos"], n_envs=e["n_envs"],
        max_steps=e.get("max_steps"), desc=job["name"], progress=job["progress"]))
    return res.to_dict(), time.perf_counter() - t0


def stage_eval(cfg: dict, out: Path, stages: Stages, checkpoint: str,
               ckpt_key: str) -> tuple[list[EvalResult], dict]:
    """Every row of the evaluation matrix on `checkpoint`, with its stored deployment defaults
    (only the executor kind varies per row); finished rows are read back. Rows not done yet run
    `eval.workers` at a time in worker processes with one torch thread per core each: on 2
    cores two single-threaded rows finish about twice as fast as one two-threaded row, whose
    small-batch inference parallelises poorly. Results do not depend on the number of workers."""
    e = cfg["eval"]
    results: dict[str, EvalResult] = {}
    timings: dict[str, float] = {}
    todo = []
    for row in eval_matrix(cfg):
        name = _row_name(row)
        # Only what changes this row's outcome (not which other rows are in the matrix).
        relevant = {k: e.get(k) for k in ("seed", "n_videos", "max_steps")}
        relevant.update({"k": e["k"], "query_period": e["query_period"]} if row["mode"] == "ensemble"
                        else {"n_execute": e.get("n_execute")})
        key = _key({"row": row, "eval": relevant, "ckpt": ckpt_key})
        marker = stages.get(name, key)
        if marker and Path(marker["outputs"]["json"]).is_file():
            res = EvalResult.from_dict(json.loads(Path(marker["outputs"]["json"]).read_text()))
            _log(f"{name}: done, {res.summary()}")
            results[name], timings[name] = res, marker["seconds"]
            continue
        todo.append((name, key, row))
    workers = max(1, min(int(e.get("workers") or 1), len(todo)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [{"name": name, "row": row, "eval": e, "checkpoint": checkpoint, "threads": threads,
             "video_dir": str(out / "report" / "videos"), "progress": workers == 1}
            for name, _, row in todo]

    def done(name: str, key: str, res_dict: dict, dt: float) -> None:
        res = EvalResult.from_dict(res_dict)
        json_path = out / "eval" / f"{res.label}.json"
        _atomic_json(json_path, res.to_dict())
        stages.mark(name, key, {"json": str(json_path)}, dt)
        _log(f"{name}: {res.summary()}")
        results[name], timings[name] = res, dt

    if todo:
        _log(f"eval: {len(todo)} rows, {workers} worker process(es) x {threads} thread(s)")
    if workers == 1:
        for (name, key, _), job in zip(todo, jobs):
            done(name, key, *_eval_row(job))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from tqdm.auto import tqdm

        # spawn: a fresh interpreter per worker (no inherited EGL context or torch thread pool)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_die_with_parent,
                                 initargs=(os.getpid(),)) as pool, \
                tqdm(total=len(todo), desc="eval rows", dynamic_ncols=True) as bar:
            futures = {pool.submit(_eval_row, job): (name, key) for (name, key, _), job in zip(todo, jobs)}
            for f in as_completed(futures):
                done(*futures[f], *f.result())
                bar.update(1)
    order = [_row_name(r) for r in eval_matrix(cfg)]
    return [results[n] for n in order], {n: timings[n] for n in order}


def _die_with_parent(parent_pid: int) -> None:
    """Evaluation worker initializer: end this worker when the parent `act_transfer` dies.

    Ctrl-C reaches the whole process group, but a `kill <pid>` (a scheduler, a CI timeout) only
    reaches the parent, and spawned workers would keep a core each busy for minutes. Linux:
    the kernel's parent-death signal; elsewhere a watchdog thread polls the parent's pid."""
    import signal
    import threading

    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
        return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------
def _import_torch_before_rendering() -> None:
    """Load torch/torchvision (and triton, via torch._dynamo) BEFORE MuJoCo's EGL renderer runs:
    importing triton after an EGL context exists segfaults in this environment."""
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import act_training.runtime.policy  # noqa: F401
    import act_training.training.train  # noqa: F401


def seed_dir(out: Path, seed: int) -> Path:
    """Where training seed `seed` lives: seed 0 is the main run (`<out>/train`, `<out>/eval`, as
    `make transfer` writes it), seed s > 0 `<out>/seeds/seed<s>/` (same demos)."""
    return out if seed == 0 else out / "seeds" / f"seed{seed}"


def with_train_seed(cfg: dict, seed: int) -> dict:
    """The experiment's config with training seed `seed` (seed 0 leaves it unchanged, so its
    stages are the main run's)."""
    if seed == 0:
        return cfg
    out = copy.deepcopy(cfg)
    out["train"].setdefault("overrides", {})["train.seed"] = int(seed)
    out["eval"]["n_videos"] = 0  # videos of the main run only
    return out


def run_seed(cfg: dict, out: Path, seed: int, data_path: str, data_key: str) -> dict:
    """Train, deploy and evaluate one training seed (resumable):
    -> {"seed", "results", "timings", "train", "policy"}."""
    cfg_s = with_train_seed(cfg, seed)
    d = seed_dir(out, seed)
    stages = Stages(d)
    train_out, ckpt_key, t_train = stage_train(cfg_s, d, stages, data_path, data_key)
    policy, deploy_key = stage_deploy(cfg_s, d, stages, train_out["checkpoint"], ckpt_key)
    results, eval_t = stage_eval(cfg_s, d, stages, policy, deploy_key)
    return {"seed": seed, "results": results, "timings": {"train": t_train, **eval_t},
            "train": train_out, "policy": policy}


def run(cfg: dict, out: str | Path, seeds: int = 1) -> Path:
    """Run (or resume) every stage for `seeds` training seeds on the same demos; return the main
    run's report.md (with seeds > 1 also `<out>/report/seeds.md`, every seed's table, the mean
    and the worst seed)."""
    from act_training.evaluation.machine import describe, machine_info
    from act_training.evaluation.report import write_report
    from act_training.evaluation.seeds_report import write_seeds_report
    from act_training.training.train import precision_name

    _import_torch_before_rendering()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(out)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    t_start = time.perf_counter()
    tc = build_train_config(cfg, "", out / "train")
    machine = machine_info(precision=precision_name(tc.train.amp), threads=tc.train.threads or None)
    timings: dict[str, float] = {}
    data_path, data_key, timings["demos"] = stage_demos(cfg, out, stages)
    runs = []
    for seed in range(seeds):
        if seeds > 1:
            _log(f"training seed {seed} ({seed + 1} of {seeds}, demos fixed)")
        runs.append(run_seed(cfg, out, seed, data_path, data_key))
    main_run = runs[0]
    timings.update(main_run["timings"])
    timings["this invocation (wall)"] = time.perf_counter() - t_start
    metrics = main_run["train"].get("metrics") or None
    report = write_report(
        out / "report", main_run["results"], cfg, metrics_path=metrics, timings=timings,
        extra={"checkpoint": main_run["policy"], "demos": data_path, "machine": describe(machine)},
    )
    shutil.copyfile(out / "config.yaml", out / "report" / "config.yaml")
    _log(f"report: {report}")
    for r in main_run["results"]:
        _log("  " + r.summary())
    if seeds > 1:
        md = write_seeds_report(out / "report", runs, machine=machine, timings={
            "demos": timings["demos"], "this invocation (wall)": time.perf_counter() - t_start})
        _log(f"seeds report: {md}")
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="act_transfer",
        description="The transfer experiment: demos on arm 0 -> train ACT -> evaluate arm 0 and "
        "mirrored arm 1.",
    )
    p.add_argument("--preset", choices=sorted(TRANSFER_PRESETS), default="cpu")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: few demos, tiny model, few steps, 2 trials")
    p.add_argument("--out", required=True, help="run directory (re-running resumes it)")
    p.add_argument("--data", default=None, help="use this demo HDF5 instead of generating demos")
    p.add_argument("--checkpoint", default=None, help="use this checkpoint instead of training")
    p.add_argument("--trials", type=int, default=None, help="trials per (arm, executor, mirror)")
    p.add_argument("--num-demos", type=int, default=None)
    p.add_argument("--action-noise", type=float, default=None,
                   help="demos: std (rad) of the DART noise on the executed arm commands")
    p.add_argument("--train-steps", type=int, default=None)
    p.add_argument("--modes", nargs="+", choices=("chunked", "ensemble"), default=None)
    p.add_argument("--seeds", type=int, default=1,
                   help="train this many seeds (0..N-1) on the same demos and report each, the mean "
                   "and the worst; seed 0 is the main run")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="training config override, as in act_train (repeatable), e.g. train.steps=2000")
    return p


def main(argv: list[str] | None = None) -> int:
    """act_transfer: project errors (bad --set value, bad data or checkpoint) -> one line, exit 2."""
    from mirror_arm_sim.hdf5_layout import LayoutError

    from act_training.config import ConfigError
    from act_training.training.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        cfg = resolve_config(args)
        build_train_config(cfg, cfg["data"] or "", Path(args.out) / "train")  # validate before any work
        report = run(cfg, args.out, seeds=args.seeds)
    except (ConfigError, CheckpointError, LayoutError, ValueError) as e:
        print(f"act_transfer: error: {e}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
