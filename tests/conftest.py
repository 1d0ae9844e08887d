"""Shared test set-up.

Every test session gets its own ROS_DOMAIN_ID so concurrent runs on one machine (developers,
CI, benchmarks) never see each other's topics, and MuJoCo renders headless with EGL.
"""

import os
import random

# torch (and the triton it pulls in via torchvision) must be imported before MuJoCo starts EGL
# rendering in this process: the other order segfaults. The entry points do the same.
import torch  # noqa: F401
import torchvision  # noqa: F401

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
# Keep tests from oversubscribing a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
