"""Publisher process for the live recording test: Image + JointState + Float64MultiArray at 50 Hz.

    python bag_live_publisher.py LOG.npz SECONDS

Every message k carries values that are functions of k: image R = k % 256, G = k // 256;
qpos_j = sin(0.05 k + j); action_j = cos(0.05 k + j). On exit the publish log (k, header stamp
in ns, publish time in ns) is written to LOG.npz.
"""

import signal
import sys
import time

import numpy as np
import rclpy
import rclpy.signals
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_pitch", "wrist_roll", "gripper"]
H, W = 48, 64


def main():
    log_path, seconds = sys.argv[1], float(sys.argv[2])
    stop = {"flag": False}
    signal.signal(signal.SIGINT, lambda *a: stop.update(flag=True))
    signal.signal(signal.SIGTERM, lambda *a: stop.update(flag=True))
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = rclpy.create_node("bag_live_publisher")
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    pub_img = node.create_publisher(Image, "/live/cam/top", qos)
    pub_js = node.create_publisher(JointState, "/live/joint_states", qos)
    pub_cmd = node.create_publisher(Float64MultiArray, "/live/commands", qos)
    rows = []
    k = 0
    t_end = time.monotonic() + seconds
    next_t = time.monotonic()
    img = np.zeros((H, W, 3), np.uint8)
    while not stop["flag"] and time.monotonic() < t_end:
        now = node.get_clock().now()
        stamp = now.to_msg()
        img[..., 0], img[..., 1], img[..., 2] = k % 256, (k // 256) % 256, 50
        m = Image(height=H, width=W, encoding="rgb8", is_bigendian=0, step=W * 3, data=img.tobytes())
        m.header.stamp, m.header.frame_id = stamp, "top"
        js = JointState(name=JOINTS, position=[float(np.sin(0.05 * k + j)) for j in range(7)])
        js.header.stamp = stamp
        cmd = Float64MultiArray(data=[float(np.cos(0.05 * k + j)) for j in range(7)])
        pub_img.publish(m)
        pub_js.publish(js)
        t_pub = time.time_ns()
        pub_cmd.publish(cmd)
        rows.append((k, now.nanoseconds, t_pub))
        k += 1
        next_t += 0.02
        rclpy.spin_once(node, timeout_sec=max(0.0, next_t - time.monotonic()))
    np.savez(log_path, log=np.array(rows, dtype=np.int64))
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
