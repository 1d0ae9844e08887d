"""rosbag2 → HDF5 converter: synthetic bags (rosbags Writer, sqlite3 and mcap), every error, atomicity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from act_training.bags.convert import BagError, convert_bags, main
from act_training.bags.mapping import BagConfig, BagConfigError
from bag_synth import JOINTS, T0, TS, a_of, base_config, q_of, write_bag
from mirror_arm_sim.hdf5_layout import read_layout


def cfg_of(**over) -> BagConfig:
    return BagConfig.from_dict(base_config(**over))


def expected_hold(g, hz: float, n_samples: int, gaps=()) -> np.ndarray:
    """Sample index held (zero-order) at each grid step of demo group g, for a stream at hz from T0."""
    t0 = (int(g.attrs["start_time_ns"]) - T0) / 1e9
    t = t0 + np.arange(g.attrs["num_steps"]) / 50.0
    k = np.arange(n_samples)
    ts = k / hz
    keep = ~np.any([(ts >= a) & (ts < b) for a, b in gaps] or [np.zeros(n_samples, bool)], axis=0)
    k, ts = k[keep], ts[keep]
    return k[np.searchsorted(ts, t + 1e-9, side="right") - 1]


def check_demo(g, duration=3.0, cam_hz=30.0, action_hz=50.0, atol=1e-6, gaps=()):
    k_q = expected_hold(g, 100.0, int(duration * 100), gaps)
    k_a = expected_hold(g, action_hz, int(duration * action_hz), gaps)
    k_c = expected_hold(g, cam_hz, int(duration * cam_hz), gaps)
    q, a = g["observations/qpos"][:], g["actions"][:]
    np.testing.assert_allclose(q, np.stack([q_of(k / 100.0) for k in k_q]), atol=atol)
    np.testing.assert_allclose(a, np.stack([a_of(k / action_hz) for k in k_a]), atol=atol)
    im = g["observations/image"]
    np.testing.assert_array_equal(im[:, 0, 0, 0], k_c % 256)  # R = frame index: bgr/rgb kept apart
    np.testing.assert_array_equal(im[:, 0, 0, 1], 7)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap", "file.mcap"])
def test_converts_sqlite3_mcap_and_single_mcap_file(tmp_path, storage):
    name = "bag.mcap" if storage == "file.mcap" else "bag"
    bag = write_bag(tmp_path / name, storage="mcap" if "mcap" in storage else "sqlite3")
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    rep = convert_bags([bag], cfg_of(), tmp_path / "out.hdf5", progress=False)
    info = read_layout(tmp_path / "out.hdf5")
    assert info.num_demos == 1 and info.image_shape == (24, 32) and info.camera_names == ["top"]
    assert info.joint_names == JOINTS and info.control_hz == 50.0 and info.episode_lengths == [151]
    with h5py.File(tmp_path / "out.hdf5") as f:
        check_demo(f["demo_0"])
        assert "rosbag" in f.attrs["source"]
    assert rep.episodes == 1 and rep.steps == 151 and not rep.warnings
    after = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")
                   if p.name != "out.hdf5")
    assert after == before, "inputs must not be touched"


@pytest.mark.parametrize("encoding,compressed", [("bgr8", None), ("mono8", None), (None, "png"),
                                                 (None, "jpeg")])
def test_image_encodings(tmp_path, encoding, compressed):
    bag = write_bag(tmp_path / "bag", encoding=encoding or "rgb8", compressed=compressed, size_hw=(24, 32))
    topic = "/cam/top/compressed" if compressed else "/cam/top"
    convert_bags([bag], cfg_of(cameras={"top": topic}), tmp_path / "o.h5", progress=False)
    with h5py.File(tmp_path / "o.h5") as f:
        g = f["demo_0"]
        im = g["observations/image"][:]
        k_c = expected_hold(g, 30.0, 90)
        tol = 3 if compressed == "jpeg" else 0
        r = im[:, 5, 5].astype(int)
        if encoding == "mono8":  # grey image = the R channel replicated
            np.testing.assert_array_equal(r, np.stack([k_c % 256] * 3, 1))
        else:
            assert np.abs(r[:, 0] - k_c % 256).max() <= tol and np.abs(r[:, 1] - 7).max() <= tol
            assert np.abs(im[:, -3, -3, 2].astype(int) - 200).max() <= tol  # blue quadrant stays blue


@pytest.mark.parametrize("kind", ["leader", "trajectory"])
def test_action_from_leader_joint_states_and_joint_trajectory(tmp_path, kind):
    bag = write_bag(tmp_path / "bag", action_kind=kind)
    if kind == "leader":
        action = {"topic": "/leader/joint_states", "joints": [f"leader_{j}" for j in JOINTS], "names": JOINTS}
    else:
        action = {"topic": "/trajectory", "joints": JOINTS}  # the message lists them reversed
    convert_bags([bag], cfg_of(action=action), tmp_path / "o.h5", progress=False)
    with h5py.File(tmp_path / "o.h5") as f:
        check_demo(f["demo_0"])
        assert read_layout(tmp_path / "o.h5").action_names == JOINTS


def test_many_bags_one_episode_each_and_receive_time(tmp_path):
    bags = [write_bag(tmp_path / f"b{i}", duration_s=2.0, storage=["sqlite3", "mcap"][i % 2])
            for i in range(3)]
    rep = convert_bags(bags, cfg_of(time="receive"), tmp_path / "o.h5", progress=False)
    info = read_layout(tmp_path / "o.h5")
    assert info.num_demos == 3 == rep.episodes
    with h5py.File(tmp_path / "o.h5") as f:
        assert [f[f"demo_{i}"].attrs["source_bag"] for i in range(3)] == [str(b) for b in bags]
        # receive time = stamp + 1 ms (joints) / 3 ms (camera): within one sample of the header result
        q = f["demo_0/observations/qpos"][:]
        k = expected_hold(f["demo_0"], 100.0, 200)
        assert np.abs(q - np.stack([q_of(i / 100.0) for i in k])).max() < 0.011


def test_split_by_marker_topic(tmp_path):
    bag = write_bag(tmp_path / "bag", duration_s=4.0, markers=[1.5, 3.0])
    cfg = cfg_of(episodes={"split": "marker", "marker_topic": "/episode", "min_length": 10})
    convert_bags([bag], cfg, tmp_path / "o.h5", progress=False)
    info = read_layout(tmp_path / "o.h5")
    assert info.episode_lengths == [75, 75, 51]
    with h5py.File(tmp_path / "o.h5") as f:
        for i in range(3):
            check_demo(f[f"demo_{i}"], duration=4.0)


def test_gap_split_drop_and_error(tmp_path, caplog):
    bag = write_bag(tmp_path / "bag", duration_s=4.0, gaps=[(1.5, 2.0)])
    # split: two episodes, warning names the gap
    rep = convert_bags([bag], cfg_of(on_gap="split"), tmp_path / "split.h5", progress=False)
    assert read_layout(tmp_path / "split.h5").num_demos == 2
    assert any("gap longer than max_staleness_s=0.1" in w and "/cam/top" in w and "split" in w
               for w in rep.warnings), rep.warnings
    with h5py.File(tmp_path / "split.h5") as f:
        check_demo(f["demo_0"], duration=4.0, gaps=[(1.5, 2.0)])
        check_demo(f["demo_1"], duration=4.0, gaps=[(1.5, 2.0)])
        # last frame before the gap at 1.467 s is held up to 0.1 s: steps t = 0 .. 1.56
        assert f["demo_0"].attrs["num_steps"] == 79
    # drop: the episode with the gap is dropped (here the bag's only one -> nothing to write)
    with pytest.raises(BagError, match="no episodes converted"):
        convert_bags([bag], cfg_of(on_gap="drop"), tmp_path / "drop.h5", progress=False)
    assert "episode dropped (on_gap: drop)" in caplog.text and "/follower/joint_states" in caplog.text
    ok = write_bag(tmp_path / "ok", duration_s=2.0)
    rep = convert_bags([bag, ok], cfg_of(on_gap="drop"), tmp_path / "drop.h5", progress=False)
    assert rep.episodes == 1 and any("episode 0" in w and "dropped" in w for w in rep.warnings)
    # error
    gap_msg = r"gap longer than max_staleness_s=0.1 on \[.*/cam/top.*\] from t=1.58s to t=2.00s"
    with pytest.raises(BagError, match=gap_msg):
        convert_bags([bag], cfg_of(on_gap="error"), tmp_path / "err.h5", progress=False)
    assert not (tmp_path / "err.h5").exists()


# ---- errors, each with its message ------------------------------------------------------------


def test_error_missing_topic_lists_what_the_bag_has(tmp_path):
    bag = write_bag(tmp_path / "bag", duration_s=1.0)
    with pytest.raises(BagError) as e:
        convert_bags([bag], cfg_of(cameras={"top": "/cam/wrong"}), tmp_path / "o.h5", progress=False)
    msg = str(e.value)
    assert "topic /cam/wrong not in the bag" in msg and str(bag) in msg
    assert "/cam/top [sensor_msgs/msg/Image]" in msg and "/commands [std_msgs/msg/Float64MultiArray]" in msg


def test_error_message_type_not_usable_and_unknown(tmp_path):
    chatter = ("std_msgs/msg/String", TS.types["std_msgs/msg/String"](data="x"))
    bag = write_bag(tmp_path / "bag", duration_s=1.0, extra_topics={"/chatter": chatter})
    with pytest.raises(BagError, match=r"topic /chatter has message type std_msgs/msg/String.*camera"):
        convert_bags([bag], cfg_of(cameras={"top": "/chatter"}), tmp_path / "o.h5", progress=False)
    from rosbags.rosbag2 import Writer

    custom = write_bag(tmp_path / "custom", duration_s=1.0)
    with Writer(tmp_path / "custom2", version=9) as w:  # a mapped type without any definition
        c = w.add_connection("/x", "my_pkg/msg/Foo", msgdef="", rihs01="RIHS01_" + "0" * 64)
        w.write(c, 1, b"\x00\x01\x00\x00")
    cfg = cfg_of(episodes={"split": "marker", "marker_topic": "/x"})
    with pytest.raises(BagError, match=r"custom2: topic /x: unknown message type my_pkg/msg/Foo"):
        convert_bags([tmp_path / "custom2"], cfg, tmp_path / "o.h5", progress=False)
    assert custom.exists()


def test_error_unsupported_encoding(tmp_path):
    bag = write_bag(tmp_path / "bag", duration_s=1.0, encoding="rgb8")
    # rewrite: a 16-bit depth image on the camera topic
    from rosbags.rosbag2 import Writer

    img = TS.types["sensor_msgs/msg/Image"](header=TS.types["std_msgs/msg/Header"](
        stamp=TS.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id=""),
        height=2, width=2, encoding="16UC1", is_bigendian=0, step=4, data=np.zeros(8, np.uint8))
    with Writer(tmp_path / "depth", version=9) as w:
        c = w.add_connection("/cam/top", "sensor_msgs/msg/Image", typestore=TS)
        j = w.add_connection("/follower/joint_states", "sensor_msgs/msg/JointState", typestore=TS)
        a = w.add_connection("/commands", "std_msgs/msg/Float64MultiArray", typestore=TS)
        from bag_synth import float_array_msg, joint_state_msg

        for k in range(20):
            ns = 1_000_000_000 + k * 20_000_000
            img.header.stamp = TS.types["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)
            w.write(c, ns, TS.serialize_cdr(img, "sensor_msgs/msg/Image"))
            js = joint_state_msg(ns, JOINTS, np.zeros(7))
            w.write(j, ns, TS.serialize_cdr(js, "sensor_msgs/msg/JointState"))
            w.write(a, ns, TS.serialize_cdr(float_array_msg(np.zeros(7)), "std_msgs/msg/Float64MultiArray"))
    assert bag.exists()
    with pytest.raises(BagError, match=r"/cam/top: unsupported image encoding '16UC1'.*rgb8"):
        convert_bags([tmp_path / "depth"], cfg_of(), tmp_path / "o.h5", progress=False)


def test_error_joint_name_not_present_lists_available(tmp_path):
    bag = write_bag(tmp_path / "bag", duration_s=1.0)
    qpos = {"topic": "/follower/joint_states", "joints": [*JOINTS[:6], "finger"]}
    with pytest.raises(BagError) as e:
        convert_bags([bag], cfg_of(qpos=qpos), tmp_path / "o.h5", progress=False)
    msg = str(e.value)
    assert "lacks joints ['finger']" in msg and "it has ['waist'" in msg and "'extra'" in msg


def test_error_episode_shorter_than_chunk(tmp_path):
    bag = write_bag(tmp_path / "bag", duration_s=1.0)
    with pytest.raises(BagError, match=r"episode 0 .* has 51 steps .* shorter than episodes.min_length=100"):
        convert_bags([bag], cfg_of(episodes={"min_length": 100}), tmp_path / "o.h5", progress=False)
    long = write_bag(tmp_path / "long", duration_s=3.0)
    rep = convert_bags([bag, long], cfg_of(episodes={"min_length": 100, "on_short": "drop"}),
                       tmp_path / "o.h5", progress=False)
    assert rep.episodes == 1 and any("51 steps" in w and "dropped" in w for w in rep.warnings)


def test_error_corrupt_or_unreadable_bag_names_the_file(tmp_path):
    bag = write_bag(tmp_path / "bag", duration_s=2.0, storage="sqlite3")
    f = next(bag.glob("*.db3"))
    data = bytearray(f.read_bytes())
    data[100:4096 * 3] = b"\xa5" * (4096 * 3 - 100)  # the schema pages: nothing is readable
    f.write_bytes(bytes(data))
    ok = write_bag(tmp_path / "ok", duration_s=2.0)
    with pytest.raises(BagError, match=rf"{bag}.*unreadable or corrupt bag"):
        convert_bags([ok, bag], cfg_of(), tmp_path / "o.h5", progress=False)
    assert not (tmp_path / "o.h5").exists()  # the first bag's episode was not left behind
    (bag / "metadata.yaml").unlink()
    with pytest.raises(BagError, match=r"unreadable or corrupt bag.*no metadata.yaml"):
        convert_bags([bag], cfg_of(), tmp_path / "o.h5", progress=False)


def test_config_validation_messages(tmp_path):
    with pytest.raises(BagConfigError, match="on_gap: 'skip' is not one of"):
        cfg_of(on_gap="skip")
    with pytest.raises(BagConfigError, match="unknown key"):
        BagConfig.from_dict({**base_config(), "camras": {}})
    with pytest.raises(BagConfigError, match="marker_topic: required"):
        cfg_of(episodes={"split": "marker"})
    with pytest.raises(BagConfigError, match="max_staleness_s: 0.01 is shorter than one control period"):
        cfg_of(max_staleness_s=0.01)
    with pytest.raises(BagConfigError, match="action.scale: 2 values for 7 joints"):
        cfg_of(action={"topic": "/commands", "scale": [1, 2]})
    for name in ("bag_mujoco_sim.yaml", "bag_physical_pair.yaml"):
        import act_training

        c = BagConfig.load(Path(act_training.__file__).parent / "config" / name)
        assert c.joint_names == JOINTS and c.action_names == JOINTS


# ---- atomicity ------------------------------------------------------------------------------


def test_failure_midway_leaves_no_output_and_keeps_an_existing_file(tmp_path):
    good = write_bag(tmp_path / "good", duration_s=2.0)
    bad = write_bag(tmp_path / "bad", duration_s=2.0, action_kind="leader")  # no /commands topic
    out = tmp_path / "out" / "demos.hdf5"
    with pytest.raises(BagError, match="topic /commands not in the bag"):
        convert_bags([good, bad], cfg_of(), out, progress=False)
    assert not out.exists() and list(out.parent.iterdir()) == []
    out.write_bytes(b"previous")
    with pytest.raises(BagError, match="exists; pass --overwrite"):
        convert_bags([good], cfg_of(), out, progress=False)
    with pytest.raises(BagError):
        convert_bags([good, bad], cfg_of(), out, progress=False, overwrite=True)
    assert out.read_bytes() == b"previous"


def test_cli_and_overrides(tmp_path, capsys):
    bag = write_bag(tmp_path / "bag", duration_s=2.0, storage="mcap")
    cfg = tmp_path / "map.yaml"
    cfg.write_text(yaml.safe_dump(base_config()))
    rc = main([str(bag), "--config", str(cfg), "--out", str(tmp_path / "o.h5"), "--no-progress",
               "--image-size", "16", "20", "--set", "episodes.min_length=20"])
    assert rc == 0 and "1 episodes, 101 steps" in capsys.readouterr().out
    assert read_layout(tmp_path / "o.h5").image_shape == (16, 20)
    rc = main([str(bag), "--config", str(cfg), "--out", str(tmp_path / "o2.h5"), "--min-length", "500"])
    assert rc == 2 and "shorter than episodes.min_length=500" in capsys.readouterr().err
    assert not (tmp_path / "o2.h5").exists()
    # the console script (`act_bag_to_hdf5` = `cli`) skips the interpreter's teardown: its exit
    # code and a complete, readable output (and its summary line) must not depend on it
    for args, code in ((["--image-size", "16", "20", "--set", "episodes.min_length=20"], 0),
                       (["--min-length", "500"], 2)):
        out = tmp_path / f"cli{code}.h5"
        res = subprocess.run([sys.executable, "-c", "from act_training.bags.convert import cli; cli()",
                              str(bag), "--config", str(cfg), "--out", str(out), "--no-progress", *args],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == code, res.stderr
        if code == 0:
            assert "1 episodes, 101 steps" in res.stdout
            layout = read_layout(out)
            assert layout.image_shape == (16, 20) and layout.num_demos == 1
        else:
            assert "shorter than episodes.min_length=500" in res.stderr and not out.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_mid_conversion_leaves_no_output(tmp_path, sig):
    bag = write_bag(tmp_path / "bag", duration_s=4.0, size_hw=(240, 320))
    cfg = tmp_path / "map.yaml"
    cfg.write_text(yaml.safe_dump(base_config()))
    out = tmp_path / "out" / "demos.hdf5"
    proc = subprocess.Popen(
        [sys.executable, "-m", "act_training.bags.convert", *[str(bag)] * 20, "--config", str(cfg),
         "--out", str(out), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 300  # imports alone take long on a loaded machine
    while time.monotonic() < deadline and proc.poll() is None and not (
            out.parent.exists() and list(out.parent.glob("*.tmp-*"))):
        time.sleep(0.05)  # polling for the temporary file: the conversion is under way
    assert proc.poll() is None, proc.communicate()
    assert list(out.parent.glob("*.tmp-*")), "the conversion never started writing"
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not out.exists(), "an interrupted conversion must not leave an output file"
    assert list(out.parent.iterdir()) == [], "nor its temporary file"
