"""The launch files and executables through the real ROS 2 tools, as a user types them.

- `ros2 launch mirror_arm_sim transfer_eval.launch.py arm:=1 checkpoint:=... trials:=2` runs bridge,
  node and evaluator to the end; its per-seed results equal `act_evaluate`'s and the commands the
  arm received equal the in-process mirrored loop's;
- `ros2 launch act_policy_node policy_node.launch.py` with a physical-pair-style params file, then
  the commands docs/ros.md gives an operator: `ros2 lifecycle get/set` (activate, deactivate),
  `ros2 service call .../enable`, `ros2 topic echo --once /status`, `ros2 param get/set` (the
  read_only ones refused);
- `ros2 launch launch/record_demos.launch.py mode:=sim` records the mapping's topics into a bag;
- `ros2 run` of every executable of the three packages.

The tools: a system ROS 2 or the overlay scripts/setup.sh builds from ../shared/vendor/ros2-cli
(see tests/ros2_cli.py for when these tests skip).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")
pytest.importorskip("torch")
from node_testlib import ROOT, Probe, make_tiny_checkpoint, ros_env, wait_for  # noqa: E402
from ros2_cli import NO_DAEMON, CliProcess, require_ros2_cli, ros2, ros2_until  # noqa: E402

IMAGE = (32, 32)
MAX_STEPS = 40
SRC = ROOT / "src"


@pytest.fixture(autouse=True)
def _ros2_cli():
    require_ros2_cli()


@pytest.mark.slow
@pytest.mark.ros
def test_transfer_eval_launch_runs_to_the_end_like_act_evaluate(tmp_path):
    # the cpu preset's shape: full frames from the bridge, the policy crops the left half
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt", image_size=(IMAGE[0], IMAGE[1] // 2), chunk_size=8,
                                crop=(0.0, 0.0, 1.0, 0.5))
    launch = CliProcess(["launch", "mirror_arm_sim", "transfer_eval.launch.py", "arm:=1",
                         f"checkpoint:={ckpt}", "trials:=2", f"image_size:={IMAGE[0]},{IMAGE[1]}",
                         f"max_episode_steps:={MAX_STEPS}", f"result_json:={tmp_path / 'ros.json'}",
                         f"record_commands:={tmp_path / 'cmds.npz'}"], tmp_path / "launch.log")
    assert launch.wait(timeout=400) == 0, launch.output[-4000:]
    line = re.search(r"ROS eval arm1\S*: (\d+)/2 = .*", launch.output)
    assert line, launch.output[-4000:]
    assert "process has finished cleanly" in launch.output and "Traceback" not in launch.output
    ros = json.loads((tmp_path / "ros.json").read_text())
    assert ros["seeds"] == [1000, 1001]  # the launch file's default seed

    ev = subprocess.run([sys.executable, "-m", "act_training.evaluation.rollouts", "--checkpoint", str(ckpt),
                         "--arm", "1", "--mode", "ensemble", "--trials", "2", "--seed", "1000",
                         "--max-steps", str(MAX_STEPS), "--n-envs", "1",
                         "--json", str(tmp_path / "inproc.json")],
                        env=ros_env(), cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stdout + ev.stderr
    inproc = json.loads((tmp_path / "inproc.json").read_text())
    assert (ros["seeds"], ros["successes"], ros["lengths"]) == (inproc["seeds"], inproc["successes"],
                                                                 inproc["lengths"])
    assert int(line.group(1)) == sum(inproc["successes"])

    # an untrained policy fails both seeds, so compare what the arm was told, step by step
    from mirror_arm_sim.cell import default_cell
    from test_bridge_closed_loop import reference_actions

    rec = np.load(tmp_path / "cmds.npz")
    limits = np.asarray(default_cell().arm_spec(1).limits)
    for i, (actions, _success) in enumerate(reference_actions(ckpt, 1, "ensemble", (1000, 1001), MAX_STEPS)):
        got = rec["commands"][rec["offsets"][i]:rec["offsets"][i + 1]]
        np.testing.assert_allclose(got, np.clip(actions, limits[:, 0], limits[:, 1]), atol=1e-6, rtol=0)


ARM = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_pitch", "wrist_rotate", "gripper"]
Q_RIGHT = [0.11, -0.52, 0.93, 0.04, 0.61, -0.07, 0.025]


def physical_params(tmp_path) -> tuple[dict, object]:
    """The shipped physical_pair.yaml, with the cell's mirror map standing in for a measured one."""
    data = yaml.safe_load((SRC / "act_policy_node" / "config" / "physical_pair.yaml").read_text())
    p = data["/**"]["ros__parameters"]
    p["mirror_map"] = str(ROOT / "src/mirror_arm_sim/mirror_arm_sim/config/mirror_map.yaml")
    p["max_tracking_error"] = [0.0]  # the stand-in driver does not follow the commands
    # two cores shared by several jobs: a tiny model's inference can take ~1 s and a sensor message
    # 0.3 s here, which the physical limits (0.5 s, 0.2 s) rightly treat as faults
    p["inference_timeout"], p["stale_timeout"] = 10.0, 2.0
    assert p["joint_names"] == [f"right_{j}" for j in ARM]
    path = tmp_path / "my_pair.yaml"
    path.write_text(yaml.safe_dump(data))
    return p, path


