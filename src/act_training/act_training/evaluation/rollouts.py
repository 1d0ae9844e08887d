"""Seeded evaluation of an ACT policy on either arm of the mirrored cell.

    result = evaluate(runtime, arm=1, n_trials=50, mode="ensemble", mirror=True, seed=1000)
    result.success_rate, result.ci95, result.successes, result.lengths, result.videos

For arm 1 with `mirror=True` the policy (trained on arm 0) sees `mirror_map.qpos(qpos)` and
`mirror_map.images(images)` and arm 1 receives `mirror_map.action(action)`; the map is the sim
package's configuration (`mirror_arm_sim.mirror_map.load_mirror_map`). `mirror=False` is the
no-mirror control: arm 1's raw observations in, raw actions out. On arm 0 nothing is mirrored.

Several environments run in lockstep and every step's queries go to the policy as one batch
(`runtime.predict_chunk_batch`), which is what makes 50-trial evaluations affordable on a
2-core CPU. Trial i uses env seed `seed + i`, whatever the number of environments, so results
do not depend on `n_envs`.

Console script: `act_evaluate --checkpoint policy.pt --arm 1 --mode ensemble --trials 50`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from mirror_arm_sim.stats import wilson_interval

from act_training.runtime.executors import EXECUTOR_MODES, make_executor

__all__ = ["EvalResult", "evaluate", "wilson_interval", "main"]


@dataclass
class EvalResult:
    """Per-trial outcome of one (arm, executor, mirror) evaluation."""

    arm: int
    mode: str
    mirror: bool  # True only when arm 1 is driven through the mirror map
    seeds: list[int] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    final_qpos: list[list[float]] = field(default_factory=list)  # in the POLICY's frame (mirrored on arm 1)
    wall_time_s: float = 0.0
    executor: dict = field(default_factory=dict)

    @property
    def n_trials(self) -> int:
        return len(self.successes)

    @property
    def n_success(self) -> int:
        return int(sum(self.successes))

    @property
    def success_rate(self) -> float:
        return self.n_success / self.n_trials if self.n_trials else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.n_success, self.n_trials)

    @property
    def label(self) -> str:
        return f"arm{self.arm}-{self.mode}-{'mirror' if self.mirror else 'raw'}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(
            n_trials=self.n_trials, n_success=self.n_success, success_rate=self.success_rate,
            ci95=list(self.ci95), label=self.label,
            mean_length=float(np.mean(self.lengths)) if self.lengths else 0.0,
        )
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EvalResult:
        keys = {"arm", "mode", "mirror", "seeds", "successes", "lengths", "videos", "final_qpos",
                "wall_time_s", "executor"}
        return cls(**{k: v for k, v in d.items() if k in keys})

    def summary(self) -> str:
        lo, hi = self.ci95
        return (f"{self.label}: {self.n_success}/{self.n_trials} = {self.success_rate:.1%} "
                f"(95% CI {lo:.1%}-{hi:.1%}), mean length {np.mean(self.lengths or [0]):.0f}, "
                f"{self.wall_time_s:.0f}s")


# --------------------------------------------------------------------------------------------
# Environment helpers
# --------------------------------------------------------------------------------------------
def make_eval_env(runtime, env_kwargs: dict | None = None, video: bool = False):
    """A MirrorArmEnv whose cameras and image size match the policy's."""
    from mirror_arm_sim.env import MirrorArmEnv

    kwargs = {"image_size": tuple(runtime.frame_size), "cameras": tuple(runtime.camera_names)}
    kwargs.update(env_kwargs or {})
    return MirrorArmEnv(**kwargs)


def _render_video_frame(env, obs: dict, size: tuple[int, int], camera: str) -> np.ndarray:
    """A frame for the video: a large (H, W) render of `camera` if the env can, else the obs image."""
    frame = None
    render_camera = getattr(env.unwrapped, "render_camera", None)
    if callable(render_camera):
        try:
            frame = render_camera(camera, size=tuple(size))
        except Exception:  # noqa: BLE001 - e.g. larger than the offscreen buffer: fall back
            frame = None
    if frame is None:
        frame = obs["images"][camera]
    return np.asarray(frame, dtype=np.uint8)


