"""Privileged scripted expert for either arm, and the fixed-trajectory baseline.

The expert reads the episode's task (cube pose, target position: privileged simulator state) at
`reset()` and plans the whole episode once; `act()` then plays the plan back. The plan has the
same phase structure and timing in every episode (deterministic, no randomness beyond the
task), smooth minimum-jerk segments, and joint targets from damped-least-squares IK on MuJoCo
Jacobians, warm-started step to step so the joint trajectory is continuous:

    phase          steps  motion
    approach        40    joint space: start pose -> 10 cm above the cube, gripper open
    descend         25    straight down to the grasp pose
    close           15    gripper closes (command 0 m; the cube stops the fingers at 2 cm)
    lift            20    up 12 cm
    transit         40    to 12 cm above the target (wrist keeps its roll relative to the waist)
    lower           25    down until the cube is 3 mm above the table
    open            10    gripper opens
    retreat         20    up 10 cm; then hold

195 steps of motion (3.9 s at 50 Hz); the env ends the episode 0.5 s after the cube rests
released on the target (about step 200).

`ScriptedExpert(env, fixed_trajectory=True)` is the baseline that ignores the object poses: it
plans for the middle of the randomisation ranges whatever the episode's poses are.

    mirror_arm_expert_eval --episodes 100 --arms 0 1      # prints success rates
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from .env import MirrorArmEnv, TaskSample, mujoco

PHASES = (("approach", 40), ("descend", 25), ("close", 15), ("lift", 20), ("transit", 40),
          ("lower", 25), ("open", 10), ("retreat", 20))
GRIPPER_OPEN = 0.04
GRIPPER_CLOSED = 0.0
PREGRASP_DZ = 0.10
LIFT_DZ = 0.12
GRASP_DZ = 0.005     # TCP above the cube centre at the grasp
PLACE_CLEARANCE = 0.003
RETREAT_DZ = 0.10


def min_jerk(n: int) -> np.ndarray:
    """n samples s(t) in (0, 1] of the minimum-jerk profile 10t^3 - 15t^4 + 6t^5."""
    t = np.arange(1, n + 1) / n
    return 10 * t**3 - 15 * t**4 + 6 * t**5


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3-vector cross product (np.cross is ~20x slower for single vectors)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _wrap(a: float, period: float) -> float:
    """Wrap to [-period/2, period/2)."""
    return (a + period / 2) % period - period / 2


@dataclass
class Keyframe:
    pos: np.ndarray     # TCP position (3,)
    phi: float          # angle of the finger closing axis in the horizontal plane
    grip: float         # gripper command


class ScriptedExpert:
    """Plan-once, play-back expert. Works on `env` or any wrapper of a `MirrorArmEnv`."""

    def __init__(self, env, fixed_trajectory: bool = False):
        self.env: MirrorArmEnv = env.unwrapped
        self.fixed_trajectory = fixed_trajectory
        self.model = self.env.model
        self._scratch = mujoco.MjData(self.model)
        self.plan: np.ndarray | None = None
        self.phase_bounds: list[tuple[str, int, int]] = []
        self.t = 0

    # --- public ---------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Plan the episode the env has just been reset to. Returns the plan (T, 7)."""
        env = self.env
        if env.task is None:
            raise RuntimeError("reset the env before the expert")
        task = env.task
        if self.fixed_trajectory:
            mean = env.sample_task(env.active_arm, randomize=False)
            task = TaskSample(task.arm, mean.cube_xy, mean.cube_yaw, mean.target_xy, task.start_q)
        self.plan = self._plan(env.active_arm, task, env.arm_qpos())
        self.t = 0
        return self.plan

    def act(self, obs=None) -> np.ndarray:
        """The next (7,) joint-position target (holds the last one after the plan ends)."""
        if self.plan is None:
            raise RuntimeError("call ScriptedExpert.reset() after env.reset()")
        a = self.plan[min(self.t, len(self.plan) - 1)]
        self.t += 1
        return a.astype(np.float32)

    __call__ = act

    # --- planning -------------------------------------------------------------------------
    def _plan(self, k: int, task: TaskSample, q_start: np.ndarray) -> np.ndarray:
        env, cell = self.env, self.env.cell
        arm = env.arms[k]
        z0 = cell.table.height + cell.cube.half
        cube = np.array([*task.cube_xy, z0])
        target = np.array([*task.target_xy, z0])
        base = np.array(arm.base_pos)
        # home "forward" direction of this arm in the horizontal plane (+x for arm 0)
        fwd = np.sign(arm.gripper.tool_axis[0]) if arm.gripper.tool_axis[0] else 1.0

        def bearing(p):  # waist rotation (about +z) that turns the home direction towards p
            d = p[:2] - base[:2]
            return np.arctan2(fwd * d[1], fwd * d[0])

        a_c, a_t = bearing(cube), bearing(target)
        phi_nat = np.pi / 2 + a_c           # closing axis with zero wrist roll, facing the cube
        phi_g = phi_nat + _wrap(task.cube_yaw - phi_nat, np.pi / 2)
        phi_p = phi_g + (a_t - a_c)

        up = np.array([0.0, 0.0, 1.0])
        grasp = cube + GRASP_DZ * up
        pre = grasp + PREGRASP_DZ * up
        lift = grasp + LIFT_DZ * up
        above_t = np.array([target[0], target[1], lift[2]])
        place = target + (GRASP_DZ + PLACE_CLEARANCE) * up
        retreat = place + RETREAT_DZ * up
        keys = {
            "descend": (Keyframe(pre, phi_g, GRIPPER_OPEN), Keyframe(grasp, phi_g, GRIPPER_OPEN)),
            "close": (Keyframe(grasp, phi_g, GRIPPER_OPEN), Keyframe(grasp, phi_g, GRIPPER_CLOSED)),
            "lift": (Keyframe(grasp, phi_g, GRIPPER_CLOSED), Keyframe(lift, phi_g, GRIPPER_CLOSED)),
            "transit": (Keyframe(lift, phi_g, GRIPPER_CLOSED), Keyframe(above_t, phi_p, GRIPPER_CLOSED)),
            "lower": (Keyframe(above_t, phi_p, GRIPPER_CLOSED), Keyframe(place, phi_p, GRIPPER_CLOSED)),
            "open": (Keyframe(place, phi_p, GRIPPER_CLOSED), Keyframe(place, phi_p, GRIPPER_OPEN)),
            "retreat": (Keyframe(place, phi_p, GRIPPER_OPEN), Keyframe(retreat, phi_p, GRIPPER_OPEN)),
        }
        # IK of the pre-grasp pose, warm-started from home with the waist turned to the cube
        q_seed = np.array(arm.home[:6], dtype=np.float64)
        q_seed[0] = a_c
        q_pre = self.ik(k, pre, phi_g, q_seed)
        out: list[np.ndarray] = []
        self.phase_bounds = []
        q = q_pre
        for name, n in PHASES:
            start = len(out)
            s = min_jerk(n)
            if name == "approach":
                g0 = float(q_start[6])
                for si in s:
                    qa = (1 - si) * q_start[:6] + si * q_pre
                    out.append(np.concatenate([qa, [(1 - si) * g0 + si * GRIPPER_OPEN]]))
            else:
                a, b = keys[name]
                for si in s:
                    p = (1 - si) * a.pos + si * b.pos
                    phi = (1 - si) * a.phi + si * b.phi
                    q = self.ik(k, p, phi, q)
                    out.append(np.concatenate([q, [(1 - si) * a.grip + si * b.grip]]))
            self.phase_bounds.append((name, start, len(out)))
        return np.array(out)

    def ik(self, k: int, pos: np.ndarray, phi: float, q0: np.ndarray, iters: int = 60,
           damping: float = 1e-3, tol: float = 1e-6) -> np.ndarray:
        """Joint positions (6,) of arm k putting the TCP at `pos`, tool pointing down, finger
        closing axis at angle `phi` (damped least squares on MuJoCo Jacobians)."""
        m, d, env = self.model, self._scratch, self.env
        arm = env.arms[k]
        qadr, dadr = env._qadr[k][:6], env._dadr[k][:6]
        site = env._tcp_site[k]
        tool_local = np.array(arm.gripper.tool_axis, dtype=np.float64)
        close_local = np.array(arm.gripper.close_axis, dtype=np.float64)
        t_des = np.array([0.0, 0.0, -1.0])
        c_des = np.array([np.cos(phi), np.sin(phi), 0.0])
        lo, hi = env._lims[k][0][:6], env._lims[k][1][:6]
        q = np.clip(np.array(q0, dtype=np.float64), lo, hi)
        d.qpos[:] = env.data.qpos
        jacp = np.zeros((3, m.nv))
        jacr = np.zeros((3, m.nv))
        J, eye = np.empty((6, 6)), np.eye(6)
        for _ in range(iters):
            d.qpos[qadr] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            R = d.site_xmat[site].reshape(3, 3)
            t_cur, c_cur = R @ tool_local, R @ close_local
            e = np.concatenate([pos - d.site_xpos[site],
                                0.5 * (_cross(t_cur, t_des) + _cross(c_cur, c_des))])
            if e @ e < tol * tol:
                break
            mujoco.mj_jacSite(m, d, jacp, jacr, site)
            J[:3], J[3:] = jacp[:, dadr], jacr[:, dadr]
            dq = J.T @ np.linalg.solve(J @ J.T + damping * eye, e)
            q = np.clip(q + dq, lo, hi)
        return q


