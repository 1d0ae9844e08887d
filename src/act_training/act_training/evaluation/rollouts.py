"""Seeded evaluation of an ACT policy on either arm of the mirrored cell (in process).

    result = evaluate(runtime, EvalConfig(arm=1, n_trials=50, mirror=True, seed=1000))
    result.success_rate, result.ci95, result.successes, result.lengths, result.videos

Executor settings (mode, k, query period, n_execute) and the camera frame size left unset in
`EvalConfig` come from the checkpoint's deployment defaults (`runtime.deployment`), which is
what the policy node and the ROS evaluator use too, so the ROS loop reproduces this seed by seed.

For arm 1 with `mirror=True` the policy (trained on arm 0) sees the observation through the
pipeline's mirror step (`runtime.pipeline.with_mirror(map)`) and arm 1 receives the mirrored
action; the map is the sim package's configuration (`mirror_arm_sim.mirror_map`). `mirror=False`
is the no-mirror control: arm 1's raw observations in, raw actions out. On arm 0 nothing is
mirrored.

Several environments run in lockstep and every step's queries go to the policy as one batch
(`runtime.predict_chunk_batch`), which is what makes 50-trial evaluations affordable on a
2-core CPU. Trial i uses env seed `seed + i`, whatever the number of environments, so results
do not depend on `n_envs`.

Console script: `act_evaluate --checkpoint policy.pt --arm 1 --trials 50` (exit code 2 and one
line on a bad checkpoint or argument).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mirror_arm_sim.stats import wilson_interval
from mirror_arm_sim.trajectory import plan_points

from act_training.evaluation.results import EvalResult
from act_training.evaluation.videos import compose_frame, render_video_frame, write_video
from act_training.runtime.executors import EXECUTOR_MODES, make_executor

__all__ = ["COMMANDS", "EvalConfig", "EvalResult", "evaluate", "make_eval_env", "wilson_interval", "main"]

COMMANDS = ("position", "trajectory", "stream")


@dataclass
class EvalConfig:
    """One evaluation: which arm, how many seeded trials, how the policy is executed.

    Args:
        arm: the arm driven, 0 or 1.
        n_trials: number of trials; trial i uses env seed `seed + i`.
        mode: "chunked" or "ensemble"; None = the checkpoint's `deployment.execution`.
        mirror: on arm 1, drive it through the mirror map (False: the no-mirror control).
        seed: env seed of trial 0.
        n_execute: chunked: actions executed per query; None = the checkpoint's, 0 = the chunk.
        k: ensemble weight exp(-k*i), i = 0 the oldest prediction; None = the checkpoint's.
        query_period: ensemble: query every N steps; None = the checkpoint's.
        n_envs: environments stepped in lockstep (batched inference); results do not depend on it.
        max_steps: step limit of a trial; None = the env's (300).
        stop_on_success: end a trial at its first successful step (default: when the env ends).
        image_size: camera frame (H, W) in px; None = the checkpoint's `deployment.frame_size`.
        env_kwargs: further `MirrorArmEnv` keyword arguments.
        command: how each action reaches the arm, as the ROS controllers would apply it
            (`mirror_arm_sim.trajectory`): "position" = a forward position controller, the
            target jumps every tick (default); "trajectory" = a one-point JointTrajectory per
            tick, the controller ramps linearly to it over the tick; "stream" = the executor's
            next `stream_points` actions as a JointTrajectory with velocities, the controller
            follows a cubic spline through them.
        stream_points: points of a "stream" trajectory.
        measure_jerk: record the arm's joint positions at every physics step and report each
            trial's RMS jerk (`EvalResult.jerk_rms`).
        video_dir: save the first `n_videos` trials as mp4 here (None: no videos).
        n_videos: number of trials recorded.
        video_size: (H, W) of the scene render in the videos.
        progress: show a progress bar.
        desc: progress bar label.
    """

    arm: int = 1
    n_trials: int = 50
    mode: str | None = None
    mirror: bool = True
    seed: int = 1000
    n_execute: int | None = None
    k: float | None = None
    query_period: int | None = None
    n_envs: int = 4
    max_steps: int | None = None
    stop_on_success: bool = False
    image_size: tuple[int, int] | None = None
    env_kwargs: dict = field(default_factory=dict)
    command: str = "position"
    stream_points: int = 10
    measure_jerk: bool = False
    video_dir: str | Path | None = None
    n_videos: int = 2
    video_size: tuple[int, int] = (360, 480)
    progress: bool = True
    desc: str | None = None

    def __post_init__(self) -> None:
        if self.arm not in (0, 1):
            raise ValueError(f"EvalConfig.arm: expected 0 or 1, got {self.arm}")
        if self.mode is not None and self.mode not in EXECUTOR_MODES:
            raise ValueError(f"EvalConfig.mode: expected one of {EXECUTOR_MODES}, got {self.mode!r}")
        if int(self.n_trials) < 1:
            raise ValueError(f"EvalConfig.n_trials: expected >= 1, got {self.n_trials}")
        if self.n_execute is not None and int(self.n_execute) < 0:
            raise ValueError(f"EvalConfig.n_execute: expected None or >= 0, got {self.n_execute}")
        if self.query_period is not None and int(self.query_period) < 1:
            raise ValueError(f"EvalConfig.query_period: expected >= 1, got {self.query_period}")
        if self.command not in COMMANDS:
            raise ValueError(f"EvalConfig.command: expected one of {COMMANDS}, got {self.command!r}")
        if int(self.stream_points) < 1:
            raise ValueError(f"EvalConfig.stream_points: expected >= 1, got {self.stream_points}")

    def executor(self, deployment) -> tuple[str, dict]:
        """(mode, make_executor kwargs): this config's fields over the checkpoint's defaults."""
        mode = self.mode or deployment.execution
        n_execute = deployment.n_execute if self.n_execute is None else (self.n_execute or None)
        k = deployment.k if self.k is None else float(self.k)
        qp = deployment.query_period if self.query_period is None else int(self.query_period)
        return mode, {"n_execute": n_execute, "k": k, "query_period": qp}


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------
def make_eval_env(runtime, env_kwargs: dict | None = None):
    """A MirrorArmEnv with the policy's cameras, rendering frames of the checkpoint's
    deployment frame size (`env_kwargs` overrides either)."""
    from mirror_arm_sim.env import MirrorArmEnv

    size = runtime.deployment.frame_size or runtime.frame_size
    kwargs = {"image_size": tuple(size), "cameras": tuple(runtime.camera_names)}
    kwargs.update(env_kwargs or {})
    return MirrorArmEnv(**kwargs)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
@dataclass
class _Slot:
    env: object
    executor: object
    trial: int = -1
    obs: dict | None = None
    t: int = 0
    frames: list | None = None
    done: bool = True
    player: object = None   # the controller's reference (command != "position" or measure_jerk)
    qs: list | None = None  # joint positions per physics step (measure_jerk)


class _Rollouts:
    """The lockstep loop over several envs: start trials, query the policy in one batch, step,
    finish trials (record result, video) and start the next."""

    def __init__(self, runtime, cfg: EvalConfig, pipeline, mode: str, ex_kwargs: dict, result: EvalResult):
        self.runtime, self.cfg, self.pipeline, self.result = runtime, cfg, pipeline, result
        self.cams = list(runtime.camera_names)
        C, A = int(runtime.chunk_size), int(runtime.action_dim)
        env_kwargs = dict(cfg.env_kwargs)
        if cfg.image_size is not None:
            env_kwargs["image_size"] = tuple(cfg.image_size)
        n_envs = max(1, min(int(cfg.n_envs), int(cfg.n_trials)))
        self.slots = [_Slot(make_eval_env(runtime, env_kwargs), make_executor(mode, C, A, **ex_kwargs))
                      for _ in range(n_envs)]
        env = self.slots[0].env.unwrapped
        self.limit = int(cfg.max_steps or getattr(env, "max_episode_steps", None) or 300)
        self.fps = float(getattr(env, "control_hz", 0) or 0) or 25.0
        self.video_dir = Path(cfg.video_dir) if cfg.video_dir is not None else None
        self.n_videos = cfg.n_videos if self.video_dir is not None else 0
        self.next_trial = 0
        self.caption = f"arm {cfg.arm} {mode}{' mirrored' if result.mirror else ''}"
        # physics-step control only when asked: `env.step` is the bit-exact default path
        self.per_substep = cfg.command != "position" or cfg.measure_jerk
        self.dt, self.h, self.n_sub = 1.0 / self.fps, float(env.model.opt.timestep), int(env.substeps)

    def start(self, slot: _Slot) -> None:
        """Reset `slot` for the next trial, or mark it done when none is left."""
        if self.next_trial >= self.cfg.n_trials:
            slot.done = True
            return
        slot.trial, self.next_trial = self.next_trial, self.next_trial + 1
        slot.env.unwrapped.render_obs = True  # the first step always queries
        slot.obs, _ = slot.env.reset(seed=self.result.seeds[slot.trial],
                                     options={"arm": self.cfg.arm, "randomize": True})
        slot.executor.reset()
        slot.t, slot.done = 0, False
        slot.frames = [] if slot.trial < self.n_videos else None
        if self.per_substep:
            from mirror_arm_sim.trajectory import TrajectoryPlayer

            slot.player = TrajectoryPlayer(7, slot.env.unwrapped.arm_ctrl())
            slot.qs = [] if self.cfg.measure_jerk else None

    def finish(self, slot: _Slot, success: bool) -> None:
        """Record the trial's outcome (and video), then start the next trial in this slot."""
        r = self.result
        r.successes[slot.trial] = bool(success)
        r.lengths[slot.trial] = slot.t
        if slot.qs is not None:
            r.jerk_rms[slot.trial] = rms_jerk(np.concatenate(slot.qs)[:, :6], self.h)
        r.final_qpos[slot.trial] = [float(v) for v in self.pipeline.to_policy(slot.obs["images"],
                                                                                 slot.obs["qpos"])[1]]
        if slot.frames:
            name = (f"{r.label}-trial{slot.trial:03d}-seed{r.seeds[slot.trial]}-"
                    f"{'success' if success else 'failure'}.mp4")
            write_video(self.video_dir / name, slot.frames, self.fps)
            r.videos.append(str(self.video_dir / name))
        self.start(slot)

    def view(self, slot: _Slot):
        """(images, qpos) of `slot`'s observation as the policy sees it (through the pipeline)."""
        return self.pipeline.to_policy(slot.obs["images"], slot.obs["qpos"])

    def query(self, active: list[_Slot]) -> None:
        """One batched forward pass for every slot whose executor wants a new chunk."""
        want = [s for s in active if s.executor.needs_query()]
        if not want:
            return
        views = [self.view(s) for s in want]
        images = {c: np.stack([v[0][c] for v in views]) for c in self.cams}
        qpos = np.stack([v[1] for v in views])
        for s, chunk in zip(want, self.runtime.predict_chunk_batch(images=images, qpos=qpos)):
            s.executor.add_chunk(chunk)

    def step(self, slot: _Slot) -> bool | None:
        """Execute one action in `slot`; the trial's success if it ended, else None."""
        plan = slot.executor.peek(self.cfg.stream_points) if self.cfg.command == "stream" else None
        action = slot.executor.next_action()
        if action is None:  # cannot happen synchronously; hold position to be safe
            action = self.view(slot)[1]
        if slot.frames is not None:
            self._video_frame(slot, self.view(slot)[0],
                              f"{self.caption} seed {self.result.seeds[slot.trial]} t={slot.t}")
        # Render the camera only for observations the policy will look at (its next query, or
        # a video frame): rendering every step was most of an evaluation's cost, and rendering
        # does not touch the physics, so results are identical seed by seed.
        slot.env.unwrapped.render_obs = slot.frames is not None or slot.executor.needs_query()
        cmd = np.asarray(self.pipeline.to_robot(action), dtype=np.float32)
        if self.per_substep:
            slot.obs, _, terminated, truncated, info = slot.env.step_targets(self._targets(slot, cmd, plan))
            if slot.qs is not None:
                slot.qs.append(slot.env.unwrapped.substep_qpos.copy())
        else:
            slot.obs, _, terminated, truncated, info = slot.env.step(cmd)
        slot.t += 1
        success = bool(info.get("success", False))
        if terminated or truncated or slot.t >= self.limit or (self.cfg.stop_on_success and success):
            if slot.frames is not None:  # final frame, held for a moment
                images = self.pipeline.to_policy(slot.obs["images"], slot.obs["qpos"])[0]
                outcome = "SUCCESS" if success else "FAILURE"
                text = f"seed {self.result.seeds[slot.trial]} t={slot.t} {outcome}"
                self._video_frame(slot, images, text, success, hold=int(self.fps))
            return success
        return None

    def _targets(self, slot: _Slot, cmd: np.ndarray, plan: np.ndarray | None) -> np.ndarray:
        """(substeps, 7) position targets of this tick, as the controller of `cfg.command` makes
        them from the tick's command (and, streaming, the plan ahead)."""
        t, p = slot.t * self.dt, slot.player
        if self.cfg.command == "position":
            p.hold(t, cmd)
        elif self.cfg.command == "trajectory" or plan is None or len(plan) < 2:
            p.set_trajectory(t, [self.dt], cmd[None])
        else:
            times, pts, vel = plan_points([self.pipeline.to_robot(a) for a in plan], self.dt, self.dt)
            p.set_trajectory(t, times, pts, velocities=vel)
        return p.targets(t, self.h, self.n_sub)

    def _video_frame(self, slot: _Slot, images: dict, text: str, ok: bool | None = None, hold: int = 1):
        scene = render_video_frame(slot.env, slot.obs, self.cfg.video_size, self.cams[0])
        slot.frames.extend([compose_frame(scene, images[self.cams[0]], text, ok)] * hold)

    def close(self) -> None:
        for s in self.slots:
            close = getattr(s.env, "close", None)
            if callable(close):
                close()


