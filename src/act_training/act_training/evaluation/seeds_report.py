"""The multi-seed summary of the transfer experiment (`act_transfer --seeds N`).

    report/seeds.md     one table: every row of the evaluation matrix x every training seed,
                        the mean over seeds and the worst seed; then each seed's own table
    report/seeds.json   the same, machine-readable

Success rates of one seed carry a 95 % Wilson interval over its trials; the spread over seeds
is the recipe's (how much a retrain moves the number), which a single seed cannot show.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from act_training.evaluation.machine import describe
from act_training.evaluation.report import git_revision


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _row_label(r) -> str:
    if r.arm == 0:
        return f"arm 0 {r.mode}"
    return f"arm 1 {r.mode} " + ("mirrored" if r.mirror else "no mirror (control)")


def summarize(runs: list[dict]) -> list[dict]:
    """Per evaluation row: {"row", "rates" (per seed), "mean", "worst", "worst_seed", "trials"}."""
    rows = []
    for i, r0 in enumerate(runs[0]["results"]):
        per = [run["results"][i] for run in runs]
        rates = [r.success_rate for r in per]
        # the worst seed of a control row is the one with the HIGHEST rate
        control = r0.arm == 1 and not r0.mirror
        j = int(np.argmax(rates) if control else np.argmin(rates))
        rows.append({"row": _row_label(r0), "label": r0.label, "rates": rates,
                     "mean": float(np.mean(rates)), "worst": rates[j], "worst_seed": runs[j]["seed"],
                     "trials": [r.n_trials for r in per], "ci95": [list(r.ci95) for r in per]})
    return rows


def write_seeds_report(report_dir: str | Path, runs: list[dict], machine: dict,
                       timings: dict | None = None) -> Path:
    """Write seeds.md and seeds.json for `runs` (as returned by transfer.run_seed); -> seeds.md."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(runs)
    seeds = [run["seed"] for run in runs]
    md = ["# ACT mirror transfer: spread over training seeds", "",
          f"{len(runs)} training seeds on the same demos; machine: {describe(machine)}; "
          f"git `{git_revision()}`.", "",
          "| row | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | worst (seed) |",
          "|---|" + "---|" * len(seeds) + "---|---|"]
    for r in rows:
        cells = [f"{100 * v:.1f} %" for v in r["rates"]]
        md.append(f"| {r['row']} | " + " | ".join(cells) +
                  f" | {100 * r['mean']:.1f} % | {100 * r['worst']:.1f} % ({r['worst_seed']}) |")
    md += ["", "Control row: the worst seed is the one with the highest rate.", ""]
    for run in runs:
        md += [f"## Seed {run['seed']}", "",
               "| arm | executor | mirror | success | 95 % Wilson | train s | eval s |",
               "|---|---|---|---|---|---|---|"]
        for res in run["results"]:
            lo, hi = res.ci95
            mirror = "—" if res.arm == 0 else ("yes" if res.mirror else "no (control)")
            t_eval = run["timings"].get(f"eval:{res.label}", 0.0)
            t_train = run["timings"].get("train", 0.0)
            md.append(f"| {res.arm} | {res.mode} | {mirror} | {res.n_success}/{res.n_trials} = "
                      f"{res.success_rate:.1%} | {lo:.1%} – {hi:.1%} | {t_train:.0f} | {t_eval:.0f} |")
        md.append("")
    if timings:
        md += ["## Run", ""] + [f"- {k}: {v:.0f} s" for k, v in timings.items()] + [""]
    _atomic_write(report_dir / "seeds.json", json.dumps(
        {"machine": machine, "seeds": seeds, "rows": rows, "timings_s": timings or {},
         "runs": [{"seed": run["seed"], "timings_s": run["timings"],
                   "results": [r.to_dict() for r in run["results"]]} for run in runs]}, indent=2))
    path = report_dir / "seeds.md"
    _atomic_write(path, "\n".join(md))
    return path
