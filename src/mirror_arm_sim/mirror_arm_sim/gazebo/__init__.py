"""Gazebo (Harmonic, ros_gz) artefacts of the cell, generated from `cell.py`.

    mirror_arm_gazebo_generate --out DIR [--arm K] [--image-size H W] [--check]

writes `mirror_arm_cell.sdf` (world), `mirror_arm_cell.urdf` (robot_state_publisher),
`ros_gz_bridge.yaml` (ros_gz_bridge config). Modules: `tree` (kinematic tree from the cell),
`urdf`, `sdf`, `bridge_config`, `parsers` (real SDFormat / URDF parsers used by the tests),
`adapter_node` (the ROS side of the Gazebo bridge). Nothing here imports mujoco or rclpy at
import time.
"""
