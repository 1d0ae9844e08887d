"""One checkpoint file that carries everything the evaluator and the node need.

    {
      "format": "act_training.checkpoint", "format_version": 1,
      "model_config": {...},            # ModelConfig as a dict (camera names, dims, image size)
      "config": {...},                  # the full training Config (for resume / the record)
      "model_state": {...},             # ACT state_dict
      "norm_stats": {...},              # NormStats.to_dict()
      "camera_names", "joint_names", "action_names": [...],
      "image_size": [H, W], "layout_version": int, "step": int,
      "deployment": {...} | absent      # runtime.deployment.Deployment: how it was evaluated
      "train_state": {...} | absent     # optimizer, scheduler, RNG, sampler position (last.pt only)
    }

Written atomically (a temporary file in the same directory, then os.replace), so a kill
mid-write leaves the previous checkpoint intact. Loaded with `torch.load(weights_only=True)`:
only tensors and plain Python containers are stored.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from act_training.config import ModelConfig, _section_from_dict
from act_training.data.normalize import NormStats
from act_training.runtime.deployment import Deployment, DeploymentError

CHECKPOINT_FORMAT = "act_training.checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("model_config", "model_state", "norm_stats", "camera_names", "joint_names",
                 "action_names", "image_size", "layout_version")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, of another format/version, or does not fit the data."""


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Atomically write `payload` (see module docstring) to `path`."""
    path = Path(path)
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"refusing to write checkpoint {path}: missing {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **payload}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read and check a checkpoint; raise CheckpointError with the reason on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an act_training checkpoint (format={_get(data, 'format')!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format_version {version} is not supported by this reader "
            f"(<= {CHECKPOINT_VERSION}); update act_training"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing {missing}")
    try:
        data["model_config_obj"] = _section_from_dict(ModelConfig, dict(data["model_config"]))
        data["norm_stats_obj"] = NormStats.from_dict(data["norm_stats"])
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: invalid model config / normalisation stats: {e}") from None
    try:
        data["deployment_obj"] = Deployment.of_checkpoint(data)
    except (DeploymentError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid deployment defaults: {e}") from None
    mc, st = data["model_config_obj"], data["norm_stats_obj"]
    if (st.state_dim, st.action_dim) != (mc.state_dim, mc.action_dim):
        raise CheckpointError(f"{path}: normalisation stats dims {st.state_dim}/{st.action_dim} do not match "
                              f"the model's {mc.state_dim}/{mc.action_dim}")
    data["path"] = str(path)
    return data


def _get(d, k):
    return d.get(k) if isinstance(d, dict) else type(d).__name__


def check_compatible(ckpt: dict, camera_names, state_dim: int, action_dim: int,
                     where: str = "the data") -> None:
    """Raise CheckpointError if a checkpoint's cameras / dims differ from the data's."""
    mc: ModelConfig = ckpt["model_config_obj"]
    src = ckpt.get("path", "checkpoint")
    problems = []
    if tuple(mc.camera_names) != tuple(camera_names):
        problems.append(f"cameras {list(mc.camera_names)} vs {list(camera_names)}")
    if mc.state_dim != state_dim:
        problems.append(f"state_dim {mc.state_dim} vs {state_dim}")
    if mc.action_dim != action_dim:
        problems.append(f"action_dim {mc.action_dim} vs {action_dim}")
    if problems:
        raise CheckpointError(f"{src} does not fit {where}: " + "; ".join(problems))


def make_payload(model, config_dict: dict, stats: NormStats, joint_names, action_names,
                 layout_version: int, step: int, train_state: dict | None = None,
                 deployment: Deployment | None = None) -> dict:
    """Everything a checkpoint carries, from a (possibly DDP-wrapped) ACT model."""
    model = getattr(model, "module", model)
    mc: ModelConfig = model.cfg
    from act_training.config import Config  # local: config -> checkpoint import order stays one-way

    payload = {
        "model_config": Config(model=mc).to_dict()["model"],
        "config": config_dict,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "norm_stats": stats.to_dict(),
        "camera_names": list(mc.camera_names),
        "joint_names": list(joint_names),
        "action_names": list(action_names),
        "image_size": list(mc.image_size),
        "layout_version": int(layout_version),
        "step": int(step),
    }
    if train_state is not None:
        payload["train_state"] = train_state
    if deployment is not None:
        payload["deployment"] = deployment.to_dict()
    return payload


def write_with_deployment(src: str | Path, dst: str | Path, deployment: Deployment) -> Path:
    """Copy checkpoint `src` to `dst` (atomically) with `deployment` as its stored defaults."""
    data = load_checkpoint(src)
    payload = {k: v for k, v in data.items()
               if k not in ("format", "format_version", "path", "train_state") and not k.endswith("_obj")}
    payload["deployment"] = deployment.to_dict()
    return save_checkpoint(dst, payload)
