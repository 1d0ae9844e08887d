"""Benchmark (not part of the test suite): converter throughput and peak RSS on two bag sizes.

    python tests/bench_bag_convert.py [--seconds 10 50] [--storage sqlite3 mcap]

Writes synthetic bags (240x320 rgb8 camera at 30 Hz, JointState at 100 Hz, Float64MultiArray at
50 Hz), then for each: the bare rosbags reader (iterate, and iterate + deserialize) and
`act_bag_to_hdf5` in a child process whose RSS is sampled with psutil every 10 ms.
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from act_training.bags.convert import bag_size_bytes  # noqa: E402
from bag_synth import base_config, write_bag  # noqa: E402


def bare_read(bag: Path) -> tuple[float, float]:
    from rosbags.highlevel import AnyReader

    t = time.perf_counter()
    with AnyReader([bag]) as r:
        n = sum(1 for _ in r.messages())
    t_iter = time.perf_counter() - t
    t = time.perf_counter()
    with AnyReader([bag]) as r:
        for c, _, raw in r.messages():
            r.deserialize(raw, c.msgtype)
    return t_iter, time.perf_counter() - t + 0 * n


def convert_peak_rss(bag: Path | list[Path], cfg: Path, out: Path, details: dict | None = None
                     ) -> tuple[float, float, float]:
    """Run `act_bag_to_hdf5` on `bag` (one or several, one job): (wall s of the whole process, peak
    memory MiB, the conversion's own seconds from its summary line, i.e. without the start-up).

    Peak memory is the peak PSS of the converter and its writer process together: the writer is
    forked with torch loaded, and their RSS would count the pages they share (torch, Python,
    numpy: ~300 MiB) twice. PSS walks the page tables (~15 ms here), so it is sampled every
    ~0.1 s; the RSS sum, sampled every 10 ms, goes into `details` as an upper bound."""
    bags = [str(b) for b in (bag if isinstance(bag, list) else [bag])]
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "act_training.bags.convert", *bags, "--config", str(cfg),
                          "--out", str(out), "--no-progress", "--overwrite"],
                         stdout=subprocess.PIPE, text=True)
    ps, writer, k = psutil.Process(p.pid), None, 0
    peak_pss = rss = writer_rss = 0
    while p.poll() is None:
        try:
            rss = max(rss, ps.memory_info().rss)
            if writer is None and k % 10 == 0:  # children() scans /proc: not every sample
                writer = next(iter(ps.children()), None)
            if writer is not None:
                writer_rss = max(writer_rss, writer.memory_info().rss)
            if k % 10 == 5:
                peak_pss = max(peak_pss, sum(q.memory_full_info().pss for q in (ps, writer) if q is not None))
            k += 1
        except psutil.NoSuchProcess:
            if not ps.is_running():
                break
        time.sleep(0.01)
    wall = time.perf_counter() - t
    summary = p.stdout.read()
    assert p.returncode == 0, summary
    inner = float(re.search(r" in ([0-9.]+) s \(", summary).group(1))
    if details is not None:
        details.update(peak_rss_sum_mib=(rss + writer_rss) / 2**20, peak_rss_converter_mib=rss / 2**20,
                       peak_rss_writer_mib=writer_rss / 2**20, peak_pss_mib=peak_pss / 2**20)
    return wall, (peak_pss or rss + writer_rss) / 2**20, inner


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, nargs="+", default=[10, 50])
    ap.add_argument("--storage", nargs="+", default=["sqlite3", "mcap"])
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="bagbench-"))
    cfg = d / "map.yaml"
    c = base_config(image_size=[96, 96])
    cfg.write_text(yaml.safe_dump(c))
    print("| storage | bag s | bag MB | rosbags iterate MB/s | rosbags iterate+deserialize MB/s "
          "| convert MB/s | convert peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for storage in args.storage:
        for secs in args.seconds:
            bag = write_bag(d / f"{storage}_{int(secs)}", duration_s=secs, storage=storage,
                            size_hw=(240, 320))
            mb = bag_size_bytes(bag) / 1e6
            ti, td = bare_read(bag)
            tc, rss, _ = convert_peak_rss(bag, cfg, d / "out.hdf5")
            row = [storage, f"{secs:g}", f"{mb:.0f}", f"{mb / ti:.0f}", f"{mb / td:.0f}", f"{mb / tc:.1f}",
                   f"{rss:.0f}"]
            print("| " + " | ".join(row) + " |", flush=True)
            import shutil

            shutil.rmtree(bag)


if __name__ == "__main__":
    main()