def evaluate(runtime, config: EvalConfig | None = None, mirror_map=None, **fields_) -> EvalResult:
    """Run `config.n_trials` seeded trials (seed + i) of `runtime`; see the module docstring.

    `config` (or EvalConfig's fields as keywords) says what; `mirror_map` overrides the cell's.
    A trial ends when the env terminates/truncates (the env terminates once success has been
    held for a while), after `max_steps` or, with `stop_on_success`, at the first successful
    step; it succeeded if `info["success"]` is true at its last step.
    """
    from tqdm.auto import tqdm

    cfg = config if config is not None else EvalConfig(**fields_)
    mirrored = bool(cfg.mirror) and cfg.arm == 1
    if mirrored and mirror_map is None:
        from mirror_arm_sim.mirror_map import load_mirror_map

        mirror_map = load_mirror_map()
    pipeline = runtime.pipeline.with_mirror(mirror_map if mirrored else None)
    mode, ex_kwargs = cfg.executor(runtime.deployment)
    result = EvalResult(arm=cfg.arm, mode=mode, mirror=mirrored, executor={"mode": mode, **ex_kwargs},
                        command=cfg.command)
    n = int(cfg.n_trials)
    result.seeds = [cfg.seed + i for i in range(n)]
    result.jerk_rms = [0.0] * n if cfg.measure_jerk else []
    result.successes, result.lengths, result.final_qpos = [False] * n, [0] * n, [[] for _ in range(n)]
    loop = _Rollouts(runtime, cfg, pipeline, mode, ex_kwargs, result)
    t0 = time.perf_counter()
    bar = tqdm(total=n, desc=cfg.desc or f"eval arm{cfg.arm} {mode}{' mirror' if mirrored else ''}",
               disable=not cfg.progress, leave=False, dynamic_ncols=True)
    try:
        for s in loop.slots:
            loop.start(s)
        while any(not s.done for s in loop.slots):
            active = [s for s in loop.slots if not s.done]
            loop.query(active)
            for s in active:
                success = loop.step(s)
                if success is not None:
                    loop.finish(s, success)
                    bar.update(1)
                    bar.set_postfix(success=f"{sum(result.successes)}/{bar.n}")
    finally:
        bar.close()
        loop.close()
    result.wall_time_s = time.perf_counter() - t0
    return result


