"""A live robot stand-in for the node benchmark (its own process): a camera and a joint-state driver.

    python node_sensors.py --hw 240 320 --camera-hz 30 --joint-hz 100 --arm 0 [--cameras top]
                           [--publish all|camera|joints]

Publishes camera/<cam>/image_raw (rgb8, sensor-data QoS) and joint_states (the arm's 7 joints
plus two foreign ones, shuffled, like a real driver), every message stamped with the wall
clock at publication, so a receiver on the same machine can measure stamp -> arrival.
`--publish camera` / `joints`: only one of them, as a robot's camera driver and arm driver are
separate processes (the benchmark runs one of each).
"""

import argparse

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState

JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_pitch", "wrist_roll", "gripper"]
HOME = [0.0, -0.6, 0.9, 0.0, 0.6, 0.0, 0.03]


class Sensors(Node):
    def __init__(self, hw, camera_hz: float, joint_hz: float, arm: int, cameras,
                 publish: str = "all") -> None:
        super().__init__(f"bench_sensors_{publish}")
        rng = np.random.default_rng(0)
        names = [f"arm{arm}_{j}" for j in JOINTS] + ["gantry_x", "tool_changer"]
        rng.shuffle(names)
        self.names = names
        self.pos = np.array([HOME[JOINTS.index(n[5:])] if n.startswith(f"arm{arm}_") else 0.0 for n in names])
        h, w = hw
        self.h, self.w = h, w
        # a few different frames so nothing downstream can cache one buffer
        self.frames = [(rng.random((h, w, 3)) * 255).astype(np.uint8).tobytes() for _ in range(4)]
        self.k = 0
        self.t = 0
        if publish in ("all", "camera"):
            self.img_pubs = [self.create_publisher(Image, f"camera/{c}/image_raw", qos_profile_sensor_data)
                             for c in cameras]
            self.create_timer(1.0 / camera_hz, self._on_camera)
        if publish in ("all", "joints"):
            self.js_pub = self.create_publisher(JointState, "joint_states", 10)
            self.create_timer(1.0 / joint_hz, self._on_joints)

    def _on_camera(self) -> None:
        self.k += 1
        for pub in self.img_pubs:
            m = Image()
            m.header.stamp = self.get_clock().now().to_msg()
            m.header.frame_id = "camera"
            m.height, m.width, m.step, m.encoding = self.h, self.w, 3 * self.w, "rgb8"
            m.data = self.frames[self.k % len(self.frames)]
            pub.publish(m)

    def _on_joints(self) -> None:
        self.t += 1
        m = JointState()
        m.header.stamp = self.get_clock().now().to_msg()
        m.name = self.names
        m.position = (self.pos + 0.01 * np.sin(self.t * 0.02)).tolist()
        self.js_pub.publish(m)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hw", type=int, nargs=2, default=[240, 320])
    ap.add_argument("--camera-hz", type=float, default=30.0)
    ap.add_argument("--joint-hz", type=float, default=100.0)
    ap.add_argument("--arm", type=int, default=0)
    ap.add_argument("--cameras", nargs="+", default=["top"])
    ap.add_argument("--publish", choices=["all", "camera", "joints"], default="all")
    args = ap.parse_args()
    rclpy.init()
    node = Sensors(args.hw, args.camera_hz, args.joint_hz, args.arm, args.cameras, args.publish)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
