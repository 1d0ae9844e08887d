"""Gazebo artefacts: the generated SDF/URDF pass the real parsers; bridge topics match the nodes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from mirror_arm_sim.cell import ARM_JOINTS, default_cell
from mirror_arm_sim.gazebo import parsers
from mirror_arm_sim.gazebo.bridge_config import build_bridge_config, ros_command_topic
from mirror_arm_sim.gazebo.generate import generate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("gz"), arm=1)


def test_sdf_passes_libsdformat(out):
    try:
        rep = parsers.check_sdf(out["sdf"])
    except parsers.ParserUnavailable as exc:
        pytest.skip(str(exc))
    assert rep.errors == []
    names = {m["name"] for m in rep.world()["models"]}
    assert {"table", "mirror_arm_cell", "cube", "target", "top_camera"} <= names


def test_sdf_checker_reports_errors(tmp_path):
    """The checker is not a rubber stamp: a broken joint is an error."""
    try:
        parsers.sdf_check_binary()
    except parsers.ParserUnavailable as exc:
        pytest.skip(str(exc))
    bad = tmp_path / "bad.sdf"
    bad.write_text('<?xml version="1.0"?><sdf version="1.9"><world name="w"><model name="m">'
                   '<link name="a"/><joint name="j" type="revolute"><parent>a</parent><child>zz</child>'
                   '<axis><xyz>0 0 1</xyz></axis></joint></model></world></sdf>')
    assert parsers.check_sdf(bad).errors


def test_urdf_passes_urdfdom(out):
    try:
        ok, text = parsers.check_urdf_cli(out["urdf"])
    except parsers.ParserUnavailable as exc:
        pytest.skip(str(exc))
    assert ok, text


def test_urdf_passes_urdf_parser_py(out):
    from urdf_parser_py.xml_reflection import core

    warnings = []
    old = core.on_error
    core.on_error = warnings.append
    try:
        robot = parsers.parse_urdf_py(out["urdf"].read_text())
    finally:
        core.on_error = old
    assert warnings == []
    joints = {j.name: j for j in robot.joints}
    for k in (0, 1):
        for j in ARM_JOINTS:
            assert f"arm{k}_{j}" in joints
        assert joints[f"arm{k}_finger_right_slide"].mimic.joint == f"arm{k}_gripper"


def test_bridge_yaml_schema(out):
    entries = yaml.safe_load(out["bridge"].read_text())
    for e in entries:
        if "service_name" in e:
            assert {"ros_type_name", "gz_req_type_name", "gz_rep_type_name"} <= set(e)
        else:
            assert {"ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name", "direction"} <= set(e)
            assert e["direction"] in ("GZ_TO_ROS", "ROS_TO_GZ", "BIDIRECTIONAL")
    # the wrist camera of the ACTIVE arm (1) is camera/wrist/image_raw
    wrist = next(e for e in entries if e.get("ros_topic_name") == "camera/wrist/image_raw")
    assert "arm1_wrist" in wrist["gz_topic_name"]


def test_bridge_gz_topics_exist_in_sdf(out):
    """Every bridged gz topic is one the SDF's sensors/plugins actually use."""
    sdf = out["sdf"].read_text()
    for e in build_bridge_config(default_cell(), arm=1):
        topic = e.get("gz_topic_name")
        if topic is None or topic.startswith("/world/") or topic.startswith("/model/"):
            continue  # world clock and PosePublisher topics are named by gz-sim itself
        assert f"<topic>{topic}</topic>" in sdf, topic


# --- topic contract, parsed from the nodes' sources (no ROS needed) ----------------------------
MSG_PKG = {"Image": "sensor_msgs", "JointState": "sensor_msgs", "Float64MultiArray": "std_msgs",
           "Float64": "std_msgs", "JointTrajectory": "trajectory_msgs", "Clock": "rosgraph_msgs",
           "EpisodeResult": "act_msgs", "ActionChunk": "act_msgs", "PolicyStatus": "act_msgs",
           "PoseStamped": "geometry_msgs", "DiagnosticArray": "diagnostic_msgs"}


