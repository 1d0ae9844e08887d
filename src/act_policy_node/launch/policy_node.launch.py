"""The ACT policy node on physical arms (or any robot speaking ros2_control conventions).

    ros2 launch act_policy_node policy_node.launch.py checkpoint:=/path/policy.pt \
        params_file:=/path/my_pair.yaml command_topic:=/right_arm_controller/commands \
        joint_states_topic:=/joint_states [namespace:=right] [use_sim_time:=false]

Parameters come from `params_file` (default: the package's config/physical_pair.yaml, an
example to copy and adapt); `checkpoint`, `use_sim_time` and `autoconfigure` are set here. The
node is a lifecycle node: this launch file has it CONFIGURE itself at start-up (checkpoint loaded,
topics up, no command) and leaves activation to the operator:

    ros2 lifecycle set /act_policy_node activate      # the policy drives the arm
    ros2 lifecycle set /act_policy_node deactivate    # stop: the controller holds the last target

The node configures itself (`autoconfigure`) rather than this file emitting a configure
ChangeState event: that event is one change_state service request, and a request sent before the
node's service has discovered the launch process's client is dropped; the node then stayed
unconfigured, with no configure call, for the 300 s a test waited (seen in CI).
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description():
    node = LifecycleNode(
        package="act_policy_node", executable="act_policy_node", name="act_policy_node",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file"),
                    {"checkpoint": LaunchConfiguration("checkpoint"),
                     "use_sim_time": LaunchConfiguration("use_sim_time"), "autoconfigure": True}],
        remappings=[("commands", LaunchConfiguration("command_topic")),
                    ("joint_states", LaunchConfiguration("joint_states_topic"))],
    )
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint", description="policy checkpoint (.pt) written by act_train"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("act_policy_node"), "config",
                                                "physical_pair.yaml"]),
            description="node parameters (see config/physical_pair.yaml and docs/ros.md)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("command_topic", default_value="/forward_position_controller/commands",
                              description="where the joint commands go"),
        DeclareLaunchArgument("joint_states_topic", default_value="/joint_states",
                              description="the arms' sensor_msgs/JointState"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock"),
        node,
    ])
