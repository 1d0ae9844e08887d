"""act_policy_node: the rclpy adapter around act_training's policy runtime."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "act_policy_node"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["act_training"],
    # `colcon test` picks its pytest step from this (otherwise it runs unittest and finds 0 tests)
    extras_require={"test": ["pytest"]},
    zip_safe=True,
    maintainer="ACT mirror-transfer maintainers",
    maintainer_email="maintainers@act-mirror-transfer.dev",
    description="rclpy node running an ACT policy on an arm or its mirror.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "act_policy_node = act_policy_node.policy_node:main",
        ],
    },
)
