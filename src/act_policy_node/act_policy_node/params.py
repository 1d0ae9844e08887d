"""The policy node's parameters as one typed, validated object (ROS-free).

Every field of `NodeParams` is a ROS parameter of the same name: its type, default, description
and whether it is `read_only` are declared here, once (the node declares them from this table,
docs/ros.md lists them, tests check both). `read_only` parameters take effect when the node is
configured (checkpoint, topics, executor, limits, rates); `ros2 param set` refuses to change them
instead of silently changing nothing. The others (`DYNAMIC`) are applied at once.

`NodeParams.from_values(values)` validates what does not need the checkpoint and raises
`NodeConfigError` naming the parameter, the expected and the found value; `check_against(...)`
does the checks that need the policy's dimensions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

__all__ = ["NodeConfigError", "NodeParams", "DYNAMIC", "FROM_CHECKPOINT", "COMMAND_TYPES", "EXECUTIONS"]

COMMAND_TYPES = ("float64_array", "joint_trajectory")
EXECUTIONS = ("chunked", "ensemble")
ON_STALE = ("hold", "silent")
TICK_SOURCES = ("timer", "joint_states")
LIMIT_SOURCES = ("cell", "params", "none")


class NodeConfigError(RuntimeError):
    """A parameter or checkpoint problem: the node cannot be configured."""


def _p(default, doc: str, read_only: bool = True):
    """A parameter field: default, description, read_only (list defaults are copied per instance)."""
    meta = {"doc": doc, "read_only": read_only}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class NodeParams:
    """The node's parameters (see the module docstring); descriptions are the ROS descriptions."""

    checkpoint: str = _p("", "Policy checkpoint (.pt) written by act_train. Required.")
    device: str = _p("cpu", "torch device for inference (cpu, cuda, cuda:1, ...).")
    backend: str = _p("torch", "Inference backend: 'torch' (eager), 'jit' (frozen TorchScript), 'onnx' "
                               "(ONNX Runtime, exported next to the checkpoint on first use) or "
                               "'onnx_int8' (onnx with an int8 transformer: faster, not bit-close); "
                               "see docs/performance.md for what each costs.")
    arm: int = _p(0, "Arm the node drives. With mirror=true, arm 1 is driven through the mirror map by a "
                     "policy trained on arm 0 (policy sees mirror(obs), arm gets mirror(action)).")
    mirror: bool = _p(True, "Apply the mirror map on arm 1 (false: raw observations/actions, the control).")
    mirror_map: str = _p("", "Mirror map YAML; empty = the cell's (mirror_arm_sim/config/mirror_map.yaml).")
    joint_names: list[str] = _p([], "Robot joint names in the policy's action order, picked by name from "
                                    "joint_states. Empty: arm<arm>_<policy joint> (the MuJoCo bridge's "
                                    "names).")
    camera_topics: list[str] = _p([], "Image topic per policy camera (checkpoint order). "
                                      "Empty: camera/<name>/image_raw.")
    control_rate: float = _p(50.0, "Control tick rate in Hz (timer mode).")
    tick_source: str = _p("timer", "What starts a control tick: 'timer' (a wall-clock timer at control_rate) "
                                   "or 'joint_states' (ticks are due every 1/control_rate s and the first "
                                   "joint state within 0.3 periods of a due tick starts it: the command is "
                                   "computed from that observation and published as soon as the policy has "
                                   "answered, instead of at the next timer tick; the timer then holds the "
                                   "arm on stale inputs and starts a tick itself when the joint states "
                                   "are 1.25 periods late). Lockstep mode ignores it.")
    encode_on_arrival: bool = _p(True, "Run the image half of the network (the trunk) once per camera frame, "
                                       "on its own thread, when the frame arrives, and only the transformer "
                                       "per query (the chunk is the same). false: the whole network per "
                                       "query, on the newest frames. Lockstep mode always runs it whole.")
    execution: str = _p("", "Chunk execution: 'chunked' or 'ensemble' (ACT temporal ensembling); empty = "
                            "the checkpoint's deployment default (resolved at configure and set back).")
    ensemble_k: float = _p(-1.0, "Ensemble weight w_i = exp(-k*i), i = 0 the oldest prediction; < 0 = the "
                                 "checkpoint's.")
    query_period: int = _p(0, "Ensemble: query the policy every N ticks; 0 = the checkpoint's.")
    n_execute: int = _p(-1, "Chunked: actions executed per chunk (0 = the whole chunk, -1 = the "
                            "checkpoint's). In timer mode with prefetch the next query starts `lookahead` "
                            "ticks earlier, so 0 means: query after chunk - lookahead actions (at least 1).")
    prefetch: bool = _p(True, "Chunked, timer mode: request the next chunk `lookahead` ticks before the "
                              "executed part of the current one runs out; the new chunk replaces the old "
                              "one, aligned. lookahead = ceil(EMA of the measured inference s x "
                              "control_rate) + prefetch_margin_ticks. false: query only once it has run out. "
                              "Lockstep mode never prefetches.")
    prefetch_margin_ticks: int = _p(1, "Prefetch: ticks added to the inference time in ticks (>= 0).")
    command_type: str = _p("float64_array", "Command message: 'float64_array' (std_msgs/Float64MultiArray, "
                                            "forward position controller) or 'joint_trajectory' (one point "
                                            "per tick).")
    trajectory_time_from_start: float = _p(0.0, "joint_trajectory: the point's time_from_start in s "
                                                "(0 = one tick).")
    trajectory_points: int = _p(1, "joint_trajectory: points per message. 1 = this tick's command. N > 1 "
                                   "= this tick's command and the executor's next planned actions (up to "
                                   "N, rate-limited in a chain), point k at k ticks, with velocities, so "
                                   "a JointTrajectoryController splines through them (docs/ros.md).")
    lockstep: bool = _p(False, "Tick once per complete observation (all inputs with the same header stamp) "
                               "instead of a timer; inference is awaited. For deterministic evaluation with "
                               "the MuJoCo bridge in lockstep mode.")
    autostart: bool = _p(False, "Configure and activate at start-up (simulation, plain processes). false: "
                                "wait for the lifecycle transitions (ros2 lifecycle set / a launch file).")
    autoconfigure: bool = _p(False, "Configure at start-up and stay inactive until activated (physical "
                                    "arms: policy_node.launch.py sets it). Unlike a launch file's configure "
                                    "event, no change_state service call whose request can be lost while "
                                    "DDS discovery is incomplete. Implied by autostart.")
    enabled_on_start: bool = _p(True, "Commands enabled on activation. false: also wait for ~/enable "
                                      "(std_srvs/SetBool) once active.")
    stale_timeout: float = _p(0.25, "An input older than this (s, wall clock since receipt; also a frozen "
                                    "or backwards header stamp) stops the policy (<= 0: never).",
                              read_only=False)
    on_stale: str = _p("hold", "When inputs are stale or invalid: 'hold' re-publishes the held command, "
                               "'silent' publishes nothing.", read_only=False)
    joint_limits_source: str = _p("cell", "'cell' (mirror_arm_sim cell limits of the arm), 'params' "
                                          "(joint_lower_limits/joint_upper_limits) or 'none'.")
    joint_lower_limits: list[float] = _p([], "Lower joint limits (action order), source params.")
    joint_upper_limits: list[float] = _p([], "Upper joint limits (action order), source params.")
    max_step: list[float] = _p([0.0], "Largest change of a joint command per tick (rad or m): one value for "
                                      "every joint or one per joint in action order (the gripper has "
                                      "another range); <= 0: unlimited.")
    require_rate_limit: bool = _p(False, "Refuse to configure unless every joint has max_step > 0 "
                                         "(physical arms).")
    max_tracking_error: list[float] = _p([0.0], "Largest |command - measured position| per joint (one value "
                                                "or one per joint); exceeded -> HOLDING. <= 0: not checked.")
    inference_timeout: float = _p(1.0, "Timer mode: an inference running longer than this (s) -> HOLDING "
                                       "until re-enabled (<= 0: never).")
    max_inference_failures: int = _p(3, "Consecutive failed inferences -> HOLDING until re-enabled (>= 1).")
    executor_threads: int = _p(1, "ROS executor threads: 1 = SingleThreadedExecutor, N > 1 = "
                                  "MultiThreadedExecutor (timer, inputs and services in separate callback "
                                  "groups). Inference always runs on its own worker thread.")
    inference_threads: int = _p(0, "torch intra-op threads of the inference worker (0: cores - 1, at "
                                   "least 1, leaving a core to the ROS callbacks).")
    realtime_priority: int = _p(0, "SCHED_FIFO priority (1-99) of the inference worker thread, which runs "
                                   "the policy's queries, so that the CPU's other work (the image "
                                   "encoder, DDS, other processes) cannot delay a command; 0 = normal "
                                   "scheduling. Linux; needs root, CAP_SYS_NICE or an rtprio limit "
                                   "(limits.conf). Refused: a warning, and normal scheduling. With "
                                   "inference_threads > 1 the backend's pool threads keep normal priority.")
    status_rate: float = _p(5.0, "PolicyStatus publication rate in Hz (also published on every mode change).")
    diagnostics_rate: float = _p(1.0, "/diagnostics (diagnostic_msgs/DiagnosticArray) rate in Hz "
                                      "(<= 0: off).")
    warn_throttle_s: float = _p(2.0, "Minimum interval between repeated input warnings (s).", read_only=False)

    @classmethod
    def specs(cls) -> list[tuple[str, object, str, bool]]:
        """(name, default, description, read_only) of every parameter, in declaration order."""
        out = []
        for f in fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default
            out.append((f.name, default, f.metadata["doc"], f.metadata["read_only"]))
        return out

    @classmethod
    def from_values(cls, values: dict) -> NodeParams:
        """Build from {name: value} (missing names keep their defaults) and validate."""
        p = cls(**{k: v for k, v in values.items() if k in {f.name for f in fields(cls)}})
        p.validate()
        return p

    def validate(self) -> None:
        """Checks that need no checkpoint; raises NodeConfigError naming the parameter."""
        def bad(name: str, expected: str) -> NodeConfigError:
            return NodeConfigError(f"parameter {name}: expected {expected}, got {getattr(self, name)!r}")

        from act_training.runtime.backends import BACKENDS

        for name, choices in (("execution", ("", *EXECUTIONS)), ("command_type", COMMAND_TYPES),
                              ("backend", BACKENDS), ("tick_source", TICK_SOURCES),
                              ("on_stale", ON_STALE), ("joint_limits_source", LIMIT_SOURCES)):
            if getattr(self, name) not in choices:
                raise bad(name, f"one of {list(choices)}")
        if self.arm not in (0, 1):
            raise bad("arm", "0 or 1")
        if not (self.control_rate > 0 and math.isfinite(self.control_rate)):
            raise bad("control_rate", "a rate > 0 Hz")
        for name in ("prefetch_margin_ticks", "inference_threads", "query_period"):
            if getattr(self, name) < 0:
                raise bad(name, ">= 0")
        if not 0 <= self.realtime_priority <= 99:
            raise bad("realtime_priority", "0 (off) or a SCHED_FIFO priority 1-99")
        if self.n_execute < -1:
            raise bad("n_execute", ">= -1")
        for name in ("executor_threads", "max_inference_failures", "trajectory_points"):
            if getattr(self, name) < 1:
                raise bad(name, ">= 1")
        for name in ("max_step", "max_tracking_error"):
            v = getattr(self, name)
            if len(v) == 0 or any(math.isnan(x) for x in v):
                raise bad(name, "one value or one per joint, no NaN")
        if self.require_rate_limit and any(not (0 < x < math.inf) for x in self.max_step):
            raise bad("max_step", "a finite step > 0 for every joint (require_rate_limit is true: a physical "
                                  "arm must not be commanded at an unlimited rate)")
        lo, hi = self.joint_lower_limits, self.joint_upper_limits
        if self.joint_limits_source == "params" and len(lo) != len(hi):
            raise NodeConfigError(f"parameters joint_lower_limits / joint_upper_limits: expected as many "
                                  f"values each, got {len(self.joint_lower_limits)} / "
                                  f"{len(self.joint_upper_limits)}")

    def per_joint(self, name: str, dim: int) -> list[float]:
        """A one-or-per-joint list parameter expanded to `dim` values (NodeConfigError if neither)."""
        v = [float(x) for x in getattr(self, name)]
        if len(v) == 1:
            return v * dim
        if len(v) != dim:
            raise NodeConfigError(f"parameter {name}: expected 1 or {dim} values (one per joint), "
                                  f"got {len(v)}")
        return v

    def check_against(self, action_dim: int) -> None:
        """Checks that need the policy's action dimension."""
        self.per_joint("max_step", action_dim)
        self.per_joint("max_tracking_error", action_dim)
        if self.joint_names and len(self.joint_names) != action_dim:
            raise NodeConfigError(f"parameter joint_names: expected {action_dim} names (the policy's "
                                  f"joints), got {len(self.joint_names)} {self.joint_names}")
        if self.joint_limits_source == "params" and len(self.joint_lower_limits) != action_dim:
            raise NodeConfigError(f"parameters joint_lower_limits / joint_upper_limits: expected "
                                  f"{action_dim} values each, got {len(self.joint_lower_limits)} / "
                                  f"{len(self.joint_upper_limits)}")


# Executor parameters whose "from the checkpoint" value configure resolves and sets back (so
# `ros2 param get` and the ROS evaluator see what runs); declared writable for that, the node
# refuses any other change to them.
FROM_CHECKPOINT = ("execution", "ensemble_k", "query_period", "n_execute")

DYNAMIC = frozenset(name for name, _, _, ro in NodeParams.specs() if not ro)
