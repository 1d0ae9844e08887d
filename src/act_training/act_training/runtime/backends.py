"""Inference backends: the one network call of the policy runtime, in eager PyTorch or faster.

    net = make_backend("onnx", model, checkpoint="policy.pt", threads=2)
    actions = net(images, qpos)
    # images (B, N_cams, 3, H, W) float32 in [0, 1] (already cropped and resized by the pipeline)
    # qpos   (B, state_dim) float32, normalised
    # -> actions (B, chunk, action_dim) float32 torch tensor, normalised, z = 0 (the CVAE prior mean)

A backend replaces only `model(images, qpos)` at inference. The image preparation and the
(de-)normalisation stay in the runtime, one implementation for every backend, so the backends
differ in nothing but how the network is executed:

    torch  eager PyTorch under inference_mode (the reference)
    jit    torch.jit.trace + torch.jit.freeze: a frozen TorchScript graph, weights folded in
    onnx   ONNX Runtime on the graph `act_export` writes (exported on first use and cached next to
           the checkpoint as <stem>.<hash>.onnx; the hash is of the checkpoint file, so a retrained
           checkpoint never runs a stale graph)

docs/performance.md has the measured latencies; `onnx` is the recommended CPU backend.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from act_training.model.act import ACT

BACKENDS = ("torch", "jit", "onnx")


class InferenceGraph(nn.Module):
    """ACT's inference forward as a module of two inputs: (images, qpos) -> actions, z = 0.

    What `act_export` exports and `jit` traces: no posterior, no optional arguments."""

    def __init__(self, model: ACT):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor, qpos: Tensor) -> Tensor:
        return self.model(images, qpos)[0]


def example_inputs(model: ACT, batch: int = 1) -> tuple[Tensor, Tensor]:
    """Random inputs of the model's shapes: images (B, N, 3, H, W) in [0, 1], qpos (B, state_dim)."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, cfg.num_cameras, 3, *cfg.image_size, generator=g)
    qpos = torch.randn(batch, cfg.state_dim, generator=g)
    return images, qpos


class TorchBackend:
    """Eager PyTorch, the reference every other backend is tested against."""

    name = "torch"

    def __init__(self, model: ACT):
        self.model = model.eval()

    def __call__(self, images: Tensor, qpos: Tensor) -> Tensor:
        with torch.inference_mode():
            return self.model(images, qpos)[0].float()


class JitBackend:
    """A traced, frozen TorchScript graph of the inference forward (CPU or CUDA)."""

    name = "jit"

    def __init__(self, model: ACT):
        model = model.eval()
        images, qpos = example_inputs(model)
        dev = next(model.parameters()).device
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings on shape checks: shapes are inputs' here
            traced = torch.jit.trace(InferenceGraph(model).eval(), (images.to(dev), qpos.to(dev)),
                                     check_trace=False)
            self.graph = torch.jit.freeze(traced)

    def __call__(self, images: Tensor, qpos: Tensor) -> Tensor:
        with torch.inference_mode():
            return self.graph(images, qpos).float()


class OnnxBackend:
    """ONNX Runtime (CPU execution provider) on an exported graph.

    threads: intra-op threads (0 = torch's current setting, i.e. what the eager backend uses);
    inter-op is 1 (the graph is one chain). allow_spinning: ORT's workers busy-wait between ops
    and calls by default; off here, because on a 2-core machine spinning threads take the CPU
    from the control loop and the sensor callbacks (see docs/performance.md for both figures)."""

    name = "onnx"

    def __init__(self, onnx_model: str | bytes, threads: int = 0, allow_spinning: bool = False):
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - onnxruntime is in requirements.txt
            raise RuntimeError("backend 'onnx' needs the onnxruntime package (requirements.txt)") from e
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        spin = "1" if allow_spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        self.session = ort.InferenceSession(onnx_model, sess_options=so, providers=["CPUExecutionProvider"])
        self.threads = so.intra_op_num_threads

    def __call__(self, images: Tensor, qpos: Tensor) -> Tensor:
        feeds = {"images": images.detach().cpu().float().contiguous().numpy(),
                 "qpos": qpos.detach().cpu().float().contiguous().numpy()}
        return torch.from_numpy(self.session.run(["actions"], feeds)[0])


def make_backend(name: str, model: ACT, checkpoint=None, threads: int = 0,
                 device: torch.device | None = None):
    """The backend `name` (one of BACKENDS) for `model`; `checkpoint` locates the ONNX cache."""
    if name == "torch":
        return TorchBackend(model)
    if name == "jit":
        return JitBackend(model)
    if name == "onnx":
        if device is not None and device.type != "cpu":
            raise ValueError(f"backend 'onnx' runs on the CPU here, not on device '{device}'")
        from act_training.runtime.export import cached_onnx

        return OnnxBackend(cached_onnx(model, checkpoint), threads=threads)
    raise ValueError(f"unknown inference backend '{name}': expected one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "InferenceGraph", "JitBackend", "OnnxBackend", "TorchBackend", "example_inputs",
           "make_backend"]
