"""The policy node's ROS-free logic: image decoding, joint ordering, clamps, staleness, the
arm <-> policy view (mirror), the inference worker."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from act_policy_node.engine import InferenceRequest, InferenceWorker, PrefetchPlanner
from act_policy_node.safety import CommandLimiter, StalenessMonitor
from act_training.runtime.pipeline import MirrorStep
from act_training.runtime.sensors import (
    InputError,
    JointSelector,
    decode_image,
    default_joint_names,
    finite_vector,
)


def test_decode_rgb_bgr_mono_and_row_padding():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    assert np.array_equal(decode_image("rgb8", 4, 5, 15, rgb.tobytes()), rgb)
    assert np.array_equal(decode_image("bgr8", 4, 5, 15, rgb[..., ::-1].tobytes()), rgb)
    padded = np.zeros((4, 20), np.uint8)  # step 20 > 15: 5 bytes of row padding
    padded[:, :15] = rgb.reshape(4, 15)
    assert np.array_equal(decode_image("rgb8", 4, 5, 20, padded.tobytes()), rgb)
    mono = np.arange(20, dtype=np.uint8).reshape(4, 5)
    out = decode_image("mono8", 4, 5, 5, bytearray(mono.tobytes()))
    assert out.shape == (4, 5, 3) and np.array_equal(out[..., 1], mono)
    bgra = np.dstack([rgb[..., ::-1], np.full((4, 5), 255, np.uint8)])
    assert np.array_equal(decode_image("bgra8", 4, 5, 20, bgra.tobytes()), rgb)
    import array

    assert np.array_equal(decode_image("rgb8", 4, 5, 15, array.array("B", rgb.tobytes())), rgb)


@pytest.mark.parametrize("args", [
    ("32FC1", 4, 5, 20, bytes(80)),       # unsupported encoding
    ("rgb8", 4, 5, 15, bytes(59)),        # too few bytes
    ("rgb8", 4, 5, 10, bytes(60)),        # step smaller than a row
    ("rgb8", 0, 5, 15, b""),              # empty
])
def test_decode_rejects_bad_images(args):
    with pytest.raises(InputError):
        decode_image(*args)


def test_joint_selector_orders_by_name_and_ignores_extras():
    names = default_joint_names(1, ["waist", "shoulder", "gripper"])
    assert names == ["arm1_waist", "arm1_shoulder", "arm1_gripper"]
    sel = JointSelector(names)
    msg_names = ["arm0_waist", "arm1_gripper", "rail", "arm1_waist", "arm1_shoulder"]
    q = sel.select(msg_names, [9.0, 0.03, 5.0, 0.1, -0.2])
    assert q.tolist() == [0.1, -0.2, 0.03]
    q = sel.select(msg_names, [9.0, 0.04, 5.0, 0.2, -0.3])  # cached index map
    assert q.tolist() == [0.2, -0.3, 0.04]
    with pytest.raises(InputError, match=r"lacks joints \['arm1_shoulder'\]"):
        sel.select(["arm1_waist", "arm1_gripper"], [0.0, 0.0])
    with pytest.raises(InputError, match="non-finite"):
        sel.select(msg_names, [0.0, np.nan, 0.0, 0.0, 0.0])
    with pytest.raises(InputError, match="names but"):
        sel.select(msg_names, [0.0, 0.0])
    with pytest.raises(ValueError, match="duplicate"):
        JointSelector(["a", "a"])
    with pytest.raises(InputError):
        finite_vector([1.0, np.inf])
    with pytest.raises(InputError):
        finite_vector([1.0, 2.0], size=3)


def test_command_limiter_clamps_limits_and_step():
    lim = CommandLimiter(3, lower=[-1, -1, 0], upper=[1, 1, 0.04], max_step=0.1)
    out, clamped = lim.apply([5.0, 0.05, -1.0], previous=[0.0, 0.0, 0.02])
    assert clamped and np.allclose(out, [0.1, 0.05, 0.0])
    out, clamped = lim.apply([0.05, 0.0, 0.02], previous=[0.0, 0.0, 0.02])
    assert not clamped and np.allclose(out, [0.05, 0.0, 0.02])
    out, _ = lim.apply([0.0, 0.0, 0.0], previous=[3.0, 0.0, 0.0])  # previous outside the limits
    assert out[0] == 1.0
    free = CommandLimiter(2)
    assert not free.enabled and free.apply([1e3, -1e3])[0].tolist() == [1e3, -1e3]
    with pytest.raises(ValueError):
        CommandLimiter(2, lower=[1, 1], upper=[0, 0])
    with pytest.raises(ValueError):
        CommandLimiter(2, lower=[0, 0, 0])


def test_staleness_monitor():
    m = StalenessMonitor(["camera:top", "joint_states"], timeout=0.2)
    assert m.missing() == ["camera:top", "joint_states"] and m.stale(0.0) == m.missing()
    m.update("camera:top", 1.0)
    m.update("joint_states", 1.1)
    assert m.stale(1.15) == []
    assert m.stale(1.25) == ["camera:top"]
    assert m.ages(1.3) == pytest.approx([0.3, 0.2])
    m.reset()
    assert m.missing() == ["camera:top", "joint_states"]


def test_mirror_step_mirrors_arm1_and_is_identity_on_arm0():
    from mirror_arm_sim.mirror_map import load_mirror_map

    mm = load_mirror_map()
    img = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    q = np.linspace(-0.5, 0.5, 7).astype(np.float32)
    v0 = MirrorStep(None, ["top"])
    imgs, q0 = v0.observation({"top": img, "other": img}, q)
    assert list(imgs) == ["top"] and np.array_equal(imgs["top"], img) and np.array_equal(q0, q)
    v1 = MirrorStep(mm, ["top"])
    imgs, q1 = v1.observation({"top": img}, q.astype(np.float64))
    assert np.array_equal(imgs["top"], img[:, ::-1]) and np.allclose(q1, mm.qpos(q))
    a = np.linspace(0.1, 0.7, 7).astype(np.float32)
    assert np.allclose(v1.action(a), mm.action(a)) and np.allclose(v1.action(v1.action(a)), a)
    assert v1.action(np.tile(a, (3, 1))).shape == (3, 7)
    big, _ = v0.observation({"top": np.zeros((16, 24, 3), np.uint8)}, q)
    assert big["top"].shape == (16, 24, 3)  # frames keep their size: the runtime crops and resizes
    with pytest.raises(ValueError, match="missing camera images"):
        v0.observation({}, q)


def test_inference_worker_latest_slot_and_errors():
    gate = threading.Event()
    started = threading.Event()
    seen = []

    def predict(images, qpos):
        started.set()
        gate.wait(5)
        seen.append(float(qpos[0]))
        if qpos[0] < 0:
            raise RuntimeError("boom")
        return np.full((2, 1), qpos[0], np.float32)

    w = InferenceWorker(predict)
    req = lambda v, step: InferenceRequest({}, np.array([v]), step=step, generation=0)  # noqa: E731
    w.submit(req(1.0, 0))
    assert started.wait(5)  # the worker has taken request 0 and blocks in predict
    w.submit(req(2.0, 1))
    w.submit(req(3.0, 2))  # replaces the pending request 1 (latest-observation slot)
    assert w.busy and w.n_replaced == 1
    gate.set()
    assert w.wait_idle(5)
    res = w.poll()
    assert [r.request.step for r in res] == [0, 2] and seen == [1.0, 3.0]
    assert res[1].chunk[0, 0] == 3.0
    w.submit(req(-1.0, 3))
    assert w.wait_idle(5)
    (bad,) = w.poll()
    assert bad.chunk is None and "boom" in bad.error
    w.submit(req(4.0, 4))  # still alive after an error
    assert w.wait_idle(5) and w.poll()[0].chunk[0, 0] == 4.0
    w.stop()


def test_prefetch_planner_lookahead():
    pp = PrefetchPlanner(rate_hz=50.0, margin_ticks=1, alpha=0.5)
    assert pp.lookahead() == 1  # nothing measured yet: the margin
    pp.update(0.24)  # first measurement taken as is: 12 ticks exactly (no float round-up)
    assert pp.ema_s == pytest.approx(0.24) and pp.lookahead() == 13
    pp.update(0.04)  # EMA: 0.14 s = 7 ticks
    assert pp.ema_s == pytest.approx(0.14) and pp.lookahead() == 8
    pp.update(0.141)  # 0.1405 s = 7.025 ticks -> 8
    assert pp.lookahead() == 9
    pp.update(float("nan"))  # ignored
    assert pp.lookahead() == 9
    assert PrefetchPlanner(100.0, margin_ticks=0).lookahead() == 0
    for bad in ({"rate_hz": 0.0}, {"rate_hz": 50.0, "margin_ticks": -1}, {"rate_hz": 50.0, "alpha": 0.0}):
        with pytest.raises(ValueError):
            PrefetchPlanner(**bad)