def rms_jerk(q: np.ndarray, h: float) -> float:
    """RMS over time and joints of the third finite difference of q (T, J) sampled every h s:
    rad/s^3 for joint positions in rad."""
    if len(q) < 4:
        return 0.0
    j = np.diff(np.asarray(q, dtype=np.float64), n=3, axis=0) / h**3
    return float(np.sqrt(np.mean(j**2)))


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """act_evaluate's arguments; executor and frame-size options default to the checkpoint's."""
    from act_training.runtime.backends import BACKENDS

    p = argparse.ArgumentParser(
        prog="act_evaluate",
        description="Evaluate an ACT checkpoint on arm 0 or (mirrored) arm 1 of the MuJoCo cell. "
                    "Unset executor options and the frame size are the checkpoint's deployment defaults.",
    )
    p.add_argument("--checkpoint", required=True, help="policy checkpoint (.pt) written by act_train")
    p.add_argument("--arm", type=int, choices=(0, 1), default=1)
    p.add_argument("--mode", choices=EXECUTOR_MODES, default=None, help="default: the checkpoint's")
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--seed", type=int, default=1000, help="trial i uses env seed SEED + i")
    p.add_argument("--no-mirror", action="store_true",
                   help="control: feed arm 1's raw observations and send raw actions")
    p.add_argument("--n-execute", type=int, default=None,
                   help="chunked: actions per query, 0 = the whole chunk (default: the checkpoint's)")
    p.add_argument("--k", type=float, default=None,
                   help="ensemble: weight exp(-k*i), i=0 the oldest (default: the checkpoint's)")
    p.add_argument("--query-period", type=int, default=None,
                   help="ensemble: query every N steps (default: the checkpoint's)")
    p.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="camera frame size (default: the checkpoint's deployment frame size)")
    p.add_argument("--n-envs", type=int, default=4, help="environments run in lockstep (batched inference)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--video-dir", default=None)
    p.add_argument("--n-videos", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="how the network runs: eager torch, jit (frozen TorchScript), onnx (ONNX Runtime)")
    p.add_argument("--json", default=None, help="write the per-trial result here (EvalResult.to_dict)")
    p.add_argument("--variant", default="exact",
                   help="cell variant (mirror_arm_sim.cell.VARIANTS): arm 1 an imperfect mirror")
    p.add_argument("--command", choices=COMMANDS, default="position",
                   help="how actions reach the arm: position (forward position controller), trajectory "
                        "(one-point JointTrajectory per tick, linear ramp), stream (the plan ahead as a "
                        "JointTrajectory with velocities, cubic spline); docs/ros.md")
    p.add_argument("--stream-points", type=int, default=10, help="stream: points per trajectory")
    p.add_argument("--measure-jerk", action="store_true",
                   help="report the RMS jerk of the arm joints at the physics rate")
    return p


