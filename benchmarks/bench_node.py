"""Node benchmark: observation -> command latency and missed ticks of the rclpy policy node at
50 Hz, chunked and ensembled, over real DDS.

Four processes per mode: `node_sensors.py` twice (a live camera, 480x640 rgb8 at 30 Hz, and a
joint-state driver at 100 Hz, each its own process as on a robot), the policy node itself
(`python -m act_policy_node.policy_node`, a random-init cpu-preset checkpoint), and this process
as the observer (it subscribes to `status`, `action_chunk` and `commands`). Two views of the same latency:

- node-internal (what the node reports on `status` and in its exit summary, docs/ros.md): from
  the receipt of the newest input behind a chunk to the first command published from it;
- external: from the sensor's header stamp (the joint state behind the chunk, carried in
  `ActionChunk.header.stamp`) to the arrival of that first command here, i.e. including DDS
  transit both ways. Same machine, same wall clock.

Missed ticks: the node's counter (`PolicyStatus.missed_ticks`: ticks with no action available),
counted over the measuring window only (after warm-up), and the node's late ticks (timer
jitter > 1.5 periods); externally, 20 ms slots without a command arriving.
"""

from __future__ import annotations

import ast
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, area_main, log, metric, summarize  # noqa: E402

HERE = Path(__file__).resolve().parent
LARGE_IMAGES_PROFILE = ROOT / "src/act_policy_node/config/fastdds_large_images.xml"
# label -> node parameters; "chunked" = the plain rule (query when the chunk has run out),
# "chunked_prefetch" = the node's default: the next chunk is requested `lookahead` ticks early
# (ceil(EMA inference x rate) + prefetch_margin_ticks, docs/ros.md)
# (`_onnx`: the same on ONNX Runtime, `backend:=onnx`; `_whole`: the whole network per query,
# `encode_on_arrival:=false`, instead of each frame's image half once on arrival; `_js`: ticks
# started by the joint states, `tick_source:=joint_states`, instead of the timer; `_rt`: the query
# worker under SCHED_FIFO, `realtime_priority:=50`, as physical_pair.yaml)
MODES = {"chunked": {"execution": "chunked", "prefetch": "false"}, "ensemble": {"execution": "ensemble"},
         "chunked_prefetch": {"execution": "chunked"},
         "ensemble_onnx": {"execution": "ensemble", "backend": "onnx"},
         "ensemble_onnx_whole": {"execution": "ensemble", "backend": "onnx", "encode_on_arrival": "false"},
         "chunked_prefetch_onnx": {"execution": "chunked", "backend": "onnx"},
         "ensemble_onnx_js": {"execution": "ensemble", "backend": "onnx", "tick_source": "joint_states"},
         "chunked_prefetch_onnx_js": {"execution": "chunked", "backend": "onnx",
                                      "tick_source": "joint_states"},
         "ensemble_onnx_js_rt": {"execution": "ensemble", "backend": "onnx", "tick_source": "joint_states",
                                 "realtime_priority": "50"},
         "chunked_prefetch_onnx_js_rt": {"execution": "chunked", "backend": "onnx",
                                         "tick_source": "joint_states", "realtime_priority": "50"}}
# window per mode: 60 s, and the issue's 5 minutes for the latency target's configuration (the
# physical_pair.yaml one: onnx, joint-state ticks, SCHED_FIFO query thread)
FULL = {"preset": "cpu", "window_s": 60.0, "warmup_s": 5.0, "hw": (480, 640),
        "modes": ("chunked", "ensemble", "chunked_prefetch", "ensemble_onnx_whole", "ensemble_onnx",
                  "chunked_prefetch_onnx", "chunked_prefetch_onnx_js", "ensemble_onnx_js",
                  "ensemble_onnx_js_rt"),
        "window_s_of": {"ensemble_onnx_js_rt": 300.0}}
QUICK = {"preset": "tiny", "window_s": 2.0, "warmup_s": 0.5, "hw": (48, 64),
         "modes": ("chunked", "ensemble", "ensemble_onnx_js")}
# NODE_MODES=a,b (environment): only these modes, NODE_WINDOW_S: another window for all,
# e.g. NODE_MODES=ensemble_onnx_js make bench ARGS="--only node"
RATE_HZ = 50.0


