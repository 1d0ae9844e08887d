"""launch/record_demos.launch.py is a real ROS 2 launch file: parsed and checked statically, and
loaded where `launch` is installed (tests/test_ros2_cli.py runs it with `ros2 launch`)."""

import ast
import importlib.util
from pathlib import Path

LAUNCH = Path(__file__).resolve().parents[1] / "launch" / "record_demos.launch.py"


def test_record_demos_launch_file_parses_statically():
    src = LAUNCH.read_text()
    tree = ast.parse(src, filename=str(LAUNCH))
    compile(tree, str(LAUNCH), "exec")
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    for needle in ('"ros2", "bag", "record"', "topics_from_mapping", 'DeclareLaunchArgument("mode"',
                   'DeclareLaunchArgument("storage"', 'package="mirror_arm_sim"'):
        assert needle in src, needle


def test_record_demos_launch_file_imports_with_ros2():
    from ros2_cli import require_ros2_cli

    require_ros2_cli()
    spec = importlib.util.spec_from_file_location("record_demos_launch", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.generate_launch_description().entities


def test_launch_records_exactly_the_mapping_topics():
    from act_training.bags.record import topics_from_mapping

    import act_training

    cfg = Path(act_training.__file__).parent / "config" / "bag_mujoco_sim.yaml"
    topics = topics_from_mapping(cfg)
    assert len(topics) == len(set(topics)) >= 3 and all(t.startswith("/") for t in topics)
