"""rosbag2 -> HDF5 converter on the odd bags real recordings are: every fault written for real.

Service-event connections beside the data, a backward stamp jump, undecodable messages, a
truncated mcap, a page corrupted mid-bag, a full disk (a small RLIMIT_FSIZE), a failing bag in a
multi-bag job, interrupts around `--overwrite`; and `--jobs` / reduced JPEG decoding give the
same episodes as the plain path.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from act_training.bags.convert import BagError, convert_bags
from act_training.bags.mapping import BagConfig
from bag_synth import JOINTS, T0, base_config, write_bag
from mirror_arm_sim.hdf5_layout import read_layout

LEADER = {"topic": "/leader/joint_states", "joints": [f"leader_{j}" for j in JOINTS], "names": JOINTS}
# What `ros2 bag record -a` stores for a service event topic on Jazzy/Kilted: the raw .srv text,
# which rosbags' parser refuses (ros2/rosbag2#2365).
SETBOOL_EVENT_DEF = ("=" * 80 + "\nSRV: std_srvs/srv/SetBool\nbool data # e.g. for hardware enabling\n---\n"
                     "bool success   # indicate successful run\nstring message # informational\n")


def cfg_of(**over) -> BagConfig:
    return BagConfig.from_dict(base_config(**over))


def run_cli(*args, preexec_fn=None, timeout=120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "act_training.bags.convert", *map(str, args), "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)


def write_map(tmp_path: Path, **over) -> Path:
    p = tmp_path / "map.yaml"
    p.write_text(yaml.safe_dump(base_config(**over)))
    return p


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The CLI's error: exit code 2 and exactly one line on stderr that is not a warning."""
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("WARNING:")]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


# ---- connections the mapping does not name -------------------------------------------------


def test_service_event_connections_are_skipped_with_one_warning(tmp_path):
    events = [{"topic": f"/{n}/enable/_service_event", "msgtype": "std_srvs/srv/SetBool_Event",
               "msgdef": SETBOOL_EVENT_DEF, "messages": [(0.5, b"\x00\x01\x00\x00" + b"\x00" * 40)]}
              for n in ("policy_node", "bridge")]
    bag = write_bag(tmp_path / "bag", storage="mcap", extra_connections=events)
    rep = convert_bags([bag], cfg_of(), tmp_path / "o.h5", progress=False)
    assert rep.episodes == 1 and read_layout(tmp_path / "o.h5").episode_lengths == [151]
    skipped = [w for w in rep.warnings if "cannot be parsed" in w]
    assert len(skipped) == 1 and len(rep.warnings) == 1, rep.warnings
    assert "/policy_node/enable/_service_event [std_srvs/srv/SetBool_Event]" in skipped[0]
    assert "/bridge/enable/_service_event" in skipped[0] and "\n" not in skipped[0]


def test_a_mapped_topic_with_an_unparseable_definition_is_one_line_naming_bag_topic_expected(tmp_path):
    # a custom marker type whose definition rosbags cannot parse and the Kilted store lacks
    marker = [{"topic": "/episode_marker", "msgtype": "my_pkg/msg/Odd", "msgdef": "int32 x y z\n!!\n",
               "messages": [(1.0, b"\x00\x01\x00\x00" + b"\x00" * 4)]}]
    bag = write_bag(tmp_path / "bag", extra_connections=marker)
    cfg = write_map(tmp_path, episodes={"split": "marker", "marker_topic": "/episode_marker"})
    line = error_line(run_cli(bag, "--config", cfg, "--out", tmp_path / "o.h5"))
    assert str(bag) in line and "topic /episode_marker" in line and "my_pkg/msg/Odd" in line
    assert "expected a parseable .msg/.idl definition" in line
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize("case", ["missing_topic", "wrong_type", "bad_frame", "short_episode"])
def test_every_error_is_one_line_with_exit_code_2(tmp_path, case):
    over, kw = {}, {}
    if case == "missing_topic":
        over = {"cameras": {"top": "/cam/nope"}}
    elif case == "wrong_type":
        over = {"qpos": {"topic": "/commands", "joints": JOINTS}}
    elif case == "bad_frame":
        kw = {"compressed": "jpeg", "bad_frames": (10,)}
        over = {"cameras": {"top": "/cam/top/compressed"}}
    else:
        over = {"episodes": {"min_length": 1000}}
    bag = write_bag(tmp_path / "bag", duration_s=2.0, **kw)
    line = error_line(run_cli(bag, "--config", write_map(tmp_path, **over), "--out", tmp_path / "o.h5"))
    assert line.startswith("act_bag_to_hdf5: error: ") and str(bag) in line
    expected = {"missing_topic": "topic /cam/nope not in the bag",
                "wrong_type": "topic /commands has message type std_msgs/msg/Float64MultiArray",
                "bad_frame": "/cam/top/compressed: CompressedImage 'jpeg'",
                "short_episode": "shorter than episodes.min_length=1000"}[case]
    assert expected in line


