"""Inference backends: the one network call of the policy runtime, in eager PyTorch or faster.

    net = make_backend("onnx", model, checkpoint="policy.pt", threads=2)
    tokens = net.camera_tokens(i, image)  # camera i: (B, 3, H, W) float32 in [0, 1] -> (B, h*w, d)
    actions = net.decode(tokens, qpos)     # (B, N_cams*h*w, d) + qpos (B, state_dim), normalised
                                           # -> (B, chunk, action_dim) normalised, z = 0
    actions = net(images, qpos)            # both halves: images (B, N_cams, 3, H, W)

The network runs in two halves: the image trunk per camera frame, and the transformer that
turns the image tokens and qpos into a chunk. The policy node encodes each camera frame once,
when it arrives, and runs only the transformer on every control tick (docs/ros.md); the runtime,
the evaluator and the node all call the same two halves, so they compute the same chunks.
A backend replaces only the network. The image preparation and the (de-)normalisation stay in
the runtime, one implementation for every backend:

    torch  eager PyTorch under inference_mode (the reference)
    jit    torch.jit.trace + torch.jit.freeze of each half: frozen TorchScript graphs
    onnx   ONNX Runtime on the graphs `act_export` writes (exported on first use and cached next to
           the checkpoint as <stem>.<hash>.<half>.onnx; the hash is of the checkpoint file, so a
           retrained checkpoint never runs a stale graph)
    onnx_int8  onnx with the transformer's matrix products in int8 (runtime.export.quantize_decode):
           ~2x faster on the transformer, NOT within 1e-4 of torch (a few thousandths of a radian)

docs/performance.md has the measured latencies; `onnx` is the recommended CPU backend.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from act_training.model.act import ACT

BACKENDS = ("torch", "jit", "onnx", "onnx_int8")


class InferenceGraph(nn.Module):
    """ACT's inference forward as a module of two inputs: (images, qpos) -> actions, z = 0.

    The whole network in one graph: what `act_export --out` writes for use outside this package."""

    def __init__(self, model: ACT):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor, qpos: Tensor) -> Tensor:
        return self.model(images, qpos)[0]


class TrunkGraph(nn.Module):
    """The image half for camera `camera`: frames (B, 3, H, W) in [0, 1] -> tokens (B, h*w, d)."""

    def __init__(self, model: ACT, camera: int):
        super().__init__()
        self.model, self.camera = model, int(camera)

    def forward(self, image: Tensor) -> Tensor:
        return self.model.camera_tokens(image, self.camera)


class DecodeGraph(nn.Module):
    """The transformer half: image tokens (B, N*h*w, d) and qpos (B, state_dim) -> actions, z = 0.
    The tokens' sine positions depend only on the feature map's size: a constant of the graph."""

    def __init__(self, model: ACT):
        super().__init__()
        self.model = model
        cfg = model.cfg
        was_training = model.training  # a probe through the trunk must not touch BatchNorm statistics
        model.eval()
        with torch.no_grad():
            probe = next(model.parameters()).new_zeros(1, 3, *cfg.image_size)
            feats = model.input_proj(model.backbones[0](probe))
            self.register_buffer("img_pos", model.image_positions(feats, cfg.num_cameras), persistent=False)
        model.train(was_training)

    def forward(self, tokens: Tensor, qpos: Tensor) -> Tensor:
        return self.model.decode(tokens, self.img_pos, qpos)


def trunk_cameras(model: ACT) -> list[int]:
    """Camera indices with a trunk of their own: [0] when the trunk is shared, else every camera."""
    return [0] if len(model.backbones) == 1 else list(range(model.cfg.num_cameras))


def trunk_of(model: ACT, camera: int) -> int:
    """Which trunk graph encodes camera `camera`."""
    return 0 if len(model.backbones) == 1 else int(camera)


def example_inputs(model: ACT, batch: int = 1) -> tuple[Tensor, Tensor]:
    """Random inputs of the model's shapes: images (B, N, 3, H, W) in [0, 1], qpos (B, state_dim)."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, cfg.num_cameras, 3, *cfg.image_size, generator=g)
    qpos = torch.randn(batch, cfg.state_dim, generator=g)
    return images, qpos


class _TwoHalves:
    """`__call__(images, qpos)`: every camera through its trunk, then the decoder."""

    def __call__(self, images: Tensor, qpos: Tensor) -> Tensor:
        tokens = [self.camera_tokens(i, images[:, i]) for i in range(images.shape[1])]
        return self.decode(torch.cat(tokens, dim=1), qpos)


class TorchBackend(_TwoHalves):
    """Eager PyTorch, the reference every other backend is tested against."""

    name = "torch"

    def __init__(self, model: ACT):
        self.model = model.eval()
        self._decode = DecodeGraph(self.model).eval()

    def camera_tokens(self, camera: int, image: Tensor) -> Tensor:
        with torch.inference_mode():
            return self.model.camera_tokens(image, camera).float()

    def decode(self, tokens: Tensor, qpos: Tensor) -> Tensor:
        with torch.inference_mode():
            return self._decode(tokens.to(self._decode.img_pos.dtype), qpos).float()


