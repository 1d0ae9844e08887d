"""Bag benchmark: rosbag2 -> HDF5 conversion throughput and peak memory at two bag sizes, beside the
bare `rosbags` read speed on the same bags.

A thin wrapper around the bag engineer's `tests/bench_bag_convert.py` (its `bare_read` and
`convert_peak_rss`) and `tests/bag_synth.py` (synthetic bags: 240x320 rgb8 camera at 30 Hz,
JointState at 100 Hz, Float64MultiArray at 50 Hz; converted to 96x96 at 50 Hz). Conversion is
timed as the whole `python -m act_training.bags.convert` process (what a user waits for), and by
the converter's own summary line (the conversion without the process start-up, i.e. without the
imports: torch alone is ~2 s here). A multi-bag job (the 10 s bag given 5 times: 5 episodes in one
process) shows the rate when the start-up is shared, as when a session's demos are converted
together. The converter runs with its default `--jobs` (threads for CompressedImage decoding;
raw Image frames, as here, resize in the reading thread). The bare read is repeated 3 times.

Before/after in one run: when the checkout has git history, the converter of the commit that
issue 15 measured ("today", 2026-11-25: `BASELINE_REV`) is extracted with `git archive` and run
on the same bags, alternating with the current one (`ROUNDS` each, the same venv). The ratios are
the baseline's median time over the current one's: the conversion alone (`convert_bags`, timed
the same way in both) and the whole process. Without git or that commit the comparison is skipped, with a
line saying so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, area_main, log, metric  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))

FULL = {"seconds": (10, 50), "storage": ("sqlite3", "mcap"), "size_hw": (240, 320), "reads": 3}
QUICK = {"seconds": (1, 2), "storage": ("sqlite3",), "size_hw": (48, 64), "reads": 2}
BASELINE_REV = "7abd11c"  # the converter whose figures issue 15 calls "today" (docs/performance.md)
ROUNDS = 5


def baseline_checkout(work: Path) -> tuple[Path | None, str]:
    """The baseline's `src/` extracted under work (None and why, without git or the commit)."""
    dst = work / f"baseline-{BASELINE_REV}"
    if (dst / "src").is_dir():
        return dst, ""
    try:
        arch = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE_REV, "src"],
                              capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", b"") or b""
        return None, (err.decode(errors="replace").strip().splitlines() or [str(e)])[-1]
    dst.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dst)], input=arch, check=True)
    return dst, ""


# Runs a converter's CLI with its `convert_bags` timed (the old one prints 0.1 s resolution).
TIMED_CLI = """
import importlib, sys, time
name = sys.argv[1]
sys.argv = [name] + sys.argv[2:]
m = importlib.import_module(name)
inner = m.convert_bags
def timed(*a, **k):
    t = time.perf_counter()
    try:
        return inner(*a, **k)
    finally:
        print(f"CONVERSION_S {time.perf_counter() - t:.4f}", file=sys.stderr, flush=True)
m.convert_bags = timed
m.cli() if hasattr(m, "cli") else sys.exit(m.main())
"""