def start_right_arm_driver(tmp_path) -> subprocess.Popen:
    """The stand-in driver (tests/node_sensor_pub.py) as the physical pair's: right_* joints on
    /joint_states, the camera on /cam_high/image_raw."""
    positions = {f"right_{j}": q for j, q in zip(ARM, Q_RIGHT)}
    log = open(tmp_path / "driver.log", "w")  # noqa: SIM115
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "node_sensor_pub.py"),
                             json.dumps(positions), "--ros-args",
                             "-r", "camera/top/image_raw:=/cam_high/image_raw",
                             "-r", "joint_states:=/joint_states"],
                            stdout=log, stderr=subprocess.STDOUT, env=ros_env())


def fifo_threads(pid: int) -> dict[int, int]:
    """{thread id: priority} of the process's threads that run under SCHED_FIFO."""
    out = {}
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        try:
            if os.sched_getscheduler(tid) == os.SCHED_FIFO:
                out[tid] = os.sched_getparam(tid).sched_priority
        except OSError:  # the thread has ended meanwhile
            pass
    return out


def echo_status(field: str, want: str, timeout: float = 60.0) -> str:
    """`ros2 topic echo --once /status` until `field` has the value `want`."""
    def ok(res):
        return res.returncode == 0 and re.search(rf"^{field}: {re.escape(want)}$", res.stdout, re.MULTILINE)
    return ros2_until(["topic", "echo", "--once", *NO_DAEMON, "/status", "act_msgs/msg/PolicyStatus"], ok,
                      timeout).stdout