def main(argv: list[str] | None = None) -> int:
    """act_evaluate: project errors (bad checkpoint, bad option) -> one line on stderr, exit 2."""
    args = build_parser().parse_args(argv)
    import torchvision  # noqa: F401  (before any MuJoCo EGL rendering: see transfer.py)

    from act_training.runtime.policy import ACTPolicyRuntime
    from act_training.training.checkpoint import CheckpointError

    try:
        runtime = ACTPolicyRuntime.load(args.checkpoint, device=args.device, backend=args.backend)
        cfg = EvalConfig(
            arm=args.arm, n_trials=args.trials, mode=args.mode, mirror=not args.no_mirror, seed=args.seed,
            n_execute=args.n_execute, k=args.k, query_period=args.query_period, n_envs=args.n_envs,
            max_steps=args.max_steps, image_size=tuple(args.image_size) if args.image_size else None,
            video_dir=args.video_dir, n_videos=args.n_videos, env_kwargs={"variant": args.variant},
            command=args.command, stream_points=args.stream_points, measure_jerk=args.measure_jerk)
    except (CheckpointError, ValueError) as e:
        print(f"act_evaluate: error: {e}", file=sys.stderr)
        return 2
    res = evaluate(runtime, cfg)
    print(res.summary() + (f", command {res.command}" if res.command != "position" else "")
          + (f", RMS jerk {np.mean(res.jerk_rms):.0f} rad/s^3 (mean of trials)" if res.jerk_rms else ""))
    if args.json:
        res.write_json(args.json)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