# --- rollouts --------------------------------------------------------------------------------
class ActionNoise:
    """Smooth random perturbation of the six arm joints' commands (the gripper is never perturbed).

    An AR(1) process per joint, n_t = a n_{t-1} + sqrt(1 - a^2) sigma e_t, with a = exp(-1/tau):
    stationary standard deviation `sigma` rad and correlation time `tau` steps, seeded per
    episode so demos stay reproducible. Used for DART-style demonstrations (see `rollout`)."""

    def __init__(self, sigma: float, seed: int, tau: float = 10.0, dim: int = 7):
        self.sigma, self.a = float(sigma), float(np.exp(-1.0 / max(tau, 1e-6)))
        self.rng = np.random.default_rng([int(seed), 0xDA27])
        self.n = np.zeros(dim)
        self.n[:6] = self.rng.normal(0.0, self.sigma, 6)

    def __call__(self) -> np.ndarray:
        e = self.rng.normal(0.0, 1.0, 6)
        self.n[:6] = self.a * self.n[:6] + np.sqrt(1.0 - self.a**2) * self.sigma * e
        return self.n.astype(np.float32)


def rollout(env, seed: int, arm: int = 0, fixed_trajectory: bool = False, record: bool = False,
            expert: ScriptedExpert | None = None, action_noise: float = 0.0) -> dict:
    """Run one expert episode. Returns success, steps and (if record) images/qpos/actions.

    `action_noise` > 0 (rad) executes the expert's command plus `ActionNoise` but records the
    clean command (DART, Laskey et al. 2017): the demos then visit states off the expert's path,
    labelled with the plan that leads back to it. Without it, every demo state lies on the plan,
    so a policy can read its next command from the joint positions alone and never learns to
    correct its own drift from the image."""
    u = env.unwrapped
    obs, info = env.reset(seed=seed, options={"arm": arm, "randomize": True})
    expert = expert or ScriptedExpert(u, fixed_trajectory=fixed_trajectory)
    expert.reset()
    noise = ActionNoise(action_noise, seed) if action_noise > 0 else None
    images = {c: [] for c in u.cameras}
    qpos, actions = [], []
    done = False
    while not done:
        a = expert.act(obs)
        if record:
            for c in u.cameras:
                images[c].append(obs["images"][c])
            qpos.append(obs["qpos"])
            actions.append(a)
        obs, _, term, trunc, info = env.step(a if noise is None else a + noise())
        done = term or trunc
    out = {"success": bool(info["success"]), "steps": u.steps, "seed": seed, "arm": arm}
    if record:
        out["images"] = {c: np.stack(v) for c, v in images.items()}
        out["qpos"] = np.stack(qpos).astype(np.float32)
        out["actions"] = np.stack(actions).astype(np.float32)
    return out


