"""Gazebo adapter: the ROS side of the Gazebo bridge, with the MuJoCo bridge's interface.

ros_gz_bridge (config from `bridge_config.py`) carries images, joint states, the clock, per-joint
commands, object poses and the set_pose service. This node (default name `mirror_arm_bridge`,
like the MuJoCo bridge, so `mirror_arm_ros_eval` and the policy node run unchanged) adds:

  commands        (sub) std_msgs/Float64MultiArray (7 targets of the active arm, ARM_JOINTS order)
                  or trajectory_msgs/JointTrajectory (names arm<k>_<joint>; first point), per
                  `command_type` -> gazebo/arm<k>/<joint>/cmd_pos (std_msgs/Float64, bridged)
  episode_result  (pub) act_msgs/EpisodeResult when the cube rests on the target
                  (`success.cube_on_target`, the env's criterion, from gazebo/cube/pose and
                  gazebo/target/pose) or after `max_episode_steps` commands
  ~/reset         (srv) std_srvs/Trigger: draws the task of (`seed`, `arm`) exactly as the env
                  does (MirrorArmEnv.sample_task), places cube and target through the bridged
                  /world/mirror_arm_cell/set_pose and commands the arms to their start poses.

Gazebo runs in real time (no lockstep): run the policy node in timer mode with use_sim_time.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Float64, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from act_msgs.msg import EpisodeResult

from ..cell import ARM_JOINTS, default_cell
from ..ros_signals import StopOnSignal
from .bridge_config import SET_POSE_SERVICE, ros_command_topic, ros_pose_topic
from .success import SpeedEstimator, cube_on_target

PARAMETERS: dict[str, tuple[object, str]] = {
    "arm": (0, "Active arm of the next episode (0 or 1)."),
    "seed": (0, "Seed of the next episode's task (read at every ~/reset)."),
    "randomize": (True, "Randomise cube, target and start pose (as the env does)."),
    "command_type": ("float64_array", "Command message: 'float64_array' or 'joint_trajectory'."),
    "max_episode_steps": (300, "Episode limit in received commands (control steps)."),
    "stop_on_success": (True, "End the episode at the first successful check."),
    "released_gap": (0.0, "The cube counts as released when the gripper half-gap exceeds this "
                          "(m; 0 = the cube's half size)."),
}


def sample_task(cell, arm: int, seed: int, randomize: bool = True):
    """The env's task for (seed, arm): `MirrorArmEnv.sample_task` on the cell, without MuJoCo."""
    from mirror_arm_sim.cell import joint_mirror_signs
    from mirror_arm_sim.env import MirrorArmEnv

    shim = types.SimpleNamespace(cell=cell, arms=[cell.arm_spec(0), cell.arm_spec(1)],
                                 signs=np.array(joint_mirror_signs(cell.arm)),
                                 np_random=np.random.default_rng(seed))
    return MirrorArmEnv.sample_task(shim, arm, randomize)


