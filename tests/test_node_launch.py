"""The ROS 2 launch and parameter files of the policy node and the transfer evaluation, checked
statically: they parse; every package/executable they start is a console script of that
package; every parameter file they name exists and only sets parameters the node declares; every
declared launch argument is used and every used one declared; the Gazebo include exists and
accepts the arguments passed to it. With `launch` installed (a system ROS 2, or the overlay
scripts/setup.sh builds from ../shared/vendor/ros2-cli) they are also loaded here, and
tests/test_ros2_cli.py runs them with `ros2 launch`.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
TRANSFER = SRC / "mirror_arm_sim" / "launch" / "transfer_eval.launch.py"
NODE_LAUNCH = SRC / "act_policy_node" / "launch" / "policy_node.launch.py"
LAUNCH_FILES = [TRANSFER, NODE_LAUNCH]


def console_scripts(package: str) -> set[str]:
    text = (SRC / package / "setup.py").read_text()
    return set(re.findall(r'"([A-Za-z0-9_]+)\s*=\s*[\w.]+:\w+"', text))


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def kw(call: ast.Call, key: str):
    for k in call.keywords:
        if k.arg == key:
            return k.value
    return None


def declared_args(tree: ast.AST) -> set[str]:
    names = {c.args[0].value for c in calls(tree, "DeclareLaunchArgument")
             if c.args and isinstance(c.args[0], ast.Constant)}
    for node in ast.walk(tree):  # transfer_eval keeps its arguments in a table
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ARGUMENTS":
            names |= {row[0] for row in ast.literal_eval(node.value)}
    return names


def used_args(tree: ast.AST) -> set[str]:
    used = set()
    for name in ("LaunchConfiguration", "arg"):
        used |= {c.args[0].value for c in calls(tree, name) if c.args and isinstance(c.args[0], ast.Constant)}
    return used


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_parses_and_arguments_are_consistent(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    compile(tree, str(path), "exec")
    assert "generate_launch_description" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    declared, used = declared_args(tree), used_args(tree)
    assert declared, "no launch arguments"
    assert declared == used, f"declared but unused {declared - used}; used but undeclared {used - declared}"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launched_executables_exist(path):
    tree = ast.parse(path.read_text())
    nodes = calls(tree, "Node") + calls(tree, "LifecycleNode")
    assert nodes
    for c in nodes:
        pkg, exe = kw(c, "package"), kw(c, "executable")
        assert isinstance(pkg, ast.Constant) and isinstance(exe, ast.Constant)
        assert exe.value in console_scripts(pkg.value), f"{pkg.value} has no console script {exe.value}"


def node_parameters():
    from act_policy_node.params import NodeParams

    return {name for name, *_ in NodeParams.specs()} | {"use_sim_time"}


def bridge_parameters():
    from mirror_arm_sim.bridge_node import PARAMETERS

    return set(PARAMETERS) | {"use_sim_time"}


def yaml_params(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and len(data) == 1, f"{path}: one node section expected"
    (section,) = data.values()
    return section["ros__parameters"]


def test_parameter_files_exist_and_match_declared_parameters():
    pytest.importorskip("rclpy")
    from act_training.runtime.executors import EXECUTOR_MODES

    node_cfg = sorted((SRC / "act_policy_node" / "config").glob("*.yaml"))
    assert {p.name for p in node_cfg} >= {"sim_arm0.yaml", "sim_arm1.yaml", "physical_pair.yaml"}
    for p in node_cfg:
        params = yaml_params(p)
        unknown = set(params) - node_parameters()
        assert not unknown, f"{p.name} sets undeclared parameters {unknown}"
        assert params.get("execution", "") in ("", *EXECUTOR_MODES)  # "" = the checkpoint's
    assert yaml_params(SRC / "act_policy_node" / "config" / "sim_arm1.yaml")["arm"] == 1
    phys = yaml_params(SRC / "act_policy_node" / "config" / "physical_pair.yaml")
    assert len(phys["joint_names"]) == len(phys["joint_lower_limits"]) == len(phys["joint_upper_limits"]) == 7
    # a physical arm: the operator activates, every joint is rate limited and must stay so
    assert phys["autostart"] is False and phys["require_rate_limit"] is True
    assert len(phys["max_step"]) == 7 and min(phys["max_step"]) > 0
    assert phys["max_step"][-1] != phys["max_step"][0], "the gripper (m) has its own step"
    bridge = yaml_params(SRC / "mirror_arm_sim" / "config" / "mujoco_bridge.yaml")
    assert set(bridge) <= bridge_parameters() and bridge["lockstep"] is True


def test_transfer_eval_wiring():
    pytest.importorskip("rclpy")
    src = TRANSFER.read_text()
    tree = ast.parse(src)
    # the parameter files it names exist (sim_arm{arm}.yaml for both arms)
    for name in ("mujoco_bridge.yaml",):
        assert (SRC / "mirror_arm_sim" / "config" / name).is_file()
    for arm in (0, 1):
        assert (SRC / "act_policy_node" / "config" / f"sim_arm{arm}.yaml").is_file()
    # inline parameter dicts only set declared parameters
    for c in calls(tree, "Node") + calls(tree, "LifecycleNode"):
        exe = kw(c, "executable").value
        params = kw(c, "parameters")
        allowed = {"act_policy_node": node_parameters(), "mirror_arm_bridge": bridge_parameters()}.get(exe)
        if params is None or allowed is None:
            continue
        for d in (e for e in params.elts if isinstance(e, ast.Dict)):
            keys = {k.value for k in d.keys}
            assert keys <= allowed, f"{exe}: undeclared parameters {keys - allowed}"
    # the evaluator's command line matches its parser
    from act_training.evaluation.ros_eval import build_parser

    options = {a for act in build_parser()._actions for a in act.option_strings}
    assert {"--trials", "--arm", "--seed", "--json"} <= options
    assert set(re.findall(r'"(--[a-z-]+)"', src)) <= options
    # the Gazebo hook: included file exists and declares what is passed to it
    assert "gazebo_cell.launch.py" in src
    gz = SRC / "mirror_arm_sim" / "launch" / "gazebo_cell.launch.py"
    if gz.is_file():
        gz_args = declared_args(ast.parse(gz.read_text()))
        (include,) = calls(tree, "IncludeLaunchDescription")
        passed = {k.value for k in kw(include, "launch_arguments").func.value.keys}
        assert passed <= gz_args, f"gazebo_cell.launch.py does not declare {passed - gz_args}"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_loads_with_ros2_launch(path):
    from ros2_cli import require_ros2_cli

    require_ros2_cli()
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.generate_launch_description().entities


def test_every_parameter_is_documented():
    pytest.importorskip("rclpy")
    from act_policy_node.params import NodeParams
    from mirror_arm_sim.bridge_node import PARAMETERS as BRIDGE

    NODE = {name: (default, doc) for name, default, doc, _ in NodeParams.specs()}

    doc = (ROOT / "docs" / "ros.md").read_text()
    missing = [p for p in [*NODE, *BRIDGE] if f"`{p}`" not in doc]
    assert not missing, f"docs/ros.md does not mention parameters {missing}"
    for name, (_, description) in {**NODE, **BRIDGE}.items():
        assert len(description) > 10, f"parameter {name} has no real description"
