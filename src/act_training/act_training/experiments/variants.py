"""Beyond the seed: one policy for both arms, and transfer under an imperfect mirror.

    act_transfer_variants --out runs/variants                       # 200 trials a row (hours)
    act_transfer_variants --quick --variants exact base_offset_15mm --out /tmp/v   # smoke run

For every cell variant (`mirror_arm_sim.cell.VARIANTS`: the exact mirror, arm 1's base 15 mm
off, the top camera 5 mm off the mirror plane, a joint zero offset on arm 1) the user's
situation is simulated from scratch in THAT cell: expert demos on arm 0, and K demos on arm 1
for few-shot. Three policies are trained per variant:

    base      ACT on the arm-0 demos                                 (the seed's policy)
    augment   ACT on the arm-0 demos plus their mirrored copies      (data.mirror_augment)
    fewshot   `base` fine-tuned on the K arm-1 demos, no mirroring   (train.init_from)

By default `base` and `augment` are trained once, on arm-0 demos of the exact cell (the
nominal pair: a policy trained on arm 0 is deployed on an arm 1 that is not its exact mirror);
`--train-in-each-variant` records the arm-0 demos in each variant's cell and trains them per
variant (4x the training cost). `fewshot` always uses K arm-1 demos of the variant's own cell.
They are evaluated on arm 1 (rows of the table, each `trials` seeded episodes, Wilson 95 %):

    inference-time mirror   base,    arm 1 through the mirror map (today's transfer)
    mirror augmentation     augment, arm 1 raw observations and actions
    both                    augment, arm 1 through the mirror map
    few-shot (K)            fewshot, arm 1 raw
    plus two reference rows on arm 0: base and augment (one policy drives both arms).

Every policy sees the WHOLE top camera frame (no left-half crop): a mirrored frame shows arm 1's
side, which a left-half crop would cut away. The stages (demos, train, eval rows) are resumable
like `act_transfer`'s and reuse its bookkeeping (`act_training.experiments.transfer`).
Writes `<out>/report/variants.md` and `<out>/report/variants.json`. See docs/transfer.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import yaml

from act_training.evaluation.results import EvalResult
from act_training.evaluation.rollouts import evaluate
from act_training.experiments.transfer import (
    Stages,
    _atomic_json,
    _import_torch_before_rendering,
    _key,
    _log,
    _merge,
    stage_train,
)

# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------
VARIANT_PRESETS: dict[str, dict] = {
    # cpu: the transfer preset's sizes, but the whole 128 px top frame (8x8 image tokens).
    # The transfer preset's recipe (DART demos, no dropout, EMA); see docs/transfer.md.
    "cpu": {
        "train_cell": "exact",
        "demos": {"num_demos": 200, "seed": 0, "image_size": [128, 128], "cameras": ["top"],
                  "action_noise": 0.03},
        "fewshot": {"k": 5, "seed": 50_000, "overrides": {
            "train.steps": 300, "train.warmup_steps": 0, "train.lr": 5e-5, "train.lr_backbone": 5e-5,
            "data.val_fraction": 0.0, "train.eval_every": 0, "train.ckpt_every": 100}},
        "train": {"preset": "cpu", "overrides": {
            "model.image_size": [128, 128], "model.crop": None, "model.backbone_layers": 3,
            "model.dropout": 0.0, "data.shift_pixels": 5, "train.batch_size": 16,
            "train.steps": 1500, "train.ema_decay": 0.995}},
        "eval": {"trials": 200, "seed": 100_000, "n_envs": 8, "n_videos": 0, "modes": ["ensemble"],
                 "n_execute": None, "k": 0.01, "query_period": 10, "max_steps": None},
    },
}

# --quick: every stage at toy sizes, for the smoke test (minutes on 2 cores).
QUICK = {
    "demos": {"num_demos": 2, "image_size": [64, 64]},
    "fewshot": {"k": 1, "overrides": {"train.steps": 5, "train.ckpt_every": 5}},
    "train": {"preset": "tiny", "overrides": {"train.steps": 10, "model.image_size": [32, 32],
                                               "model.crop": None}},
    "eval": {"trials": 2, "n_envs": 2, "max_steps": 30, "query_period": 2},
}

# (row name, policy, arm, mirror): the comparison, then the arm-0 references
ROWS = (
    ("inference-time mirror", "base", 1, True),
    ("mirror augmentation (raw arm-1 obs)", "augment", 1, False),
    ("both (augmented policy, mirrored)", "augment", 1, True),
    ("few-shot (K arm-1 demos)", "fewshot", 1, False),
    ("reference: base policy on arm 0", "base", 0, False),
    ("reference: augmented policy on arm 0", "augment", 0, False),
)


def resolve_config(args: argparse.Namespace) -> dict:
    """The experiment's configuration from the preset, --quick and the command-line options."""
    from mirror_arm_sim.cell import VARIANTS

    cfg = copy.deepcopy(VARIANT_PRESETS[args.preset])
    cfg["preset"], cfg["quick"] = args.preset, bool(args.quick)
    if args.quick:
        cfg = _merge(cfg, QUICK)
    names = list(VARIANTS) if not args.variants or "all" in args.variants else list(args.variants)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"act_transfer_variants: unknown variants {unknown}; known: {list(VARIANTS)}")
    cfg["variants"] = names
    if args.train_in_each_variant:
        cfg["train_cell"] = None
    if args.trials is not None:
        cfg["eval"]["trials"] = int(args.trials)
    if args.num_demos is not None:
        cfg["demos"]["num_demos"] = int(args.num_demos)
    if args.k_shot is not None:
        cfg["fewshot"]["k"] = int(args.k_shot)
    if args.modes:
        cfg["eval"]["modes"] = list(args.modes)
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise SystemExit(f"act_transfer_variants: --set expects section.field=value, got {item!r}")
        cfg["train"]["overrides"][key.strip()] = yaml.safe_load(value)
    return cfg


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------
def stage_demos(cfg: dict, variant: str, arm: int, num: int, seed: int, out: Path,
                stages: Stages) -> tuple[str, str]:
    """Expert demos of `arm` in the `variant` cell -> (hdf5 path, stage key)."""
    d = cfg["demos"]
    spec = {"variant": variant, "arm": arm, "num_demos": num, "seed": seed,
            "image_size": d["image_size"], "cameras": d["cameras"],
            "action_noise": float(d.get("action_noise", 0.0))}
    key = _key(spec)
    name = f"demos_arm{arm}"
    marker = stages.get(name, key)
    if marker and Path(marker["outputs"]["hdf5"]).is_file():
        return marker["outputs"]["hdf5"], key
    from mirror_arm_sim.generate_demos import generate_demos

    path = out / "data" / f"demos_arm{arm}.hdf5"
    path.parent.mkdir(parents=True, exist_ok=True)
    _log(f"{variant}: {num} expert demos on arm {arm} -> {path}")
    t0 = time.perf_counter()
    stats = generate_demos(str(path), num_demos=num, arm=arm, seed=seed,
                           image_size=tuple(d["image_size"]), cameras=tuple(d["cameras"]),
                           variant=variant, action_noise=spec["action_noise"], progress=False)
    stages.mark(name, key, {"hdf5": str(path), "attempts": stats.attempts}, time.perf_counter() - t0)
    return str(path), key


