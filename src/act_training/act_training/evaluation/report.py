"""The transfer experiment's report directory.

    report/
      report.md        success table (rate, 95 % Wilson interval, trials) per (arm, executor,
                       mirror), the verdict line, plots, videos, timings, config, git revision
      results.json     everything in machine-readable form (per-trial seeds/successes/lengths)
      loss.png         training loss curves (from the trainer's metrics file)
      success.png      success-rate bar chart with 95 % intervals
      config.yaml      the resolved experiment configuration
      videos/          rollout mp4s (written there by the evaluator)
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import yaml

from act_training.evaluation.results import EvalResult

VERDICT_THRESHOLD = 0.70  # the seed's success criterion for arm 1


def git_revision(cwd: str | Path | None = None) -> str:
    """`<sha>` (+ `-dirty` when the work tree has changes), or "unknown" outside a git checkout."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Training metrics
# --------------------------------------------------------------------------------------------
def load_metrics(path: str | Path) -> list[dict]:
    """Rows of the trainer's metrics file: JSON lines, a JSON list, or CSV with a header."""
    path = Path(path)
    text = path.read_text()
    rows: list[dict] = []
    if path.suffix == ".csv":
        rows = [dict(r) for r in csv.DictReader(text.splitlines())]
    else:
        stripped = text.strip()
        if stripped.startswith("["):
            rows = json.loads(stripped)
        elif stripped.startswith("{") and "\n" not in stripped:
            data = json.loads(stripped)
            rows = data.get("history") or data.get("metrics") or [data]
        else:
            for line in stripped.splitlines():
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
    out = []
    for r in rows:
        clean = {}
        for k, v in r.items():
            if k == "split" and isinstance(v, str):
                clean[k] = v  # train | val: plotted as separate curves
                continue
            try:
                clean[k] = float(v)
            except (TypeError, ValueError):
                continue
        if clean:
            out.append(clean)
    return out


