"""act_msgs is built by colcon and round-trips over real DDS between two processes."""

import subprocess
import sys
import textwrap

import pytest
from node_testlib import stop

rclpy = pytest.importorskip("rclpy")
from act_msgs.msg import ActionChunk, PolicyStatus  # noqa: E402

PUBLISHER = textwrap.dedent(
    """
    import time, rclpy, rclpy.executors
    from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
    from act_msgs.msg import ActionChunk
    rclpy.init()
    node = rclpy.create_node("chunk_pub")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub = node.create_publisher(ActionChunk, "test_chunk", qos)
    msg = ActionChunk()
    msg.header.frame_id = "arm1"
    msg.joint_names = ["a", "b", "c"]
    msg.chunk_length, msg.action_dim = 2, 3
    msg.values = [0.5, -1.0, 2.0, 3.25, 4.0, -5.5]
    msg.executing_step, msg.sequence = 1, 42
    deadline = time.time() + 20
    try:
        while time.time() < deadline and rclpy.ok():
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass  # Ctrl-C from the test: leave DDS cleanly
    node.destroy_node()
    rclpy.try_shutdown()
    """
)


def test_action_chunk_round_trips_between_processes():
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER])
    received = []
    try:
        rclpy.init()
        node = rclpy.create_node("chunk_sub")
        node.create_subscription(ActionChunk, "test_chunk", received.append, 10)
        import time

        deadline = time.time() + 15
        while not received and time.time() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
        # SIGINT, not SIGKILL: a DDS participant killed while it publishes can leave Fast DDS's
        # shared-memory port state behind for the participants of later tests
        stop(proc)
    assert received, "no ActionChunk received from the publisher process within 15 s"
    m = received[0]
    assert m.header.frame_id == "arm1"
    assert list(m.joint_names) == ["a", "b", "c"]
    assert (m.chunk_length, m.action_dim, m.executing_step, m.sequence) == (2, 3, 1, 42)
    assert list(m.values) == [0.5, -1.0, 2.0, 3.25, 4.0, -5.5]


def test_policy_status_constants_and_fields():
    s = PolicyStatus(mode=PolicyStatus.MODE_HOLDING, mode_name="holding", enabled=True)
    s.input_names = ["camera:top", "joint_states"]
    s.input_ages_s = [0.01, 0.5]
    assert {PolicyStatus.MODE_IDLE, PolicyStatus.MODE_RUNNING, PolicyStatus.MODE_HOLDING,
            PolicyStatus.MODE_WAITING} == {0, 1, 2, 3}
    assert list(s.input_ages_s) == [0.01, 0.5]
