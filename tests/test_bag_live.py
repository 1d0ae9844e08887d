"""LIVE: a publisher process → act_bag_record (sqlite3 and mcap) over real DDS → act_bag_to_hdf5.

The converted file validates and matches what was published, within resampling tolerance.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from mirror_arm_sim.hdf5_layout import read_layout

pytest.importorskip("rclpy")
from act_training.bags.convert import convert_bags  # noqa: E402
from act_training.bags.mapping import BagConfig  # noqa: E402

HERE = Path(__file__).resolve().parent
TOPICS = ["/live/cam/top", "/live/joint_states", "/live/commands"]
JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_pitch", "wrist_roll", "gripper"]


def _wait_line(proc, text: str, timeout: float) -> list[str]:
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"'{text}' not seen within {timeout} s: {lines}")


@pytest.mark.ros
def test_live_topics_recorded_sqlite3_and_mcap_then_converted(tmp_path):
    log = tmp_path / "published.npz"
    pub = subprocess.Popen([sys.executable, str(HERE / "bag_live_publisher.py"), str(log), "60"])
    recs = {}
    try:
        for storage in ("sqlite3", "mcap"):
            recs[storage] = subprocess.Popen(
                [sys.executable, "-m", "act_training.bags.record", str(tmp_path / f"bag_{storage}"),
                 "--storage", storage, "--topics", *TOPICS],
                stdout=subprocess.PIPE, text=True,
            )
        for p in recs.values():
            _wait_line(p, "recording 3 topics", 60)
        time.sleep(3.0)
        for p in recs.values():
            p.send_signal(signal.SIGINT)
        for p in recs.values():
            out, _ = p.communicate(timeout=30)
            assert p.returncode == 0, out
            assert "closed" in out
    finally:
        pub.send_signal(signal.SIGINT)
        pub.wait(timeout=30)
        for p in recs.values():
            if p.poll() is None:
                p.kill()
    published = np.load(log)["log"]  # (k, header stamp ns, publish time ns)
    cfg = BagConfig.from_dict({
        "control_hz": 50, "image_size": [24, 32], "time": "header", "max_staleness_s": 0.2,
        "cameras": {"top": "/live/cam/top"},
        "qpos": {"topic": "/live/joint_states", "joints": JOINTS},
        "action": {"topic": "/live/commands"},  # no header: receive time
        "episodes": {"split": "bag", "min_length": 50},
    })
    for storage in ("sqlite3", "mcap"):
        out = tmp_path / f"{storage}.hdf5"
        rep = convert_bags([tmp_path / f"bag_{storage}"], cfg, out, progress=False)
        info = read_layout(out)
        assert info.num_demos == 1 and info.episode_lengths[0] >= 100, (storage, info.episode_lengths)
        with h5py.File(out) as f:
            g = f["demo_0"]
            T = g.attrs["num_steps"]
            t = int(g.attrs["start_time_ns"]) + np.arange(T, dtype=np.int64) * 20_000_000
            # expected: the newest message published (header stamp) at or before each grid time
            k_exp = published[np.searchsorted(published[:, 1], t, side="right") - 1, 0]
            img = g["observations/image"][:]
            k_img = img[:, 0, 0, 0].astype(int) + 256 * img[:, 0, 0, 1].astype(int)
            # images and qpos on header stamps: exactly the message held (a lost message -> one older)
            assert np.mean(k_img == k_exp) > 0.95 and np.all(np.abs(k_img - k_exp) <= 2), storage
            q = g["observations/qpos"][:]
            q_exp = np.sin(0.05 * k_exp[:, None] + np.arange(7))
            assert np.mean(np.all(np.abs(q - q_exp) < 1e-5, axis=1)) > 0.95, storage
            # the action on receive time: the message of step k or k-1 (DDS latency < one period)
            a = g["actions"][:]
            a_k = np.cos(0.05 * k_exp[:, None] + np.arange(7))
            a_k1 = np.cos(0.05 * (k_exp[:, None] - 1) + np.arange(7))
            ok = np.all(np.abs(a - a_k) < 1e-5, axis=1) | np.all(np.abs(a - a_k1) < 1e-5, axis=1)
            assert np.mean(ok) > 0.95, storage
            assert np.all(img[:, 5, 5, 2] == 50)
        print(f"LIVE {storage}: {T} steps, {rep.bag_bytes / 1e6:.2f} MB bag")