def policy_train_cfgs(cfg: dict) -> dict[str, dict]:
    """Training section per policy: base and augment (fewshot adds init_from at run time)."""
    base = copy.deepcopy(cfg["train"])
    augment = copy.deepcopy(cfg["train"])
    augment["overrides"]["data.mirror_augment"] = True
    fewshot = copy.deepcopy(cfg["train"])
    fewshot["overrides"].update(cfg["fewshot"]["overrides"])
    return {"base": base, "augment": augment, "fewshot": fewshot}


def train_arm0_policies(cfg: dict, cell: str, out: Path) -> dict[str, tuple[str, str]]:
    """Arm-0 demos of `cell` and the base and augment policies -> {policy: (checkpoint, key)}."""
    stages = Stages(out)
    d = cfg["demos"]
    arm0, arm0_key = stage_demos(cfg, cell, 0, d["num_demos"], d["seed"], out, stages)
    tcfgs = policy_train_cfgs(cfg)
    policies = {}
    for name in ("base", "augment"):
        res, key, _ = stage_train({"train": tcfgs[name], "checkpoint": None}, out / name,
                                  Stages(out / name), arm0, arm0_key)
        policies[name] = (res["checkpoint"], key)
    return policies


def train_fewshot(cfg: dict, variant: str, base: tuple[str, str], out: Path) -> tuple[str, str]:
    """`base` fine-tuned on K arm-1 demos of the `variant` cell -> (checkpoint, key)."""
    f = cfg["fewshot"]
    arm1, arm1_key = stage_demos(cfg, variant, 1, f["k"], f["seed"], out, Stages(out))
    tcfg = policy_train_cfgs(cfg)["fewshot"]
    tcfg["overrides"]["train.init_from"] = base[0]
    res, key, _ = stage_train({"train": tcfg, "checkpoint": None}, out / "fewshot",
                              Stages(out / "fewshot"), arm1, _key([arm1_key, base[1]]))
    return res["checkpoint"], key


