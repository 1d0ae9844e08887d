"""rclpy lifecycle (managed) node running an ACT policy on an arm (or, mirrored, on its twin).

Lifecycle (the ROS 2 convention for hardware-facing nodes; `ros2 lifecycle set/get`):
  unconfigured --configure--> inactive: loads the checkpoint, checks it against the parameters,
                 creates the topics, services and timers; status is published, no command.
  inactive --activate--> active: commands flow (if enabled, `enabled_on_start` / ~/enable), the
                 inference watchdog and the tracking check run.
  active --deactivate--> inactive: holds: no new command, the controller keeps the last target;
                 the executor is cleared and in-flight chunks are discarded.
  inactive --cleanup--> unconfigured, and shutdown from any state: release the policy and every
                 interface.
`autostart: true` (the simulator's parameter files) makes the node configure and activate itself;
`autoconfigure: true` (set by policy_node.launch.py, physical arms) configures it and leaves
activation to the operator.

Thin ROS glue: the parameters are `params.NodeParams`, safety logic is `safety`, the inference
worker `engine`; decoding, joint picking, the mirror / crop / resize pipeline and the executors are
act_training's runtime, shared with the evaluator.
Topics (relative, remap them): camera/<name>/image_raw (sensor_msgs/Image, sensor-data QoS),
joint_states (sensor_msgs/JointState), commands (std_msgs/Float64MultiArray or
trajectory_msgs/JointTrajectory), action_chunk (act_msgs/ActionChunk), status
(act_msgs/PolicyStatus), /diagnostics (diagnostic_msgs/DiagnosticArray). Services: ~/enable
(std_srvs/SetBool), ~/reset (std_srvs/Trigger). See docs/ros.md.
"""

from __future__ import annotations

import faulthandler
import math
import os
import signal
import sys
import threading
import time
from collections import deque

import numpy as np
import rclpy
from act_training.runtime.sensors import InputError, JointSelector, decode_image, default_joint_names
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from mirror_arm_sim.ros_signals import StopOnSignal
from mirror_arm_sim.trajectory import plan_points
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from act_msgs.msg import ActionChunk, PolicyStatus
from act_policy_node.engine import (
    InferenceRequest,
    InferenceResult,
    InferenceWorker,
    PrefetchPlanner,
    TickTrigger,
    set_normal_priority,
    set_realtime_priority,
)
from act_policy_node.params import DYNAMIC, FROM_CHECKPOINT, NodeConfigError, NodeParams
from act_policy_node.safety import CommandLimiter, InferenceWatchdog, StalenessMonitor, tracking_violation

MODE_NAMES = {PolicyStatus.MODE_IDLE: "idle", PolicyStatus.MODE_RUNNING: "running",
              PolicyStatus.MODE_HOLDING: "holding", PolicyStatus.MODE_WAITING: "waiting"}
DIAGNOSTIC_LEVELS = {PolicyStatus.MODE_RUNNING: DiagnosticStatus.OK,  # else WARN
                     PolicyStatus.MODE_HOLDING: DiagnosticStatus.ERROR}
# The parts of obs -> command (latency_summary "stages_p50_p99_ms"; docs/ros.md "Latency")
STAGES = ("input_to_submit", "queue", "forward", "to_command")
# tick_source joint_states: watch-timer callbacks per control period. A late tick starts within
# an eighth of a period of 1.25 periods (TickTrigger.overdue): before 1.5, the gap a 50 Hz
# controller would see as a missing command.
WATCH_PER_TICK = 8
# realtime_priority > 0: the interpreter's GIL switch interval while active (default 5 ms): a
# real-time thread that waits for the GIL gets it within this, not within 5 ms
REALTIME_SWITCH_INTERVAL_S = 0.0005
# How much lower the image encoders' CPU priority is than the rest of the node's (nice value)
ENCODER_NICENESS = 10
# Parameter types of the list parameters (an empty list default does not tell rclpy its type).
LIST_TYPES = {str: Parameter.Type.STRING_ARRAY, float: Parameter.Type.DOUBLE_ARRAY}

__all__ = ["ACTPolicyNode", "NodeConfigError", "main"]