def _upscale(img: np.ndarray, height: int) -> np.ndarray:
    f = max(1, height // img.shape[0])
    return np.repeat(np.repeat(img, f, axis=0), f, axis=1)


def _compose(scene: np.ndarray, policy_view: np.ndarray, text: str, ok: bool | None) -> np.ndarray:
    """Scene render | what the policy saw (upscaled), with a caption; padded to multiples of 16."""
    view = _upscale(policy_view, scene.shape[0])
    h = max(scene.shape[0], view.shape[0])
    pad = lambda im: np.pad(im, ((0, h - im.shape[0]), (0, 0), (0, 0)))  # noqa: E731
    frame = np.concatenate([pad(scene), pad(view)], axis=1)
    H, W = frame.shape[:2]
    frame = np.pad(frame, ((0, (-H) % 16), (0, (-W) % 16), (0, 0)))
    frame = np.concatenate([np.zeros((32, frame.shape[1], 3), np.uint8), frame], axis=0)  # caption bar
    try:
        import cv2

        frame = np.ascontiguousarray(frame)
        color = (255, 255, 255) if ok is None else ((60, 230, 60) if ok else (240, 70, 70))
        cv2.putText(frame, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 1, cv2.LINE_AA)
    except ImportError:  # pragma: no cover - opencv is a dependency; captions are optional
        pass
    return frame


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7, macro_block_size=16,
                            ffmpeg_log_level="error") as w:
        for f in frames:
            w.append_data(f)
    os.replace(tmp, path)


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