def timed_convert(module: str, args: list[str], env: dict | None) -> tuple[float, float]:
    """(whole process s, `convert_bags` s) of one run of the converter CLI `module`."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", TIMED_CLI, module, *args], capture_output=True, text=True,
                       env=env)
    wall = time.perf_counter() - t
    m = re.search(r"CONVERSION_S ([0-9.]+)", p.stderr)
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"{module} failed (exit {p.returncode}): {(p.stderr or p.stdout)[-300:]}")
    return wall, float(m.group(1))


def before_after(base: Path, bag: Path, cfg: Path, out: Path) -> dict:
    """The baseline converter and the current one on `bag`, alternated `ROUNDS` times."""
    common = [str(bag), "--config", str(cfg), "--out", str(out), "--no-progress", "--overwrite"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(base / "src" / "act_training"), str(base / "src" / "mirror_arm_sim")]))
    old, new = [], []
    for _ in range(ROUNDS):
        old.append(timed_convert("act_training.bag_convert", common, env))
        new.append(timed_convert("act_training.bags.convert", common, None))

    def med(xs, i):
        v = sorted(x[i] for x in xs)
        return v[len(v) // 2]

    return {"baseline_wall_s": [x[0] for x in old], "baseline_inner_s": [x[1] for x in old],
            "current_wall_s": [x[0] for x in new], "current_inner_s": [x[1] for x in new],
            "speedup_inner": med(old, 1) / med(new, 1), "speedup_wall": med(old, 0) / med(new, 0)}


def startup_cost() -> tuple[float, float]:
    """Wall time (s) and peak RSS (MiB) of a process that only imports what the converter's CLI
    imports before it converts (torch, the pipeline's resize, included)."""
    code = ("import resource, act_training.bags.convert, act_training.runtime.pipeline; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - t, int(out.split()[-1]) / 1024


def run(quick: bool, work: Path, domain_id: int) -> dict:
    import yaml
    from act_training.bags.convert import bag_size_bytes
    from bag_synth import base_config, write_bag
    from bench_bag_convert import bare_read, convert_peak_rss

    spec = QUICK if quick else FULL
    d = work / "bags"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    cfg = d / "map.yaml"
    cfg.write_text(yaml.safe_dump(base_config(image_size=[96, 96])))
    t_start, rss_start = startup_cost()
    metrics = [metric("converter process start-up (imports only, torch included)", "s", value=t_start,
                      note=f"peak RSS {rss_start:.0f} MiB")]
    base, why = (None, "--quick") if quick else baseline_checkout(work)
    if base is None:
        log(f"bags: before/after skipped: no baseline converter ({BASELINE_REV}: {why})")
    rows = []
    for storage in spec["storage"]:
        for secs in spec["seconds"]:
            log(f"bags: writing a {secs} s {storage} bag")
            t = time.perf_counter()
            bag = write_bag(d / f"{storage}_{secs}", duration_s=secs, storage=storage,
                            size_hw=spec["size_hw"])
            t_write = time.perf_counter() - t
            mb = bag_size_bytes(bag) / 1e6
            reads = [bare_read(bag) for _ in range(spec["reads"])]
            it_rate = [mb / r[0] for r in reads]
            de_rate = [mb / r[1] for r in reads]
            log(f"bags: converting {mb:.0f} MB")
            mem = {}
            t_conv, rss, t_inner = convert_peak_rss(bag, cfg, d / "out.hdf5", mem)
            timing = "the memory-sampled run"
            ab = None
            if base is not None:
                log(f"bags: {BASELINE_REV}'s converter and this one, alternated {ROUNDS} times")
                ab = before_after(base, bag, cfg, d / "out.hdf5")
                # the rates from the unsampled runs: the PSS samples cost ~15 ms of a core each
                t_conv = sorted(ab["current_wall_s"])[ROUNDS // 2]
                t_inner = sorted(ab["current_inner_s"])[ROUNDS // 2]
                timing = f"median of {ROUNDS} unsampled runs"
            conv = mb / t_conv
            steady = mb / max(t_inner, 1e-3)
            de_med = sorted(de_rate)[len(de_rate) // 2]
            label = f"{storage}, {secs} s bag ({mb:.3g} MB)"
            metrics += [
                metric(f"rosbags read+deserialize, {label}", "MB/s", de_rate, better="higher",
                       note=f"iterate only: {sorted(it_rate)[len(it_rate) // 2]:.0f} MB/s"),
                metric(f"convert, {label}", "MB/s", value=conv, better="higher",
                       note=f"{steady:.0f} MB/s without process start-up (conversion {t_inner:.2f} s), "
                            f"default --jobs, {timing}"),
                metric(f"convert peak memory, {label}", "MiB", value=rss,
                       note=f"PSS of the converter + its writer; their RSS sum, "
                            f"{mem.get('peak_rss_sum_mib', 0):.0f} MiB, counts shared pages twice"),
                metric(f"read/convert speed ratio, {label}", "x", value=de_med / steady,
                       note=f"bare rosbags read+deserialize MB/s / convert MB/s without start-up; "
                            f"{de_med / conv:.1f} with it"),
            ]
            row = {"storage": storage, "bag_s": secs, "bag_mb": mb, "write_s": t_write,
                   "iterate_mb_s": it_rate, "deserialize_mb_s": de_rate, "convert_s": t_conv,
                   "convert_inner_s": t_inner, "convert_mb_s": conv, "convert_mb_s_steady": steady,
                   "convert_timing": timing, "convert_peak_mib": rss, **mem}
            if ab is not None:
                row["before_after"] = ab
                metrics += [
                    metric(f"convert speed-up over {BASELINE_REV}, {label}", "x", value=ab["speedup_inner"],
                           better="higher", note="conversion without start-up, medians of "
                           f"{ROUNDS} alternated runs: {sorted(ab['baseline_inner_s'])[ROUNDS // 2]:.2f} s "
                           f"-> {sorted(ab['current_inner_s'])[ROUNDS // 2]:.2f} s"),
                    metric(f"whole-process speed-up over {BASELINE_REV}, {label}", "x",
                           value=ab["speedup_wall"], better="higher", note="start-up included"),
                ]
            if secs == min(spec["seconds"]):  # many demos in one job: the start-up is paid once
                t_job, rss_job, t_job_inner = convert_peak_rss([bag] * 5, cfg, d / "out.hdf5")
                metrics.append(metric(f"convert, 5 x {label} in one job", "MB/s", value=5 * mb / t_job,
                                      better="higher", note=f"peak memory {rss_job:.0f} MiB; "
                                      f"{5 * mb / max(t_job_inner, 1e-3):.0f} MB/s without process start-up"))
                row.update(job_of_5_s=t_job, job_of_5_inner_s=t_job_inner, job_of_5_peak_mib=rss_job)
            rows.append(row)
            shutil.rmtree(bag, ignore_errors=True)
            (d / "out.hdf5").unlink(missing_ok=True)
    details = {"bags": rows, "startup_s": t_start, "startup_rss_mib": rss_start,
               "image_hw": list(spec["size_hw"]), "output_image_hw": [96, 96], "jobs": "default",
               "wraps": "tests/bench_bag_convert.py (bare_read, convert_peak_rss)",
               "baseline": BASELINE_REV if base is not None else f"skipped: {why}"}
    return {"metrics": metrics, "details": details}


if __name__ == "__main__":
    area_main(run)