class JitBackend(_TwoHalves):
    """Traced, frozen TorchScript graphs of the two halves (CPU or CUDA)."""

    name = "jit"

    def __init__(self, model: ACT):
        model = model.eval()
        images, qpos = example_inputs(model)
        dev = next(model.parameters()).device
        images, qpos = images.to(dev), qpos.to(dev)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings on shape checks: shapes are inputs' here
            self.trunks = {i: torch.jit.freeze(torch.jit.trace(TrunkGraph(model, i).eval(), (images[:, i],),
                                                               check_trace=False))
                           for i in trunk_cameras(model)}
            tokens = torch.cat([model.camera_tokens(images[:, i], i) for i in range(images.shape[1])], 1)
            self.head = torch.jit.freeze(torch.jit.trace(DecodeGraph(model).eval(), (tokens, qpos),
                                                         check_trace=False))
        self._model = model

    def camera_tokens(self, camera: int, image: Tensor) -> Tensor:
        with torch.inference_mode():
            return self.trunks[trunk_of(self._model, camera)](image).float()

    def decode(self, tokens: Tensor, qpos: Tensor) -> Tensor:
        with torch.inference_mode():
            return self.head(tokens, qpos).float()


class OnnxBackend(_TwoHalves):
    """ONNX Runtime (CPU execution provider) on the exported halves: `graphs` maps "trunk<i>" (one
    per trunk, `trunk_cameras`) and "decode" to a file path or the graph's bytes.

    threads: intra-op threads (0 = torch's current setting, i.e. what the eager backend uses);
    inter-op is 1 (each graph is one chain). allow_spinning: ORT's workers busy-wait between ops
    and calls by default; off here, because on a 2-core machine spinning threads take the CPU
    from the control loop and the sensor callbacks (see docs/performance.md for both figures).
    The sessions are independent: the node runs a trunk and the decoder on two threads at once."""

    name = "onnx"  # the class default; an instance says which graphs it runs

    def __init__(self, graphs: dict, shared_trunk: bool, threads: int = 0, allow_spinning: bool = False,
                 name: str = "onnx"):
        self.name = name  # "onnx" or "onnx_int8": which graphs these are
        self.threads = threads or torch.get_num_threads()
        self.sessions = {k: onnx_session(g, self.threads, allow_spinning) for k, g in graphs.items()}
        self.shared_trunk = bool(shared_trunk)

    def camera_tokens(self, camera: int, image: Tensor) -> Tensor:
        sess = self.sessions[f"trunk{0 if self.shared_trunk else int(camera)}"]
        feed = {"image": image.detach().cpu().float().contiguous().numpy()}
        return torch.from_numpy(sess.run(["tokens"], feed)[0])

    def decode(self, tokens: Tensor, qpos: Tensor) -> Tensor:
        feeds = {"tokens": tokens.detach().cpu().float().contiguous().numpy(),
                 "qpos": qpos.detach().cpu().float().contiguous().numpy()}
        return torch.from_numpy(self.sessions["decode"].run(["actions"], feeds)[0])


def onnx_session(graph: str | bytes, threads: int, allow_spinning: bool = False):
    """An ONNX Runtime CPU session for `graph` (path or bytes) with the settings OnnxBackend documents."""
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - onnxruntime is in requirements.txt
        raise RuntimeError("backend 'onnx' needs the onnxruntime package (requirements.txt)") from e
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spin = "1" if allow_spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return ort.InferenceSession(graph, sess_options=so, providers=["CPUExecutionProvider"])


# largest |int8 - float| of the transformer's chunk on check_int8's inputs, in normalised action
# units, that onnx_int8 accepts; ~0.07-0.09 on every graph measured (docs/performance.md), so
# only a broken integer kernel on the CPU at hand (saturation, a wrong code path) exceeds it
INT8_MAX_DEVIATION = 0.5


def check_int8(net: OnnxBackend, model: ACT, float_decode: str | bytes) -> float:
    """onnx_int8's check on the CPU it runs on, at load: the int8 transformer against the float
    one on example_inputs' frames; returns the largest deviation (normalised action units), or
    raises RuntimeError (naming it) above INT8_MAX_DEVIATION: a policy would then be off by more
    than half an action standard deviation, and the float backend is the one to use."""
    images, qpos = example_inputs(model, batch=4)
    tokens = torch.cat([net.camera_tokens(i, images[:, i]) for i in range(images.shape[1])], 1)
    feeds = {"tokens": tokens.numpy(), "qpos": qpos.numpy()}
    want = onnx_session(float_decode, net.threads).run(["actions"], feeds)[0]
    got = net.decode(tokens, qpos).numpy()
    dev = float(abs(got - want).max())
    if not dev <= INT8_MAX_DEVIATION:  # NaN fails too
        raise RuntimeError(f"backend 'onnx_int8': the int8 transformer deviates from the float one by "
                           f"{dev:.3g} action std on this CPU (limit {INT8_MAX_DEVIATION}): "
                           "use backend 'onnx'")
    return dev


def make_backend(name: str, model: ACT, checkpoint=None, threads: int = 0,
                 device: torch.device | None = None):
    """The backend `name` (one of BACKENDS) for `model`; `checkpoint` locates the ONNX cache."""
    if name == "torch":
        return TorchBackend(model)
    if name == "jit":
        return JitBackend(model)
    if name in ("onnx", "onnx_int8"):
        if device is not None and device.type != "cpu":
            raise ValueError(f"backend '{name}' runs on the CPU here, not on device '{device}'")
        from act_training.runtime.export import cached_onnx

        graphs = cached_onnx(model, checkpoint, int8=name == "onnx_int8")
        float_decode = graphs.pop("decode-float", None)  # onnx_int8: what its graph came from
        net = OnnxBackend(graphs, shared_trunk=len(model.backbones) == 1, threads=threads, name=name)
        if name == "onnx_int8":
            net.int8_deviation = check_int8(net, model, float_decode)
        return net
    raise ValueError(f"unknown inference backend '{name}': expected one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "INT8_MAX_DEVIATION", "DecodeGraph", "InferenceGraph", "JitBackend", "OnnxBackend",
           "TorchBackend", "TrunkGraph", "check_int8", "example_inputs", "make_backend", "onnx_session",
           "trunk_cameras", "trunk_of"]
