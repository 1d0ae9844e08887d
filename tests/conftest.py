"""Shared test set-up.

Every test session gets its own ROS_DOMAIN_ID so concurrent runs on one machine (developers,
CI, benchmarks) never see each other's topics, and MuJoCo renders headless with EGL.
"""

import os
import random

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
# Keep tests from oversubscribing a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
