"""MuJoCo bridge: runs MirrorArmEnv and speaks ROS 2 (the same topics as the Gazebo bridge).

Publishes (relative names, remappable):
  camera/<name>/image_raw  sensor_msgs/Image rgb8, sensor-data QoS, header.stamp = sim time
  joint_states             sensor_msgs/JointState of BOTH arms, names arm0_waist ... arm1_gripper
  episode_result           act_msgs/EpisodeResult, once per finished episode
  /clock                   rosgraph_msgs/Clock (sim time; run other nodes with use_sim_time)
Subscribes:
  commands                 std_msgs/Float64MultiArray (7 targets of the active arm, ARM_JOINTS
                           order) or trajectory_msgs/JointTrajectory (joint names arm<k>_<joint>,
                           first point's positions, or every point with
                           `trajectory_interpolation`), per the `command_type` parameter
Services:
  ~/reset                  std_srvs/Trigger: start an episode with the `seed` and `arm` parameters
                           (set them first, e.g. with the parameter services)

Timing (parameter `lockstep`):
  lockstep = true   (evaluation) simulated time only advances when a command arrives: after
                    publishing the observation of step t the bridge waits for ONE command,
                    applies it with env.step and publishes step t+1. No wall-clock luck, so the
                    ROS loop reproduces the in-process evaluation exactly. If no command comes
                    within `republish_period` s the observation is published again (same stamp,
                    a lost message cannot stall the loop). The node runs with lockstep:=true.
  lockstep = false  (real time) a timer at the control rate steps the env with the latest command
                    (or holds the previous targets) and publishes; like a real robot driver.
When an episode ends (success with `stop_on_success`, env termination or the step limit) the
bridge publishes the result and stops stepping/publishing until the next ~/reset.
"""

from __future__ import annotations

import sys

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from act_msgs.msg import EpisodeResult
from mirror_arm_sim.cell import ros_joint_names
from mirror_arm_sim.ros_signals import StopOnSignal

PARAMETERS: dict[str, tuple[object, str]] = {
    "arm": (0, "Active arm of the next episode (0 or 1)."),
    "seed": (0, "Env seed of the next episode (read at every ~/reset)."),
    "randomize": (True, "Randomise cube, target and start pose (env reset option)."),
    "cameras": (["top"], "Cameras to render and publish (cell camera names)."),
    "image_size": ([96, 96], "Rendered image size [height, width] (match the policy's frame_size)."),
    "max_episode_steps": (300, "Episode step limit (truncation)."),
    "stop_on_success": (False, "End the episode at the first successful step instead of when the env "
                        "terminates (success held 0.5 s); false matches act_evaluate."),
    "lockstep": (True, "true: advance one step per received command (deterministic evaluation); "
                       "false: real time at control_rate."),
    "control_rate": (0.0, "Real-time mode step rate in Hz (0 = the cell's control_hz)."),
    "command_type": ("float64_array", "Command message: 'float64_array' or 'joint_trajectory'."),
    "trajectory_interpolation": (False, "joint_trajectory: follow every point like a "
                                        "JointTrajectoryController, sampled at each physics step (linear "
                                        "between position-only points, cubic with velocities; "
                                        "mirror_arm_sim.trajectory). false: the first point's positions "
                                        "for the whole step."),
    "republish_period": (0.5, "Lockstep: re-publish the current observation after this many "
                              "seconds without a command (<= 0: never)."),
    "publish_clock": (True, "Publish sim time on /clock."),
    "auto_start": (False, "Start an episode (seed, arm) at start-up instead of waiting for ~/reset."),
    "variant": ("exact", "Cell variant (mirror_arm_sim.cell.VARIANTS): arm 1 an imperfect mirror, "
                         "e.g. base_offset_15mm, camera_offset_5mm, joint_zero_offset."),
}