def eval_rows(cfg: dict, variant: str, policies: dict, out: Path, image_size) -> list[dict]:
    """Every (row, executor) of one variant -> [{"variant", "row", "policy", "result"}]."""
    from act_training.runtime.policy import ACTPolicyRuntime

    e = cfg["eval"]
    stages = Stages(out)
    runtimes: dict[str, ACTPolicyRuntime] = {}
    env_kwargs = {"variant": variant}
    rows = []
    for row, policy, arm, mirror in ROWS:
        for mode in e["modes"]:
            ckpt, ckpt_key = policies[policy]
            name = f"eval:{policy}-arm{arm}-{mode}-{'mirror' if mirror else 'raw'}"
            key = _key({"row": [policy, arm, mirror, mode], "eval": e, "env": env_kwargs,
                        "image_size": list(image_size), "ckpt": ckpt_key})
            marker = stages.get(name, key)
            if marker and Path(marker["outputs"]["json"]).is_file():
                res = EvalResult.from_dict(json.loads(Path(marker["outputs"]["json"]).read_text()))
            else:
                if policy not in runtimes:
                    runtimes[policy] = ACTPolicyRuntime.load(ckpt, device="cpu")
                t0 = time.perf_counter()
                res = evaluate(runtimes[policy], arm=arm, n_trials=e["trials"], mode=mode, mirror=mirror,
                               seed=e["seed"], n_envs=e["n_envs"], n_execute=e.get("n_execute"), k=e["k"],
                               query_period=e["query_period"], max_steps=e.get("max_steps"),
                               image_size=tuple(image_size), env_kwargs=env_kwargs, desc=f"{variant} {name}",
                               progress=False)
                path = out / "eval" / f"{policy}-{res.label}.json"
                _atomic_json(path, res.to_dict())
                stages.mark(name, key, {"json": str(path)}, time.perf_counter() - t0)
            _log(f"{variant} | {row} | {res.summary()}")
            rows.append({"variant": variant, "row": row, "policy": policy, "result": res})
    return rows


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def format_table(rows: list[dict]) -> str:
    """Markdown table: variant, row, executor, successes, rate and Wilson 95 % interval."""
    lines = ["| variant | row | executor | success | rate | 95 % Wilson |", "|---|---|---|---|---|---|"]
    for r in rows:
        res: EvalResult = r["result"]
        lo, hi = res.ci95
        lines.append(f"| {r['variant']} | {r['row']} | {res.mode} | {res.n_success}/{res.n_trials} | "
                     f"{res.success_rate:.0%} | {lo:.0%}–{hi:.0%} |")
    return "\n".join(lines)


