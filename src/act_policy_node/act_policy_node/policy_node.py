"""rclpy node running an ACT policy on an arm (or, through the mirror map, on its mirror).

Thin ROS glue: safety and the inference worker live in the ROS-free modules `safety` and
`engine`; decoding, joint picking, the mirror / crop / resize pipeline and the executors are
act_training's runtime (`sensors`, `pipeline`, `executors`), shared with the evaluator.
Topics (relative, remap them): camera/<name>/image_raw (sensor_msgs/Image, sensor-data QoS),
joint_states (sensor_msgs/JointState), commands (std_msgs/Float64MultiArray or
trajectory_msgs/JointTrajectory), action_chunk (act_msgs/ActionChunk), status
(act_msgs/PolicyStatus). Services: ~/enable (std_srvs/SetBool), ~/reset (std_srvs/Trigger).
See docs/ros.md for every parameter and the two timing modes (timer / lockstep).
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections import deque

import numpy as np
import rclpy
from act_training.runtime.sensors import InputError, JointSelector, decode_image, default_joint_names
from builtin_interfaces.msg import Duration
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from act_msgs.msg import ActionChunk, PolicyStatus
from act_policy_node.engine import InferenceRequest, InferenceResult, InferenceWorker, PrefetchPlanner
from act_policy_node.safety import CommandLimiter, StalenessMonitor

COMMAND_TYPES = ("float64_array", "joint_trajectory")
MODE_NAMES = {PolicyStatus.MODE_IDLE: "idle", PolicyStatus.MODE_RUNNING: "running",
              PolicyStatus.MODE_HOLDING: "holding", PolicyStatus.MODE_WAITING: "waiting"}

# name -> (default or Parameter.Type for "optional", description)
PARAMETERS: dict[str, tuple[object, str]] = {
    "checkpoint": ("", "Policy checkpoint (.pt) written by act_train. Required."),
    "device": ("cpu", "torch device for inference (cpu, cuda, cuda:1, ...)."),
    "arm": (0, "Arm the node drives. With mirror=true, arm 1 is driven through the mirror map by a "
               "policy trained on arm 0 (policy sees mirror(obs), arm gets mirror(action))."),
    "mirror": (True, "Apply the mirror map on arm 1 (false: raw observations/actions, the control)."),
    "mirror_map": ("", "Mirror map YAML; empty = the cell's (mirror_arm_sim/config/mirror_map.yaml)."),
    "joint_names": (Parameter.Type.STRING_ARRAY,
                    "Robot joint names in the policy's action order, picked by name from joint_states. "
                    "Default: arm<arm>_<policy joint> (the MuJoCo bridge's names)."),
    "camera_topics": (Parameter.Type.STRING_ARRAY,
                      "Image topic per policy camera (checkpoint order). Default: camera/<name>/image_raw."),
    "control_rate": (50.0, "Control tick rate in Hz (timer mode)."),
    "execution": ("ensemble", "Chunk execution: 'chunked' or 'ensemble' (ACT temporal ensembling)."),
    "ensemble_k": (0.01, "Ensemble weight w_i = exp(-k*i), i = 0 the oldest prediction."),
    "query_period": (1, "Ensemble: query the policy every N ticks."),
    "n_execute": (0, "Chunked: actions executed per chunk (0 = the whole chunk). In timer mode with "
                     "prefetch the next query starts `lookahead` ticks earlier, so 0 means: query "
                     "after chunk - lookahead actions (at least 1)."),
    "prefetch": (True, "Chunked, timer mode: request the next chunk `lookahead` ticks before the executed "
                       "part of the current one runs out; the new chunk replaces the old one, aligned. "
                       "lookahead = ceil(EMA of the measured inference s x control_rate) + "
                       "prefetch_margin_ticks. false: query only once it has run out (every inference "
                       "then costs missed ticks). Lockstep mode never prefetches."),
    "prefetch_margin_ticks": (1, "Prefetch: ticks added to the inference time in ticks (>= 0)."),
    "command_type": ("float64_array", "Command message: 'float64_array' (std_msgs/Float64MultiArray, "
                                      "forward position controller) or 'joint_trajectory'."),
    "trajectory_time_from_start": (0.0, "JointTrajectory point time_from_start in s (0 = one tick)."),
    "lockstep": (False, "Tick once per complete observation (all inputs with the same header stamp) "
                        "instead of a timer; inference is awaited. For deterministic evaluation with "
                        "the MuJoCo bridge in lockstep mode."),
    "enabled_on_start": (False, "Start enabled (sim). Physical arms: false, enable via ~/enable."),
    "stale_timeout": (0.25, "An input older than this (s, wall clock) stops the policy (<= 0: never)."),
    "on_stale": ("hold", "When inputs are stale or invalid: 'hold' re-publishes the last command, "
                         "'silent' publishes nothing."),
    "joint_limits_source": ("cell", "'cell' (mirror_arm_sim cell limits of the arm), 'params' "
                                    "(joint_lower_limits/joint_upper_limits) or 'none'."),
    "joint_lower_limits": (Parameter.Type.DOUBLE_ARRAY, "Lower joint limits (action order), source params."),
    "joint_upper_limits": (Parameter.Type.DOUBLE_ARRAY, "Upper joint limits (action order), source params."),
    "max_step": (0.0, "Largest change of a joint command per tick (rad or m; <= 0: unlimited)."),
    "executor_threads": (1, "ROS executor threads: 1 = SingleThreadedExecutor, N > 1 = MultiThreadedExecutor "
                            "(timer, inputs and services in separate callback groups). Inference always "
                            "runs on its own worker thread."),
    "status_rate": (5.0, "PolicyStatus publication rate in Hz (also published on every mode change)."),
    "warn_throttle_s": (2.0, "Minimum interval between repeated input warnings (s)."),
}


class NodeConfigError(RuntimeError):
    """A parameter or checkpoint problem detected at start-up."""


def _cell_limits(arm: int, action_names) -> tuple[list[float], list[float]]:
    from mirror_arm_sim.cell import ARM_JOINTS, default_cell

    limits = default_cell().arm_spec(int(arm)).limits
    lo, hi = [], []
    for i, name in enumerate(action_names):
        j = ARM_JOINTS.index(name) if name in ARM_JOINTS else i
        lo.append(float(limits[j][0]))
        hi.append(float(limits[j][1]))
    return lo, hi


class ACTPolicyNode(Node):
    """See module docstring."""

    def __init__(self, runtime=None, **kwargs) -> None:
        super().__init__("act_policy_node", **kwargs)
        for name, (default, desc) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=desc))
        p = self._read_parameters()
        self.p = p
        self.runtime = runtime if runtime is not None else self._load_runtime(p)
        rt = self.runtime
        self.C, self.A = int(rt.chunk_size), int(rt.action_dim)
        self.cameras = list(rt.camera_names)
        self.action_names = list(getattr(rt, "action_names", None) or rt.joint_names)
        self.arm = int(p["arm"])
        mm = None
        if self.arm == 1 and p["mirror"]:
            from mirror_arm_sim.mirror_map import load_mirror_map

            mm = load_mirror_map(p["mirror_map"] or None)
            if mm.dim != self.A:
                raise NodeConfigError(f"mirror map has {mm.dim} joints, the policy {self.A}")
        # robot <-> policy frame; frames of any size go to the runtime, whose pipeline crops and resizes
        self.view = rt.pipeline.with_mirror(mm)
        self.joint_names = p["joint_names"] or default_joint_names(self.arm, self.action_names)
        if len(self.joint_names) != self.A:
            raise NodeConfigError(f"parameter joint_names has {len(self.joint_names)} names "
                              f"{self.joint_names}, the policy acts on {self.A} joints {self.action_names}")
        if int(getattr(rt, "state_dim", self.A)) != self.A:
            raise NodeConfigError("the node needs state_dim == action_dim (qpos, action: same joints)")
        self.selector = JointSelector(self.joint_names, what="joint_states",
                                      hint="set the 'joint_names' parameter to the robot's names")
        topics = p["camera_topics"] or [f"camera/{c}/image_raw" for c in self.cameras]
        if len(topics) != len(self.cameras):
            raise NodeConfigError(f"camera_topics has {len(topics)} entries, "
                              f"the policy uses cameras {self.cameras}")
        if p["execution"] not in ("chunked", "ensemble"):
            raise NodeConfigError(f"execution must be 'chunked' or 'ensemble', got {p['execution']!r}")
        if p["command_type"] not in COMMAND_TYPES:
            raise NodeConfigError(f"command_type must be one of {COMMAND_TYPES}, got {p['command_type']!r}")
        if p["on_stale"] not in ("hold", "silent"):
            raise NodeConfigError(f"on_stale must be 'hold' or 'silent', got {p['on_stale']!r}")
        if p["control_rate"] <= 0:
            raise NodeConfigError("control_rate must be > 0")
        if p["prefetch_margin_ticks"] < 0:
            raise NodeConfigError(f"prefetch_margin_ticks must be >= 0, got {p['prefetch_margin_ticks']}")
        from act_training.runtime.executors import make_executor

        try:
            self.act_executor = make_executor(p["execution"], self.C, self.A,
                                              n_execute=p["n_execute"] or None,
                                              k=p["ensemble_k"], query_period=p["query_period"])
        except ValueError as e:
            raise NodeConfigError(str(e)) from None
        # chunked on a timer: query `lookahead` ticks before the executed part runs out (docs/ros.md)
        self._prefetch = p["execution"] == "chunked" and bool(p["prefetch"]) and not p["lockstep"]
        self.prefetch = PrefetchPlanner(p["control_rate"], p["prefetch_margin_ticks"])
        self.limiter = self._make_limiter(p)
        self.dt = 1.0 / p["control_rate"]
        self.input_names = [f"camera:{c}" for c in self.cameras] + ["joint_states"]
        self.monitor = StalenessMonitor(self.input_names, p["stale_timeout"])

        # --- state (guarded by self._lock) ---------------------------------------------------
        self._lock = threading.RLock()
        self._warned: dict[str, float] = {}
        self._images: dict[str, tuple[np.ndarray, int]] = {}  # camera -> (rgb, stamp ns)
        self._qpos: tuple[np.ndarray, int] | None = None
        self._enabled = bool(p["enabled_on_start"])
        self._mode = PolicyStatus.MODE_IDLE if not self._enabled else PolicyStatus.MODE_WAITING
        self._mode_msg = "disabled" if not self._enabled else "waiting for inputs"
        self._generation = 0
        self._last_cmd: np.ndarray | None = None
        self._answered_stamp = -1
        self._seq = 0
        self._ticks = 0
        self._missed = 0
        self._late_ticks = 0
        self._rejected = 0
        self._inference_ms = 0.0
        self._last_tick_t: float | None = None
        self._latency_from: float | None = None  # receipt time of the obs behind the newest chunk
        self.latencies_ms: deque[float] = deque(maxlen=5000)

        # --- ROS interfaces --------------------------------------------------------------------
        self._cb_inputs = MutuallyExclusiveCallbackGroup()
        self._cb_timer = MutuallyExclusiveCallbackGroup()
        self._cb_misc = MutuallyExclusiveCallbackGroup()
        for cam, topic in zip(self.cameras, topics):
            self.create_subscription(Image, topic, lambda m, c=cam: self._on_image(c, m),
                                     qos_profile_sensor_data, callback_group=self._cb_inputs)
        self.create_subscription(JointState, "joint_states", self._on_joint_state, QoSProfile(depth=10),
                                 callback_group=self._cb_inputs)
        cmd_type = Float64MultiArray if p["command_type"] == "float64_array" else JointTrajectory
        self.cmd_pub = self.create_publisher(cmd_type, "commands", 10)
        self.chunk_pub = self.create_publisher(ActionChunk, "action_chunk", 10)
        self.status_pub = self.create_publisher(PolicyStatus, "status", 10)
        self.create_service(SetBool, "~/enable", self._on_enable, callback_group=self._cb_misc)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=self._cb_misc)
        self.worker = InferenceWorker(rt.predict_chunk, on_result=self._on_inference)
        if not p["lockstep"]:
            self.timer = self.create_timer(self.dt, self._on_tick, callback_group=self._cb_timer)
        if p["status_rate"] > 0:
            self.create_timer(1.0 / p["status_rate"], self._publish_status, callback_group=self._cb_misc)
        timing = "lockstep" if p["lockstep"] else f"{p['control_rate']:.0f} Hz"
        self.get_logger().info(
            f"ACT policy on arm {self.arm}{' (mirrored)' if self.view.mirror.mirrored else ''}: "
            f"{p['execution']}{' (prefetch)' if self._prefetch else ''} C={self.C} A={self.A} "
            f"cameras={self.cameras} joints={self.joint_names} "
            f"{timing} limits={'on' if self.limiter.enabled else 'off'} enabled={self._enabled}")

    # ------------------------------------------------------------------------------------------
    # set-up helpers
    # ------------------------------------------------------------------------------------------
    def _read_parameters(self) -> dict:
        out = {}
        for name, (default, _) in PARAMETERS.items():
            try:
                out[name] = self.get_parameter(name).value
            except ParameterUninitializedException:
                out[name] = []
            if isinstance(default, Parameter.Type) and out[name] is None:
                out[name] = []
            if isinstance(out[name], tuple | np.ndarray) or type(out[name]).__name__ == "array":
                out[name] = list(out[name])
        return out

    def _load_runtime(self, p: dict):
        if not p["checkpoint"]:
            raise NodeConfigError("parameter 'checkpoint' is empty: pass the policy file (.pt)")
        from act_training.runtime.policy import ACTPolicyRuntime

        try:
            return ACTPolicyRuntime.load(p["checkpoint"], device=p["device"])
        except Exception as e:  # noqa: BLE001 - CheckpointError, OSError, torch errors: all fatal
            raise NodeConfigError(f"cannot load checkpoint {p['checkpoint']}: {e}") from None

    def _make_limiter(self, p: dict) -> CommandLimiter:
        src = p["joint_limits_source"]
        lo = hi = None
        if src == "cell":
            lo, hi = _cell_limits(self.arm, self.action_names)
        elif src == "params":
            lo, hi = p["joint_lower_limits"], p["joint_upper_limits"]
            if len(lo) != self.A or len(hi) != self.A:
                raise NodeConfigError(f"joint_lower_limits/joint_upper_limits need {self.A} values each, "
                                  f"got {len(lo)}/{len(hi)}")
        elif src != "none":
            raise NodeConfigError(f"joint_limits_source must be cell, params or none, got {src!r}")
        try:
            return CommandLimiter(self.A, lo, hi, p["max_step"] if p["max_step"] > 0 else None)
        except ValueError as e:
            raise NodeConfigError(str(e)) from None

    def _warn(self, text: str, error: bool = False, key: str | None = None) -> None:
        """Throttled per `key` (default: the text up to its first colon), so that different
        problems are each reported while a repeated one is not."""
        key = key or text.split(":")[0]
        now = time.monotonic()
        last = self._warned.get(key)
        if last is not None and now - last < float(self.p["warn_throttle_s"]):
            return
        self._warned[key] = now
        log = self.get_logger()
        (log.error if error else log.warning)(text)

    # ------------------------------------------------------------------------------------------
    # inputs
    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _stamp_ns(header) -> int:
        return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)

    def _on_image(self, camera: str, msg: Image) -> None:
        try:
            img = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        except (InputError, ValueError) as e:
            with self._lock:
                self._rejected += 1
            self._warn(f"camera '{camera}': image rejected: {e}", key=f"image {camera} {str(e)[:24]}")
            return
        with self._lock:
            self._images[camera] = (img, self._stamp_ns(msg.header))
            self.monitor.update(f"camera:{camera}", time.monotonic())
        if self.p["lockstep"]:
            self._lockstep_maybe_tick()

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            q = self.selector.select(list(msg.name), msg.position)
        except InputError as e:
            with self._lock:
                self._rejected += 1
            self._warn(f"joint_states rejected: {e}", error="lacks joints" in str(e), key=f"js {str(e)[:24]}")
            return
        with self._lock:
            self._qpos = (q, self._stamp_ns(msg.header))
            self.monitor.update("joint_states", time.monotonic())
        if self.p["lockstep"]:
            self._lockstep_maybe_tick()

    def _snapshot(self) -> InferenceRequest:
        """Current observation in policy space (call with the lock held, inputs present)."""
        images = {c: self._images[c][0] for c in self.cameras}
        imgs, q = self.view.to_policy(images, self._qpos[0])
        t_obs = max(self.monitor.last(n) or 0.0 for n in self.input_names)
        return InferenceRequest(imgs, q, step=self.act_executor.step, generation=self._generation,
                                stamp=t_obs, context={"stamp_ns": self._qpos[1]})

    # ------------------------------------------------------------------------------------------
    # inference results (worker thread)
    # ------------------------------------------------------------------------------------------
    def _on_inference(self, res: InferenceResult) -> None:
        with self._lock:
            self.prefetch.update(res.inference_s)  # a discarded chunk still measured the inference
            if res.request.generation != self._generation:
                return  # reset while in flight
            self._inference_ms = res.inference_s * 1e3
            if res.chunk is None:
                self._warn(f"inference failed: {res.error}", error=True)
                if self.p["lockstep"]:
                    self._answered_stamp = -1  # let a re-published observation retry
                return
            try:
                self.act_executor.add_chunk(res.chunk, step=res.request.step)
            except ValueError as e:
                self._warn(f"chunk dropped: {e}", error=True)
                return
            self._latency_from = res.request.stamp
            self._publish_chunk(res)
            if self.p["lockstep"]:
                self._emit_step()

    def _publish_chunk(self, res: InferenceResult) -> None:
        msg = ActionChunk()
        ns = int(res.request.context.get("stamp_ns", 0))
        msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
        msg.header.frame_id = f"arm{self.arm}"
        msg.joint_names = list(self.joint_names)
        msg.chunk_length, msg.action_dim = self.C, self.A
        msg.values = self.view.to_robot(res.chunk).astype(np.float64).ravel().tolist()
        msg.executing_step = int(self.act_executor.step)
        self._seq += 1
        msg.sequence = self._seq
        self.chunk_pub.publish(msg)

    # ------------------------------------------------------------------------------------------
    # ticks
    # ------------------------------------------------------------------------------------------
    def _set_mode(self, mode: int, text: str) -> None:
        if mode != self._mode or text != self._mode_msg:
            changed = mode != self._mode
            self._mode, self._mode_msg = mode, text
            if changed:
                self.get_logger().info(f"mode {MODE_NAMES[mode]}: {text}")
                self._publish_status()

    def _reset_execution(self) -> None:
        self.act_executor.reset()
        self._generation += 1
        self._latency_from = None

    def _on_tick(self) -> None:
        """Timer mode: never waits for inference (the worker runs it; results arrive via
        `_on_inference` and are aligned by the executor)."""
        with self._lock:
            now = time.monotonic()
            self._ticks += 1
            if self._last_tick_t is not None and now - self._last_tick_t > 1.5 * self.dt:
                self._late_ticks += 1
            self._last_tick_t = now
            if not self._enabled:
                self._set_mode(PolicyStatus.MODE_IDLE, "disabled")
                return
            stale = self.monitor.stale(now)
            if stale:
                missing = self.monitor.missing()
                if self._last_cmd is None and missing:
                    self._set_mode(PolicyStatus.MODE_WAITING, f"no data yet from {missing}")
                    return
                if self._mode != PolicyStatus.MODE_HOLDING:
                    self._warn(f"inputs stale ({stale}, timeout {self.monitor.timeout}s): "
                               f"{'holding last command' if self.p['on_stale'] == 'hold' else 'silent'}",
                               key="stale")
                    self._reset_execution()  # the chunks were predicted from the old world
                self._set_mode(PolicyStatus.MODE_HOLDING, f"stale inputs {stale}")
                if self.p["on_stale"] == "hold" and self._last_cmd is not None:
                    self._publish_command(self._last_cmd)
                return
            if self._wants_query() and not self.worker.busy:
                self.worker.submit(self._snapshot())
            self._emit_step()

    def _wants_query(self) -> bool:
        """Timer mode: should this tick start an inference? Chunked with prefetch: `lookahead`
        ticks before the executed part of the chunk runs out (the new chunk, predicted from this
        tick's observation, replaces the current one when it arrives, aligned by the executor)."""
        if self._prefetch:
            return self.act_executor.needs_query(lookahead=self.prefetch.lookahead())
        return self.act_executor.needs_query()

    def _emit_step(self) -> None:
        """Take the executor's action for this tick, map, clamp and publish it (lock held)."""
        action = self.act_executor.next_action()
        if action is None:
            self._missed += 1
            if self._last_cmd is None:
                self._set_mode(PolicyStatus.MODE_WAITING, "waiting for the first chunk")
            elif self.p["on_stale"] == "hold":
                self._publish_command(self._last_cmd)
            return
        cmd = self.view.to_robot(action).astype(np.float64)
        prev = self._last_cmd if self._last_cmd is not None else self._qpos[0]
        cmd, clamped = self.limiter.apply(cmd, prev)
        if clamped:
            self._warn(f"command clamped to limits / max_step ({self.limiter.n_clamped} so far)", key="clamp")
        self._publish_command(cmd)
        self._last_cmd = cmd
        if self._latency_from is not None:
            self.latencies_ms.append((time.monotonic() - self._latency_from) * 1e3)
            self._latency_from = None
        self._set_mode(PolicyStatus.MODE_RUNNING, "running")

    def _lockstep_maybe_tick(self) -> None:
        """Lockstep mode: one tick per complete observation (every input carrying the same,
        not yet answered header stamp); the command waits for the inference if one is due."""
        with self._lock:
            if not self._enabled or self._qpos is None or len(self._images) < len(self.cameras):
                return
            stamp = self._qpos[1]
            if stamp <= self._answered_stamp or any(self._images[c][1] != stamp for c in self.cameras):
                return
            self._answered_stamp = stamp
            self._ticks += 1
            if self.act_executor.needs_query():
                self.worker.submit(self._snapshot())  # _on_inference emits the command
            else:
                self._emit_step()

    def _publish_command(self, cmd: np.ndarray) -> None:
        values = [float(v) for v in cmd]
        if self.p["command_type"] == "float64_array":
            msg = Float64MultiArray()
            msg.layout.dim = [MultiArrayDimension(label="joints", size=self.A, stride=self.A)]
            msg.data = values
        else:
            msg = JointTrajectory()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.joint_names = list(self.joint_names)
            t = self.p["trajectory_time_from_start"] or self.dt
            pt = JointTrajectoryPoint(positions=values)
            pt.time_from_start = Duration(sec=int(t), nanosec=int(round((t % 1.0) * 1e9)))
            msg.points = [pt]
        self.cmd_pub.publish(msg)

    # ------------------------------------------------------------------------------------------
    # services and status
    # ------------------------------------------------------------------------------------------
    def _on_enable(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        with self._lock:
            was = self._enabled
            self._enabled = bool(req.data)
            if self._enabled and not was:
                self._reset_execution()
                self._last_cmd = None
                self._set_mode(PolicyStatus.MODE_WAITING, "enabled")
            elif not self._enabled:
                self._set_mode(PolicyStatus.MODE_IDLE, "disabled")
        resp.success, resp.message = True, f"enabled={self._enabled}"
        return resp

    def _on_reset(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self._reset_execution()
            self._last_cmd = None
            if self._enabled:
                self._set_mode(PolicyStatus.MODE_WAITING, "reset")
        resp.success, resp.message = True, f"executor reset (generation {self._generation})"
        return resp

    def latency_summary(self) -> dict:
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        return {
            "ticks": self._ticks, "missed_ticks": self._missed, "late_ticks": self._late_ticks,
            "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else math.nan,
            "latency_p99_ms": float(np.percentile(lat, 99)) if lat.size else math.nan,
            "inference_ms": self._inference_ms, "rejected_inputs": self._rejected,
            "clamped": self.limiter.n_clamped,
            "lookahead_ticks": self.prefetch.lookahead() if self._prefetch else 0,
        }

    def _publish_status(self) -> None:
        with self._lock:
            s = PolicyStatus()
            s.header.stamp = self.get_clock().now().to_msg()
            s.header.frame_id = f"arm{self.arm}"
            s.mode, s.mode_name = self._mode, MODE_NAMES[self._mode]
            s.enabled = self._enabled
            s.execution = self.p["execution"]
            s.arm = self.arm
            s.inference_ms = float(self._inference_ms)
            ages = self.monitor.ages(time.monotonic())
            s.input_ages_s = [float(a) if math.isfinite(a) else -1.0 for a in ages]
            s.input_names = list(self.input_names)
            s.ticks, s.missed_ticks, s.rejected_inputs = self._ticks, self._missed, self._rejected
            st = self.latency_summary()
            s.message = (f"{self._mode_msg}; latency p50 {st['latency_p50_ms']:.1f} ms "
                         f"p99 {st['latency_p99_ms']:.1f} ms; late ticks {self._late_ticks}; "
                         f"clamped {self.limiter.n_clamped}")
            if self._prefetch:
                s.message += f"; prefetch lookahead {st['lookahead_ticks']} ticks"
        self.status_pub.publish(s)

    def destroy_node(self) -> None:
        if getattr(self, "worker", None) is not None:
            self.worker.stop()
        super().destroy_node()


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = ACTPolicyNode()
        n = int(node.p["executor_threads"])
        executor = MultiThreadedExecutor(num_threads=n) if n > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except NodeConfigError as e:
        print(f"[act_policy_node] configuration error: {e}", file=sys.stderr, flush=True)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Ctrl-C under `ros2 launch` arrives twice (the terminal's process group, then the
        # launch's forwarded SIGINT): the second one must not abort the clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None and hasattr(node, "worker"):
            st = node.latency_summary()
            print(f"[act_policy_node] summary: {st}", file=sys.stderr, flush=True)
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