def _cell_limits(arm: int, action_names) -> tuple[list[float], list[float]]:
    from mirror_arm_sim.cell import ARM_JOINTS, default_cell

    limits = default_cell().arm_spec(int(arm)).limits
    lo, hi = [], []
    for i, name in enumerate(action_names):
        j = ARM_JOINTS.index(name) if name in ARM_JOINTS else i
        lo.append(float(limits[j][0]))
        hi.append(float(limits[j][1]))
    return lo, hi


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class ACTPolicyNode(LifecycleNode):
    """See module docstring. `runtime` (tests, benchmarks) replaces loading `checkpoint`."""

    def __init__(self, runtime=None, **kwargs) -> None:
        super().__init__("act_policy_node", **kwargs)
        self._runtime_given = runtime
        self._resolving = False
        self.p = self._declare_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._lock = threading.RLock()
        self._warned: dict[str, float] = {}
        self._interfaces: list = []      # created by configure, destroyed by cleanup
        self.worker: InferenceWorker | None = None
        self.encoders: dict[str, InferenceWorker] = {}  # policy camera -> its image-half worker
        self.runtime = None
        self._active = False
        self._configured = False
        self._saved_switch_interval: float | None = None  # set while the control path is real-time
        self._reset_counters()

    # ------------------------------------------------------------------------------------------
    # parameters
    # ------------------------------------------------------------------------------------------
    def _declare_parameters(self) -> NodeParams:
        """Declare every NodeParams field (typed, described, read_only) and read them back."""
        values = {}
        for name, default, doc, read_only in NodeParams.specs():
            desc = ParameterDescriptor(description=doc, read_only=read_only and name not in FROM_CHECKPOINT)
            if default == []:  # an empty list does not tell rclpy its type: declare the type
                kind = LIST_TYPES[float if name.endswith("_limits") else str]
                value = self.declare_parameter(name, kind, desc).value
                values[name] = list(value) if value is not None else []
            else:
                value = self.declare_parameter(name, default, desc).value
                values[name] = list(value) if isinstance(default, list) else value
        return NodeParams.from_values(values)

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Only DYNAMIC parameters change after start (the others are read_only); validate them."""
        locked = [p.name for p in params if p.name in FROM_CHECKPOINT and not self._resolving]
        if locked:
            return SetParametersResult(successful=False, reason=f"{locked} take effect at configure only "
                                                                "(read-only while the node runs)")
        trial = NodeParams(**{**vars(self.p), **{p.name: p.value for p in params if p.name in DYNAMIC}})
        try:
            trial.validate()
        except NodeConfigError as e:
            return SetParametersResult(successful=False, reason=str(e))
        with self._lock:
            self.p = trial
            if self._configured:
                self.monitor.timeout = float(trial.stale_timeout)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------------------------
    # lifecycle transitions
    # ------------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Lifecycle configure: load the policy and create the interfaces; FAILURE on a config error."""
        try:
            self._configure()
        except NodeConfigError as e:
            self.config_error = str(e)
            self.get_logger().error(f"configuration error: {e}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Lifecycle activate: start (or wait for ~/enable when enabled_on_start is false)."""
        with self._lock:
            self._active = True
            self._enabled = bool(self.p.enabled_on_start)
            self._clear_hold_and_latch()
            self._reset_execution()
            if self._enabled:
                self._set_mode(PolicyStatus.MODE_WAITING, "active: waiting for inputs")
            else:
                self._set_mode(PolicyStatus.MODE_IDLE, "active, disabled: call ~/enable")
        self._realtime_control_path(True)
        return TransitionCallbackReturn.SUCCESS

    def _realtime_control_path(self, on: bool) -> None:
        """realtime_priority > 0, while active: the executor's thread (the joint states, the ticks)
        under SCHED_FIFO one below the inference worker, and a 0.5 ms GIL switch interval (docs/ros.md
        "Real-time priority"). Called from the transitions, i.e. on the executor's thread; with
        executor_threads > 1 there is no one such thread and this is skipped."""
        p = self.p
        if p.realtime_priority <= 0 or p.executor_threads != 1 or p.lockstep:
            return
        if on and self._saved_switch_interval is None:
            warn = lambda text: self.get_logger().warning(text)  # noqa: E731
            if set_realtime_priority(max(1, p.realtime_priority - 1), warn):
                self._saved_switch_interval = sys.getswitchinterval()
                sys.setswitchinterval(REALTIME_SWITCH_INTERVAL_S)
        elif not on and self._saved_switch_interval is not None:
            set_normal_priority()
            sys.setswitchinterval(self._saved_switch_interval)
            self._saved_switch_interval = None

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Lifecycle deactivate: stop commanding; the controller holds the last target."""
        with self._lock:
            self._active = False
            self._reset_execution()
            self._set_mode(PolicyStatus.MODE_IDLE, "inactive: no commands (the controller holds the last "
                                                   "target)")
        self._realtime_control_path(False)
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Lifecycle cleanup: release what configure created."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Lifecycle shutdown: stop commanding and release everything."""
        with self._lock:
            self._active = False
        self._realtime_control_path(False)
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        """configure, in named steps: load, check, build the execution, create the interfaces."""
        self.runtime = self._load_runtime()
        self._resolve_deployment_defaults(getattr(self.runtime, "deployment", None))
        self._check_policy()
        self._build_execution()
        self._create_interfaces()
        self._configured = True
        with self._lock:
            self._reset_counters()
            self._set_mode(PolicyStatus.MODE_IDLE, "inactive: configured, activate to run")
        p = self.p
        timing = "lockstep" if p.lockstep else f"{p.control_rate:.0f} Hz"
        self.get_logger().info(
            f"ACT policy on arm {p.arm}{' (mirrored)' if self.view.mirror.mirrored else ''}: "
            f"{p.execution}{' (prefetch)' if self._prefetch else ''} C={self.C} A={self.A} "
            f"cameras={self.cameras} joints={self.joint_names} {timing} backend={self.runtime.backend} "
            f"ticks={'lockstep' if p.lockstep else p.tick_source} "
            f"image half {'on arrival' if self._split else 'per query'} "
            f"limits={'on' if self.limiter.enabled else 'off'} enabled_on_start={p.enabled_on_start}")

    def _resolve_deployment_defaults(self, dep) -> None:
        """Executor parameters left at 'from the checkpoint' take the checkpoint's deployment
        defaults (what act_evaluate uses); the resolved values are set back."""
        p = self.p
        if dep is None:  # a runtime without deployment defaults: the executors' own
            from act_training.runtime.deployment import Deployment

            dep = Deployment()
        resolved = {"execution": p.execution or dep.execution,
                    "ensemble_k": p.ensemble_k if p.ensemble_k >= 0 else float(dep.k),
                    "query_period": p.query_period if p.query_period > 0 else int(dep.query_period),
                    "n_execute": p.n_execute if p.n_execute >= 0 else int(dep.n_execute or 0)}
        self._resolving = True
        try:
            self.set_parameters([Parameter(n, value=v) for n, v in resolved.items()])
        finally:
            self._resolving = False
        self.p = NodeParams(**{**vars(p), **resolved})

    def _load_runtime(self):
        if self._runtime_given is not None:
            return self._runtime_given
        if not self.p.checkpoint:
            raise NodeConfigError("parameter checkpoint: expected the policy file (.pt), got ''")
        from act_training.runtime.policy import ACTPolicyRuntime

        threads = _pin_compute_threads(self.p.inference_threads)  # before the backend's sessions exist
        # said before and after: the first onnx load of a checkpoint exports its graphs, which takes
        # seconds to minutes, and an operator (or a CI log) must see which step it is in
        self.get_logger().info(f"configure: loading {self.p.checkpoint} (backend {self.p.backend}, "
                               f"{threads} inference threads)")
        t0 = time.monotonic()
        try:
            rt = ACTPolicyRuntime.load(self.p.checkpoint, device=self.p.device, backend=self.p.backend,
                                       threads=threads)
        except Exception as e:  # noqa: BLE001 - CheckpointError, OSError, torch errors: all fatal
            raise NodeConfigError(f"cannot load checkpoint {self.p.checkpoint}: {e}") from None
        int8 = getattr(rt.network, "int8_deviation", None)  # onnx_int8's check against the float graph
        checked = "" if int8 is None else f"; int8 transformer within {int8:.3g} action std of the float one"
        self.get_logger().info(f"configure: policy loaded in {time.monotonic() - t0:.1f} s{checked}")
        return rt

    def _check_policy(self) -> None:
        """The checkpoint against the parameters: dimensions, names, cameras, mirror map."""
        rt, p = self.runtime, self.p
        self.C, self.A = int(rt.chunk_size), int(rt.action_dim)
        self.cameras = list(rt.camera_names)
        self.action_names = list(getattr(rt, "action_names", None) or rt.joint_names)
        p.check_against(self.A)
        if int(getattr(rt, "state_dim", self.A)) != self.A:
            raise NodeConfigError("the node needs state_dim == action_dim (qpos, action: same joints)")
        mm = None
        if p.arm == 1 and p.mirror:
            from mirror_arm_sim.mirror_map import load_mirror_map

            try:
                mm = load_mirror_map(p.mirror_map or None)
            except (OSError, ValueError) as e:
                raise NodeConfigError(f"parameter mirror_map: cannot load {p.mirror_map!r}: {e}") from None
            if mm.dim != self.A:
                raise NodeConfigError(f"mirror map has {mm.dim} joints, the policy {self.A}")
        # robot <-> policy frame; frames of any size go to the runtime, whose pipeline crops and resizes
        self.view = rt.pipeline.with_mirror(mm)
        self.joint_names = p.joint_names or default_joint_names(p.arm, self.action_names)
        self.selector = JointSelector(self.joint_names, what="joint_states",
                                      hint="set the 'joint_names' parameter to the robot's names")
        self.camera_topics = p.camera_topics or [f"camera/{c}/image_raw" for c in self.cameras]
        if len(self.camera_topics) != len(self.cameras):
            raise NodeConfigError(f"parameter camera_topics: expected {len(self.cameras)} topics (cameras "
                                  f"{self.cameras}), got {len(self.camera_topics)}")

    def _build_execution(self) -> None:
        """Executor, prefetch, limits, watchdogs and the worker thread."""
        from act_training.runtime.executors import make_executor

        p = self.p
        try:
            self.act_executor = make_executor(p.execution, self.C, self.A, n_execute=p.n_execute or None,
                                              k=p.ensemble_k, query_period=p.query_period)
        except ValueError as e:
            raise NodeConfigError(str(e)) from None
        # chunked on a timer: query `lookahead` ticks before the executed part runs out (docs/ros.md)
        self._prefetch = p.execution == "chunked" and p.prefetch and not p.lockstep
        self.prefetch = PrefetchPlanner(p.control_rate, p.prefetch_margin_ticks)
        self.limiter = self._make_limiter()
        self.tracking_limits = p.per_joint("max_tracking_error", self.A)
        self.dt = 1.0 / p.control_rate
        self.input_names = [f"camera:{c}" for c in self.cameras] + ["joint_states"]
        self.monitor = StalenessMonitor(self.input_names, p.stale_timeout)
        self.watchdog = InferenceWatchdog(p.inference_timeout, p.max_inference_failures)
        _pin_compute_threads(p.inference_threads)
        # ticks started by joint states instead of the timer (docs/ros.md "Latency")
        by_joint_states = p.tick_source == "joint_states" and not p.lockstep
        self.trigger = TickTrigger(p.control_rate) if by_joint_states else None
        log_error = lambda text: self.get_logger().error(text)  # noqa: E731
        # split inference: each camera frame's image half runs once, on arrival, on its camera's
        # worker; a query runs only the transformer on the cached tokens (the same chunk)
        self._split = bool(p.encode_on_arrival) and not p.lockstep
        if self._split:
            # at a lower CPU priority: a query's transformer must not wait for a frame's trunk
            self.encoders = {c: InferenceWorker(self._encoder_for(c), on_result=self._on_tokens,
                                                on_error=log_error, niceness=ENCODER_NICENESS,
                                                name=f"act_encode_{c}") for c in self.cameras}
        predict = self._predict_from_tokens if self._split else self.runtime.predict_chunk
        self.worker = InferenceWorker(predict, on_result=self._on_inference, on_error=log_error,
                                      realtime_priority=p.realtime_priority,
                                      on_warning=lambda text: self.get_logger().warning(text))

    def _encoder_for(self, camera: str):
        """An encoder worker's call: the image half of `camera`'s frame (qpos unused)."""
        return lambda images, qpos: self.runtime.encode_image(camera, images[camera])

    def _predict_from_tokens(self, images, qpos) -> np.ndarray:
        """The inference worker's call in split mode: `images` holds each camera's cached tokens."""
        return self.runtime.predict_from_tokens(images, qpos)

    def _make_limiter(self) -> CommandLimiter:
        p = self.p
        lo = hi = None
        if p.joint_limits_source == "cell":
            lo, hi = _cell_limits(p.arm, self.action_names)
        elif p.joint_limits_source == "params":
            lo, hi = p.joint_lower_limits, p.joint_upper_limits
        try:
            return CommandLimiter(self.A, lo, hi, p.per_joint("max_step", self.A))
        except ValueError as e:
            raise NodeConfigError(str(e)) from None

    def _create_interfaces(self) -> None:
        p = self.p
        inputs, timer, misc = (MutuallyExclusiveCallbackGroup() for _ in range(3))
        made = self._interfaces
        for cam, topic in zip(self.cameras, self.camera_topics):
            made.append(self.create_subscription(Image, topic, lambda m, c=cam: self._on_image(c, m),
                                                 qos_profile_sensor_data, callback_group=inputs))
        self.js_sub = self.create_subscription(JointState, "joint_states", self._on_joint_state,
                                               QoSProfile(depth=10), callback_group=inputs)
        made.append(self.js_sub)
        cmd_type = Float64MultiArray if p.command_type == "float64_array" else JointTrajectory
        self.cmd_pub = self.create_publisher(cmd_type, "commands", 10)
        self.chunk_pub = self.create_publisher(ActionChunk, "action_chunk", 10)
        self.status_pub = self.create_publisher(PolicyStatus, "status", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        made += [self.cmd_pub, self.chunk_pub, self.status_pub, self.diag_pub]
        made.append(self.create_service(SetBool, "~/enable", self._on_enable, callback_group=misc))
        made.append(self.create_service(Trigger, "~/reset", self._on_reset, callback_group=misc))
        if not p.lockstep:  # with tick_source joint_states the timer watches (stale inputs, late ticks)
            period = self.dt / WATCH_PER_TICK if self.trigger is not None else self.dt
            made.append(self.create_timer(period, self._on_tick, callback_group=timer))
        if p.status_rate > 0:
            made.append(self.create_timer(1.0 / p.status_rate, self._on_status_timer, callback_group=misc))
        if p.diagnostics_rate > 0:
            made.append(self.create_timer(1.0 / p.diagnostics_rate, self._publish_diagnostics,
                                          callback_group=misc))

    def _release(self) -> None:
        """Undo configure: stop the worker, destroy every interface, drop the policy."""
        self._stop_workers()
        for entity in self._interfaces:
            destroy = {"Subscription": self.destroy_subscription, "Publisher": self.destroy_publisher,
                       "Service": self.destroy_service, "Timer": self.destroy_timer}[type(entity).__name__]
            destroy(entity)
        self._interfaces = []
        self._configured = False
        self.runtime = None if self._runtime_given is None else self._runtime_given

    # ------------------------------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------------------------------
    def _reset_counters(self) -> None:
        self._images: dict[str, tuple[np.ndarray, int]] = {}  # camera -> (rgb, stamp ns)
        # split inference: policy camera -> (image tokens, receipt time of their frame)
        self._tokens: dict[str, tuple[np.ndarray, float]] = {}
        self._image_epoch = 0  # bumped by ~/reset: tokens of frames received before it are dropped
        self._pending_tick: int | None = None  # joint-state tick whose command awaits its chunk
        self._qpos: tuple[np.ndarray, int] | None = None
        self._enabled = False
        self._mode = PolicyStatus.MODE_IDLE
        self._mode_msg = "unconfigured"
        self._generation = 0
        self._last_cmd: np.ndarray | None = None   # where the rate limit starts from (None: measured)
        self._hold_cmd: np.ndarray | None = None   # what a hold re-publishes (the last command sent)
        self._latched: str | None = None           # a fault that holds until re-enabled
        self._answered_stamp = -1
        self._seq = self._ticks = self._missed = self._late_ticks = self._rejected = self._filled = 0
        self._inference_ms = 0.0
        self._last_tick_t: float | None = None
        self._latency_from: float | None = None  # receipt time of the obs behind the newest chunk
        self._image_from: float | None = None    # receipt time of the oldest frame behind it
        self.latencies_ms: deque[float] = deque(maxlen=20000)  # 400 s at 50 Hz
        self.image_ages_ms: deque[float] = deque(maxlen=20000)  # frame receipt -> its first command
        # where obs -> command goes, per command with a new chunk (ms): receipt of the newest input
        # -> query submitted, -> forward pass started (worker wake-up), the forward pass, -> command
        self.stages_ms = {k: deque(maxlen=20000) for k in STAGES}
        self._stage_from: tuple | None = None

    def _warn(self, text: str, error: bool = False, key: str | None = None) -> None:
        """Throttled per `key` (default: the text up to its first colon), so that different
        problems are each reported while a repeated one is not."""
        key = key or text.split(":")[0]
        now = time.monotonic()
        last = self._warned.get(key)
        if last is not None and now - last < float(self.p.warn_throttle_s):
            return
        self._warned[key] = now
        log = self.get_logger()
        (log.error if error else log.warning)(text)

    def _set_mode(self, mode: int, text: str) -> None:
        if mode != self._mode or text != self._mode_msg:
            changed = mode != self._mode
            self._mode, self._mode_msg = mode, text
            if changed:
                self.get_logger().info(f"mode {MODE_NAMES[mode]}: {text}")
                self._publish_status()

    def _reset_execution(self) -> None:
        """A fresh executor; chunks in flight are discarded (generation) and, in lockstep, the
        next observation is answered whatever its stamp (a sim-time reset goes backwards)."""
        self.act_executor.reset()
        self._generation += 1
        self._answered_stamp = -1
        self._latency_from = self._image_from = self._stage_from = None
        self._pending_tick = None

    def _clear_hold_and_latch(self) -> None:
        self._latched = None
        self._last_cmd = None
        self._hold_cmd = None
        self.watchdog.reset()

    def _commanding(self) -> bool:
        return self._configured and self._active and self._enabled

    # ------------------------------------------------------------------------------------------
    # inputs
    # ------------------------------------------------------------------------------------------
    def _on_image(self, camera: str, msg: Image) -> None:
        try:
            img = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        except (InputError, ValueError) as e:
            with self._lock:
                self._rejected += 1
            self._warn(f"camera '{camera}': image rejected: {e}", key=f"image {camera} {str(e)[:24]}")
            return
        stamp = _stamp_ns(msg.header)
        with self._lock:
            if not self._fresh(f"camera:{camera}", stamp):
                return
            self._images[camera] = (img, stamp)
            if self._split and self._active:
                self._encode(camera, img)
        if self.p.lockstep:
            self._lockstep_maybe_tick()

    def _encode(self, camera: str, img: np.ndarray) -> None:
        """Queue the image half for every policy camera this robot camera feeds (lock held): the
        frame as the policy sees it (mirrored on a mirrored deployment), newest frame first."""
        mirror = self.view.mirror
        for cam in self.cameras:
            if mirror.source_camera(cam) == camera:
                self.encoders[cam].submit(InferenceRequest(
                    {cam: mirror.camera_image(cam, img)}, None, step=self._image_epoch,
                    generation=self._image_epoch, stamp=self.monitor.last(f"camera:{camera}") or 0.0))

    def _on_tokens(self, res: InferenceResult) -> None:
        """An encoder worker's answer (its thread): keep the newest tokens per policy camera."""
        cam = next(iter(res.request.images))
        with self._lock:
            if res.request.generation != self._image_epoch:
                return  # a frame from before ~/reset
            if res.chunk is None:
                self._warn(f"camera '{cam}': image encoding failed: {res.error}", error=True,
                           key=f"encode {cam}")
                return
            self._tokens[cam] = (res.chunk, res.request.stamp)

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            q = self.selector.select(list(msg.name), msg.position)
        except InputError as e:
            with self._lock:
                self._rejected += 1
            self._warn(f"joint_states rejected: {e}", error="lacks joints" in str(e), key=f"js {str(e)[:24]}")
            return
        stamp = _stamp_ns(msg.header)
        with self._lock:
            if not self._fresh("joint_states", stamp):
                return
            self._qpos = (q, stamp)
            if self.trigger is not None and self.trigger.arrival(time.monotonic()):
                self._tick()
        if self.p.lockstep:
            self._lockstep_maybe_tick()

    def _fresh(self, name: str, stamp: int) -> bool:
        """Record an arrival (lock held). Timer mode also judges the header stamp: a frozen or
        backwards stamp is not fresh (lockstep re-publishes one observation on purpose)."""
        why = self.monitor.update(name, time.monotonic(), 0 if self.p.lockstep else stamp)
        if why is None:
            return True
        self._warn(f"{name}: header stamp {why} ({stamp} ns): not counted as fresh", key=f"stamp {name}")
        return False

    def _ready(self) -> bool:
        """Every input a query needs is here (lock held): the joint state and each camera's frame,
        or in split mode each policy camera's tokens (the first frame may still be encoding)."""
        if self._qpos is None:
            return False
        if self._split:
            return all(c in self._tokens for c in self.cameras)
        return all(c in self._images for c in self.cameras)

    def _snapshot(self) -> InferenceRequest:
        """Current observation in policy space (call with the lock held, `_ready()`)."""
        t_js = self.monitor.last("joint_states") or 0.0
        if self._split:  # the newest tokens of each camera; the qpos mirrored like to_policy's
            imgs = {c: self._tokens[c][0] for c in self.cameras}
            q = self.view.mirror.qpos(self._qpos[0])
            t_images = [self._tokens[c][1] for c in self.cameras]
        else:
            images = {c: self._images[c][0] for c in self.cameras}
            imgs, q = self.view.to_policy(images, self._qpos[0])
            t_images = [self.monitor.last(f"camera:{c}") or 0.0 for c in self.cameras]
        return InferenceRequest(imgs, q, step=self.act_executor.step, generation=self._generation,
                                stamp=max([t_js, *t_images]),
                                context={"stamp_ns": self._qpos[1], "image_from": min(t_images)})

    def _submit(self) -> None:
        self.worker.submit(self._snapshot())
        self.watchdog.started(time.monotonic())

    # ------------------------------------------------------------------------------------------
    # inference results (worker thread)
    # ------------------------------------------------------------------------------------------
    def _on_inference(self, res: InferenceResult) -> None:
        with self._lock:
            self.prefetch.update(res.inference_s)  # a discarded chunk still measured the inference
            self.watchdog.finished(res.error)
            self._inference_ms = res.inference_s * 1e3
            if res.request.generation != self._generation or not self._commanding():
                return  # reset, disabled or deactivated while in flight
            if res.chunk is None:
                self._warn(f"inference failed: {res.error}", error=True)
                if self.p.lockstep:
                    self._answered_stamp = -1  # let a re-published observation retry
                return
            try:
                self.act_executor.add_chunk(res.chunk, step=res.request.step)
            except ValueError as e:
                self._warn(f"chunk dropped: {e}", error=True)
                return
            self._latency_from = res.request.stamp
            self._image_from = res.request.context.get("image_from")
            req = res.request
            self._stage_from = (req.stamp, req.submitted, req.started, req.started + res.inference_s)
            # the chunk message first: observers (bench_node.py) pair a command with the chunk
            # published just before it
            self._publish_chunk(res)
            if self.p.lockstep:
                self._emit_step()
            elif self.trigger is not None:
                if self._pending_tick == res.request.step:  # this tick's command waited for its chunk
                    self._pending_tick = None
                    self._emit_step()
            elif self._wants_query() and self.monitor.stale(time.monotonic()) == [] and self._ready():
                self._submit()  # free again and a query is due: take the newest observation now

    def _publish_chunk(self, res: InferenceResult) -> None:
        msg = ActionChunk()
        ns = int(res.request.context.get("stamp_ns", 0))
        msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
        msg.header.frame_id = f"arm{self.p.arm}"
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
    def _on_tick(self) -> None:
        """The control timer. tick_source timer: one tick. tick_source joint_states: the ticks come
        with the joint states and the timer, WATCH_PER_TICK times a period, watches: it holds the arm
        when inputs go stale or a fault latches, and starts a tick itself when the joint states are
        late (no tick for 1.25 periods; counted in `filled_ticks`), so that no period goes without
        a command while they are still fresh."""
        with self._lock:
            if self.trigger is None:
                self._tick()
                return
            now = time.monotonic()
            if self._may_command(now) and self.trigger.overdue(now):
                self.trigger.started(now)
                self._filled += 1
                self._tick(query=False)  # no new observation: the executor's action, at once

    def _tick(self, query: bool = True) -> None:
        """One control tick (lock held): the checks, a query if one is due, this tick's command.
        Never waits for inference: the worker runs it and `_on_inference` hands the chunk to the
        executor, aligned. Started by a joint state, a tick that starts a query leaves its command
        to `_on_inference`, so that it comes from that observation's chunk; if the next tick comes
        first, the late chunk's command goes out from what the executor has. `query` False: the
        command from what the executor has (a tick the watch timer fills in)."""
        now = time.monotonic()
        if self._pending_tick is not None:
            self._pending_tick = None
            self._emit_step()
        self._ticks += 1
        if self._last_tick_t is not None and now - self._last_tick_t > 1.5 * self.dt:
            self._late_ticks += 1
        self._last_tick_t = now
        if not self._may_command(now):
            return
        if query and self._wants_query() and not self.worker.busy and self._ready():
            self._submit()
            if self.trigger is not None:
                self._pending_tick = self.act_executor.step
                return
        self._emit_step()

    def _may_command(self, now: float) -> bool:
        """Active, enabled, no fault, fresh inputs (lock held); otherwise set the mode and hold."""
        if not self._active:
            return False
        if not self._enabled:
            self._set_mode(PolicyStatus.MODE_IDLE, "disabled")
            return False
        fault = self._latched or self.watchdog.problem(now)
        if fault:
            self._latch(fault)
            return False
        stale = self.monitor.stale(now) or self._stale_tokens(now)
        if stale:
            self._on_stale(stale)
            return False
        return True

    def _stale_tokens(self, now: float) -> list[str]:
        """Split mode: cameras whose newest tokens come from a frame older than stale_timeout (the
        frames arrive but their encoding fails or hangs)."""
        timeout = self.monitor.timeout
        if not self._split or not timeout or timeout <= 0:
            return []
        return [f"camera:{c} (image encoding)" for c, (_, t) in self._tokens.items() if now - t > timeout]

    def _on_stale(self, stale: list[str]) -> None:
        missing = self.monitor.missing()
        if self._hold_cmd is None and missing:
            self._set_mode(PolicyStatus.MODE_WAITING, f"no data yet from {missing}")
            return
        if self._mode != PolicyStatus.MODE_HOLDING:
            what = "holding the last command" if self.p.on_stale == "hold" else "silent"
            self._warn(f"inputs stale ({stale}, timeout {self.monitor.timeout}s): {what}", key="stale")
            self._enter_hold()
        self._hold(f"stale inputs {stale}")

    def _enter_hold(self) -> None:
        """Leaving the policy: its chunks were predicted from a world that has moved on, and when
        it resumes the rate limit starts from the measured position, not the held target."""
        self._reset_execution()
        self._last_cmd = None

    def _hold(self, reason: str) -> None:
        self._set_mode(PolicyStatus.MODE_HOLDING, reason)
        if self.p.on_stale == "hold" and self._hold_cmd is not None:
            self._publish_command(self._hold_cmd)

    def _latch(self, fault: str) -> None:
        """A fault that holds until the operator re-enables (~/enable) or re-activates."""
        if self._latched is None:
            self._latched = fault
            self.get_logger().error(f"holding: {fault}; re-enable (~/enable) or re-activate to resume")
            self._enter_hold()
        self._hold(fault)

    def _wants_query(self) -> bool:
        """Timer mode: should this tick start an inference? Chunked with prefetch: `lookahead`
        ticks before the executed part of the chunk runs out (the new chunk, predicted from this
        tick's observation, replaces the current one when it arrives, aligned by the executor)."""
        if self._prefetch:
            return self.act_executor.needs_query(lookahead=self.prefetch.lookahead())
        return self.act_executor.needs_query()

    def _emit_step(self) -> None:
        """Take the executor's action for this tick, map, check, clamp and publish it (lock held)."""
        n_plan = self.p.trajectory_points if self.p.command_type == "joint_trajectory" else 1
        plan = self.act_executor.peek(n_plan)[1:] if n_plan > 1 else None  # the ticks after this one
        action = self.act_executor.next_action()
        if action is None:
            self._missed += 1
            if self._hold_cmd is None:
                self._set_mode(PolicyStatus.MODE_WAITING, "waiting for the first chunk")
            elif self.p.on_stale == "hold":
                self._publish_command(self._hold_cmd)
            return
        measured = self._qpos[0]
        if self._hold_cmd is not None:
            fault = tracking_violation(self._hold_cmd, measured, self.tracking_limits, self.joint_names)
            if fault:
                self._hold_cmd = np.asarray(measured, dtype=np.float64)  # stop where the arm is
                self._latch(fault)
                return
        cmd = self.view.to_robot(action).astype(np.float64)
        cmd, clamped = self.limiter.apply(cmd, self._last_cmd if self._last_cmd is not None else measured)
        if clamped:
            self._warn(f"command clamped to limits / max_step ({self.limiter.n_clamped} so far)", key="clamp")
        ahead = None
        if plan is not None and len(plan):
            ahead = self.limiter.apply_path([self.view.to_robot(a) for a in plan], cmd)
        self._publish_command(cmd, ahead)
        self._last_cmd = self._hold_cmd = cmd
        if self._latency_from is not None:
            now = time.monotonic()
            self.latencies_ms.append((now - self._latency_from) * 1e3)
            if self._image_from:
                self.image_ages_ms.append((now - self._image_from) * 1e3)
            if self._stage_from is not None:
                marks = (*self._stage_from, now)
                for name, a, b in zip(STAGES, marks, marks[1:]):
                    self.stages_ms[name].append((b - a) * 1e3)
            self._latency_from = self._image_from = self._stage_from = None
        self._set_mode(PolicyStatus.MODE_RUNNING, "running")

    def _lockstep_maybe_tick(self) -> None:
        """Lockstep mode: one tick per complete observation (every input carrying the same,
        not yet answered header stamp); the command waits for the inference if one is due."""
        with self._lock:
            if not self._commanding() or self._qpos is None or len(self._images) < len(self.cameras):
                return
            stamp = self._qpos[1]
            if stamp <= self._answered_stamp or any(self._images[c][1] != stamp for c in self.cameras):
                return
            self._answered_stamp = stamp
            self._ticks += 1
            if self.act_executor.needs_query():
                self._submit()  # _on_inference emits the command
            else:
                self._emit_step()

    def _publish_command(self, cmd: np.ndarray, ahead: np.ndarray | None = None) -> None:
        """Publish this tick's command; with JointTrajectory and `ahead` (n, A), the planned
        commands of the next n ticks follow as points 2..n+1, with velocities."""
        values = [float(v) for v in cmd]
        if self.p.command_type == "float64_array":
            msg = Float64MultiArray()
            msg.layout.dim = [MultiArrayDimension(label="joints", size=self.A, stride=self.A)]
            msg.data = values
        else:
            msg = JointTrajectory()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.joint_names = list(self.joint_names)
            t = self.p.trajectory_time_from_start or self.dt
            if ahead is None or not len(ahead):
                msg.points = [JointTrajectoryPoint(positions=values, time_from_start=_duration(t))]
            else:  # point k at t + k ticks, with velocities (the simulator's controller model)
                times, pts, vel = plan_points(np.vstack([cmd, ahead]), self.dt, t)
                msg.points = [JointTrajectoryPoint(positions=q.tolist(), velocities=w.tolist(),
                                                   time_from_start=_duration(tk))
                              for tk, q, w in zip(times, pts, vel)]
        self.cmd_pub.publish(msg)

    # ------------------------------------------------------------------------------------------
    # services, status and diagnostics
    # ------------------------------------------------------------------------------------------
    def _on_enable(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        with self._lock:
            if req.data and not self._active:
                resp.success = False
                resp.message = "inactive: activate first (ros2 lifecycle set <node> activate)"
                return resp
            hung = self.watchdog.problem(time.monotonic()) if self.worker.busy else None
            if req.data and hung:
                resp.success, resp.message = False, f"still holding: {hung}"
                return resp
            was = self._enabled
            self._enabled = bool(req.data)
            if self._enabled and (not was or self._latched):
                self._reset_execution()
                self._clear_hold_and_latch()
                self._set_mode(PolicyStatus.MODE_WAITING, "enabled")
            elif not self._enabled:
                self._reset_execution()  # an inference in flight must not publish
                self._set_mode(PolicyStatus.MODE_IDLE, "disabled")
        resp.success, resp.message = True, f"enabled={self._enabled}"
        return resp

    def _on_reset(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self._reset_execution()
            self._last_cmd = self._hold_cmd = None
            # A new episode: the observation held now is the old episode's last one. Forget it,
            # so the first chunk is predicted from an observation received after the reset (in
            # timer mode the node used to plan a whole chunk from the previous episode's final
            # frame: chunked real-time success fell to 18 %).
            self._images.clear()
            self._tokens.clear()
            self._image_epoch += 1  # frames still encoding belong to the old episode
            self._qpos = None
            if self._configured:
                self.monitor.reset()
                if self.trigger is not None:
                    self.trigger.reset()
            if self._commanding():
                self._set_mode(PolicyStatus.MODE_WAITING, "reset")
        resp.success, resp.message = True, f"executor reset (generation {self._generation})"
        return resp

    def latency_summary(self) -> dict:
        """Counters and latency percentiles since configure (exit summary, status, diagnostics)."""
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        return {
            "ticks": self._ticks, "missed_ticks": self._missed, "late_ticks": self._late_ticks,
            "filled_ticks": self._filled,
            "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else math.nan,
            "latency_p99_ms": float(np.percentile(lat, 99)) if lat.size else math.nan,
            "image_age_p50_ms": _percentile(self.image_ages_ms, 50),
            "image_age_p99_ms": _percentile(self.image_ages_ms, 99),
            "stages_p50_p99_ms": {k: [round(_percentile(v, q), 3) for q in (50, 99)]
                                  for k, v in self.stages_ms.items()},
            "inference_ms": self._inference_ms, "rejected_inputs": self._rejected,
            "clamped": self.limiter.n_clamped if self._configured else 0,
            "lookahead_ticks": self.prefetch.lookahead() if self._configured and self._prefetch else 0,
        }

    def _on_status_timer(self) -> None:
        self._publish_status()
        n = self.count_publishers(self.js_sub.topic_name)
        if n > 1:
            self._warn(f"{self.js_sub.topic_name} has {n} publishers: joint positions may interleave from "
                       f"different sources", key="js publishers")

    def _publish_status(self) -> None:
        if not self._configured:
            return
        with self._lock:
            s = PolicyStatus()
            s.header.stamp = self.get_clock().now().to_msg()
            s.header.frame_id = f"arm{self.p.arm}"
            s.mode, s.mode_name = self._mode, MODE_NAMES[self._mode]
            s.enabled = self._commanding()
            s.execution = self.p.execution
            s.arm = self.p.arm
            s.inference_ms = float(self._inference_ms)
            ages = self.monitor.ages(time.monotonic())
            s.input_ages_s = [float(a) if math.isfinite(a) else -1.0 for a in ages]
            s.input_names = list(self.input_names)
            s.ticks, s.missed_ticks, s.rejected_inputs = self._ticks, self._missed, self._rejected
            st = self.latency_summary()
            s.message = (f"{self._mode_msg}; latency p50 {st['latency_p50_ms']:.1f} ms "
                         f"p99 {st['latency_p99_ms']:.1f} ms; late ticks {self._late_ticks}; "
                         f"{f'filled ticks {self._filled}; ' if self.trigger is not None else ''}"
                         f"clamped {st['clamped']}")
            if self._prefetch:
                s.message += f"; prefetch lookahead {st['lookahead_ticks']} ticks"
        self.status_pub.publish(s)

    def _publish_diagnostics(self) -> None:
        """/diagnostics: one status for the policy (OK running, WARN waiting/idle, ERROR holding)."""
        with self._lock:
            st = self.latency_summary()
            ages = self.monitor.ages(time.monotonic())
            d = DiagnosticStatus(name=f"{self.get_name()}: policy", hardware_id=f"arm{self.p.arm}",
                                 message=self._mode_msg)
            d.level = DIAGNOSTIC_LEVELS.get(self._mode, DiagnosticStatus.WARN)
            values = {"mode": MODE_NAMES[self._mode], "active": self._active, "enabled": self._enabled,
                      "inference_ms": f"{self._inference_ms:.2f}",
                      "latency_p50_ms": f"{st['latency_p50_ms']:.2f}",
                      "latency_p99_ms": f"{st['latency_p99_ms']:.2f}",
                      "ticks": st["ticks"], "missed_ticks": st["missed_ticks"],
                      "late_ticks": st["late_ticks"],
                      "clamped": st["clamped"], "rejected_inputs": st["rejected_inputs"],
                      "inference_failures_in_a_row": self.watchdog.failures}
            values.update({f"age_s {n}": f"{a:.3f}" if math.isfinite(a) else "never"
                           for n, a in zip(self.input_names, ages)})
            d.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[d])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def destroy_node(self) -> None:
        """Stop the inference workers before the node goes."""
        self._stop_workers()
        super().destroy_node()

    def _stop_workers(self) -> None:
        for w in [self.worker, *self.encoders.values()]:
            if w is not None:
                w.stop()
        self.worker, self.encoders = None, {}


def _percentile(values, q: float) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.percentile(v, q)) if v.size else math.nan


def _duration(t: float) -> Duration:
    return Duration(sec=int(t), nanosec=int(round((t % 1.0) * 1e9)))


def _pin_compute_threads(n: int) -> int:
    """Intra-op threads for inference (torch's, and the ONNX sessions' made after this call): `n`,
    or all cores but one (the ROS callbacks'); returns the number."""
    import torch

    n = n if n > 0 else max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(n)
    return n


def main(args=None) -> int:
    """Console script: run the node; `autostart` configures and activates it at once,
    `autoconfigure` configures it (inactive until the operator activates it)."""
    # `kill -USR1 <pid>` prints every thread's Python stack to stderr: to see where a node that
    # looks stuck (configure, inference) is, without stopping it
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    stop = StopOnSignal()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    code = 0
    try:
        node = ACTPolicyNode()
        if node.p.autostart or node.p.autoconfigure:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise NodeConfigError(getattr(node, "config_error", "configure failed"))
            if node.p.autostart:
                node.trigger_activate()
        n = int(node.p.executor_threads)
        executor = MultiThreadedExecutor(num_threads=n) if n > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        stop.spin(executor)
    except (NodeConfigError, InvalidParameterTypeException, InvalidParameterValueException) as e:
        print(f"[act_policy_node] configuration error: {e}", file=sys.stderr, flush=True)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Ctrl-C under `ros2 launch` arrives twice (the terminal's process group, then the
        # launch's forwarded SIGINT): the second one must not abort the clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            if node._configured:
                print(f"[act_policy_node] summary: {node.latency_summary()}", file=sys.stderr, flush=True)
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
