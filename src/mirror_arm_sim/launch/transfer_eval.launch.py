"""Evaluate an ACT checkpoint over ROS 2 on arm 0 or (mirrored) arm 1 of the cell.

    ros2 launch mirror_arm_sim transfer_eval.launch.py checkpoint:=policy.pt arm:=1 \
        [mode:=chunked|ensemble] [query_period:=1] [n_execute:=0] [image_size:=H,W] \
        [sim:=mujoco|gazebo] [realtime:=false] [trials:=20] [seed:=1000] [mirror:=true|false]
        [variant:=exact] [command_type:=joint_trajectory trajectory_points:=10]
        [backend:=torch|jit|onnx|onnx_int8]

Executor settings and the camera frame size default to the checkpoint's deployment defaults
(what `act_evaluate --checkpoint X` uses), so `checkpoint:=X` alone reproduces it seed for seed.

Starts the simulator bridge, the policy node (act_policy_node, params
act_policy_node/config/sim_arm<arm>.yaml) and the evaluator (mirror_arm_ros_eval), which runs
`trials` seeded episodes (seed + i) and prints the success rate; the launch shuts down when the
evaluator exits. mirror:=false runs the node on raw observations of either arm (a policy trained
with data.mirror_augment, or the no-mirror control); variant:= picks an imperfect cell
(mirror_arm_sim.cell.VARIANTS, MuJoCo bridge only).

sim:=mujoco (default): the MuJoCo bridge in LOCKSTEP mode (simulated time advances one control
step per command) and the node with lockstep:=true, so the figures equal `act_evaluate`'s on the
same seeds (docs/ros.md). realtime:=true: as a robot runs, the bridge steps on its own 50 Hz
timer with the latest command and the node runs on its control timer (inference off the tick).
The node is a lifecycle node; its sim parameter files set autostart (configure + activate).
sim:=gazebo: includes gazebo_cell.launch.py (Gazebo + ros_gz_bridge + the adapter, named
mirror_arm_bridge like the MuJoCo bridge) and runs the node on its timer with use_sim_time:=true.
command_type:=joint_trajectory: the MuJoCo bridge follows each trajectory like a
JointTrajectoryController (trajectory_interpolation), and the node streams trajectory_points
points of its plan (1 = this tick's command; docs/ros.md, "Commands and smoothness").
"""

from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    IncludeLaunchDescription,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

ARGUMENTS = [
    # name, default, description, choices
    ("checkpoint", None, "policy checkpoint (.pt) written by act_train (required)", None),
    ("arm", "1", "arm to evaluate; 1 is driven through the mirror map", ["0", "1"]),
    ("mode", "", "chunk execution: chunked | ensemble; empty = the checkpoint's", None),
    ("query_period", "0", "ensemble: query every N steps; 0 = the checkpoint's", None),
    ("n_execute", "-1", "chunked: actions per query, 0 = the whole chunk, -1 = the checkpoint's", None),
    ("sim", "mujoco", "simulator", ["mujoco", "gazebo"]),
    ("trials", "20", "number of seeded episodes", None),
    ("seed", "1000", "trial i uses env seed seed + i", None),
    ("image_size", "", "camera frame size H,W; empty = the checkpoint's deployment frame size", None),
    ("max_episode_steps", "300", "episode step limit", None),
    ("command_type", "float64_array", "command message", ["float64_array", "joint_trajectory"]),
    ("trajectory_points", "1", "joint_trajectory: points per message (the node's plan ahead)", None),
    ("realtime", "false", "mujoco: bridge on its own 50 Hz timer, node on its timer (as on a robot)",
     ["true", "false"]),
    ("result_json", "", "write per-trial results here (empty: do not)", None),
    ("mirror", "true", "arm 1 through the mirror map; false: raw observations/actions "
                       "(a mirror-augmented policy on either arm)", ["true", "false"]),
    ("variant", "exact", "cell variant of the MuJoCo bridge (mirror_arm_sim.cell.VARIANTS)", None),
    ("record_commands", "", "write every command the arm received, per episode, here (.npz; empty: do not)",
     None),
    # the node checks the value against act_training.runtime.backends.BACKENDS (one list)
    ("backend", "", "the policy node's inference backend (torch, jit, onnx, onnx_int8); "
                    "empty = its parameter file's", None),
]


def _deployment(checkpoint: str):
    """The checkpoint's deployment defaults (act_training.runtime.deployment.Deployment)."""
    from act_training.training.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint)["deployment_obj"]


def _nodes(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    arm, sim, mode = int(arg("arm")), arg("sim"), arg("mode")
    checkpoint, command_type = arg("checkpoint"), arg("command_type")
    deployment = _deployment(checkpoint)
    size = [int(v) for v in arg("image_size").split(",")] if arg("image_size") \
        else list(deployment.frame_size)
    mujoco = sim == "mujoco"
    lockstep = mujoco and arg("realtime") != "true"
    actions = []
    if mujoco:
        bridge_yaml = PathJoinSubstitution([FindPackageShare("mirror_arm_sim"), "config",
                                            "mujoco_bridge.yaml"])
        actions.append(Node(
            package="mirror_arm_sim", executable="mirror_arm_bridge", name="mirror_arm_bridge",
            output="screen", parameters=[bridge_yaml,
                        {"arm": arm, "image_size": size, "cameras": list(deployment.camera_names),
                         "lockstep": lockstep, "command_type": command_type,
                         "trajectory_interpolation": command_type == "joint_trajectory",
                         "max_episode_steps": int(arg("max_episode_steps")), "variant": arg("variant")}]))
    else:  # Gazebo + ros_gz_bridge + the adapter, rendering the same frame size
        gazebo = PathJoinSubstitution([FindPackageShare("mirror_arm_sim"), "launch", "gazebo_cell.launch.py"])
        actions.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(gazebo),
            launch_arguments={"arm": str(arm), "image_size": ",".join(str(v) for v in size),
                              "command_type": command_type}.items()))
    node_yaml = PathJoinSubstitution([FindPackageShare("act_policy_node"), "config", f"sim_arm{arm}.yaml"])
    actions.append(LifecycleNode(
        package="act_policy_node", executable="act_policy_node", name="act_policy_node", namespace="",
        output="screen", parameters=[node_yaml,
                    {"checkpoint": checkpoint, "arm": arm, "execution": mode, "lockstep": lockstep,
                     "query_period": int(arg("query_period")), "n_execute": int(arg("n_execute")),
                     "command_type": command_type, "trajectory_points": int(arg("trajectory_points")),
                     "use_sim_time": not mujoco,
                     "mirror": arg("mirror") == "true"},
                    {"backend": arg("backend")} if arg("backend") else {}]))
    eval_args = ["--trials", arg("trials"), "--arm", str(arm), "--seed", arg("seed")]
    if arg("result_json"):
        eval_args += ["--json", arg("result_json")]
    if arg("record_commands"):
        eval_args += ["--record", arg("record_commands"), "--command-type", command_type]
    evaluator = Node(package="act_training", executable="mirror_arm_ros_eval", name="mirror_arm_ros_eval",
                     output="screen", arguments=eval_args)
    actions += [evaluator, RegisterEventHandler(OnProcessExit(
        target_action=evaluator, on_exit=[EmitEvent(event=Shutdown(reason="evaluation finished"))]))]
    return actions


def generate_launch_description():
    declared = []
    for name, default, description, choices in ARGUMENTS:
        kw = {"description": description}
        if default is not None:
            kw["default_value"] = default
        if choices:
            kw["choices"] = choices
        declared.append(DeclareLaunchArgument(name, **kw))
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