def _endpoints(path: Path) -> set[tuple[str, str, str]]:
    """(kind, ros type, topic) of every create_publisher/create_subscription with a literal topic.
    f-strings become patterns with `*` for their fields; `x if c else y` types give both."""
    tree = ast.parse(path.read_text())
    aliases: dict[str, list[str]] = {}
    for node in ast.walk(tree):  # cmd_type = A if ... else B
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.IfExp):
            names = [n.id for n in (node.value.body, node.value.orelse) if isinstance(n, ast.Name)]
            for t in node.targets:
                if isinstance(t, ast.Attribute):
                    aliases[t.attr] = names
                elif isinstance(t, ast.Name):
                    aliases[t.id] = names
    out = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("create_publisher", "create_subscription") and len(node.args) >= 2):
            continue
        typ, topic = node.args[0], node.args[1]
        if isinstance(topic, ast.Constant):
            t = topic.value
        elif isinstance(topic, ast.JoinedStr):
            t = "".join(v.value if isinstance(v, ast.Constant) else "*" for v in topic.values)
        else:
            continue
        types = aliases.get(typ.id, [typ.id]) if isinstance(typ, ast.Name) else []
        kind = "pub" if node.func.attr == "create_publisher" else "sub"
        for ty in types:
            out.add((kind, f"{MSG_PKG[ty]}/msg/{ty}", t))
    return out


def _match(pattern: str, topic: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(topic, pattern)


def _gazebo_side(arm: int) -> set[tuple[str, str, str]]:
    """What the Gazebo bridge (ros_gz_bridge + adapter node) offers, ROS side."""
    side = set()
    for e in build_bridge_config(default_cell(), arm=arm):
        if "ros_topic_name" in e:
            kind = "pub" if e["direction"] == "GZ_TO_ROS" else "sub"
            side.add((kind, e["ros_type_name"], e["ros_topic_name"]))
    side |= _endpoints(ROOT / "src/mirror_arm_sim/mirror_arm_sim/gazebo/adapter_node.py")
    return side


@pytest.mark.parametrize("arm", [0, 1])
def test_gazebo_side_serves_the_policy_node(arm):
    policy = _endpoints(ROOT / "src/act_policy_node/act_policy_node/policy_node.py")
    assert policy, "no endpoints parsed from policy_node.py"
    side = _gazebo_side(arm)
    for kind, typ, topic in policy:
        if typ.startswith(("act_msgs/", "diagnostic_msgs/")):
            continue  # the node's own outputs (action_chunk, status, /diagnostics), not the simulator's
        want = "pub" if kind == "sub" else "sub"
        ok = any(k == want and t == typ and _match(topic, tp) for k, t, tp in side)
        if kind == "sub" and "*" in topic:  # camera/*/image_raw: every cell camera is served
            for cam in default_cell().camera_names:
                concrete = topic.replace("*", cam)
                assert any(k == want and t == typ and tp == concrete for k, t, tp in side), concrete
        if kind == "pub" and typ == "trajectory_msgs/msg/JointTrajectory":
            ok = True  # the adapter subscribes to one of the two command types (parameter)
            assert any(k == "sub" and tp == topic for k, _, tp in side)
        assert ok, (kind, typ, topic)


@pytest.mark.parametrize("arm", [0, 1])
def test_gazebo_side_matches_the_mujoco_bridge(arm):
    """Every topic of the MuJoCo bridge exists on the Gazebo side with the same direction and type."""
    mj = _endpoints(ROOT / "src/mirror_arm_sim/mirror_arm_sim/bridge_node.py")
    assert mj, "no endpoints parsed from bridge_node.py"
    side = _gazebo_side(arm)
    for kind, typ, topic in mj:
        if "*" in topic:
            for cam in default_cell().camera_names:
                assert (kind, typ, topic.replace("*", cam)) in side, (kind, typ, topic, cam)
        else:
            assert (kind, typ, topic) in side, (kind, typ, topic)


def test_commands_cover_every_joint():
    entries = build_bridge_config(default_cell(), arm=0)
    topics = {e.get("ros_topic_name") for e in entries}
    for k in (0, 1):
        for j in ARM_JOINTS:
            assert ros_command_topic(k, j) in topics
