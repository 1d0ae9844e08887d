"""Gymnasium env of the mirrored two-arm cell: pick the cube, place it on the target disk.

    env = gymnasium.make("MirrorArmPickPlace-v0")          # or MirrorArmEnv(...)
    obs, info = env.reset(seed=3, options={"arm": 0, "randomize": True})
    obs["images"]["top"]   # uint8 (H, W, 3)
    obs["qpos"]            # float32 (7,): the ACTIVE arm's own joints, ARM_JOINTS order
    obs, reward, terminated, truncated, info = env.step(action)  # (7,) joint-position targets
    info["success"]        # bool, from the simulator state

* One arm is active per episode; the other holds its home pose.
* Control at `cell.control_hz` (50 Hz): each step holds the targets for `cell.substeps` physics
  steps. The gripper value is the half-gap in metres (0 closed, 0.045 fully open).
* Success (`info["success"]`): the cube rests on the table (height within 5 mm of resting, speed
  < 2 cm/s), its centre lies inside the target disk (xy distance < disk radius), and no finger
  touches it. Reward = 1.0 while successful, else 0.0. The episode terminates early once success
  has held for `task.success_hold_s` (0.5 s = 25 steps); otherwise it is truncated after
  `max_episode_steps` (300). An episode's outcome is `info["success"]` of its last step.
* Randomisation (`options["randomize"]`, default True): cube position and yaw, target position,
  and a small offset of the active arm's start pose, drawn for arm 0 from `self.np_random` and
  mirrored through x = 0 for arm 1, so seed s on arm 1 is the exact mirror of seed s on arm 0.
  `randomize=False` puts everything at the middle of the ranges and the arm at home.
  `options["cube"] = (x, y, yaw)` / `options["target"] = (x, y)` (world frame) override a pose.
* `variant="base_offset_15mm"` (env kwarg, a name in `cell.VARIANTS`): arm 1 is an imperfect
  mirror of arm 0 (base offset, camera off the plane, joint zero offset). Tasks are still the
  exact mirror (they are world poses), so the only difference between the arms is the defect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
import mujoco  # noqa: E402

from . import ENV_ID  # noqa: E402, F401  (defined once, in the package; re-exported)
from .cell import ARM_JOINTS, CellSpec, default_cell, joint_mirror_signs  # noqa: E402
from .mujoco_model import FINGERS, build_mjcf  # noqa: E402


@dataclass(frozen=True)
class TaskSample:
    """One episode's randomisation, world frame, for the arm it was made for."""

    arm: int
    cube_xy: tuple[float, float]
    cube_yaw: float
    target_xy: tuple[float, float]
    start_q: tuple[float, ...]   # 7 values: the active arm's initial joint positions

    def as_dict(self) -> dict:
        """The sample as a JSON-ready dict."""
        return {"arm": self.arm, "cube_xy": list(self.cube_xy), "cube_yaw": self.cube_yaw,
                "target_xy": list(self.target_xy), "start_q": list(self.start_q)}


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


