"""Chunked execution on the node's timer over real DDS: with prefetch (the default) the next chunk
is requested `lookahead` ticks before the current one runs out, so (almost) no tick goes without
an action; the control node (`prefetch: false`, the plain ACT rule) misses ticks on every chunk.

Processes: a stand-in driver (tests/node_sensor_pub.py), two policy nodes side by side on the
same inputs (a slow-ish cpu-preset checkpoint, chunk 20, inference of a few 20 ms ticks here)
and a probe in the test process reading each node's `status` (`ticks`, `missed_ticks`). Only
counts are asserted, with generous bounds: the machine is shared.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("torch")
from node_testlib import Probe, make_tiny_checkpoint, start, stop, wait_for  # noqa: E402
from test_node_safety import start_driver  # noqa: E402

CHUNK = 20
WARMUP_S, WINDOW_S = 2.0, 10.0


@pytest.mark.slow
@pytest.mark.ros
def test_chunked_prefetch_keeps_every_tick(tmp_path):
    from act_msgs.msg import PolicyStatus

    ckpt = make_tiny_checkpoint(tmp_path / "slowish.pt", image_size=(64, 64), chunk_size=CHUNK, preset="cpu")
    common = {"checkpoint": str(ckpt), "arm": 0, "execution": "chunked", "n_execute": 0,
              "control_rate": 50.0, "autostart": True, "on_stale": "hold",
              "stale_timeout": 2.0,  # a loaded machine must not reset the executor (that misses ticks)
              "joint_limits_source": "cell", "status_rate": 10.0}
    driver = start_driver(tmp_path)
    nodes = {
        "prefetch": start("act_policy_node.policy_node", common, name="prefetch", log_dir=tmp_path),
        "plain": start("act_policy_node.policy_node", {**common, "prefetch": False}, name="plain",
                       log_dir=tmp_path, ros_args=["-r", "__node:=plain_node", "-r", "status:=plain_status",
                                                   "-r", "commands:=plain_commands",
                                                   "-r", "action_chunk:=plain_action_chunk"]),
    }
    probe = Probe("probe_prefetch")
    lock = threading.Lock()
    last: dict[str, PolicyStatus] = {}

    def keep(name):
        def cb(msg):
            with lock:
                last[name] = msg
        return cb

    probe.node.create_subscription(PolicyStatus, "status", keep("prefetch"), 10)
    probe.node.create_subscription(PolicyStatus, "plain_status", keep("plain"), 10)

    def snap() -> dict:
        with lock:
            return dict(last)

    try:
        running = lambda: all(  # noqa: E731
            (s := snap().get(n)) is not None and s.mode_name == "running" for n in nodes)
        assert wait_for(running, 120), f"nodes not running: {snap()}"
        time.sleep(WARMUP_S)  # the inference-time EMA settles
        s0 = snap()
        time.sleep(WINDOW_S)
        s1 = snap()
        assert all(p.poll() is None for p in nodes.values()), "a node died"
    finally:
        probe.close()
        for p in (*nodes.values(), driver):
            stop(p)
    ticks = {n: s1[n].ticks - s0[n].ticks for n in nodes}
    missed = {n: s1[n].missed_ticks - s0[n].missed_ticks for n in nodes}
    info = (f"ticks {ticks}, missed {missed}, inference ms "
            f"{ {n: round(s1[n].inference_ms, 1) for n in nodes} }, status {s1['prefetch'].message!r}")
    print(info)
    for n in nodes:
        assert ticks[n] >= 0.5 * 50.0 * WINDOW_S, info  # the timer kept (roughly) its rate
        assert s1[n].mode_name == "running" and s1[n].execution == "chunked", info
    m = re.search(r"prefetch lookahead (\d+) ticks", s1["prefetch"].message)
    assert m and int(m.group(1)) >= 2, info  # >= 1 tick of inference + the default margin of 1
    assert "prefetch" not in s1["plain"].message, info
    # the plain rule queries when the chunk has run out: >= 1 missed tick per chunk, always
    assert missed["plain"] >= ticks["plain"] / (2 * (CHUNK + 1)), info
    # prefetch: (near) zero. Generous: on a shared machine an inference can take more than the
    # one-tick margin above its average (each such spike misses a tick or two)
    assert missed["prefetch"] <= 0.05 * ticks["prefetch"] + 3, info
    assert missed["prefetch"] <= 0.4 * missed["plain"] + 1, info
    for n in nodes:
        log = (tmp_path / f"{n}.log").read_text()
        assert "Traceback" not in log, log[-3000:]
    assert "chunked (prefetch)" in (tmp_path / "prefetch.log").read_text()