@pytest.mark.slow
@pytest.mark.ros
def test_policy_node_launch_with_physical_params_and_the_operator_commands(tmp_path):
    from std_msgs.msg import Float64MultiArray

    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt", image_size=IMAGE)
    params, params_file = physical_params(tmp_path)
    driver = start_right_arm_driver(tmp_path)
    probe = Probe("probe_physical")
    lock = threading.Lock()
    cmds: list[list[float]] = []

    def on_cmd(m):
        with lock:
            cmds.append(list(m.data))

    probe.node.create_subscription(Float64MultiArray, "/right_arm_controller/commands", on_cmd, 100)
    launch = CliProcess(["launch", "act_policy_node", "policy_node.launch.py", f"checkpoint:={ckpt}",
                         f"params_file:={params_file}", "command_topic:=/right_arm_controller/commands",
                         "joint_states_topic:=/joint_states"], tmp_path / "launch.log")
    try:
        # a condition, not a delay: it returns as soon as the node is configured, but ros2 launch,
        # torch and the checkpoint can take over 2 minutes to start on 2 loaded cores
        launch.wait_for(r"ACT policy on arm 1 \(mirrored\)", timeout=300)
        # the launch file configured it; it waits for the operator: inactive, idle, no command
        res = ros2_until(["lifecycle", "get", *NO_DAEMON, "/act_policy_node"],
                         lambda r: r.returncode == 0 and "inactive" in r.stdout, timeout=60)
        echo_status("mode_name", "idle")
        assert not cmds, "commands before the operator activated the node"

        res = ros2_until(["lifecycle", "set", *NO_DAEMON, "/act_policy_node", "activate"],
                         lambda r: "Transitioning successful" in r.stdout, timeout=60)
        ros2_until(["lifecycle", "get", *NO_DAEMON, "/act_policy_node"],
                   lambda r: "active [3]" in r.stdout, timeout=60)
        assert wait_for(lambda: len(cmds) >= 20, 60), "no commands on /right_arm_controller/commands"
        echo_status("mode_name", "running")
        # realtime_priority 50 (physical_pair.yaml): while active, the inference worker at SCHED_FIFO
        # 50 and the executor's thread at 49; where the system refuses it, a warning says so
        pid = int(re.search(r"\[act_policy_node-1\]: process started with pid \[(\d+)\]", launch.output)[1])
        refused = "cannot use SCHED_FIFO priority" in launch.output
        assert sorted(fifo_threads(pid).values()) == ([] if refused else [49, 50]), launch.output[-2000:]
        with lock:
            got = np.asarray(cmds)
        step = np.asarray(params["max_step"])  # per joint: the gripper (m) has its own
        assert np.all(np.abs(got[0] - Q_RIGHT) <= step + 1e-9), "first command not within max_step of qpos"
        assert np.all(np.abs(np.diff(got, axis=0)) <= step + 1e-9)
        lo, hi = np.asarray(params["joint_lower_limits"]), np.asarray(params["joint_upper_limits"])
        assert np.all(got >= lo - 1e-12) and np.all(got <= hi + 1e-12)

        res = ros2_until(["param", "get", *NO_DAEMON, "/act_policy_node", "max_step"],
                         lambda r: r.returncode == 0, timeout=60)
        assert res.stdout.startswith("Double values are: [0.02") and "0.002]" in res.stdout, res.stdout
        # start-up parameters are read_only: setting one fails instead of changing nothing
        res = ros2_until(["param", "set", *NO_DAEMON, "/act_policy_node", "max_step", "[0.5]"],
                         lambda r: "Node not found" not in r.stdout + r.stderr, timeout=60)
        out = res.stdout + res.stderr  # the CLI prints the refusal on stderr
        assert "Setting parameter failed" in out and "read-only parameter: max_step" in out, out
        ros2_until(["param", "set", *NO_DAEMON, "/act_policy_node", "warn_throttle_s", "1.0"],
                   lambda r: "Set parameter successful" in r.stdout, timeout=60)
        res = ros2_until(["param", "get", *NO_DAEMON, "/act_policy_node", "warn_throttle_s"],
                         lambda r: r.returncode == 0, timeout=60)
        assert res.stdout.strip() == "Double value is: 1.0", res.stdout

        # pause / resume while active, then the operator stops it
        res = ros2("service", "call", "/act_policy_node/enable", "std_srvs/srv/SetBool", "{data: false}")
        assert "success=True" in res.stdout, res.stdout
        echo_status("mode_name", "idle")
        res = ros2("service", "call", "/act_policy_node/enable", "std_srvs/srv/SetBool", "{data: true}")
        assert "success=True" in res.stdout, res.stdout
        echo_status("mode_name", "running")
        ros2_until(["lifecycle", "set", *NO_DAEMON, "/act_policy_node", "deactivate"],
                   lambda r: "Transitioning successful" in r.stdout, timeout=60)
        echo_status("mode_name", "idle")
        n_off = len(cmds)
        res = ros2_until(["lifecycle", "get", *NO_DAEMON, "/act_policy_node"],  # no command meanwhile
                         lambda r: r.returncode == 0, timeout=60)
        assert "inactive [2]" in res.stdout and len(cmds) <= n_off + 1, (res.stdout, len(cmds) - n_off)
        # inactive: the executor's thread is back to normal scheduling, the idle worker keeps its
        assert sorted(fifo_threads(pid).values()) == ([] if refused else [50])
    finally:
        rc = launch.interrupt()
        probe.close()
        driver.send_signal(2)
        driver.wait(timeout=30)
    assert rc == 0, launch.output[-3000:]
    assert "[act_policy_node] summary:" in launch.output and "Traceback" not in launch.output


