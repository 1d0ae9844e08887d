"""The policy runtime: load a checkpoint, predict action chunks in real units.

    runtime = ACTPolicyRuntime.load("policy.pt", device="cpu", backend="torch")  # | onnx | jit | onnx_int8
    runtime.camera_names, runtime.joint_names, runtime.action_names, runtime.chunk_size,
    runtime.state_dim, runtime.action_dim, runtime.image_size  # (H, W) network input
    runtime.frame_size  # (H, W) camera frames that need no resampling (image_size before the crop)
    runtime.deployment  # the checkpoint's deployment defaults (executor, frame size, names)
    chunk = runtime.predict_chunk(images={"top": uint8 (H, W, 3)}, qpos=(state_dim,))
    # -> float32 (chunk_size, action_dim), raw (un-normalised) joint targets
    chunks = runtime.predict_chunk_batch(images={"top": uint8 (B, H, W, 3)}, qpos=(B, state_dim))
    # -> float32 (B, chunk_size, action_dim)
    tokens = runtime.encode_image("top", uint8 (H, W, 3))   # -> float32 (h*w, hidden_dim)
    chunk = runtime.predict_from_tokens({"top": tokens}, qpos)  # = predict_chunk, image half cached

Frames of any size go through `runtime.pipeline` (crop, then the one resize, then
normalisation), the object the trainer's data path uses; the mirror is the caller's choice:
`runtime.pipeline.with_mirror(map)` maps robot observations to the policy frame and back.
Inference runs with z = 0 (CVAE prior mean); `backend` picks how the network runs
(act_training.runtime.backends: eager torch, a frozen TorchScript graph, or ONNX Runtime on a
cached export), everything around the network call is the same code for all of them.
`predict_chunk` is `encode_image` for every camera, then `predict_from_tokens`: the policy node
encodes each camera frame once, when it arrives, and runs only the second half on each tick.
Calls of each half are serialised by a lock (one lock for both halves, except on ONNX Runtime,
whose sessions run side by side), so the runtime can be shared between threads; run it OFF the
control-loop thread (see docs/architecture.md).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from act_training.data.normalize import NormStats
from act_training.model.act import ACT
from act_training.runtime.backends import make_backend
from act_training.runtime.deployment import Deployment
from act_training.runtime.pipeline import Pipeline
from act_training.training.checkpoint import CheckpointError, load_checkpoint


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as torch.device(device)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class ACTPolicyRuntime:
    """A loaded policy: observation (images, qpos in real units) -> raw action chunk
    (chunk_size, action_dim), through the shared pipeline and the chosen backend (module docstring)."""

    def __init__(self, model: ACT, stats: NormStats, camera_names, joint_names, action_names,
                 device: torch.device, meta: dict | None = None, deployment: Deployment | None = None,
                 backend: str = "torch", checkpoint: str | Path | None = None, threads: int = 0):
        self.model = model.to(device).eval()
        # the network call: eager torch, a frozen graph or ONNX Runtime (act_training.backends)
        self.backend = backend
        self.network = make_backend(backend, self.model, checkpoint=checkpoint, threads=threads,
                                    device=device)
        self.stats = stats
        self.device = device
        self.camera_names: list[str] = list(camera_names)
        self.joint_names: list[str] = list(joint_names)
        self.action_names: list[str] = list(action_names)
        cfg = model.cfg
        self.chunk_size: int = cfg.chunk_size
        self.state_dim: int = cfg.state_dim
        self.action_dim: int = cfg.action_dim
        self.image_size: tuple[int, int] = tuple(cfg.image_size)  # network input, after the crop
        self.crop = cfg.crop
        # camera frames of this size need no resampling (render or resize to it)
        self.frame_size: tuple[int, int] = tuple(cfg.frame_size)
        self.meta = dict(meta or {})
        # how the policy is run by default (stored in the checkpoint; see runtime.deployment)
        self.deployment = deployment or Deployment(
            frame_size=self.frame_size, camera_names=tuple(camera_names), joint_names=tuple(joint_names))
        self._trunk_lock = threading.Lock()
        self._decode_lock = threading.Lock() if backend.startswith("onnx") else self._trunk_lock
        self.pipeline = Pipeline.from_model(cfg, stats, camera_names=self.camera_names)  # no mirror

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", backend: str = "torch",
             threads: int = 0) -> ACTPolicyRuntime:
        """Load a checkpoint; `backend` in act_training.backends.BACKENDS, `threads` its intra-op
        threads (onnx; 0 = torch's current setting)."""
        dev = resolve_device(device)
        ck = load_checkpoint(path, map_location="cpu")
        model = ACT(ck["model_config_obj"])
        try:
            model.load_state_dict(ck["model_state"])
        except RuntimeError as e:
            raise CheckpointError(f"{path}: weights do not fit the stored model config: {e}") from None
        meta = {k: ck.get(k) for k in ("step", "layout_version", "image_size", "config", "path")}
        return cls(model, ck["norm_stats_obj"], ck["camera_names"], ck["joint_names"], ck["action_names"],
                   dev, meta, ck["deployment_obj"], backend=backend, checkpoint=path, threads=threads)

    # ------------------------------------------------------------------ inference
    def predict_chunk(self, images: Mapping[str, np.ndarray], qpos) -> np.ndarray:
        """One observation: images {camera: uint8 (H, W, 3)}, qpos (state_dim,) -> (chunk, action_dim)."""
        batched = {}
        for cam in self.camera_names:
            im = self._get(images, cam)
            if im.ndim != 3:
                raise ValueError(f"camera '{cam}': expected one uint8 (H, W, 3) image, got {im.shape}")
            batched[cam] = im[None]
        q = np.asarray(qpos, dtype=np.float32)
        if q.shape != (self.state_dim,):
            raise ValueError(f"qpos must have shape ({self.state_dim},), got {q.shape}")
        return self.predict_chunk_batch(batched, q[None])[0]

    def predict_chunk_batch(self, images: Mapping[str, np.ndarray], qpos) -> np.ndarray:
        """B observations: images {camera: uint8 (B, H, W, 3)}, qpos (B, state_dim) -> (B, chunk, A)."""
        q = np.asarray(qpos, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.state_dim:
            raise ValueError(f"qpos must have shape (B, {self.state_dim}), got {q.shape}")
        B = q.shape[0]
        tokens = []
        for i, cam in enumerate(self.camera_names):
            im = self._get(images, cam)
            if im.ndim != 4 or im.shape[0] != B or im.shape[-1] != 3 or im.dtype != np.uint8:
                raise ValueError(f"camera '{cam}': expected uint8 ({B}, H, W, 3), got {im.shape} {im.dtype}")
            tokens.append(self._encode(i, im))
        return self._decode(torch.cat(tokens, dim=1), q)

    def encode_image(self, camera: str, image: np.ndarray) -> np.ndarray:
        """The image half for one camera: uint8 (H, W, 3) of any size -> tokens float32 (h*w, d)."""
        if camera not in self.camera_names:
            raise KeyError(f"policy has no camera '{camera}' (cameras: {self.camera_names})")
        im = self._get({camera: image}, camera)
        if im.ndim != 3 or im.shape[-1] != 3:
            raise ValueError(f"camera '{camera}': expected one uint8 (H, W, 3) image, got {im.shape}")
        return self._encode(self.camera_names.index(camera), im[None])[0].cpu().numpy()

    def predict_from_tokens(self, tokens: Mapping[str, np.ndarray], qpos) -> np.ndarray:
        """The second half: {camera: `encode_image` tokens (h*w, d)}, qpos (state_dim,) -> (chunk, A),
        the chunk `predict_chunk` gives for the images those tokens were encoded from."""
        q = np.asarray(qpos, dtype=np.float32)
        if q.shape != (self.state_dim,):
            raise ValueError(f"qpos must have shape ({self.state_dim},), got {q.shape}")
        missing = [c for c in self.camera_names if c not in tokens]
        if missing:
            raise KeyError(f"no image tokens for cameras {missing} (cameras: {self.camera_names})")
        t = torch.cat([torch.as_tensor(np.asarray(tokens[c], dtype=np.float32))[None]
                       for c in self.camera_names], dim=1)
        return self._decode(t, q[None])[0]

    def _encode(self, index: int, im: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) of camera `index` -> tokens (B, h*w, d) on the runtime's device."""
        x = torch.from_numpy(np.ascontiguousarray(im))
        with self._trunk_lock, torch.inference_mode():
            x = self.pipeline.network_images(x.to(self.device))  # (B, 3, h, w) in [0, 1]
            return self.network.camera_tokens(index, x).to(self.device)

    def _decode(self, tokens: torch.Tensor, q: np.ndarray) -> np.ndarray:
        """tokens (B, N*h*w, d), qpos (B, state_dim) in joint units -> (B, chunk, A) in joint units."""
        with self._decode_lock, torch.inference_mode():
            qt = self.pipeline.network_qpos(torch.from_numpy(q).to(self.device))
            a = self.network.decode(tokens.to(self.device), qt).to(self.device)  # (B, chunk, A) normalised
            return self.pipeline.network_actions(a).cpu().numpy().astype(np.float32, copy=False)

    def _get(self, images: Mapping[str, np.ndarray], cam: str) -> np.ndarray:
        if cam not in images:
            raise KeyError(f"policy needs camera '{cam}' (cameras: {self.camera_names}); "
                           f"got {sorted(images)}")
        im = images[cam]
        if isinstance(im, torch.Tensor):
            im = im.cpu().numpy()
        im = np.asarray(im)
        if im.dtype != np.uint8:
            raise ValueError(f"camera '{cam}': images must be uint8, got {im.dtype}")
        return im

    def __repr__(self) -> str:
        return (f"ACTPolicyRuntime(cameras={self.camera_names}, state_dim={self.state_dim}, "
                f"action_dim={self.action_dim}, chunk_size={self.chunk_size}, image_size={self.image_size}, "
                f"device={self.device}, backend={self.backend})")