# ---- stamp jumps ----------------------------------------------------------------------------


@pytest.mark.parametrize("on_gap", ["split", "drop", "error"])
def test_backward_stamp_jump_ends_the_episode_and_splits_per_on_gap(tmp_path, on_gap):
    # a sim reset at 2 s: header stamps go back 30 s, receive times go on; 4 s of data in all
    bag = write_bag(tmp_path / "bag", duration_s=4.0, action_kind="leader", stamp_shift=(2.0, -30.0))
    cfg = cfg_of(action=LEADER, on_gap=on_gap)
    out = tmp_path / "o.h5"
    if on_gap == "error":
        with pytest.raises(BagError, match=r"/(cam/top|follower/joint_states|leader/joint_states): header "
                                           r"stamps jump back (29\.99|30\.00)\d s.*set on_gap: split"):
            convert_bags([bag], cfg, out, progress=False)
        assert not out.exists()
        return
    rep = convert_bags([bag], cfg, out, progress=False)
    lengths = read_layout(out).episode_lengths
    jump = [w for w in rep.warnings if "jump back" in w]
    assert len(jump) == 1 and str(bag) in jump[0] and "the episode ends there" in jump[0], rep.warnings
    if on_gap == "split":
        # before: t = 0 .. 1.98 s (100 steps); after: a new time base, 2 s of data again
        assert len(lengths) == 2 and abs(lengths[0] - 100) <= 2 and abs(lengths[1] - 100) <= 2, lengths
        with h5py.File(out) as f:
            q1 = f["demo_1/observations/qpos"][:]
        # the second episode is the data sampled from 2 s on (q_j(t) = sin(t + j)), not the first's
        assert np.abs(q1[0] - np.sin(2.0 + np.arange(7))).max() < 0.05, q1[0]
    else:
        assert len(lengths) == 1 and abs(lengths[0] - 100) <= 2, lengths
    assert max(s["max_pending"] for s in rep.per_bag) < 200  # the grid never stalled


def test_one_message_stamped_far_back_is_left_out_not_taken_for_a_jump(tmp_path):
    bag = write_bag(tmp_path / "bag", duration_s=3.0, glitches=(1.0,))
    rep = convert_bags([bag], cfg_of(on_gap="error"), tmp_path / "o.h5", progress=False)
    assert rep.episodes == 1 and read_layout(tmp_path / "o.h5").episode_lengths == [151]
    assert [w for w in rep.warnings if "/follower/joint_states: one message stamped" in w and "left out" in w]


# ---- bad messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jpeg", "rgb8"])
def test_on_bad_message_skip_counts_and_warns_error_names_the_message(tmp_path, kind):
    kw = {"compressed": "jpeg"} if kind == "jpeg" else {"encoding": "rgb8"}
    topic = "/cam/top/compressed" if kind == "jpeg" else "/cam/top"
    bag = write_bag(tmp_path / "bag", duration_s=3.0, bad_frames=(20, 21, 40), **kw)
    with pytest.raises(BagError, match=rf"{bag}: {topic}: .*set on_bad_message: skip"):
        convert_bags([bag], cfg_of(cameras={"top": topic}), tmp_path / "e.h5", progress=False)
    assert not (tmp_path / "e.h5").exists()
    rep = convert_bags([bag], cfg_of(cameras={"top": topic}, on_bad_message="skip"), tmp_path / "o.h5",
                       progress=False)
    assert rep.per_bag[0]["bad_messages"] == 3 and rep.episodes == 1
    assert any("3 undecodable message(s) skipped" in w for w in rep.warnings), rep.warnings
    with h5py.File(tmp_path / "o.h5") as f:
        g = f["demo_0"]
        r = g["observations/image"][:, 0, 0, 0].astype(int)
        t = (g.attrs["start_time_ns"] - T0) / 1e9 + np.arange(g.attrs["num_steps"]) / 50
        held = np.minimum(np.floor(t * 30 + 1e-6).astype(int), 89)
        for bad in (20, 21, 40):  # the previous good frame is held in place of a bad one
            held[held == bad] = 19 if bad in (20, 21) else 39
        tol = 3 if kind == "jpeg" else 0
        assert np.abs(r - held % 256).max() <= tol