class Observer:
    """An rclpy node in this process, on its own context and spin thread."""

    def __init__(self, ns: str = "", name: str = "bench_observer") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import Float64MultiArray

        from act_msgs.msg import ActionChunk, PolicyStatus

        self.rclpy = rclpy
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(name, context=self.ctx)
        self.lock = threading.Lock()
        self.clear()
        p = f"{ns}/" if ns else ""
        self.node.create_subscription(Float64MultiArray, f"{p}commands", self._on_cmd, 100)
        self.node.create_subscription(ActionChunk, f"{p}action_chunk", self._on_chunk, 100)
        self.node.create_subscription(PolicyStatus, f"{p}status", self._on_status, 10)
        self.RUNNING = PolicyStatus.MODE_RUNNING
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self._stop = False
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while not self._stop and self.ctx.ok():
            self.ex.spin_once(timeout_sec=0.05)

    def clear(self) -> None:
        with self.lock:
            self.events: list[tuple[int, str, int]] = []  # (arrival ns, kind, stamp ns)
            self.status: list[tuple[int, object]] = []

    @staticmethod
    def _arrival(info) -> int:
        """When the message reached this process: the middleware's receipt time (wall clock), not
        the callback's, so that the executor's order of two messages that came together (a chunk
        and its first command) does not pair a chunk with the next tick's command."""
        t = int(info.get("received_timestamp") or 0) if info else 0
        return t or time.time_ns()

    def _on_cmd(self, msg, info) -> None:
        t = self._arrival(info)
        with self.lock:
            self.events.append((t, "cmd", 0))

    def _on_chunk(self, msg, info) -> None:
        t = self._arrival(info)
        s = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.events.append((t, "chunk", s))

    def _on_status(self, msg) -> None:
        with self.lock:
            self.status.append((time.time_ns(), msg))

    def last_status(self):
        with self.lock:
            return self.status[-1][1] if self.status else None

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=2)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.ctx)


def _late(status) -> int:
    m = re.search(r"late ticks (\d+)", status.message if status is not None else "")
    return int(m.group(1)) if m else 0


def _status_latency(status) -> tuple[float, float]:
    text = status.message if status is not None else ""
    m = re.search(r"latency p50 ([\d.na]+) ms p99 ([\d.na]+) ms", text)
    return (float(m.group(1)), float(m.group(2))) if m else (math.nan, math.nan)


def _summary(log_path: Path) -> dict:
    """The node's exit summary line: `[act_policy_node] summary: {...}`."""
    for line in reversed(log_path.read_text(errors="replace").splitlines()):
        if "summary:" in line:
            text = line.split("summary:", 1)[1].strip().replace("nan", "None")
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return {}
    return {}


def external(events, t0: int, t1: int, dt_ns: int) -> dict:
    """stamp -> command latencies and command gaps from the observer's events inside [t0, t1]."""
    ev = sorted(e for e in events if t0 <= e[0] <= t1)
    lat, cmds, pending = [], [], None
    for t, kind, stamp in ev:
        if kind == "chunk":
            pending = stamp
        else:
            cmds.append(t)
            if pending is not None:
                lat.append((t - pending) / 1e6)
                pending = None
    gaps = [(b - a) for a, b in zip(cmds, cmds[1:])]
    missed = sum(max(0, round(g / dt_ns) - 1) for g in gaps)
    return {"latency_ms": lat, "n_commands": len(cmds), "gaps_ms": [g / 1e6 for g in gaps],
            "missed_slots": missed, "n_chunks": sum(1 for e in ev if e[1] == "chunk")}