class MirrorArmBridge(Node):
    """See module docstring."""

    def __init__(self, **kwargs) -> None:
        super().__init__("mirror_arm_bridge", **kwargs)
        for name, (default, desc) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=desc))
        g = lambda n: self.get_parameter(n).value  # noqa: E731
        from mirror_arm_sim.env import MirrorArmEnv

        self.cameras = list(g("cameras"))
        size = list(g("image_size"))
        self.env = MirrorArmEnv(image_size=(int(size[0]), int(size[1])), cameras=tuple(self.cameras),
                                max_episode_steps=int(g("max_episode_steps")), variant=str(g("variant")))
        self.lockstep = bool(g("lockstep"))
        self.command_type = g("command_type")
        if self.command_type not in ("float64_array", "joint_trajectory"):
            raise ValueError(f"command_type must be float64_array or joint_trajectory, "
                             f"got {self.command_type}")
        rate = float(g("control_rate")) or self.env.control_hz
        self.dt_ns = int(round(1e9 / self.env.control_hz))  # sim time per step
        self.names = ros_joint_names(0) + ros_joint_names(1)
        self.sim_steps = 0          # steps since start-up (sim time = sim_steps * dt)
        self.episode = 0
        self.active = False         # an episode is running
        self.awaiting = False       # lockstep: observation published, waiting for its command
        self.pending_cmd: np.ndarray | None = None
        self.interpolate = bool(g("trajectory_interpolation")) and self.command_type == "joint_trajectory"
        self.player = None          # interpolate: the controller's reference (TrajectoryPlayer)
        self.pending_traj = None    # real time, interpolate: (times, positions, velocities) to follow
        self.last_pub_ns = 0
        self.applied: list[np.ndarray] = []

        self.image_pubs = {c: self.create_publisher(Image, f"camera/{c}/image_raw", qos_profile_sensor_data)
                           for c in self.cameras}
        self.js_pub = self.create_publisher(JointState, "joint_states", QoSProfile(depth=10))
        self.result_pub = self.create_publisher(EpisodeResult, "episode_result", QoSProfile(depth=10))
        self.clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=10)) \
            if g("publish_clock") else None
        if self.command_type == "float64_array":
            self.create_subscription(Float64MultiArray, "commands", self._on_array, 10)
        else:
            self.create_subscription(JointTrajectory, "commands", self._on_trajectory, 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        if self.lockstep:
            rp = float(g("republish_period"))
            if rp > 0:
                self.create_timer(rp, self._on_republish)
        else:
            self.create_timer(1.0 / rate, self._on_realtime_tick)
        self.get_logger().info(
            f"MuJoCo bridge: cameras {self.cameras} {size[0]}x{size[1]}, "
            f"{'lockstep' if self.lockstep else f'real time {rate:.0f} Hz'}, commands {self.command_type}")
        if g("auto_start"):
            self.start_episode(int(g("seed")), int(g("arm")))

    # --- episodes -------------------------------------------------------------------------
    def start_episode(self, seed: int, arm: int) -> None:
        """Reset the env for (seed, arm) (randomised per the `randomize` parameter) and publish the
        first observation."""
        randomize = bool(self.get_parameter("randomize").value)
        self.obs, _ = self.env.reset(seed=seed, options={"arm": arm, "randomize": randomize})
        self.episode += 1
        self.seed, self.arm = seed, arm
        self.steps = 0
        self.pending_cmd = None
        self.pending_traj = None
        if self.interpolate:
            from mirror_arm_sim.trajectory import TrajectoryPlayer

            self.player = TrajectoryPlayer(7, self.env.arm_ctrl())
        self.applied = []
        self.active = True
        self.sim_steps += 1  # a fresh stamp: never equal to the last episode's final one
        self._publish_observation()

    def _on_reset(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        seed, arm = int(self.get_parameter("seed").value), int(self.get_parameter("arm").value)
        try:
            self.start_episode(seed, arm)
        except Exception as e:  # noqa: BLE001 - report, do not die
            resp.success, resp.message = False, f"reset failed: {type(e).__name__}: {e}"
            return resp
        resp.success, resp.message = True, f"episode {self.episode}: seed {seed} arm {arm}"
        return resp

    def _stamp(self):
        ns = self.sim_steps * self.dt_ns
        from builtin_interfaces.msg import Time

        return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    def _publish_observation(self) -> None:
        stamp = self._stamp()
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=stamp))
        for c in self.cameras:
            img = np.ascontiguousarray(self.obs["images"][c], dtype=np.uint8)
            msg = Image()
            msg.header.stamp = stamp
            msg.header.frame_id = f"{c}_camera"
            msg.height, msg.width = int(img.shape[0]), int(img.shape[1])
            msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, int(img.shape[1] * 3)
            msg.data = img.tobytes()
            self.image_pubs[c].publish(msg)
        js = JointState()
        js.header.stamp = stamp
        js.name = self.names
        js.position = [float(v) for v in np.concatenate([self.env.arm_qpos(0), self.env.arm_qpos(1)])]
        js.velocity = [float(v) for v in np.concatenate([self.env.arm_qvel(0), self.env.arm_qvel(1)])]
        self.js_pub.publish(js)
        self.awaiting = self.lockstep and self.active

    def _apply(self, cmd: np.ndarray, targets: np.ndarray | None = None) -> None:
        """One env step with `cmd` (active arm, ARM_JOINTS order), or with one target per physics
        step (`targets`, interpolating); ends the episode if due."""
        if targets is None:
            self.obs, _, terminated, truncated, info = self.env.step(cmd.astype(np.float32))
        else:
            self.obs, _, terminated, truncated, info = self.env.step_targets(targets)
        self.applied.append(cmd.copy())
        self.steps += 1
        self.sim_steps += 1
        success = bool(info.get("success", False))
        stop = bool(self.get_parameter("stop_on_success").value)
        if terminated or truncated or (stop and success):
            self.active = False
            self.awaiting = False
            if not self.lockstep:  # lockstep: a final observation would draw one more command
                self._publish_observation()
            r = EpisodeResult(episode=self.episode, seed=int(self.seed), arm=int(self.arm), success=success,
                              steps=self.steps, terminated=bool(terminated), truncated=bool(truncated))
            r.header.stamp = self._stamp()
            r.header.frame_id = f"arm{self.arm}"
            self.result_pub.publish(r)
            self.get_logger().info(f"episode {self.episode} (seed {self.seed}, arm {self.arm}): "
                                   f"{'SUCCESS' if success else 'failure'} after {self.steps} steps")
        else:
            self._publish_observation()

    # --- commands -------------------------------------------------------------------------
    def _accept(self, values) -> None:
        cmd = np.asarray(values, dtype=np.float64).reshape(-1)
        if cmd.size != 7 or not np.all(np.isfinite(cmd)):
            self.get_logger().warning(f"command rejected (need 7 finite values): {cmd.tolist()}",
                                      throttle_duration_sec=2.0)
            return
        if not self.active:
            return
        if self.lockstep:
            if self.awaiting:
                self.awaiting = False
                self._apply(cmd)
        else:
            self.pending_cmd = cmd

    def _on_array(self, msg: Float64MultiArray) -> None:
        self._accept(msg.data)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if not msg.points or not self.active:  # between episodes commands are ignored anyway
            return
        want = ros_joint_names(self.arm)
        lookup = {n: i for i, n in enumerate(msg.joint_names)}
        if any(n not in lookup for n in want):
            self.get_logger().warning(f"trajectory joints {list(msg.joint_names)} do not name the "
                                      f"active arm's {want}", throttle_duration_sec=2.0)
            return
        order = [lookup[n] for n in want]
        if any(len(pt.positions) != len(msg.joint_names) for pt in msg.points):
            self.get_logger().warning("trajectory point with a positions length other than joint_names'",
                                      throttle_duration_sec=2.0)
            return
        if not self.interpolate:
            self._accept([msg.points[0].positions[i] for i in order])
            return
        times = [pt.time_from_start.sec + 1e-9 * pt.time_from_start.nanosec for pt in msg.points]
        pos = np.array([[pt.positions[i] for i in order] for pt in msg.points], dtype=np.float64)
        vel = None
        if all(len(pt.velocities) == len(msg.joint_names) for pt in msg.points):
            vel = np.array([[pt.velocities[i] for i in order] for pt in msg.points], dtype=np.float64)
        if (not np.all(np.isfinite(pos)) or (vel is not None and not np.all(np.isfinite(vel)))
                or times[0] <= 0 or np.any(np.diff(times) <= 0)):
            self.get_logger().warning("trajectory rejected (need finite values, time_from_start > 0 "
                                      "strictly increasing)", throttle_duration_sec=2.0)
            return
        if self.lockstep:
            if self.awaiting:
                self.awaiting = False
                self._follow((times, pos, vel))
        else:
            self.pending_traj = (times, pos, vel)

    def _follow(self, traj) -> None:
        """Interpolate: take up `traj` (if any) at this step's start and step along the reference."""
        t = self.steps / self.env.control_hz
        if traj is not None:
            self.player.set_trajectory(t, *traj)
        targets = self.player.targets(t, float(self.env.model.opt.timestep), self.env.substeps)
        self._apply(targets[-1], targets)

    # --- timers -----------------------------------------------------------------------------
    def _on_republish(self) -> None:
        if self.awaiting:
            self._publish_observation()

    def _on_realtime_tick(self) -> None:
        if not self.active:
            return
        if self.interpolate:  # keeps following the last trajectory when no new one came
            traj, self.pending_traj = self.pending_traj, None
            self._follow(traj)
            return
        cmd = self.pending_cmd if self.pending_cmd is not None else self.env.arm_ctrl()
        self._apply(np.asarray(cmd, dtype=np.float64))


def main(args=None) -> int:
    """Run the bridge node until Ctrl-C or an external shutdown; returns 0."""
    stop = StopOnSignal()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = MirrorArmBridge()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        stop.spin(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
