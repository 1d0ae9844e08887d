"""One pipeline from camera to network: a frame gives bit-identical network input whether it goes
through the trainer's data path (HDF5 -> ACTDataset -> collate -> the training step's transfer),
the policy runtime, or the policy node over DDS (sensor_msgs/Image -> decode -> runtime).

Two frames: a raw 480x640 camera frame and one at the policy's own frame size (32x32, whose
left half the cropped policy sees at 32x16 without resampling).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("torch")
import torch  # noqa: E402
from node_testlib import make_tiny_checkpoint, wait_for  # noqa: E402

CROP = (0.0, 0.0, 1.0, 0.5)
SIZES = [(480, 640), (32, 32)]


def demo_file(path, frame: np.ndarray):
    """A real one-episode demo file whose first top-camera frame is `frame`."""
    from mirror_arm_sim.cell import ARM_JOINTS
    from mirror_arm_sim.hdf5_layout import DemoWriter

    T = 3
    frames = np.repeat(frame[None], T, axis=0)
    q = np.zeros((T, 7), np.float32)
    with DemoWriter(path, ["top"], list(ARM_JOINTS), None, source="test") as w:
        w.add_episode({"top": frames}, q, q)
    return path


def capture_inputs(runtime) -> list[torch.Tensor]:
    """Record every image tensor the network receives, as (B, 1, 3, h, w): the frames entering the
    image half of the real model (`ACT.camera_tokens`, the eager backend's call per camera)."""
    seen: list[torch.Tensor] = []
    inner = runtime.model.camera_tokens

    def spy(image, camera):
        seen.append(image.detach().clone().unsqueeze(1))
        return inner(image, camera)

    runtime.model.camera_tokens = spy
    return seen


def trainer_input(ckpt_path, frame: np.ndarray, tmp_path) -> torch.Tensor:
    from act_training.config import DataConfig
    from act_training.data.dataset import make_datasets
    from act_training.training.checkpoint import load_checkpoint
    from act_training.training.train import _to_device

    path = demo_file(tmp_path / f"demo_{frame.shape[0]}.hdf5", frame)
    train_ds, _ = make_datasets(DataConfig(path=str(path), val_fraction=0.0, augment=False), chunk_size=8)
    batch = torch.utils.data.default_collate([train_ds[0]])
    mc = load_checkpoint(ckpt_path)["model_config_obj"]
    return _to_device(batch, torch.device("cpu"), mc)["images"]


def node_input(ckpt_path, frame: np.ndarray, lockstep: bool = True) -> torch.Tensor:
    """Publish `frame` (rgb8) and a joint state over DDS to an ACTPolicyNode in lockstep mode (the
    whole network per observation) or not (ticks by joint state; the frame's image half runs on
    arrival, on the node's encoder thread)."""
    import rclpy
    from act_policy_node.policy_node import ACTPolicyNode
    from act_training.runtime.policy import ACTPolicyRuntime
    from mirror_arm_sim.cell import ARM_JOINTS, ros_joint_names
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState

    rt = ACTPolicyRuntime.load(ckpt_path)
    seen = capture_inputs(rt)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    params = [Parameter("arm", value=0), Parameter("lockstep", value=lockstep),
              Parameter("tick_source", value="joint_states"),
              Parameter("enabled_on_start", value=True), Parameter("stale_timeout", value=0.0)]
    node = ACTPolicyNode(runtime=rt, context=ctx, parameter_overrides=params)
    # a lifecycle node: configure (interfaces) and activate (commands), as autostart does
    from lifecycle_msgs.msg import State

    node.trigger_configure()
    node.trigger_activate()
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE
    pub_node = rclpy.create_node("frame_publisher", context=ctx)
    img_pub = pub_node.create_publisher(Image, "camera/top/image_raw", qos_profile_sensor_data)
    js_pub = pub_node.create_publisher(JointState, "joint_states", QoSProfile(depth=10))
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(pub_node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            ex.spin_once(timeout_sec=0.02)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        h, w = frame.shape[:2]
        stamp = 0

        def publish() -> bool:
            nonlocal stamp
            stamp += 1  # a new complete observation (same stamp on every input) each try
            img = Image(height=h, width=w, encoding="rgb8", step=3 * w, data=frame.tobytes())
            js = JointState(name=ros_joint_names(0, ARM_JOINTS), position=[0.0] * 7)
            for m in (img, js):
                m.header.stamp.sec = stamp
            img_pub.publish(img)
            js_pub.publish(js)
            return wait_for(lambda: bool(seen), timeout=1.0)

        assert wait_for(publish, timeout=30.0, period=0.0), "the node never ran the policy"
    finally:
        stop.set()
        spinner.join(timeout=5)
        node.destroy_node()
        pub_node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    return seen[0]


@pytest.mark.ros
@pytest.mark.parametrize("hw", SIZES, ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_same_network_input_from_trainer_runtime_and_node(tmp_path, hw):
    pytest.importorskip("rclpy")
    from act_training.runtime.policy import ACTPolicyRuntime

    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt", image_size=(32, 16), crop=CROP)
    frame = np.random.default_rng(hw[0]).integers(0, 256, (*hw, 3), dtype=np.uint8)

    x_train = trainer_input(ckpt, frame, tmp_path)
    rt = ACTPolicyRuntime.load(ckpt)
    seen = capture_inputs(rt)
    rt.predict_chunk({"top": frame}, np.zeros(7, np.float32))
    x_runtime = seen[0]
    x_node = node_input(ckpt, frame)
    x_node_split = node_input(ckpt, frame, lockstep=False)

    assert x_train.shape == x_runtime.shape == x_node.shape == x_node_split.shape == (1, 1, 3, 32, 16)
    assert torch.equal(x_train, x_runtime), "trainer and runtime disagree"
    assert torch.equal(x_runtime, x_node), "runtime and node (over DDS) disagree"
    assert torch.equal(x_runtime, x_node_split), "runtime and the node's image half on arrival disagree"
    if hw == (32, 32):  # the policy's own frame size: the crop only, nothing resampled
        assert torch.equal(x_runtime[0, 0], torch.from_numpy(frame[:, :16]).permute(2, 0, 1).float() / 255)
