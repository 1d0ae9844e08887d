"""The converter's HDF5 writer in its own process (`act_training.bags.writer_process`).

Same file as writing in-process; a writer process that dies, or a converter that is killed,
leaves no temporary file and no process behind; a failed write in the child is raised in the
parent at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest
import yaml
from act_training.bags.convert import BagError, convert_bags
from act_training.bags.mapping import BagConfig
from act_training.bags.writer_process import WriterProcess
from bag_synth import base_config, write_bag
from mirror_arm_sim.hdf5_layout import LayoutError, read_layout


def _wait_for(cond, what: str, timeout: float = 60.0, proc=None):
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the converter ended ({proc.returncode}) before {what}: "
                                 f"{proc.stderr.read()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _start(tmp_path: Path, secs: float = 20.0):
    bag = write_bag(tmp_path / "bag", duration_s=secs, size_hw=(240, 320), noise=True)
    cfg = tmp_path / "map.yaml"
    cfg.write_text(yaml.safe_dump(base_config(image_size=[96, 96])))
    out = tmp_path / "out" / "demos.hdf5"
    out.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "act_training.bags.convert", str(bag),
                             "--config", str(cfg), "--out", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the temporary file exists and holds frames: the writer process is writing
    _wait_for(lambda: any(p.stat().st_size > 1 << 20 for p in out.parent.glob("demos.hdf5.tmp-*")),
              "the first written frames", proc=proc)
    return proc, out


def test_the_file_is_the_one_written_in_process(tmp_path):
    bag = write_bag(tmp_path / "bag", duration_s=3.0, size_hw=(120, 160), markers=[1.2])
    cfg = BagConfig.from_dict(base_config(image_size=[48, 64], episodes={
        "split": "marker", "marker_topic": "/episode", "min_length": 10}))
    convert_bags([bag], cfg, tmp_path / "child.h5", progress=False, writer_process=True)
    convert_bags([bag], cfg, tmp_path / "here.h5", progress=False, writer_process=False)
    with h5py.File(tmp_path / "child.h5") as a, h5py.File(tmp_path / "here.h5") as b:
        assert a.attrs["num_demos"] == b.attrs["num_demos"] == 2
        assert dict(a.attrs).keys() == dict(b.attrs).keys()
        for i in range(2):
            assert dict(a[f"demo_{i}"].attrs) == dict(b[f"demo_{i}"].attrs)
            for key in ("observations/image", "observations/qpos", "actions"):
                np.testing.assert_array_equal(a[f"demo_{i}/{key}"][:], b[f"demo_{i}/{key}"][:])
    assert not list(tmp_path.glob("*.tmp-*"))


def test_rollback_and_a_wrong_frame_size_in_the_parent(tmp_path):
    w = WriterProcess(["top"], (8, 8), block=4).open(tmp_path / "o.h5", joint_names=["a"])
    img = np.zeros((8, 8, 3), np.uint8)
    for n_steps in (6, 3):
        ep = w.begin_episode({"k": n_steps}, flush_every=4)
        for _ in range(n_steps):
            ep.append({"top": img}, [1.0], [2.0])
        ep.commit()
    w.drop_demos_from(1)  # a skipped bag's episodes
    ep = w.begin_episode({}, flush_every=4)
    with pytest.raises(LayoutError, match=r"'top': image \(9, 8\) uint8 at step 0, expected \(H, W, 3\)"):
        for _ in range(4):
            ep.append({"top": np.zeros((9, 8), np.uint8)}, [1.0], [2.0])
    ep.discard()
    w.close()
    info = read_layout(tmp_path / "o.h5")
    assert info.num_demos == 1
    with h5py.File(tmp_path / "o.h5") as f:
        assert f["demo_0"].attrs["num_steps"] == 6 and f["demo_0/observations/qpos"].shape == (6, 1)
    assert not list(tmp_path.glob("o.h5.tmp-*"))


@pytest.mark.parametrize("who", ["child", "parent", "by-load", "too-large"])
def test_frames_of_any_size_are_resized_once_by_either_process(tmp_path, monkeypatch, who):
    """Raw frames come at their recorded size; whichever process resizes one, the stored bytes are
    the pipeline's resize of it, for every step that holds it (a frame held over steps included)."""
    from act_training.bags import writer_process
    from act_training.bags.frames import resize_frame

    if who in ("child", "parent"):
        monkeypatch.setattr(writer_process.RemoteEpisode, "_child_busy", lambda self: who == "parent")
    arena = 8 << 10 if who == "too-large" else 1 << 20  # too-large: 40x60 frames exceed the 4 KiB limit
    rng = np.random.default_rng(0)
    sizes = [(40, 60), (40, 60), (24, 32), (9, 9)]
    frames = [rng.integers(0, 256, hw + (3,), dtype=np.uint8) for hw in sizes]
    frames.append(frames[2][::-1, ::2])  # a strided view (a padded or flipped image decodes to one)
    steps = [0, 0, 1, 1, 1, 2, 3, 4, 4, 0]  # frame index per step: held frames repeat
    w = WriterProcess(["top"], (12, 16), block=4, arena_bytes=arena)
    w.open(tmp_path / "o.h5", joint_names=["a"])
    ep = w.begin_episode({}, flush_every=4)
    for i, k in enumerate(steps):
        ep.append({"top": frames[k]}, [float(i)], [0.0])
    ep.commit()
    w.close()
    with h5py.File(tmp_path / "o.h5") as f:
        got = f["demo_0/observations/image"][:]
        np.testing.assert_array_equal(f["demo_0/observations/qpos"][:, 0], np.arange(len(steps)))
    for i, k in enumerate(steps):
        np.testing.assert_array_equal(got[i], resize_frame(frames[k], (12, 16)), err_msg=f"step {i}")


