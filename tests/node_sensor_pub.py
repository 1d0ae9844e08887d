"""A stand-in robot driver for the node tests (run as its own process).

Publishes camera/top/image_raw (rgb8, 32x32, 30 Hz, sensor-data QoS) and joint_states (50 Hz)
with extra joints and the arm's joints in a shuffled order, like real drivers. Controlled over
the `sensor_ctl` topic (std_msgs/String): "ok", "pause_camera", "pause_joints", "nan_joints",
"short_joints", "bad_encoding".

    python node_sensor_pub.py ARM '{"arm0_waist": 0.1, ...}'
"""

import json
import sys

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String


class SensorPub(Node):
    def __init__(self, positions: dict[str, float]) -> None:
        super().__init__("sensor_pub")
        self.state = "ok"
        names = ["gantry_x", *positions, "tool_changer"]
        rng = np.random.default_rng(0)
        rng.shuffle(names)
        self.names = names
        self.pos = [positions.get(n, 9.99) for n in names]
        self.img = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        self.img_pub = self.create_publisher(Image, "camera/top/image_raw", qos_profile_sensor_data)
        self.js_pub = self.create_publisher(JointState, "joint_states", 10)
        self.create_subscription(String, "sensor_ctl", self._on_ctl, 10)
        self.create_timer(1 / 30, self._on_camera)
        self.create_timer(1 / 50, self._on_joints)

    def _on_ctl(self, msg: String) -> None:
        self.state = msg.data
        self.get_logger().info(f"state {self.state}")

    def _on_camera(self) -> None:
        if self.state == "pause_camera":
            return
        m = Image()
        m.header.stamp = self.get_clock().now().to_msg()
        m.height, m.width, m.step = 32, 32, 96
        m.encoding = "rgb8" if self.state != "bad_encoding" else "32FC1"
        m.data = self.img.tobytes()
        self.img_pub.publish(m)

    def _on_joints(self) -> None:
        if self.state == "pause_joints":
            return
        m = JointState()
        m.header.stamp = self.get_clock().now().to_msg()
        m.name = list(self.names)
        pos = list(self.pos)
        if self.state == "nan_joints":
            pos = [float("nan") if n.endswith("elbow") else p for n, p in zip(self.names, pos)]
        if self.state == "short_joints":
            pos = pos[:-2]
        m.position = pos
        self.js_pub.publish(m)


def main() -> None:
    rclpy.init()
    node = SensorPub(json.loads(sys.argv[1]))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
