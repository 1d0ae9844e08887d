"""The result of an evaluation, the same type for every evaluator.

`act_evaluate` (in-process rollouts, `evaluation.rollouts`) and `mirror_arm_ros_eval` (the ROS
loop, `evaluation.ros_eval`) both return an `EvalResult` and write `EvalResult.to_dict()` as
their `--json`, so two runs compare seed by seed. numpy only: no torch, no ROS.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from mirror_arm_sim.stats import wilson_interval

__all__ = ["EvalResult", "wilson_interval"]


@dataclass
class EvalResult:
    """Per-trial outcome of one (arm, executor, mirror) evaluation."""

    arm: int
    mode: str
    mirror: bool  # True only when arm 1 is driven through the mirror map
    seeds: list[int] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    final_qpos: list[list[float]] = field(default_factory=list)  # in the POLICY's frame (mirrored on arm 1)
    wall_time_s: float = 0.0
    executor: dict = field(default_factory=dict)  # {"mode", "n_execute", "k", "query_period"}
    timeouts: list[int] = field(default_factory=list)  # ROS loop: seeds whose episode never ended
    command: str = "position"  # how actions reached the arm (EvalConfig.command)
    # per trial: RMS jerk (rad/s^3) of the six arm joints, measured at the physics rate; empty
    # unless EvalConfig.measure_jerk
    jerk_rms: list[float] = field(default_factory=list)

    @property
    def n_trials(self) -> int:
        return len(self.successes)

    @property
    def n_success(self) -> int:
        return int(sum(self.successes))

    @property
    def success_rate(self) -> float:
        """Fraction of trials that succeeded, in [0, 1] (0 with no trials)."""
        return self.n_success / self.n_trials if self.n_trials else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        """95 % Wilson interval of the success rate, (low, high) in [0, 1]."""
        return wilson_interval(self.n_success, self.n_trials)

    @property
    def label(self) -> str:
        """Short name 'arm<k>-<mode>-mirror|raw'."""
        return f"arm{self.arm}-{self.mode}-{'mirror' if self.mirror else 'raw'}"

    def to_dict(self) -> dict:
        """The fields plus the derived counts, rate, interval, label and mean length (JSON-ready)."""
        d = asdict(self)
        d.update(
            n_trials=self.n_trials, n_success=self.n_success, success_rate=self.success_rate,
            ci95=list(self.ci95), label=self.label,
            mean_length=float(np.mean(self.lengths)) if self.lengths else 0.0,
        )
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EvalResult:
        """The inverse of to_dict (derived keys are ignored)."""
        keys = {"arm", "mode", "mirror", "seeds", "successes", "lengths", "videos", "final_qpos",
                "wall_time_s", "executor", "timeouts", "command", "jerk_rms"}
        return cls(**{k: v for k, v in d.items() if k in keys})

    def write_json(self, path: str | Path) -> Path:
        """`to_dict()` as JSON at `path`, atomically (a temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        os.replace(tmp, path)
        return path

    def summary(self) -> str:
        """One line: label, successes/trials, rate with its 95 % interval, mean length, wall time."""
        lo, hi = self.ci95
        return (f"{self.label}: {self.n_success}/{self.n_trials} = {self.success_rate:.1%} "
                f"(95% CI {lo:.1%}-{hi:.1%}), mean length {np.mean(self.lengths or [0]):.0f}, "
                f"{self.wall_time_s:.0f}s")
