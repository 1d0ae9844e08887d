"""The mirrored two-arm cell. Importing this package does not import mujoco or torch."""