def write_report(out: Path, rows: list[dict], cfg: dict, seconds: float) -> Path:
    """<out>/report/variants.md (table + config) and variants.json (per-trial results)."""
    from act_training.evaluation.report import _atomic_write, git_revision

    rep = out / "report"
    rep.mkdir(parents=True, exist_ok=True)
    k = cfg["fewshot"]["k"]
    where = (f"of the {cfg['train_cell']!r} cell: one base and one augment policy for every variant"
             if cfg.get("train_cell") else "recorded and trained in each variant's cell")
    text = "\n".join([
        "# Beyond the seed: mirror augmentation, few-shot, imperfect mirrors", "",
        f"Commit {git_revision()}; preset {cfg['preset']}{' (--quick)' if cfg['quick'] else ''}; "
        f"{cfg['demos']['num_demos']} arm-0 demos ({where}) and K = {k} arm-1 demos per variant; "
        f"{cfg['eval']['trials']} trials per row (env seeds {cfg['eval']['seed']}+i); "
        f"{seconds / 60:.1f} min this invocation.", "",
        format_table(rows), "",
        "## Configuration", "", "```yaml", yaml.safe_dump(cfg, sort_keys=False).strip(), "```", "",
    ])
    _atomic_write(rep / "variants.md", text)
    _atomic_json(rep / "variants.json", [{"variant": r["variant"], "row": r["row"], "policy": r["policy"],
                                          **r["result"].to_dict()} for r in rows])
    return rep / "variants.md"


def run(cfg: dict, out: str | Path) -> Path:
    """Run (or resume) every variant's stages; return the report path."""
    _import_torch_before_rendering()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.perf_counter()
    rows = []
    shared = cfg.get("train_cell")
    if shared:  # base and augment trained once, in the nominal cell
        _log(f"base and augment policies: trained once on arm-0 demos of the {shared!r} cell")
        arm0_policies = train_arm0_policies(cfg, shared, out / shared)
    for variant in cfg["variants"]:
        vout = out / variant
        policies = dict(arm0_policies) if shared else train_arm0_policies(cfg, variant, vout)
        policies["fewshot"] = train_fewshot(cfg, variant, policies["base"], vout)
        rows += eval_rows(cfg, variant, policies, vout, cfg["demos"]["image_size"])
    report = write_report(out, rows, cfg, time.perf_counter() - t0)
    _log(f"report: {report}")
    return report


def build_parser() -> argparse.ArgumentParser:
    """The command line of `act_transfer_variants`."""
    p = argparse.ArgumentParser(
        prog="act_transfer_variants",
        description="Inference-time mirror vs mirror augmentation vs both vs few-shot, on the exact "
        "cell and on imperfect mirrors (see docs/transfer.md, 'Beyond the seed').")
    p.add_argument("--preset", choices=sorted(VARIANT_PRESETS), default="cpu")
    p.add_argument("--quick", action="store_true", help="smoke run: toy sizes, 2 trials a row")
    p.add_argument("--out", required=True, help="run directory (re-running resumes it)")
    p.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                   help="cell variants (mirror_arm_sim.cell.VARIANTS); default: all")
    p.add_argument("--train-in-each-variant", action="store_true",
                   help="record arm-0 demos and train base/augment in each variant's cell "
                   "(default: once, in the preset's train_cell, 'exact')")
    p.add_argument("--trials", type=int, default=None, help="trials per row (default 200)")
    p.add_argument("--num-demos", type=int, default=None, help="arm-0 demos per variant")
    p.add_argument("--k-shot", type=int, default=None, help="arm-1 demos for few-shot (default 5)")
    p.add_argument("--modes", nargs="+", choices=("chunked", "ensemble"), default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="training config override for every policy (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Console script `act_transfer_variants`."""
    args = build_parser().parse_args(argv)
    cfg = resolve_config(args)
    report = run(cfg, args.out)
    print(report)
    return 0


__all__ = ["ROWS", "VARIANT_PRESETS", "format_table", "main", "run"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
