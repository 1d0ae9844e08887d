"""mirror_arm_sim: installable by colcon (ament_python) and by plain pip."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mirror_arm_sim"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={PACKAGE: ["config/*.yaml", "gazebo/*.cc"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["numpy", "h5py", "pyyaml", "mujoco", "gymnasium", "tqdm"],
    # `colcon test` picks its pytest step from this (otherwise it runs unittest and finds 0 tests)
    extras_require={"test": ["pytest"]},
    zip_safe=True,
    maintainer="ACT mirror-transfer maintainers",
    maintainer_email="maintainers@act-mirror-transfer.dev",
    description="The mirrored two-arm cell in MuJoCo (and Gazebo), expert, mirror map, symmetry test.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "mirror_arm_bridge = mirror_arm_sim.bridge_node:main",
            "mirror_arm_generate_demos = mirror_arm_sim.generate_demos:main",
            "mirror_arm_symmetry_check = mirror_arm_sim.symmetry:main",
            "mirror_arm_expert_eval = mirror_arm_sim.expert:main",
            "mirror_arm_gazebo_generate = mirror_arm_sim.gazebo.generate:main",
            "mirror_arm_gazebo_adapter = mirror_arm_sim.gazebo.adapter_node:main",
        ],
    },
)