def evaluate(
    runtime,
    arm: int,
    n_trials: int,
    mode: str = "ensemble",
    mirror: bool = True,
    seed: int = 1000,
    video_dir: str | Path | None = None,
    n_videos: int = 2,
    env_kwargs: dict | None = None,
    n_envs: int = 4,
    n_execute: int | None = None,
    k: float = 0.01,
    query_period: int = 1,
    max_steps: int | None = None,
    stop_on_success: bool = False,
    video_size: tuple[int, int] = (360, 480),
    mirror_map=None,
    progress: bool = True,
    desc: str | None = None,
) -> EvalResult:
    """Run `n_trials` seeded trials (seed + i) of `runtime` on `arm`; see module docstring.

    A trial ends when the env terminates/truncates (the env terminates once success has been
    held for a while), after `max_steps` (default: the env's limit) or, with
    `stop_on_success`, at the first step whose `info["success"]` is true. The trial succeeded
    if `info["success"]` is true at its last step.
    The first `n_videos` trials are saved as mp4 in `video_dir` (if given).
    """
    from tqdm.auto import tqdm

    if arm not in (0, 1):
        raise ValueError(f"arm must be 0 or 1, got {arm}")
    if mode not in EXECUTOR_MODES:
        raise ValueError(f"mode must be one of {EXECUTOR_MODES}, got {mode!r}")
    mirrored = bool(mirror) and arm == 1
    if mirrored and mirror_map is None:
        from mirror_arm_sim.mirror_map import load_mirror_map

        mirror_map = load_mirror_map()
    pipeline = runtime.pipeline.with_mirror(mirror_map if mirrored else None)

    cams = list(runtime.camera_names)
    C, A = int(runtime.chunk_size), int(runtime.action_dim)
    ex_kwargs = {"n_execute": n_execute, "k": k, "query_period": query_period}
    video_dir = Path(video_dir) if video_dir is not None else None
    n_videos = n_videos if video_dir is not None else 0
    n_envs = max(1, min(int(n_envs), int(n_trials)))
    slots = [_Slot(make_eval_env(runtime, env_kwargs), make_executor(mode, C, A, **ex_kwargs))
             for _ in range(n_envs)]
    env_limit = getattr(slots[0].env.unwrapped, "max_episode_steps", None) or 300
    limit = int(max_steps or env_limit)
    fps = float(getattr(slots[0].env.unwrapped, "control_hz", 0) or 0) or 25.0

    result = EvalResult(arm=arm, mode=mode, mirror=mirrored, executor={"mode": mode, **ex_kwargs})
    result.seeds = [seed + i for i in range(n_trials)]
    result.successes = [False] * n_trials
    result.lengths = [0] * n_trials
    result.final_qpos = [[] for _ in range(n_trials)]
    next_trial = 0
    t0 = time.perf_counter()
    bar = tqdm(total=n_trials, desc=desc or f"eval arm{arm} {mode}{' mirror' if mirrored else ''}",
               disable=not progress, leave=False, dynamic_ncols=True)

    def policy_obs(obs: dict) -> tuple[dict, np.ndarray]:
        return pipeline.to_policy(obs["images"], obs["qpos"])

    def start(slot: _Slot) -> bool:
        nonlocal next_trial
        if next_trial >= n_trials:
            slot.done = True
            return False
        slot.trial = next_trial
        next_trial += 1
        slot.obs, _ = slot.env.reset(seed=result.seeds[slot.trial], options={"arm": arm, "randomize": True})
        slot.executor.reset()
        slot.t = 0
        slot.done = False
        slot.frames = [] if slot.trial < n_videos else None
        return True

    def finish(slot: _Slot, success: bool) -> None:
        result.successes[slot.trial] = bool(success)
        result.lengths[slot.trial] = slot.t
        result.final_qpos[slot.trial] = [float(v) for v in policy_obs(slot.obs)[1]]
        if slot.frames:
            name = f"{result.label}-trial{slot.trial:03d}-seed{result.seeds[slot.trial]}-" \
                   f"{'success' if success else 'failure'}.mp4"
            _write_video(video_dir / name, slot.frames, fps)
            result.videos.append(str(video_dir / name))
        bar.update(1)
        bar.set_postfix(success=f"{sum(result.successes)}/{bar.n}")
        start(slot)

    for s in slots:
        start(s)
    try:
        while any(not s.done for s in slots):
            active = [s for s in slots if not s.done]
            views = [policy_obs(s.obs) for s in active]
            query = [i for i, s in enumerate(active) if s.executor.needs_query()]
            if query:
                images = {c: np.stack([views[i][0][c] for i in query]) for c in cams}
                qpos = np.stack([views[i][1] for i in query])
                chunks = runtime.predict_chunk_batch(images=images, qpos=qpos)
                for i, chunk in zip(query, chunks):
                    active[i].executor.add_chunk(chunk)
            for s, (images, qpos) in zip(active, views):
                action = s.executor.next_action()
                if action is None:  # cannot happen synchronously; hold position to be safe
                    action = qpos
                env_action = pipeline.to_robot(action)
                if s.frames is not None:
                    caption = (f"arm {arm} {mode}{' mirrored' if mirrored else ''} "
                               f"seed {result.seeds[s.trial]} t={s.t}")
                    scene = _render_video_frame(s.env, s.obs, video_size, cams[0])
                    s.frames.append(_compose(scene, images[cams[0]], caption, None))
                s.obs, _, terminated, truncated, info = s.env.step(np.asarray(env_action, dtype=np.float32))
                s.t += 1
                success = bool(info.get("success", False))
                if terminated or truncated or s.t >= limit or (stop_on_success and success):
                    if s.frames is not None:  # final frame, held for a moment
                        scene = _render_video_frame(s.env, s.obs, video_size, cams[0])
                        last = _compose(scene, policy_obs(s.obs)[0][cams[0]],
                                        f"seed {result.seeds[s.trial]} t={s.t} "
                                        f"{'SUCCESS' if success else 'FAILURE'}", success)
                        s.frames.extend([last] * int(fps))
                    finish(s, success)
    finally:
        bar.close()
        for s in slots:
            close = getattr(s.env, "close", None)
            if callable(close):
                close()
    result.wall_time_s = time.perf_counter() - t0
    return result


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="act_evaluate",
        description="Evaluate an ACT checkpoint on arm 0 or (mirrored) arm 1 of the MuJoCo cell.",
    )
    p.add_argument("--checkpoint", required=True, help="policy checkpoint (.pt) written by act_train")
    p.add_argument("--arm", type=int, choices=(0, 1), default=1)
    p.add_argument("--mode", choices=EXECUTOR_MODES, default="ensemble")
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--seed", type=int, default=1000, help="trial i uses env seed SEED + i")
    p.add_argument("--no-mirror", action="store_true",
                   help="control: feed arm 1's raw observations and send raw actions")
    p.add_argument("--n-execute", type=int, default=None, help="chunked: actions per query (default chunk)")
    p.add_argument("--k", type=float, default=0.01, help="ensemble: weight exp(-k*i), i=0 the oldest")
    p.add_argument("--query-period", type=int, default=1, help="ensemble: query every N steps")
    p.add_argument("--n-envs", type=int, default=4, help="environments run in lockstep (batched inference)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--video-dir", default=None)
    p.add_argument("--n-videos", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="write the per-trial result here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torchvision  # noqa: F401  (before any MuJoCo EGL rendering: see transfer.py)

    from act_training.runtime.policy import ACTPolicyRuntime

    runtime = ACTPolicyRuntime.load(args.checkpoint, device=args.device)
    res = evaluate(
        runtime, arm=args.arm, n_trials=args.trials, mode=args.mode, mirror=not args.no_mirror,
        seed=args.seed, video_dir=args.video_dir, n_videos=args.n_videos, n_envs=args.n_envs,
        n_execute=args.n_execute, k=args.k, query_period=args.query_period, max_steps=args.max_steps,
    )
    print(res.summary())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res.to_dict(), indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