class MirrorArmEnv(gym.Env):
    """The pick-and-place env (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        image_size: tuple[int, int] | int = (96, 96),
        cameras: tuple[str, ...] | list[str] = ("top",),
        max_episode_steps: int = 300,
        render_mode: str | None = "rgb_array",
        cell: CellSpec | None = None,
        early_termination: bool = True,
        arm: int = 0,
        variant: str | None = None,
    ):
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} not supported (only 'rgb_array')")
        self.render_mode = render_mode
        if cell is not None and variant is not None:
            raise ValueError("pass either cell= or variant= (apply the variant to the cell with "
                             "cell.with_variant), not both")
        # variant: a name in mirror_arm_sim.cell.VARIANTS; arm 1 an imperfect mirror of arm 0
        self.cell = cell or default_cell(variant=variant or "exact")
        self.cameras = tuple(cameras)
        known = {c.name for c in self.cell.cameras}
        for c in self.cameras:
            if c not in known:
                raise ValueError(f"unknown camera {c!r}; this cell has {sorted(known)}")
        if not self.cameras:
            raise ValueError("at least one camera is required")
        self.max_episode_steps = int(max_episode_steps)
        self.early_termination = bool(early_termination)
        self._check_arm(arm)
        self.default_arm = arm
        self.control_hz = float(self.cell.control_hz)
        self.joint_names = list(ARM_JOINTS)
        self.substeps = self.cell.substeps
        self.hold_steps = max(1, round(self.cell.task.success_hold_s * self.control_hz))

        self.model = mujoco.MjModel.from_xml_string(build_mjcf(self.cell, self.image_size))
        self.data = mujoco.MjData(self.model)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        m = self.model
        self.arms = [self.cell.arm_spec(k) for k in (0, 1)]
        self._qadr, self._dadr, self._act = [], [], []
        for k, arm in enumerate(self.arms):
            names = [f"arm{k}/{lk.joint.name}" for lk in arm.links] + [f"arm{k}/{f}" for f in FINGERS]
            self._qadr.append(np.array([m.joint(n).qposadr[0] for n in names]))
            self._dadr.append(np.array([m.joint(n).dofadr[0] for n in names]))
            self._act.append(np.array([m.actuator(n).id for n in names]))
        self._cube_q = m.joint("cube").qposadr[0]
        self._cube_d = m.joint("cube").dofadr[0]
        self._target_mocap = m.body("target").mocapid[0]
        self._cube_geom = m.geom("cube").id
        self._finger_geoms = {m.geom(f"arm{k}/{f}").id for k in (0, 1) for f in FINGERS}
        self._tcp_site = [m.site(f"arm{k}/tcp").id for k in (0, 1)]
        self.signs = np.array(joint_mirror_signs(self.cell.arm))

        # per-arm limits (arm 1's are the mirror of arm 0's); the spaces cover both arms
        self._lims = [(np.array([lim[0] for lim in a.limits]), np.array([lim[1] for lim in a.limits]))
                      for a in self.arms]
        lo = np.minimum(self._lims[0][0], self._lims[1][0]).astype(np.float32)
        hi = np.maximum(self._lims[0][1], self._lims[1][1]).astype(np.float32)
        self.action_space = gym.spaces.Box(lo, hi, dtype=np.float32)
        margin = np.array([0.3] * 6 + [0.02], dtype=np.float32)
        h, w = self.image_size
        self.observation_space = gym.spaces.Dict({
            "images": gym.spaces.Dict({
                c: gym.spaces.Box(0, 255, (h, w, 3), dtype=np.uint8) for c in self.cameras
            }),
            "qpos": gym.spaces.Box(lo - margin, hi + margin, dtype=np.float32),
        })
        self.active_arm = self.default_arm
        self.task: TaskSample | None = None
        self._steps = 0
        self._success_count = 0
        self._needs_reset = True
        self.render_obs = True  # False: observations carry blank images (privileged evaluation)

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _check_arm(arm) -> int:
        if isinstance(arm, bool) or not isinstance(arm, (int, np.integer)) or int(arm) not in (0, 1):
            raise ValueError(f"unknown arm index {arm!r}: expected 0 or 1")
        return int(arm)

    def sample_task(self, arm: int, randomize: bool = True) -> TaskSample:
        """Draw a task for arm 0 from `self.np_random` and mirror it for arm 1."""
        t = self.cell.task
        home = np.array(self.arms[0].home)
        if randomize:
            r = self.np_random
            cube = (r.uniform(*t.cube_x), r.uniform(*t.cube_y))
            yaw = r.uniform(*t.cube_yaw)
            target = (r.uniform(*t.target_x), r.uniform(*t.target_y))
            noise = r.uniform(-t.start_joint_noise, t.start_joint_noise, size=6)
        else:
            cube = (np.mean(t.cube_x), np.mean(t.cube_y))
            yaw = float(np.mean(t.cube_yaw))
            target = (np.mean(t.target_x), np.mean(t.target_y))
            noise = np.zeros(6)
        start = home.copy()
        start[:6] += noise
        if arm == 1:
            cube, target, yaw = (-cube[0], cube[1]), (-target[0], target[1]), -yaw
            start = self.signs * start
        return TaskSample(arm, (float(cube[0]), float(cube[1])), float(yaw),
                          (float(target[0]), float(target[1])), tuple(float(x) for x in start))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode (gymnasium API); options `arm`, `randomize`, `cube` (x, y, yaw), `target`
        (x, y) as in the module docstring. Returns (obs, info)."""
        options = dict(options or {})
        unknown = set(options) - {"arm", "randomize", "cube", "target"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}")
        arm = self._check_arm(options.get("arm", self.default_arm))
        super().reset(seed=seed)
        task = self.sample_task(arm, bool(options.get("randomize", True)))
        if "cube" in options:
            x, y, yaw = (float(v) for v in options["cube"])
            task = TaskSample(arm, (x, y), yaw, task.target_xy, task.start_q)
        if "target" in options:
            x, y = (float(v) for v in options["target"])
            task = TaskSample(arm, task.cube_xy, task.cube_yaw, (x, y), task.start_q)
        self.active_arm = arm
        self.task = task
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        for k in (0, 1):
            q = np.array(task.start_q) if k == arm else np.array(self.arms[k].home)
            self._write_arm(k, q)
        self.set_object_poses(task.cube_xy, task.cube_yaw, task.target_xy)
        mujoco.mj_forward(m, d)
        self._steps = 0
        self._success_count = 0
        self._needs_reset = False
        return self._obs(), self._info(False)

    def step(self, action):
        """Hold (7,) joint-position targets (clipped to the limits) for one control period; returns
        (obs, reward, terminated, truncated, info)."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (7,):
            raise ValueError(f"action must have shape (7,) (joint-position targets), got {a.shape}")
        return self._advance(a[None], record=False)

    def step_targets(self, targets):
        """Like `step`, but with one (7,) target per physics step: `targets` (substeps, 7), e.g. a
        trajectory controller's samples (`mirror_arm_sim.trajectory`). The active arm's joint
        positions after each physics step are left in `substep_qpos` (substeps, 7)."""
        t = np.asarray(targets, dtype=np.float64)
        if t.shape != (self.substeps, 7):
            raise ValueError(f"targets must have shape ({self.substeps}, 7), got {t.shape}")
        return self._advance(t, record=True)

    def _advance(self, targets: np.ndarray, record: bool):
        """One control step: targets (1, 7) held for every physics step, or (substeps, 7)."""
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        if not np.all(np.isfinite(targets)):
            raise ValueError(f"action contains NaN/inf: {targets}")
        k = self.active_arm
        a = np.clip(targets, *self._lims[k])
        full = np.concatenate([a[:, :6], a[:, 6:7], a[:, 6:7]], axis=1)
        if not record:  # step(): one target held for the whole control period
            self.data.ctrl[self._act[k]] = full[0]
            mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        else:
            qs = []
            for row in full:
                self.data.ctrl[self._act[k]] = row
                mujoco.mj_step(self.model, self.data)
                qs.append(self.arm_qpos(k))
            self.substep_qpos = np.stack(qs)
        self._steps += 1
        success = self.is_success()
        self._success_count = self._success_count + 1 if success else 0
        terminated = self.early_termination and self._success_count >= self.hold_steps
        truncated = (not terminated) and self._steps >= self.max_episode_steps
        return self._obs(), float(success), terminated, truncated, self._info(success)

    def render(self):
        """The first camera's (H, W, 3) uint8 image, or None without a render_mode."""
        if self.render_mode is None:
            return None
        return self.render_camera(self.cameras[0])

    def close(self):
        """Release the renderers."""
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()

    # --- state helpers (symmetry test, ROS bridge) ------------------------------------------
    @property
    def steps(self) -> int:
        """Control steps since the last reset."""
        return self._steps

    def arm_qpos(self, k: int | None = None) -> np.ndarray:
        """(7,) joint positions of arm k (default: active); gripper = mean finger half-gap."""
        k = self.active_arm if k is None else self._check_arm(k)
        q = self.data.qpos[self._qadr[k]]
        return np.concatenate([q[:6], [0.5 * (q[6] + q[7])]])

    def arm_qvel(self, k: int | None = None) -> np.ndarray:
        """(7,) joint velocities of arm k (default: active); gripper = mean finger velocity."""
        k = self.active_arm if k is None else self._check_arm(k)
        v = self.data.qvel[self._dadr[k]]
        return np.concatenate([v[:6], [0.5 * (v[6] + v[7])]])

    def arm_ctrl(self, k: int | None = None) -> np.ndarray:
        """(7,) position targets currently applied to arm k (default: active); gripper = the finger target."""
        k = self.active_arm if k is None else self._check_arm(k)
        c = self.data.ctrl[self._act[k]]
        return np.concatenate([c[:6], [c[6]]])

    def joint_limits(self, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) joint-position limits (7,) of arm k (default: active); actions are clipped."""
        k = self.active_arm if k is None else self._check_arm(k)
        return self._lims[k][0].copy(), self._lims[k][1].copy()

    def _write_arm(self, k: int, q) -> None:
        q = np.asarray(q, dtype=np.float64)
        full = np.concatenate([q[:6], [q[6], q[6]]])
        self.data.qpos[self._qadr[k]] = full
        self.data.qvel[self._dadr[k]] = 0.0
        self.data.ctrl[self._act[k]] = full

    def set_arm_qpos(self, k: int, q) -> None:
        """Put arm k at joint positions q (7,) at rest, with its targets equal to q."""
        self._write_arm(self._check_arm(k), q)
        mujoco.mj_forward(self.model, self.data)

    def set_object_poses(self, cube_xy=None, cube_yaw=None, target_xy=None, cube_z=None) -> None:
        """Place the cube (on the table unless cube_z) and/or the target (world frame)."""
        d = self.data
        if cube_xy is not None:
            z = self.cell.table.height + self.cell.cube.half if cube_z is None else cube_z
            d.qpos[self._cube_q:self._cube_q + 3] = [cube_xy[0], cube_xy[1], z]
            d.qpos[self._cube_q + 3:self._cube_q + 7] = _yaw_quat(cube_yaw or 0.0)
            d.qvel[self._cube_d:self._cube_d + 6] = 0.0
        if target_xy is not None:
            d.mocap_pos[self._target_mocap] = [target_xy[0], target_xy[1],
                                               self.cell.table.height + self.cell.target.half_height]
        mujoco.mj_forward(self.model, self.data)

    def cube_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), quaternion wxyz (4,)) of the cube."""
        q = self.data.qpos[self._cube_q:self._cube_q + 7]
        return q[:3].copy(), q[3:].copy()

    def target_pos(self) -> np.ndarray:
        """(3,) world position (m) of the target disk's centre."""
        return self.data.mocap_pos[self._target_mocap].copy()

    def tcp_pose(self, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), rotation matrix (3, 3)) of arm k's tool centre point."""
        k = self.active_arm if k is None else self._check_arm(k)
        s = self._tcp_site[k]
        return self.data.site_xpos[s].copy(), self.data.site_xmat[s].reshape(3, 3).copy()

    def get_state(self) -> dict:
        """A complete snapshot (physics + episode bookkeeping) for `set_state`."""
        d = self.data
        return {
            "arm": self.active_arm, "steps": self._steps, "success_count": self._success_count,
            "task": self.task, "time": d.time, "qpos": d.qpos.copy(), "qvel": d.qvel.copy(),
            "act": d.act.copy(), "ctrl": d.ctrl.copy(), "mocap_pos": d.mocap_pos.copy(),
            "mocap_quat": d.mocap_quat.copy(), "qacc_warmstart": d.qacc_warmstart.copy(),
        }

    def set_state(self, state: dict) -> None:
        """Restore a `get_state` snapshot (physics and episode bookkeeping)."""
        d = self.data
        self.active_arm = self._check_arm(state["arm"])
        self._steps = int(state.get("steps", 0))
        self._success_count = int(state.get("success_count", 0))
        self.task = state.get("task", self.task)
        d.time = state["time"]
        for key in ("qpos", "qvel", "act", "ctrl", "mocap_pos", "mocap_quat", "qacc_warmstart"):
            getattr(d, key)[:] = state[key]
        mujoco.mj_forward(self.model, d)
        self._needs_reset = False

    # --- observation, success ---------------------------------------------------------------
    def model_camera(self, name: str, arm: int | None = None) -> str:
        """MuJoCo camera name of obs camera `name` (the wrist camera is the active arm's)."""
        arm = self.active_arm if arm is None else arm
        cam = self.cell.camera(name)
        return f"arm{arm}/{name}" if cam.mount == "wrist" else name

    def render_camera(self, name: str, size: tuple[int, int] | None = None, arm: int | None = None):
        """(H, W, 3) uint8 image of camera `name` as arm `arm` (default: active) sees it, at `size`
        (H, W) (default: image_size)."""
        size = tuple(size or self.image_size)
        r = self._renderers.get(size)
        if r is None:
            r = self._renderers[size] = mujoco.Renderer(self.model, size[0], size[1])
        r.update_scene(self.data, self.model_camera(name, arm))
        return r.render().copy()

    def _obs(self) -> dict:
        if not self.render_obs:  # privileged evaluation without images (see expert.success_rate)
            h, w = self.image_size
            images = {c: np.zeros((h, w, 3), np.uint8) for c in self.cameras}
        else:
            images = {c: self.render_camera(c) for c in self.cameras}
        return {
            "images": images,
            "qpos": self.arm_qpos().astype(np.float32),
        }

    def _info(self, success: bool) -> dict:
        return {"success": bool(success), "is_success": bool(success), "arm": self.active_arm,
                "steps": self._steps}

    def cube_released(self) -> bool:
        """True when no finger touches the cube."""
        d = self.data
        for i in range(d.ncon):
            c = d.contact[i]
            g = {int(c.geom1), int(c.geom2)}
            if self._cube_geom in g and g & self._finger_geoms:
                return False
        return True

    def is_success(self) -> bool:
        """The success test of the module docstring on the current state (on target, resting, released)."""
        t = self.cell.task
        pos, _ = self.cube_pose()
        tgt = self.target_pos()
        v = self.data.qvel[self._cube_d:self._cube_d + 3]
        on_target = np.hypot(*(pos[:2] - tgt[:2])) < self.cell.target.radius - t.success_margin
        resting = (abs(pos[2] - (self.cell.table.height + self.cell.cube.half)) < t.success_z_tol
                   and float(np.linalg.norm(v)) < t.success_speed)
        return bool(on_target and resting and self.cube_released())
