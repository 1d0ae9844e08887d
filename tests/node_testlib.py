"""Helpers for the ROS node/bridge tests: a tiny real checkpoint, process launching, a probe node.

Everything is real: the checkpoint is an `act_training` ACT model (tiny preset, seeded random
weights, or a trained one), nodes run as separate processes over DDS.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HOME = [0.0, -0.6, 0.9, 0.0, 0.6, 0.0, 0.03]  # a plausible pose near the cell's home


def make_tiny_checkpoint(path: Path, image_size=(32, 32), cameras=("top",), chunk_size: int = 8,
                         seed: int = 0, action_std: float = 0.05, preset: str = "tiny", crop=None,
                         deployment=None, shared_backbone: bool | None = None) -> Path:
    """An untrained ACT checkpoint (seeded weights; `preset` sizes) in the real checkpoint format.
    With `crop` the network sees that window of the frame at `image_size`; `deployment` (a
    runtime.deployment.Deployment) is stored as its deployment defaults; `shared_backbone` None
    keeps the preset's."""
    import torch
    from act_training.config import get_preset
    from act_training.data.normalize import NormStats
    from act_training.model.act import ACT
    from act_training.training.checkpoint import make_payload, save_checkpoint
    from mirror_arm_sim.cell import ARM_JOINTS, default_cell

    cfg = get_preset(preset)
    mc = dataclasses.replace(cfg.model, camera_names=tuple(cameras), state_dim=7, action_dim=7,
                             image_size=tuple(image_size), chunk_size=chunk_size, crop=crop)
    if shared_backbone is not None:
        mc = dataclasses.replace(mc, shared_backbone=bool(shared_backbone))
    torch.manual_seed(seed)
    model = ACT(mc)
    home = np.asarray(default_cell().arm.home, dtype=np.float32)
    stats = NormStats(qpos_mean=home, qpos_std=np.full(7, 0.3), action_mean=home,
                      action_std=np.full(7, action_std))
    payload = make_payload(model, {"preset": preset}, stats, ARM_JOINTS, ARM_JOINTS, layout_version=1, step=0,
                           deployment=deployment)
    return save_checkpoint(path, payload)


def ros_env() -> dict:
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "egl")
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    return env


def start(module: str, params: dict | None = None, args: list[str] | None = None, name: str = "",
          log_dir: Path | None = None, ros_args: list[str] | None = None) -> subprocess.Popen:
    """`python -m module [args] --ros-args -p k:=v ...` as a separate process."""
    cmd = [sys.executable, "-m", module, *(args or [])]
    ra = list(ros_args or [])
    for k, v in (params or {}).items():
        ra += ["-p", f"{k}:={_param_str(v)}"]
    if ra:
        cmd += ["--ros-args", *ra]
    out = open(log_dir / f"{name or module}.log", "w") if log_dir else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=ros_env(), cwd=str(ROOT))


def _param_str(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return "[" + ",".join(_param_str(x) if not isinstance(x, str) else f"'{x}'" for x in v) + "]"
    return str(v)


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Probe:
    """An rclpy node in the test process, spun on a background thread."""

    def __init__(self, name: str = "probe") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._stop = False
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop and self.context.ok():
            self.executor.spin_once(timeout_sec=0.02)

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        cli = self.node.create_client(srv_type, name)
        assert cli.wait_for_service(timeout_sec=timeout), f"service {name} not available"
        fut = cli.call_async(request)
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.01)
        assert fut.done(), f"service {name} timed out"
        return fut.result()

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


def wait_for(cond, timeout: float, period: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(period)
    return bool(cond())
