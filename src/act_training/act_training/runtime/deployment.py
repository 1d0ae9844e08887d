"""Deployment defaults stored in the checkpoint: how the policy was evaluated, so every consumer
(act_evaluate, the policy node, the ROS evaluator, the launch files) runs it the same way unless
told otherwise.

    checkpoint["deployment"] = {
      "execution": "ensemble" | "chunked",   # executor kind
      "k": 0.01,                             # ensemble weight exp(-k*i), i = 0 the oldest
      "query_period": 1,                     # ensemble: query every N control steps
      "n_execute": None,                     # chunked: actions per query (None = the whole chunk)
      "frame_size": [H, W],                  # camera frames to render / publish (px)
      "camera_names": [...], "joint_names": [...],
    }

Checkpoints written before this field existed load with `Deployment.defaults_for(ckpt)`: the
executor defaults below, the model's `frame_size`, the checkpoint's camera and joint names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

EXECUTIONS = ("chunked", "ensemble")


class DeploymentError(ValueError):
    """A deployment field has an invalid value (the message names the field)."""


@dataclass(frozen=True)
class Deployment:
    """Executor and sensor settings the policy was evaluated with (see module docstring)."""

    execution: str = "ensemble"
    k: float = 0.01
    query_period: int = 1
    n_execute: int | None = None
    frame_size: tuple[int, int] | None = None
    camera_names: tuple[str, ...] = ()
    joint_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.execution not in EXECUTIONS:
            raise DeploymentError(f"deployment.execution: expected one of {EXECUTIONS}, "
                                  f"got {self.execution!r}")
        if int(self.query_period) < 1:
            raise DeploymentError(f"deployment.query_period: expected >= 1, got {self.query_period}")
        if self.n_execute is not None and int(self.n_execute) < 1:
            raise DeploymentError(f"deployment.n_execute: expected None or >= 1, got {self.n_execute}")
        if float(self.k) < 0:
            raise DeploymentError(f"deployment.k: expected >= 0, got {self.k}")
        if self.frame_size is not None and (len(self.frame_size) != 2 or min(self.frame_size) < 1):
            raise DeploymentError(f"deployment.frame_size: expected [H, W] >= 1, got {self.frame_size}")
        object.__setattr__(self, "k", float(self.k))
        object.__setattr__(self, "query_period", int(self.query_period))
        object.__setattr__(self, "n_execute", None if self.n_execute is None else int(self.n_execute))
        if self.frame_size is not None:
            object.__setattr__(self, "frame_size", (int(self.frame_size[0]), int(self.frame_size[1])))
        object.__setattr__(self, "camera_names", tuple(str(c) for c in self.camera_names))
        object.__setattr__(self, "joint_names", tuple(str(j) for j in self.joint_names))

    def executor_kwargs(self) -> dict:
        """Keyword arguments of `make_executor` besides mode and sizes."""
        return {"n_execute": self.n_execute, "k": self.k, "query_period": self.query_period}

    def to_dict(self) -> dict:
        """Plain containers only (checkpoints load with weights_only=True)."""
        d = asdict(self)
        d["frame_size"] = list(self.frame_size) if self.frame_size is not None else None
        d["camera_names"], d["joint_names"] = list(self.camera_names), list(self.joint_names)
        return d

    @classmethod
    def from_dict(cls, d: dict, base: Deployment | None = None) -> Deployment:
        """Fields of `d` over `base` (default: the class defaults); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DeploymentError(f"deployment: unknown fields {unknown} (known: {sorted(known)})")
        return replace(base or cls(), **d)

    @classmethod
    def defaults_for(cls, ckpt: dict) -> Deployment:
        """What a checkpoint without a `deployment` field is run with."""
        mc = ckpt["model_config_obj"]
        return cls(frame_size=mc.frame_size, camera_names=tuple(ckpt["camera_names"]),
                   joint_names=tuple(ckpt["joint_names"]))

    @classmethod
    def of_checkpoint(cls, ckpt: dict) -> Deployment:
        """The checkpoint's stored defaults, completed by `defaults_for` for absent fields."""
        return cls.from_dict(dict(ckpt.get("deployment") or {}), cls.defaults_for(ckpt))
