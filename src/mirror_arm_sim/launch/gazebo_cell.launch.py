"""The mirrored two-arm cell in Gazebo (Harmonic) with the MuJoCo bridge's ROS interface.

    ros2 launch mirror_arm_sim gazebo_cell.launch.py arm:=1 [gui:=false] [out:=/tmp/mirror_arm_gz]

1. generates the world (SDF), the robot URDF and the ros_gz_bridge config from cell.py into
   `out` (mirror_arm_sim.gazebo.generate, the same code as `mirror_arm_gazebo_generate`);
2. starts Gazebo with the world through ros_gz_sim's gz_sim.launch.py (the cell is part of the
   world, so nothing is spawned separately);
3. starts ros_gz_bridge's parameter_bridge with the generated config (images, joint states,
   clock, per-joint commands, object poses, set_pose service);
4. starts robot_state_publisher with the URDF (use_sim_time);
5. starts the adapter (`mirror_arm_gazebo_adapter`, node name mirror_arm_bridge): `commands`
   -> per-joint Gazebo commands, task success from the bridged object poses -> episode_result,
   ~/reset places the task of (seed, arm).

transfer_eval.launch.py includes this file when sim:=gazebo. Not runnable on the project's CI
machines (no Gazebo there); see docs/gazebo.md.
"""

import os

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def _setup(context, *args, **kwargs):
    from mirror_arm_sim.gazebo.generate import generate

    arm = int(LaunchConfiguration("arm").perform(context))
    out = LaunchConfiguration("out").perform(context)
    size = [int(v) for v in LaunchConfiguration("image_size").perform(context).split(",")]
    gui = LaunchConfiguration("gui").perform(context).lower() in ("1", "true", "yes")
    paths = generate(out, arm=arm, image_size=size)
    gz_args = f"-r {'' if gui else '-s '}{paths['sdf']}"
    gz_launch = os.path.join(FindPackageShare("ros_gz_sim").perform(context), "launch", "gz_sim.launch.py")
    return [
        IncludeLaunchDescription(PythonLaunchDescriptionSource(gz_launch),
                                 launch_arguments={"gz_args": gz_args}.items()),
        Node(package="ros_gz_bridge", executable="parameter_bridge", name="ros_gz_bridge", output="screen",
             parameters=[{"config_file": str(paths["bridge"]), "use_sim_time": True}]),
        Node(package="robot_state_publisher", executable="robot_state_publisher", output="screen",
             parameters=[{"robot_description": paths["urdf"].read_text(), "use_sim_time": True}]),
        Node(package="mirror_arm_sim", executable="mirror_arm_gazebo_adapter", name="mirror_arm_bridge",
             output="screen",
             parameters=[{"arm": arm, "use_sim_time": True,
                          "command_type": LaunchConfiguration("command_type").perform(context)}]),
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("arm", default_value="0", choices=["0", "1"],
                              description="active arm (its wrist camera is camera/wrist/image_raw)"),
        DeclareLaunchArgument("gui", default_value="false", description="show the Gazebo GUI"),
        DeclareLaunchArgument("out", default_value="/tmp/mirror_arm_gazebo",
                              description="directory for the generated SDF / URDF / bridge config"),
        DeclareLaunchArgument("image_size", default_value="128,128",
                              description="camera image size H,W (match the policy's)"),
        DeclareLaunchArgument("command_type", default_value="float64_array",
                              choices=["float64_array", "joint_trajectory"],
                              description="command message of the policy node"),
        OpaqueFunction(function=_setup),
    ])