def test_a_writer_process_that_dies_is_one_error_line_and_no_file(tmp_path):
    proc, out = _start(tmp_path)
    child = psutil.Process(proc.pid).children()
    assert len(child) == 1, child
    child[0].kill()
    _, err = proc.communicate(timeout=60)
    lines = [ln for ln in err.splitlines() if not ln.startswith("WARNING:")]
    assert proc.returncode == 2 and len(lines) == 1, err
    assert "writer process ended" in lines[0] and str(out) in lines[0], lines[0]
    assert list(out.parent.iterdir()) == []


def test_a_killed_converter_leaves_no_writer_and_no_file(tmp_path):
    proc, out = _start(tmp_path)
    child = psutil.Process(proc.pid).children()[0]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # its end of the pipe closes: the writer removes the temporary file and exits
    _wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, "the writer to end")
    _wait_for(lambda: list(out.parent.iterdir()) == [], "the temporary file to go")


def test_a_failed_write_is_raised_in_the_parent(tmp_path, monkeypatch):
    """A write error in the child (here: a layout error on the child's side) ends the job with it."""
    bag = write_bag(tmp_path / "bag", duration_s=2.0, size_hw=(48, 64))
    cfg = BagConfig.from_dict(base_config(image_size=[24, 32]))
    from mirror_arm_sim import hdf5_layout

    def fail(self, *a):
        raise OSError(28, "No space left on device (test)")

    monkeypatch.setattr(hdf5_layout.EpisodeAppender, "extend", fail)  # inherited by the fork
    with pytest.raises(BagError, match="disk full .* the temporary file was removed"):
        convert_bags([bag], cfg, tmp_path / "o.h5", progress=False)
    assert list(tmp_path.glob("o.h5*")) == []


def test_a_file_the_child_cannot_create_is_raised_at_the_next_call(tmp_path):
    (tmp_path / "afile").write_text("not a directory")
    w = WriterProcess(["top"], (8, 8)).open(tmp_path / "afile" / "o.h5", joint_names=["a"])
    with pytest.raises(OSError):  # FileExistsError / NotADirectoryError from DemoWriter's mkdir, unasked
        ep = w.begin_episode({})
        ep.append({"top": np.zeros((8, 8, 3), np.uint8)}, [1.0], [2.0])
        ep.commit()
        w.close()
    w.abort()
    assert not w._proc.is_alive()


def test_a_writer_that_is_never_opened_ends_with_the_converter(tmp_path):
    """The CLI forks its writer before it knows the job is valid: a job refused up front ends it."""
    cfg = tmp_path / "map.yaml"
    cfg.write_text(yaml.safe_dump(base_config()))
    proc = subprocess.run([sys.executable, "-m", "act_training.bags.convert", str(tmp_path / "missing"),
                           "--config", str(cfg), "--out", str(tmp_path / "o.h5"), "--no-progress"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "bag not found" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == [cfg]


def test_a_library_caller_whose_torch_threads_ran_can_convert(tmp_path):
    """`convert_bags` forks its writer wherever it is called from: here after torch's thread pool
    ran (a training script converting its demos), which a forked child must not re-enter."""
    bag = write_bag(tmp_path / "bag", duration_s=2.0, size_hw=(120, 160))
    cfg = tmp_path / "map.yaml"
    cfg.write_text(yaml.safe_dump(base_config(image_size=[48, 64])))
    code = ("import sys, torch; torch.set_num_threads(2); x = torch.randn(512, 512); "
            "[torch.nn.functional.interpolate(x[None, None], size=(100, 100), mode='bilinear', "
            "antialias=True) for _ in range(20)]; (x @ x).sum().item(); "
            "from act_training.bags.convert import convert_bags; "
            "from act_training.bags.mapping import BagConfig; "
            "r = convert_bags([sys.argv[1]], BagConfig.load(sys.argv[2]), sys.argv[3], progress=False); "
            "print(r.steps)")
    p = subprocess.run([sys.executable, "-c", code, str(bag), str(cfg), str(tmp_path / "o.h5")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout.split()[-1]) > 90 and read_layout(tmp_path / "o.h5").num_demos == 1
