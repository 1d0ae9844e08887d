"""Sim benchmark: MirrorArmPickPlace env steps/s (physics only, rendering at 96 px and 240x320)
and scripted-expert demo generation time.

The env is stepped with the scripted expert's actions (a real trajectory: contacts, gripper),
timed per step. The demo file written here (96 px, top camera) is reused by the training
benchmark when both run in one `run_all.py` call.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import area_main, log, metric  # noqa: E402


def step_times(image_size, cameras, n_steps: int, render: bool, seed: int = 0) -> tuple[list, list]:
    """Per-step wall times (s) of env.step with expert actions, and of expert.act; resets between
    episodes are untimed."""
    from mirror_arm_sim.env import MirrorArmEnv
    from mirror_arm_sim.expert import ScriptedExpert

    env = MirrorArmEnv(image_size=image_size, cameras=cameras)
    env.render_obs = render
    expert = ScriptedExpert(env)
    times: list[float] = []
    act_times: list[float] = []
    try:
        ep = seed
        obs, _ = env.reset(seed=ep, options={"arm": 0})
        expert.reset()
        env.step(expert.act(obs))  # first render creates the GL context: untimed
        while len(times) < n_steps:
            t = time.perf_counter()
            a = expert.act(obs)
            act_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            obs, _, term, trunc, _ = env.step(a)
            times.append(time.perf_counter() - t)
            if term or trunc:
                ep += 1
                obs, _ = env.reset(seed=ep, options={"arm": 0})
                expert.reset()
    finally:
        env.close()
    return times, act_times


def demos_file(work: Path, num_demos: int, image_size=(96, 96), cameras=("top",), seed: int = 0):
    """Generate (or reuse from this run's work dir) an expert demo file; returns (path, stats|None)."""
    from mirror_arm_sim.generate_demos import generate_demos

    tag = f"{image_size[0]}x{image_size[1]}_{'-'.join(cameras)}_{num_demos}"
    path = work / f"demos_{tag}.hdf5"
    if path.exists():
        return path, None
    stats = generate_demos(path, num_demos=num_demos, arm=0, image_size=tuple(image_size),
                           cameras=tuple(cameras), seed=seed, progress=False)
    return path, stats


def run(quick: bool, work: Path, domain_id: int) -> dict:
    n = 30 if quick else 600
    metrics, details, act_ms = [], {}, []
    for label, hw, render in (("physics only", (96, 96), False), ("render 96x96", (96, 96), True),
                              ("render 240x320", (240, 320), True)):
        log(f"sim: {label}, {n} steps")
        t, ta = step_times(hw, ("top",), n, render)
        rate = len(t) / sum(t)
        metrics.append(metric(f"env step, {label}", "ms", [1e3 * x for x in t], steps_per_s=rate,
                              note=f"{rate:.0f} steps/s"))
        act_ms.extend(1e3 * x for x in ta)
    metrics.append(metric("scripted expert act() per step", "ms", act_ms,
                          note="IK planning at segment starts; the rest is interpolation"))
    num_demos = 1 if quick else 4
    log(f"sim: generating {num_demos} expert demos at 96 px")
    t = time.perf_counter()
    path, st = demos_file(work, num_demos)
    dt = time.perf_counter() - t
    if st is not None:
        steps = st.mean_length * st.num_demos
        metrics.append(metric("expert demo generation, 96 px, per demo", "s", value=dt / st.num_demos,
                              note=f"{st.num_demos} demos ({st.attempts} episodes), mean "
                                   f"{st.mean_length:.0f} steps, {steps / dt:.0f} recorded steps/s "
                                   "incl. HDF5 writes"))
        details["demos"] = {"path": str(path), "num_demos": st.num_demos, "attempts": st.attempts,
                            "seconds": dt, "mean_length": st.mean_length,
                            "bytes": path.stat().st_size}
    return {"metrics": metrics, "details": details}


if __name__ == "__main__":
    area_main(run)
