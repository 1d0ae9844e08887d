"""Bags: the bag mapping config, recording (rclpy + rosbags), conversion to HDF5."""