# ---- corrupt storage ------------------------------------------------------------------------


def test_truncated_mcap_converts_up_to_where_it_ends(tmp_path):
    bag = write_bag(tmp_path / "bag", duration_s=6.0, storage="mcap", size_hw=(48, 64))
    f = next(bag.glob("*.mcap"))
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * 0.6)])  # a recording cut short: no summary, no footer
    ok = write_bag(tmp_path / "ok", duration_s=2.0)
    rep = convert_bags([ok, bag], cfg_of(), tmp_path / "o.h5", progress=False)
    lengths = read_layout(tmp_path / "o.h5").episode_lengths
    assert len(lengths) == 2 and lengths[0] == 101 and 100 < lengths[1] < 300, lengths
    notes = [w for w in rep.warnings if str(bag) in w]
    assert any("without summary or footer" in w and "mcap recover" in w for w in notes), notes
    assert any("storage unreadable after" in w and "ros2 bag reindex" in w for w in notes), notes


def test_page_corrupted_mid_sqlite3_bag_ends_the_episode_there(tmp_path):
    bag = write_bag(tmp_path / "bag", duration_s=6.0, size_hw=(48, 64))
    f = next(bag.glob("*.db3"))
    data = bytearray(f.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    n_pages = len(data) // page

    def next_page(i):  # an overflow page (a frame's bytes) starts with the number of the next one
        return int.from_bytes(data[i * page:i * page + 4], "big")

    # the first overflow page past the middle that has a successor: point it beyond the file
    k = next(i for i in range(n_pages // 2, n_pages) if 1 < next_page(i) < n_pages and data[i * page] == 0)
    data[k * page:k * page + 4] = (n_pages + 1000).to_bytes(4, "big")
    f.write_bytes(bytes(data))
    rep = convert_bags([bag], cfg_of(), tmp_path / "o.h5", progress=False)
    lengths = read_layout(tmp_path / "o.h5").episode_lengths
    assert len(lengths) == 1 and 50 < lengths[0] < 300, lengths
    assert any("storage unreadable after" in w and "the episode ends" in w and "reindex" in w
               for w in rep.warnings), rep.warnings


def test_skip_bad_bags_converts_the_rest_and_lists_the_skipped(tmp_path):
    good1 = write_bag(tmp_path / "good1", duration_s=2.0)
    bad = write_bag(tmp_path / "bad", duration_s=2.0, action_kind="leader")  # no /commands
    broken = write_bag(tmp_path / "broken", duration_s=2.0)
    (broken / "metadata.yaml").unlink()
    good2 = write_bag(tmp_path / "good2", duration_s=2.0, storage="mcap")
    cfg = write_map(tmp_path)
    out = tmp_path / "o.h5"
    assert error_line(run_cli(good1, bad, good2, "--config", cfg, "--out", out))
    assert not out.exists()
    proc = run_cli(good1, bad, broken, good2, "--config", cfg, "--out", out, "--skip-bad-bags")
    assert proc.returncode == 0, proc.stderr
    assert "2 bag(s) skipped" in proc.stdout and f"skipped {bad}: " in proc.stdout
    assert f"skipped {broken}: " in proc.stdout and "topic /commands not in the bag" in proc.stdout
    info = read_layout(out)
    assert info.num_demos == 2
    with h5py.File(out) as f:
        assert [f[f"demo_{i}"].attrs["source_bag"] for i in range(2)] == [str(good1), str(good2)]


def test_a_bag_failing_after_some_episodes_contributes_none_with_skip_bad_bags(tmp_path):
    # three episodes by marker; the third is too short -> on_short: error fails the bag halfway
    bag = write_bag(tmp_path / "bag", duration_s=4.0, markers=[1.5, 3.5])
    good = write_bag(tmp_path / "good", duration_s=4.0, markers=[2.0])
    cfg = cfg_of(episodes={"split": "marker", "marker_topic": "/episode", "min_length": 40})
    rep = convert_bags([bag, good], cfg, tmp_path / "o.h5", progress=False, skip_bad_bags=True)
    assert rep.skipped and rep.skipped[0][0] == str(bag) and "shorter than" in rep.skipped[0][1]
    info = read_layout(tmp_path / "o.h5")
    assert info.num_demos == 2 and info.episode_lengths == [100, 101]
    with h5py.File(tmp_path / "o.h5") as f:
        assert {f[f"demo_{i}"].attrs["source_bag"] for i in range(2)} == {str(good)} and "demo_2" not in f


# ---- writing faults -------------------------------------------------------------------------


def _fsize_limit(nbytes: int):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG, as on ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


def test_full_disk_removes_the_temporary_file_and_prints_one_line(tmp_path):
    bag = write_bag(tmp_path / "bag", duration_s=4.0, size_hw=(240, 320), noise=True)
    cfg = write_map(tmp_path, image_size=[96, 96])
    out = tmp_path / "out" / "demos.hdf5"
    out.parent.mkdir()
    # a noisy quadrant does not compress: 200 steps of 96x96 need ~1.4 MB, the limit is 512 KiB
    proc = run_cli(bag, "--config", cfg, "--out", out, "--set", "image_size=[96,96]",
                   preexec_fn=_fsize_limit(512 * 1024))
    line = error_line(proc)
    assert str(out) in line and "disk full" in line and "temporary file was removed" in line, line
    assert list(out.parent.iterdir()) == []


def test_overwrite_never_loses_both_files_whenever_the_interrupt_lands(tmp_path):
    bag = write_bag(tmp_path / "bag", duration_s=1.0)
    cfg = write_map(tmp_path)
    out = tmp_path / "o.h5"
    out.write_bytes(b"previous")
    outcomes = set()
    # interrupts at every stage: before the temporary file, while writing, around the rename
    for stage in ("start", "tmp", "out_changed"):
        for _ in range(2):
            before = out.stat().st_mtime_ns
            proc = subprocess.Popen([sys.executable, "-m", "act_training.bags.convert", str(bag), str(bag),
                                     "--config", str(cfg), "--out", str(out), "--overwrite", "--no-progress"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                if stage == "start" or (stage == "tmp" and list(tmp_path.glob("o.h5.tmp-*"))) or (
                        stage == "out_changed" and out.exists() and out.stat().st_mtime_ns != before):
                    break
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            assert out.exists(), f"both files lost ({stage}): {err}"
            content = out.read_bytes()
            if content == b"previous":
                outcomes.add("old")
            else:
                assert read_layout(out).num_demos == 2, err
                outcomes.add("new")
                out.write_bytes(b"previous")
            assert not list(tmp_path.glob("o.h5.tmp-*"))
    assert "old" in outcomes


# ---- throughput paths give the same episodes ------------------------------------------------


def test_jobs_give_the_same_file_contents_as_one_thread(tmp_path):
    bag = write_bag(tmp_path / "bag", duration_s=3.0, size_hw=(120, 160), markers=[1.2])
    cfg = cfg_of(image_size=[48, 64], episodes={"split": "marker", "marker_topic": "/episode",
                                                 "min_length": 10})
    convert_bags([bag], cfg, tmp_path / "j1.h5", progress=False, jobs=1)
    convert_bags([bag], cfg, tmp_path / "j3.h5", progress=False, jobs=3)
    with h5py.File(tmp_path / "j1.h5") as a, h5py.File(tmp_path / "j3.h5") as b:
        assert a.attrs["num_demos"] == b.attrs["num_demos"] == 2
        for i in range(2):
            for key in ("observations/image", "observations/qpos", "actions"):
                np.testing.assert_array_equal(a[f"demo_{i}/{key}"][:], b[f"demo_{i}/{key}"][:])
            assert b[f"demo_{i}/observations/image"].chunks[0] == 1  # one frame per chunk: the loader


def test_default_threads_decode_only_compressed_frames(tmp_path, monkeypatch):
    """By default raw Image frames are resized in the reading thread (cheaper than a hand-off to a
    thread) and CompressedImage frames in the pool; `--jobs N` puts every camera in the pool."""
    import threading

    from act_training.bags import frames

    seen: list[str] = []
    orig = frames.FrameDecoder.__call__

    def spy(self, raw):
        seen.append(threading.current_thread().name)
        return orig(self, raw)

    monkeypatch.setattr(frames.FrameDecoder, "__call__", spy)
    for compressed, jobs, pooled in [(None, None, False), ("jpeg", None, True), (None, 2, True)]:
        seen.clear()
        name = f"{compressed}{jobs}"
        bag = write_bag(tmp_path / name, duration_s=1.0, size_hw=(48, 64), compressed=compressed)
        topic = "/cam/top/compressed" if compressed else "/cam/top"
        cfg = cfg_of(image_size=[24, 32], cameras={"top": topic})
        convert_bags([bag], cfg, tmp_path / f"{name}.h5", progress=False, jobs=jobs)
        assert seen, "no frame decoded"
        in_pool = {name.startswith("bag-frames") for name in seen}
        assert in_pool == {pooled}, (compressed, jobs, sorted(set(seen)))


def test_reduced_jpeg_decoding_matches_full_decoding_closely(tmp_path):
    import cv2
    from act_training.bags.frames import jpeg_reduction, jpeg_size

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 6)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok and jpeg_size(buf.reshape(-1)) == (480, 640)
    assert jpeg_reduction((480, 640), (96, 96)) == 4 and jpeg_reduction((480, 640), (300, 300)) == 1
    # a bag of 480x640 JPEGs converted to 96x96: reduced decoding vs the full frame resized
    bag = write_bag(tmp_path / "bag", duration_s=1.0, compressed="jpeg", size_hw=(480, 640))
    convert_bags([bag], cfg_of(cameras={"top": "/cam/top/compressed"}, image_size=[96, 96]),
                 tmp_path / "o.h5", progress=False)
    from act_training.bags.frames import resize_frame
    from bag_synth import compressed_msg

    with h5py.File(tmp_path / "o.h5") as f:
        got = f["demo_0/observations/image"][0]
    full = cv2.imdecode(compressed_msg(0, 0, 480, 640, "jpeg").data, cv2.IMREAD_COLOR)[..., ::-1]
    want = resize_frame(full, (96, 96))
    diff = np.abs(got.astype(int) - want.astype(int))
    # libjpeg's DCT scaling and INTER_AREA differ a little at sharp edges, hardly elsewhere
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 4, (diff.mean(), diff.max())


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])  # mcap: its chunks are memory-mapped
def test_memory_stays_flat_with_the_bag_length(tmp_path, storage):
    cfg = write_map(tmp_path, image_size=[48, 48])
    peaks = []
    for secs in (4, 16):
        bag = write_bag(tmp_path / f"b{secs}", duration_s=secs, size_hw=(240, 320), storage=storage)
        # a fresh parent per run: RUSAGE_CHILDREN's ru_maxrss is then this conversion's peak
        code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; "
                "print(r, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        p = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "act_training.bags.convert",
                            str(bag), "--config", str(cfg), "--out", str(tmp_path / f"o{secs}.h5"),
                            "--no-progress"], capture_output=True, text=True, timeout=120)
        rc, kib = p.stdout.split()[-2:]
        assert rc == "0", p.stderr
        peaks.append(int(kib) / 1024)
    # MiB: a 4x longer bag (88 vs 350 MB of frames) must not raise the peak with its length; a
    # converter that held frames would add ~260 MiB. Measured 2026-12-01: +22 to +24 MiB on a
    # 700-1000 MiB peak (torch's per-thread allocator pools), so 20 MiB was too tight.
    assert peaks[1] < peaks[0] + 64, peaks
