"""act_training: installable by colcon (ament_python) and by plain pip."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "act_training"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={PACKAGE: ["config/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/config", glob(f"{PACKAGE}/config/*.yaml")),
    ],
    install_requires=[
        "mirror_arm_sim", "numpy", "h5py", "pyyaml", "torch", "torchvision", "tqdm",
        "matplotlib", "rosbags", "mcap", "opencv-python-headless", "imageio", "imageio-ffmpeg",
        "onnxruntime", "onnx",
    ],
    # `colcon test` picks its pytest step from this (otherwise it runs unittest and finds 0 tests)
    extras_require={"test": ["pytest"]},
    zip_safe=True,
    maintainer="ACT mirror-transfer maintainers",
    maintainer_email="maintainers@act-mirror-transfer.dev",
    description="ACT training, policy runtime, executors, mirrored evaluation, bag conversion.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "act_train = act_training.training.train:main",
            "act_evaluate = act_training.evaluation.rollouts:main",
            "act_export = act_training.runtime.export:main",
            "act_transfer = act_training.experiments.transfer:main",
            "act_transfer_variants = act_training.experiments.variants:main",
            "act_bag_to_hdf5 = act_training.bags.convert:cli",
            "act_bag_record = act_training.bags.record:main",
            "mirror_arm_ros_eval = act_training.evaluation.ros_eval:main",
        ],
    },
)
