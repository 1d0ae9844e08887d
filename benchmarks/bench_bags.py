"""Bag benchmark: rosbag2 -> HDF5 conversion throughput and peak RSS at two bag sizes, beside the
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
"""

from __future__ import annotations

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
            t_conv, rss, t_inner = convert_peak_rss(bag, cfg, d / "out.hdf5")
            conv = mb / t_conv
            steady = mb / max(t_inner, 1e-3)
            de_med = sorted(de_rate)[len(de_rate) // 2]
            label = f"{storage}, {secs} s bag ({mb:.3g} MB)"
            metrics += [
                metric(f"rosbags read+deserialize, {label}", "MB/s", de_rate, better="higher",
                       note=f"iterate only: {sorted(it_rate)[len(it_rate) // 2]:.0f} MB/s"),
                metric(f"convert, {label}", "MB/s", value=conv, better="higher",
                       note=f"{steady:.0f} MB/s without process start-up (conversion {t_inner:.2f} s), "
                            "default --jobs"),
                metric(f"convert peak RSS, {label}", "MiB", value=rss),
                metric(f"read/convert speed ratio, {label}", "x", value=de_med / conv,
                       note="bare rosbags read+deserialize MB/s / convert MB/s"),
            ]
            row = {"storage": storage, "bag_s": secs, "bag_mb": mb, "write_s": t_write,
                   "iterate_mb_s": it_rate, "deserialize_mb_s": de_rate, "convert_s": t_conv,
                   "convert_inner_s": t_inner, "convert_mb_s": conv, "convert_mb_s_steady": steady,
                   "convert_peak_rss_mib": rss}
            if secs == min(spec["seconds"]):  # many demos in one job: the start-up is paid once
                t_job, rss_job, t_job_inner = convert_peak_rss([bag] * 5, cfg, d / "out.hdf5")
                metrics.append(metric(f"convert, 5 x {label} in one job", "MB/s", value=5 * mb / t_job,
                                      better="higher", note=f"peak RSS {rss_job:.0f} MiB; "
                                      f"{5 * mb / max(t_job_inner, 1e-3):.0f} MB/s without process start-up"))
                row.update(job_of_5_s=t_job, job_of_5_inner_s=t_job_inner, job_of_5_peak_rss_mib=rss_job)
            rows.append(row)
            shutil.rmtree(bag, ignore_errors=True)
            (d / "out.hdf5").unlink(missing_ok=True)
    details = {"bags": rows, "startup_s": t_start, "startup_rss_mib": rss_start,
               "image_hw": list(spec["size_hw"]), "output_image_hw": [96, 96], "jobs": "default",
               "wraps": "tests/bench_bag_convert.py (bare_read, convert_peak_rss)"}
    return {"metrics": metrics, "details": details}


if __name__ == "__main__":
    area_main(run)
