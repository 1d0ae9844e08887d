"""Record teleop / scripted demos as a rosbag2 for `act_bag_to_hdf5`.

    ros2 launch launch/record_demos.launch.py mode:=sim out:=demos_bag storage:=mcap
    ros2 launch launch/record_demos.launch.py mode:=arms \
        mapping:=$(ros2 pkg prefix act_training)/share/act_training/config/bag_physical_pair.yaml

mode:=sim starts the MuJoCo bridge (`mirror_arm_bridge`, real time by default; drive its
`commands` topic by teleop or a policy) and records its topics; mode:=arms records only
(start the arms' drivers and the leader/follower teleop yourself). The recorded topics are
exactly those of the mapping YAML that converts the bag (cameras, qpos, action, episode marker),
so recording and conversion cannot disagree. Convert afterwards with

    ros2 run act_training act_bag_to_hdf5 demos_bag --config <mapping> --out demos.hdf5

The recorder (`recorder:=auto`): `ros2 bag record` where rosbag2 is installed (its `ros2bag`
package is in the ament index), else `act_bag_record` (rclpy + rosbags, the same bag format), so
the launch also works where rosbag2 cannot be installed (the PyPI ROS 2 wheels).
"""

import os

from launch.actions import DeclareLaunchArgument, ExecuteProcess, LogInfo, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import ExecutableInPackage

from launch import LaunchDescription


def _default_mapping(name: str) -> str:
    try:
        from ament_index_python.packages import get_package_share_directory

        return os.path.join(get_package_share_directory("act_training"), "config", name)
    except Exception:  # source checkout without an install
        here = os.path.dirname(os.path.abspath(__file__))
        return os.path.join(here, "..", "src", "act_training", "act_training", "config", name)


def _has_package(name: str) -> bool:
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix(name)
        return True
    except PackageNotFoundError:
        return False


def _record(context, *args, **kwargs):
    from act_training.bags.record import topics_from_mapping

    mode = LaunchConfiguration("mode").perform(context)
    mapping = LaunchConfiguration("mapping").perform(context) or _default_mapping(
        "bag_mujoco_sim.yaml" if mode == "sim" else "bag_physical_pair.yaml"
    )
    topics = topics_from_mapping(mapping)
    storage = LaunchConfiguration("storage").perform(context)
    out = LaunchConfiguration("out").perform(context)
    recorder = LaunchConfiguration("recorder").perform(context)
    if recorder == "auto":
        recorder = "ros2_bag" if _has_package("ros2bag") else "act_bag_record"
    if recorder == "ros2_bag":
        cmd = ["ros2", "bag", "record", "--storage", storage, "--output", out, *topics]
    else:  # the executable itself, not `ros2 run`, so the launch's SIGINT reaches it
        cmd = [ExecutableInPackage("act_bag_record", "act_training"), out, "--storage", storage,
               "--topics", *topics]
    return [
        LogInfo(msg=f"recording {topics} to {out} ({storage}, {recorder}); mapping {mapping}"),
        ExecuteProcess(cmd=cmd, output="screen"),
    ]


def generate_launch_description():
    mode = LaunchConfiguration("mode")
    return LaunchDescription([
        DeclareLaunchArgument("mode", default_value="sim", choices=["sim", "arms"],
                              description="sim: start the MuJoCo bridge too; arms: record only"),
        DeclareLaunchArgument("mapping", default_value="",
                              description="bag -> HDF5 mapping YAML whose topics are recorded"),
        DeclareLaunchArgument("storage", default_value="mcap", choices=["mcap", "sqlite3"]),
        DeclareLaunchArgument("recorder", default_value="auto",
                              choices=["auto", "ros2_bag", "act_bag_record"],
                              description="auto: `ros2 bag record` if rosbag2 is installed, "
                                          "else act_bag_record"),
        DeclareLaunchArgument("out", default_value="demos_bag", description="bag directory to create"),
        DeclareLaunchArgument("bridge_executable", default_value="mirror_arm_bridge",
                              description="mirror_arm_sim executable of the MuJoCo bridge node"),
        DeclareLaunchArgument("lockstep", default_value="false",
                              description="sim: bridge lockstep (then command with JointTrajectory and "
                                          "convert with time: header) or real time (default)"),
        Node(
            package="mirror_arm_sim",
            executable=LaunchConfiguration("bridge_executable"),
            name="mirror_arm_bridge",
            output="screen",
            parameters=[{"lockstep": LaunchConfiguration("lockstep")}],  # "false" -> bool (YAML)
            condition=IfCondition(PythonExpression(["'", mode, "' == 'sim'"])),
        ),
        OpaqueFunction(function=_record),
    ])