@pytest.mark.slow
@pytest.mark.ros
def test_record_demos_launch_records_the_mapping_topics(tmp_path):
    from act_training.bags.record import topics_from_mapping
    from rosbags.highlevel import AnyReader
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    mapping = SRC / "act_training/act_training/config/bag_mujoco_sim.yaml"
    out = tmp_path / "demos_bag"
    launch = CliProcess(["launch", str(ROOT / "launch/record_demos.launch.py"), "mode:=sim", f"out:={out}",
                         "storage:=mcap"], tmp_path / "launch.log")
    probe = Probe("probe_record")
    seen = []
    probe.node.create_subscription(JointState, "/joint_states", seen.append, 10)
    teleop = probe.node.create_publisher(Float64MultiArray, "/commands", 10)
    home = Float64MultiArray(data=[0.0, -0.6, 0.9, 0.0, 0.6, 0.0, 0.03])
    probe.node.create_timer(0.02, lambda: teleop.publish(home))  # a stand-in teleop at 50 Hz
    try:
        launch.wait_for(r"\(mcap, act_bag_record\)|\(mcap, ros2_bag\)", timeout=60)
        # the bridge (real time) waits for an episode: start one as a user would
        res = ros2_until(["service", "call", "/mirror_arm_bridge/reset", "std_srvs/srv/Trigger"],
                         lambda r: r.returncode == 0 and "success=True" in r.stdout, timeout=120)
        assert "success=True" in res.stdout
        launch.wait_for(r"recording \d+ topics to", timeout=60)
        assert wait_for(lambda: len(seen) >= 60, 60), "the bridge publishes no joint states"
        # the teleop stand-in's /commands reach the bag only once the recorder has matched it
        # (the bridge is the other subscriber); then let a second of commands flow
        assert wait_for(lambda: teleop.get_subscription_count() >= 2, 60), "/commands never recorded"
        n0 = len(seen)
        assert wait_for(lambda: len(seen) >= n0 + 50, 60), "the bridge stopped publishing"
    finally:
        rc = launch.interrupt()
        probe.close()
    assert rc == 0, launch.output[-3000:]
    with AnyReader([out]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    for topic in topics_from_mapping(mapping):
        if topic != "/episode_result":  # no episode ended in this short recording
            assert counts.get(topic, 0) > 0, f"{topic} not recorded: {counts}"


CLI_EXECUTABLES = {
    "act_training": ["act_train", "act_evaluate", "act_transfer", "act_bag_to_hdf5", "act_bag_record",
                     "mirror_arm_ros_eval"],
    "mirror_arm_sim": ["mirror_arm_generate_demos", "mirror_arm_symmetry_check", "mirror_arm_expert_eval",
                       "mirror_arm_gazebo_generate"],
}
NODE_EXECUTABLES = {  # (package, executable): (ROS arguments, the line it logs when up)
    ("act_policy_node", "act_policy_node"): (["-p", "checkpoint:={ckpt}", "-p", "autostart:=true"],
                                             r"ACT policy on arm 0"),
    ("mirror_arm_sim", "mirror_arm_bridge"): (["-p", "image_size:=[32,32]"], r"MuJoCo bridge: cameras"),
    ("mirror_arm_sim", "mirror_arm_gazebo_adapter"): ([], r"."),
}


@pytest.mark.slow
@pytest.mark.ros
def test_ros2_run_every_executable(tmp_path):
    listed = set(ros2("pkg", "executables").stdout.split("\n"))
    expected = {f"{pkg} {exe}" for pkg, exes in CLI_EXECUTABLES.items() for exe in exes}
    expected |= {f"{pkg} {exe}" for pkg, exe in NODE_EXECUTABLES}
    assert expected <= listed, f"not installed: {expected - listed}"
    # the command-line tools answer --help
    for pkg, exes in CLI_EXECUTABLES.items():
        for exe in exes:
            res = ros2("run", pkg, exe, "--help", timeout=120)
            assert "usage:" in res.stdout, f"ros2 run {pkg} {exe} --help:\n{res.stdout}\n{res.stderr}"
    # the nodes start, log that they are up, and end cleanly on Ctrl-C
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt", image_size=IMAGE)
    for (pkg, exe), (ros_args, up) in NODE_EXECUTABLES.items():
        args = [a.format(ckpt=ckpt) for a in ros_args]
        proc = CliProcess(["run", pkg, exe, *(["--ros-args", *args] if args else [])],
                          tmp_path / f"{exe}.log")
        try:
            if exe == "mirror_arm_gazebo_adapter":  # logs nothing at start: it is up once it is in the graph
                ros2_until(["node", "list", *NO_DAEMON], lambda r: "/mirror_arm_bridge" in r.stdout, 90)
            else:
                proc.wait_for(up, timeout=120)
        finally:
            rc = proc.interrupt()
        assert rc == 0, f"ros2 run {pkg} {exe} exited {rc}:\n{proc.output[-3000:]}"
        assert "Traceback" not in proc.output, proc.output[-3000:]