def _start_node(mode: str, ck: Path, env: dict, log_path: Path, ns: str, chunk: int) -> subprocess.Popen:
    params = {"checkpoint": ck, "autostart": "true", "control_rate": RATE_HZ, "status_rate": 5.0,
              "arm": 0, **MODES[mode]}
    if params.get("n_execute", 0) < 0:
        params["n_execute"] = chunk + params["n_execute"]
    cmd = [sys.executable, "-m", "act_policy_node.policy_node", "--ros-args"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    if ns:  # several nodes at once (--quick): own namespace, the shared sensors by absolute name
        cmd += ["-r", f"__ns:={ns}", "-r", "joint_states:=/joint_states",
                "-r", "camera/top/image_raw:=/camera/top/image_raw"]
    with open(log_path, "w") as lf:
        return subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_modes(modes, ck: Path, spec: dict, env: dict, logs: Path, concurrent: bool,
              chunk: int) -> tuple[list, dict]:
    """Start one node per mode (all at once when `concurrent`), wait until each runs, warm up,
    measure the same window for all, stop them and reduce."""
    import psutil

    runs = []
    try:
        for mode in modes:
            ns = f"/bench_{mode}" if concurrent else ""
            log_path = logs / f"node_{mode}.log"
            runs.append({"mode": mode, "obs": Observer(ns, f"bench_observer_{mode}"), "log": log_path,
                         "concurrent": concurrent, "proc": _start_node(mode, ck, env, log_path, ns, chunk)})
        end = time.monotonic() + 150
        for r in runs:
            while True:
                st = r["obs"].last_status()
                if st is not None and st.mode == r["obs"].RUNNING:
                    break
                if r["proc"].poll() is not None:
                    raise RuntimeError(f"policy node exited ({r['proc'].returncode}): "
                                       f"{r['log'].read_text()[-2000:]}")
                if time.monotonic() > end:
                    last = f"last status: {st.mode_name!r}, {st.message!r}" if st is not None else "no status"
                    raise RuntimeError(f"policy node never reached RUNNING ({last}): "
                                       f"{r['log'].read_text()[-2000:]}")
                time.sleep(0.1)
        time.sleep(spec["warmup_s"])
        window = max(_window(r["mode"], spec) for r in runs)
        for r in runs:
            r["ps"] = psutil.Process(r["proc"].pid)
            r.update(cpu0=r["ps"].cpu_times(), st0=r["obs"].last_status(), t0=time.time_ns(),
                     w0=time.monotonic())
        time.sleep(window)
        for r in runs:
            r.update(cpu1=r["ps"].cpu_times(), st1=r["obs"].last_status(), t1=time.time_ns(),
                     w1=time.monotonic())
    finally:
        for r in runs:
            _stop(r["proc"])
        for r in runs:
            with r["obs"].lock:
                r["events"], r["n_status"] = list(r["obs"].events), len(r["obs"].status)
            r["obs"].close()
    metrics, details = [], {}
    for r in runs:
        m, d = _reduce(r, spec)
        metrics += m
        details[r["mode"]] = d
    return metrics, details


def _stages_note(summ: dict) -> str:
    """'; p50/p99 ms: input_to_submit a/b, ...' from the exit summary's stages (empty without)."""
    stages = summ.get("stages_p50_p99_ms") or {}
    parts = [f"{k} {v[0]:.2f}/{v[1]:.2f}" for k, v in stages.items() if v and None not in v]
    return f"; stages p50/p99 ms: {', '.join(parts)}" if parts else ""


def _window(mode: str, spec: dict) -> float:
    """The mode's measuring window (s); NODE_WINDOW_S (environment) overrides every window."""
    if os.environ.get("NODE_WINDOW_S"):
        return float(os.environ["NODE_WINDOW_S"])
    return float(spec.get("window_s_of", {}).get(mode, spec["window_s"]))


def _reduce(r: dict, spec: dict) -> tuple[list, dict]:
    mode, st0, st1 = r["mode"], r["st0"], r["st1"]
    c0, c1 = r["cpu0"], r["cpu1"]
    node_cpu = 100 * ((c1.user + c1.system) - (c0.user + c0.system)) / (r["w1"] - r["w0"])
    dt_ns = int(1e9 / RATE_HZ)
    ext = external(r["events"], r["t0"], r["t1"], dt_ns)
    summ = _summary(r["log"])
    ticks = st1.ticks - st0.ticks
    missed = st1.missed_ticks - st0.missed_ticks
    late = _late(st1) - _late(st0)
    p50_s, p99_s = _status_latency(st1)
    p50 = summ.get("latency_p50_ms") if summ.get("latency_p50_ms") is not None else p50_s
    p99 = summ.get("latency_p99_ms") if summ.get("latency_p99_ms") is not None else p99_s
    lab = f"{mode}, 50 Hz, {r['w1'] - r['w0']:.0f} s"
    metrics = [
        metric(f"node obs->command latency (node-internal), {lab}", "ms", value=p50,
               p99=p99, note="from the node's status/summary (receipt of newest input -> command)"
                             + _stages_note(summ)),
        metric(f"node sensor stamp->command arrival (external), {lab}", "ms", ext["latency_ms"],
               note=f"{ext['n_chunks']} chunks, includes DDS both ways"),
        metric(f"node missed ticks, {lab}", "ticks", value=missed,
               note=f"of {ticks} ticks ({100 * missed / max(ticks, 1):.1f}%); late ticks {late}; "
                    f"external empty 20 ms slots {ext['missed_slots']}"),
        metric(f"node command interval, {lab}", "ms", ext["gaps_ms"], note=f"{ext['n_commands']} commands"),
        metric(f"node inference (last, status), {mode}", "ms", value=float(st1.inference_ms)),
        metric(f"node camera frame receipt->first command, {lab}", "ms", value=summ.get("image_age_p50_ms"),
               p99=summ.get("image_age_p99_ms"),
               note="age of the newest frame behind a command (node-internal)"),
        metric(f"node process CPU, {mode}", "% of one core", value=node_cpu),
    ]
    details = {
        "ticks": ticks, "missed_ticks": missed, "late_ticks": late, "node_cpu_percent": node_cpu,
        "status_latency_p50_ms": p50_s, "status_latency_p99_ms": p99_s, "exit_summary": summ,
        "external": {k: v for k, v in ext.items() if k not in ("latency_ms", "gaps_ms")},
        "external_latency": summarize(ext["latency_ms"]), "command_interval": summarize(ext["gaps_ms"]),
        "n_status": r["n_status"], "log": str(r["log"]), "concurrent_with_other_modes": r.get("concurrent"),
    }
    return metrics, details


def input_path_cost(hw, size, n: int) -> list[float]:
    """The node's per-frame image callback work, in-process: decode a sensor_msgs/Image payload
    (rgb8, as rclpy hands it over: array.array). The resize to the policy's size is no longer
    in the callback: the runtime's pipeline does it once per query (`size` is kept for the label)."""
    import array

    import numpy as np
    from act_training.runtime.sensors import decode_image

    h, w = hw
    data = array.array("B", (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8).tobytes())
    out = []
    for i in range(n + 5):
        t = time.perf_counter()
        decode_image("rgb8", h, w, 3 * w, data)
        if i >= 5:
            out.append(time.perf_counter() - t)
    return out


def run(quick: bool, work: Path, domain_id: int) -> dict:
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ["PYTHONUNBUFFERED"] = "1"
    # Fast DDS's default transports drop most 480x640 frames on a best-effort (sensor-data QoS)
    # subscription here (3-6 of 30 frames/s arrive: a frame is ~900 kB, over the 512 kB default
    # shared-memory segment, so it goes as UDP fragments); the project's profile (shared memory
    # with a 16 MiB segment) delivers all 30 (docs/ros.md "Large images"). Every process of the run
    # uses it. (FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA delivered them too, but adds TCP, and 2 of
    # ~12 node starts never matched the running sensor process with it.)
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(LARGE_IMAGES_PROFILE))
    from bench_inference import make_checkpoint

    spec = QUICK if quick else FULL
    ck = work / f"random_{spec['preset']}.pt"
    if not ck.exists():
        make_checkpoint(ck, spec["preset"])
    from act_training.config import get_preset

    pm = get_preset(spec["preset"]).model
    chunk = pm.chunk_size
    h, w = spec["hw"]
    cost = input_path_cost((h, w), pm.image_size, 50 if quick else 300)
    env = dict(os.environ)
    logs = work / "node_logs"
    logs.mkdir(parents=True, exist_ok=True)
    # the camera and the arm driver in two processes, as on a robot (one Python process for both
    # delayed the joint states behind each ~900 kB frame)
    sens_log = open(logs / "sensors.log", "w")  # noqa: SIM115 - closed in finally
    sensors = [subprocess.Popen([sys.executable, str(HERE / "node_sensors.py"), "--hw", str(h), str(w),
                                 "--camera-hz", "30", "--joint-hz", "100", "--arm", "0", "--publish", what],
                                stdout=sens_log, stderr=subprocess.STDOUT, env=env)
               for what in ("camera", "joints")]
    metrics = [metric(f"node image callback work: decode rgb8 {h}x{w}", "ms", [1e3 * x for x in cost],
                      note="per frame, in-process (act_training.runtime.sensors)")]
    details = {"preset": spec["preset"], "camera_hw": [h, w], "camera_hz": 30, "joint_hz": 100,
               "fastdds_profiles_file": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"),
                            "control_hz": RATE_HZ, "window_s": spec["window_s"], "warmup_s": spec["warmup_s"],
                            "ros_domain_id": domain_id}
    try:
        import psutil

        sps = [psutil.Process(sp.pid) for sp in sensors]

        def sensors_cpu_s() -> float:
            return sum(t.user + t.system for t in (sp.cpu_times() for sp in sps))

        s0, w0 = sensors_cpu_s(), time.monotonic()
        # full: one mode at a time (the figures); --quick: all modes at once (a smoke run)
        chosen = [m for m in os.environ.get("NODE_MODES", "").split(",") if m] or list(spec["modes"])
        unknown = [m for m in chosen if m not in MODES]
        if unknown:
            raise ValueError(f"NODE_MODES: unknown modes {unknown}; known: {sorted(MODES)}")
        groups = [chosen] if quick else [[m] for m in chosen]
        for modes in groups:
            log(f"node: {'+'.join(modes)}, {spec['warmup_s']:g} s warm-up + "
                f"{max(_window(m, spec) for m in modes):.0f} s")
            m, d = run_modes(modes, ck, spec, env, logs, concurrent=len(modes) > 1, chunk=chunk)
            metrics += m
            details.update(d)
        s1, w1 = sensors_cpu_s(), time.monotonic()
        details["sensors_cpu_percent"] = 100 * (s1 - s0) / (w1 - w0)  # both processes
    finally:
        for sp in sensors:
            sp.send_signal(signal.SIGINT)
        for sp in sensors:
            try:
                sp.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sp.kill()
                sp.wait()
        sens_log.close()
    return {"metrics": metrics, "details": details}


if __name__ == "__main__":
    area_main(run)