class GazeboAdapter(Node):
    """See module docstring."""

    def __init__(self, **kwargs) -> None:
        super().__init__("mirror_arm_bridge", **kwargs)
        for name, (default, desc) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=desc))
        self.cell = default_cell()
        self.command_type = self.get_parameter("command_type").value
        self.cmd_pubs = {(k, j): self.create_publisher(Float64, ros_command_topic(k, j), 10)
                         for k in (0, 1) for j in ARM_JOINTS}
        if self.command_type == "joint_trajectory":
            self.create_subscription(JointTrajectory, "commands", self._on_trajectory, 10)
        else:
            self.create_subscription(Float64MultiArray, "commands", self._on_array, 10)
        self.poses: dict[str, np.ndarray] = {}
        self.cube_speed = SpeedEstimator()
        for model in ("cube", "target"):
            self.create_subscription(PoseStamped, ros_pose_topic(model),
                                     lambda m, n=model: self._on_pose(n, m), QoSProfile(depth=10))
        self.result_pub = self.create_publisher(EpisodeResult, "episode_result", QoSProfile(depth=10))
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.set_pose = None
        try:
            from ros_gz_interfaces.srv import SetEntityPose

            self.set_pose = self.create_client(SetEntityPose, SET_POSE_SERVICE)
            self._SetEntityPose = SetEntityPose
        except ImportError:
            self.get_logger().warn("ros_gz_interfaces not found: ~/reset cannot place the objects")
        self.episode, self.steps, self.active, self.arm, self.seed = 0, 0, False, 0, 0
        self.gripper = 0.0

    # --- commands ---------------------------------------------------------------------------
    def _send(self, k: int, q) -> None:
        for j, v in zip(ARM_JOINTS, q):
            self.cmd_pubs[(k, j)].publish(Float64(data=float(v)))
        self.gripper = float(q[-1])

    def _on_array(self, msg: Float64MultiArray) -> None:
        if len(msg.data) != len(ARM_JOINTS):
            self.get_logger().warn(f"commands has {len(msg.data)} values, expected {len(ARM_JOINTS)}")
            return
        self._command(np.asarray(msg.data, float))

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if not msg.points:
            return
        lookup = dict(zip(msg.joint_names, msg.points[0].positions))
        names = [f"arm{self.arm}_{j}" for j in ARM_JOINTS]
        if any(n not in lookup for n in names):
            self.get_logger().warn(f"trajectory lacks joints of arm {self.arm}: {names}")
            return
        self._command(np.array([lookup[n] for n in names]))

    def _command(self, q: np.ndarray) -> None:
        if not np.all(np.isfinite(q)):
            return
        self._send(self.arm, q)
        if self.active:
            self.steps += 1
            if self.steps >= int(self.get_parameter("max_episode_steps").value):
                self._finish(self._success(), terminated=False, truncated=True)

    # --- success ----------------------------------------------------------------------------
    def _on_pose(self, model: str, msg: PoseStamped) -> None:
        p = msg.pose.position
        self.poses[model] = np.array([p.x, p.y, p.z])
        if model == "cube":
            stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
            self.cube_speed.update(stamp, self.poses[model])
            if self.active and self.get_parameter("stop_on_success").value and self._success():
                self._finish(True, terminated=True, truncated=False)

    def _success(self) -> bool:
        if "cube" not in self.poses or "target" not in self.poses:
            return False
        gap = float(self.get_parameter("released_gap").value) or self.cell.cube.half
        return cube_on_target(self.cell, self.poses["cube"], self.cube_speed.speed, self.poses["target"],
                              released=self.gripper > gap)

    def _finish(self, success: bool, terminated: bool, truncated: bool) -> None:
        self.active = False
        msg = EpisodeResult(episode=self.episode, seed=self.seed, arm=self.arm, success=bool(success),
                            steps=self.steps, terminated=terminated, truncated=truncated)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.result_pub.publish(msg)
        self.get_logger().info(f"episode {self.episode} (seed {self.seed}, arm {self.arm}): "
                               f"success={success} steps={self.steps}")

    # --- reset ------------------------------------------------------------------------------
    def _place(self, name: str, xy, z: float, yaw: float) -> None:
        if self.set_pose is None or not self.set_pose.service_is_ready():
            self.get_logger().warn(f"{SET_POSE_SERVICE} not available: {name} not placed")
            return
        req = self._SetEntityPose.Request()
        req.entity.name = name
        req.pose.position.x, req.pose.position.y, req.pose.position.z = float(xy[0]), float(xy[1]), z
        req.pose.orientation.w, req.pose.orientation.z = float(np.cos(yaw / 2)), float(np.sin(yaw / 2))
        self.set_pose.call_async(req)

    def _on_reset(self, request, response):
        self.arm = int(self.get_parameter("arm").value)
        self.seed = int(self.get_parameter("seed").value)
        if self.arm not in (0, 1):
            response.success, response.message = False, f"unknown arm {self.arm}"
            return response
        task = sample_task(self.cell, self.arm, self.seed, bool(self.get_parameter("randomize").value))
        top = self.cell.table.height
        self._place("cube", task.cube_xy, top + self.cell.cube.half, task.cube_yaw)
        self._place("target", task.target_xy, top + self.cell.target.half_height, 0.0)
        for k in (0, 1):
            self._send(k, task.start_q if k == self.arm else self.cell.arm_spec(k).home)
        self.cube_speed.reset()
        self.poses.pop("cube", None)
        self.episode += 1
        self.steps, self.active = 0, True
        response.success, response.message = True, f"episode {self.episode}: {task.as_dict()}"
        return response


def main(args=None) -> int:
    """Run the Gazebo adapter node until Ctrl-C or an external shutdown; returns 0."""
    stop = StopOnSignal()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = GazeboAdapter()
    try:
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        stop.spin(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