def plot_loss(metrics: list[dict], path: Path) -> bool:
    """Every metric whose name contains "loss" (or "l1"/"kl") against the step. False if none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not metrics:
        return False
    xkey = next((k for k in ("step", "global_step", "iteration", "epoch") if k in metrics[0]), None)
    keys = sorted({k for r in metrics for k in r
                   if k not in (xkey, "split") and any(t in k.lower() for t in ("loss", "l1", "kl"))})
    if not keys:
        return False
    splits = sorted({r.get("split", "") for r in metrics})
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for split in splits:
        rows = [r for r in metrics if r.get("split", "") == split]
        for key in keys:
            pts = [(r.get(xkey, i), r[key]) for i, r in enumerate(rows) if key in r and np.isfinite(r[key])]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, label=f"{split} {key}".strip(), lw=1.2, ls="--" if split == "val" else "-",
                        marker="o" if split == "val" else None, ms=3)
    ax.set_xlabel(xkey or "record")
    ax.set_ylabel("loss")
    positive = all(r[k] > 0 for r in metrics for k in keys if k in r and np.isfinite(r[k]))
    if positive:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("ACT training loss")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_success(results: list[EvalResult], path: Path) -> None:
    """Bar chart of the success rates (%) with their 95 % Wilson intervals and the 70 % bar, saved
    to `path` (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(results) + 2), 4), dpi=110)
    x = np.arange(len(results))
    rates = [r.success_rate * 100 for r in results]
    lo = [max(0.0, r.success_rate - r.ci95[0]) * 100 for r in results]
    hi = [max(0.0, r.ci95[1] - r.success_rate) * 100 for r in results]
    colors = ["tab:blue" if r.arm == 0 else ("tab:green" if r.mirror else "tab:gray") for r in results]
    ax.bar(x, rates, yerr=[lo, hi], color=colors, capsize=4)
    for xi, r in zip(x, results):
        ax.text(xi, 2, f"{r.n_success}/{r.n_trials}", ha="center", va="bottom", fontsize=8, color="white")
    ax.axhline(VERDICT_THRESHOLD * 100, ls="--", color="k", lw=1, label="70 % (seed's bar)")
    ax.set_xticks(x, [_row_name(r).replace(", ", "\n") for r in results], fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("success rate (%)")
    ax.set_title("Transfer: trained on arm 0 only (95 % Wilson intervals)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def _row_name(r: EvalResult) -> str:
    if r.arm == 0:
        mirror = "- (training arm)"
    else:
        mirror = "mirrored" if r.mirror else "no mirror (control)"
    return f"arm {r.arm}, {r.mode}, {mirror}"


def verdict(results: list[EvalResult]) -> tuple[str, EvalResult | None]:
    """The seed's verdict from the best mirrored arm-1 executor."""
    arm1 = [r for r in results if r.arm == 1 and r.mirror and r.n_trials]
    if not arm1:
        return "Arm 1 ≥ 70 %: not evaluated", None
    best = max(arm1, key=lambda r: (r.success_rate, r.n_trials))
    ok = best.success_rate >= VERDICT_THRESHOLD
    return (f"Arm 1 ≥ 70 %: hypothesis {'validated' if ok else 'not validated'} "
            f"(best mirrored arm-1 executor: {best.mode}, {best.success_rate:.1%} "
            f"over {best.n_trials} trials)"), best


def write_report(
    report_dir: str | Path,
    results: list[EvalResult],
    config: dict,
    metrics_path: str | Path | None = None,
    timings: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write report.md, results.json, loss.png, success.png and config.yaml; return report.md."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    rev = git_revision()
    timings = timings or {}
    extra = extra or {}

    metrics = []
    if metrics_path is not None and Path(metrics_path).is_file():
        metrics = load_metrics(metrics_path)
    has_loss = plot_loss(metrics, report_dir / "loss.png")
    plot_success(results, report_dir / "success.png")
    _atomic_write(report_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    summary = _summary(results, rev, timings, extra)
    _atomic_write(report_dir / "results.json", json.dumps(
        {"summary": summary, "results": [r.to_dict() for r in results], "config": config}, indent=2))

    md = _md_header(results, summary["verdict"])
    md += _md_success(results)
    md += _md_training(metrics, has_loss, metrics_path)
    md += _md_videos(results, report_dir)
    md += _md_failures(results)
    md += _md_run(rev, timings, extra, config)
    path = report_dir / "report.md"
    _atomic_write(path, "\n".join(md))
    return path


def _best_arm0(results: list[EvalResult]) -> EvalResult | None:
    arm0 = [r for r in results if r.arm == 0]
    return max(arm0, key=lambda r: r.success_rate) if arm0 else None


def _summary(results: list[EvalResult], rev: str, timings: dict, extra: dict) -> dict:
    """results.json's summary: verdict, best rows, revision, timings and the caller's extras."""
    line, best = verdict(results)
    best0 = _best_arm0(results)
    return {
        "verdict": line,
        "validated": bool(best and best.success_rate >= VERDICT_THRESHOLD),
        "best_arm0": best0.label if best0 else None,
        "best_arm1_mirrored": best.label if best else None,
        "git_revision": rev,
        "timings_s": timings,
        **extra,
    }


def _md_header(results: list[EvalResult], line: str) -> list[str]:
    md = ["# ACT mirror-transfer report", ""]
    md += ["Policy trained on demonstrations of **arm 0 only**; arm 1 is driven through the mirror map "
           "(policy sees mirror(observation), arm receives mirror(action)). The no-mirror control feeds "
           "arm 1's raw observations to the same policy.", ""]
    md += [f"**{line}**", ""]
    best0, (_, best) = _best_arm0(results), verdict(results)
    if best0 is not None and best is not None:
        md += [f"Arm 0 (best executor, {best0.mode}): {best0.success_rate:.1%}; "
               f"arm 1 mirrored (best, {best.mode}): {best.success_rate:.1%}; "
               f"gap {100 * (best0.success_rate - best.success_rate):+.1f} points.", ""]
    return md


def _md_success(results: list[EvalResult]) -> list[str]:
    md = ["## Success", "",
          "| arm | executor | mirror | success | rate | 95 % Wilson interval | trials | mean length |",
          "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lo, hi = r.ci95
        mirror = "—" if r.arm == 0 else ("yes" if r.mirror else "no (control)")
        md.append(f"| {r.arm} | {r.mode} | {mirror} | {r.n_success}/{r.n_trials} | {r.success_rate:.1%} | "
                  f"{lo:.1%} – {hi:.1%} | {r.n_trials} | {np.mean(r.lengths or [0]):.0f} |")
    return md + ["", "![success](success.png)", ""]


def _md_training(metrics: list[dict], has_loss: bool, metrics_path) -> list[str]:
    md = ["## Training", ""]
    if not has_loss:
        return md + ["(no training metrics found" + (f" at {metrics_path}" if metrics_path else "") + ")", ""]
    md += ["![training loss](loss.png)", ""]
    for split in sorted({r.get("split", "") for r in metrics}):
        last = [r for r in metrics if r.get("split", "") == split][-1]
        md += [f"Last {split or 'logged'} metrics: " + ", ".join(
            f"{k} = {v:.4g}" for k, v in last.items() if k != "split"), ""]
    return md


def _md_videos(results: list[EvalResult], report_dir: Path) -> list[str]:
    md = ["## Videos", ""]
    vids = [(r, v) for r in results for v in r.videos]
    for r, v in vids:
        md.append(f"- {_row_name(r)}: [{Path(v).name}]({os.path.relpath(v, report_dir)})")
    return md if vids else md + ["(no videos)"]


def _md_failures(results: list[EvalResult]) -> list[str]:
    md = ["", "## Failures (seeds)", ""]
    for r in results:
        failed = [s for s, ok in zip(r.seeds, r.successes) if not ok]
        md.append(f"- {_row_name(r)}: {', '.join(map(str, failed)) if failed else 'none'}")
    return md


def _md_run(rev: str, timings: dict, extra: dict, config: dict) -> list[str]:
    md = ["", "## Run", "", f"- git revision: `{rev}`"]
    md += [f"- {k}: {v:.0f} s" for k, v in timings.items()]
    md += [f"- {k}: {v}" for k, v in extra.items()]
    md += ["- configuration: [config.yaml](config.yaml); per-trial data: [results.json](results.json)", ""]
    return md + ["```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```", ""]