def success_rate(arm: int, episodes: int, seed: int = 0, fixed_trajectory: bool = False,
                 env: MirrorArmEnv | None = None) -> tuple[float, list[int]]:
    """Success rate over seeds seed .. seed+episodes-1; returns (rate, failed seeds)."""
    env = env or MirrorArmEnv()
    expert = ScriptedExpert(env, fixed_trajectory=fixed_trajectory)
    failed = []
    with _no_render(env):
        for s in range(seed, seed + episodes):
            if not rollout(env, s, arm, expert=expert)["success"]:
                failed.append(s)
    return 1.0 - len(failed) / episodes, failed


class _no_render:
    """Skip image rendering inside the block (privileged experts do not look)."""

    def __init__(self, env):
        self.env = env.unwrapped

    def __enter__(self):
        self.env.render_obs = False

    def __exit__(self, *exc):
        self.env.render_obs = True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Success rates of the scripted expert and of the "
                                            "fixed-trajectory baseline (ignores object poses).")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--arms", type=int, nargs="+", default=[0, 1])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baseline", action="store_true", help="skip the fixed-trajectory baseline")
    args = p.parse_args(argv)
    env = MirrorArmEnv()
    for arm in args.arms:
        for fixed in ([False] if args.no_baseline else [False, True]):
            t0 = time.perf_counter()
            rate, failed = success_rate(arm, args.episodes, args.seed, fixed, env)
            name = "fixed-trajectory baseline" if fixed else "scripted expert"
            print(f"arm {arm} {name:26s}: success {rate * 100:5.1f} % over {args.episodes} episodes "
                  f"(seeds {args.seed}..{args.seed + args.episodes - 1}, {time.perf_counter() - t0:.1f} s)"
                  + (f"; failed seeds {failed[:20]}" if failed and not fixed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
