"""rclpy node running an ACT policy."""
