"""Record scripted-expert demonstrations to HDF5 (command: `mirror_arm_generate_demos`).

    mirror_arm_generate_demos --arm 0 --num-demos 50 --out data/demos_arm0.hdf5 \\
        --image-size 96 --cameras top --seed 0

Episode i uses env seed `seed + j` for the j-th attempt; only successful episodes are kept (the
failures are counted and reported) until `num_demos` are recorded or `max_attempts` is reached.
The file is written through `DemoWriter` (atomic: a temporary file renamed at the end, removed on
error or Ctrl-C). Same arguments -> the same file contents.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cell import ARM_JOINTS
from .env import MirrorArmEnv
from .expert import ScriptedExpert, rollout
from .hdf5_layout import DemoWriter


@dataclass
class DemoStats:
    path: Path
    num_demos: int
    attempts: int
    failed_seeds: list[int] = field(default_factory=list)
    seconds: float = 0.0
    mean_length: float = 0.0

    def __str__(self) -> str:
        return (f"wrote {self.num_demos} demos to {self.path} in {self.seconds:.1f} s "
                f"({self.attempts} episodes, {len(self.failed_seeds)} failed"
                + (f": seeds {self.failed_seeds[:20]}" if self.failed_seeds else "")
                + f"; mean length {self.mean_length:.0f} steps)")


def generate_demos(
    out: str | Path,
    num_demos: int = 50,
    arm: int = 0,
    image_size: int | tuple[int, int] = 96,
    cameras: tuple[str, ...] | list[str] = ("top",),
    seed: int = 0,
    max_attempts: int | None = None,
    progress: bool = True,
    max_episode_steps: int = 300,
    variant: str = "exact",
    action_noise: float = 0.0,
) -> DemoStats:
    """Record `num_demos` successful expert episodes of `arm` to `out` (HDF5 seed layout);
    `variant` names the cell variant (`cell.VARIANTS`) the episodes run in; `action_noise`
    (rad, 0 = off) perturbs the executed commands DART-style (`expert.rollout`)."""
    if num_demos <= 0:
        raise ValueError(f"num_demos must be > 0, got {num_demos}")
    MirrorArmEnv._check_arm(arm)
    max_attempts = max_attempts or 2 * num_demos + 10
    env = MirrorArmEnv(image_size=image_size, cameras=tuple(cameras), max_episode_steps=max_episode_steps,
                       variant=variant)
    expert = ScriptedExpert(env)
    t0 = time.perf_counter()
    failed: list[int] = []
    lengths: list[int] = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=num_demos, desc=f"demos arm {arm}", unit="demo")
    try:
        with DemoWriter(out, camera_names=list(cameras), joint_names=list(ARM_JOINTS),
                        control_hz=env.control_hz, arm=arm, source="mirror_arm_sim scripted expert",
                        extra_attrs={"seed": seed, "image_size": list(env.image_size),
                                     "cell_variant": env.cell.variant.name,
                                     "action_noise": float(action_noise),
                                     "env_id": "MirrorArmPickPlace-v0"}) as w:
            attempt = 0
            while w.num_demos < num_demos and attempt < max_attempts:
                s = seed + attempt
                attempt += 1
                ep = rollout(env, s, arm, record=True, expert=expert, action_noise=action_noise)
                if not ep["success"]:
                    failed.append(s)
                    continue
                w.add_episode(ep["images"], ep["qpos"], ep["actions"],
                              attrs={"seed": s, "success": True, "arm": arm})
                lengths.append(len(ep["actions"]))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(failed=len(failed))
            if w.num_demos < num_demos:
                raise RuntimeError(f"only {w.num_demos}/{num_demos} successful demos in {attempt} "
                                   f"attempts (failed seeds {failed[:20]})")
            n = w.num_demos
    finally:
        if bar is not None:
            bar.close()
        env.close()
    return DemoStats(Path(out), n, attempt, failed, time.perf_counter() - t0,
                     sum(lengths) / max(1, len(lengths)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Record scripted-expert demos of the mirrored cell to HDF5.")
    p.add_argument("--arm", type=int, default=0, choices=[0, 1])
    p.add_argument("--num-demos", type=int, default=50)
    p.add_argument("--out", default="data/demos_arm0.hdf5")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--cameras", nargs="+", default=["top"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-episode-steps", type=int, default=300)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--variant", default="exact", help="cell variant (mirror_arm_sim.cell.VARIANTS)")
    p.add_argument("--action-noise", type=float, default=0.0,
                   help="std (rad) of the smooth noise added to the executed arm commands; the "
                        "clean commands are recorded (DART); 0 = off")
    args = p.parse_args(argv)
    try:
        stats = generate_demos(args.out, args.num_demos, args.arm, args.image_size, args.cameras,
                               args.seed, progress=not args.no_progress,
                               max_episode_steps=args.max_episode_steps, variant=args.variant,
                               action_noise=args.action_noise)
    except KeyboardInterrupt:
        print("interrupted: no file written", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
