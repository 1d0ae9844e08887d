"""Evaluate a policy over ROS: N seeded episodes through the bridge and the policy node.

    mirror_arm_ros_eval --trials 20 --arm 1 --seed 1000 [--json out.json] [--record cmds.npz]

Talks to a running bridge (`mirror_arm_bridge`, lockstep recommended) and policy node
(`act_policy_node`). Per trial i (seed = SEED + i): reset the node's executor (~/reset), set the
bridge's `seed` and `arm` parameters, call the bridge's ~/reset, and wait for its
`episode_result`. Returns (and `--json` writes, atomically) the same `EvalResult` as
`act_evaluate --json`, its mode, mirror flag and executor settings read from the running policy
node's parameters (which the node resolves from the checkpoint's deployment defaults), so the
two compare seed by seed. `--record` stores every command the arm received (the `commands` topic,
std_msgs/Float64MultiArray) split per episode, for the faithfulness test.

This module does not import torch (it talks to the nodes over ROS only).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import rclpy
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from act_msgs.msg import EpisodeResult
from act_training.evaluation.results import EvalResult

# policy node parameter -> EvalResult.executor key
EXECUTOR_PARAMETERS = {"execution": "mode", "n_execute": "n_execute", "ensemble_k": "k",
                       "query_period": "query_period"}


class RosEvaluator(Node):
    """Drives seeded episodes through the bridge's and the policy node's services."""

    def __init__(self, bridge: str, policy: str, record: bool, command_type: str = "float64_array") -> None:
        super().__init__("mirror_arm_ros_eval")
        self.results: list[EpisodeResult] = []
        self.commands: list[list[float]] = []
        self.create_subscription(EpisodeResult, "episode_result", self.results.append, QoSProfile(depth=100))
        if record and command_type == "joint_trajectory":  # the first point: this tick's command
            self.create_subscription(JointTrajectory, "commands",
                                     lambda m: self.commands.append(list(m.points[0].positions)),
                                     QoSProfile(depth=1000))
        elif record:
            self.create_subscription(Float64MultiArray, "commands",
                                     lambda m: self.commands.append(list(m.data)), QoSProfile(depth=1000))
        self.bridge_reset = self.create_client(Trigger, f"{bridge}/reset")
        self.bridge_params = self.create_client(SetParameters, f"{bridge}/set_parameters")
        self.policy_reset = self.create_client(Trigger, f"{policy}/reset")
        self.policy_enable = self.create_client(SetBool, f"{policy}/enable")
        self.policy_state = self.create_client(GetState, f"{policy}/get_state")
        self.policy_params = self.create_client(GetParameters, f"{policy}/get_parameters")

    def wait_active(self, timeout: float) -> None:
        """The policy node is a lifecycle node: wait until it is active (configured and activated
        by its autostart or a launch file), so no episode starts against an inactive policy."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(1.0, deadline - time.monotonic())
            state = self.call(self.policy_state, GetState.Request(), timeout=left)
            if state.current_state.id == State.PRIMARY_STATE_ACTIVE:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"policy node is '{state.current_state.label}', not active, "
                                   f"after {timeout:.0f} s")
            rclpy.spin_once(self, timeout_sec=0.1)

    def policy_parameters(self, names: list[str]) -> dict:
        """Current values of the policy node's parameters `names`."""
        res = self.call(self.policy_params, GetParameters.Request(names=list(names)))
        out = {}
        for name, v in zip(names, res.values):
            out[name] = {ParameterType.PARAMETER_BOOL: v.bool_value, ParameterType.PARAMETER_INTEGER:
                         v.integer_value, ParameterType.PARAMETER_DOUBLE: v.double_value,
                         ParameterType.PARAMETER_STRING: v.string_value}.get(v.type)
        return out

    def call(self, client, request, timeout: float = 30.0):
        """Call a service and spin until it answers; TimeoutError if it is not available or does not
        answer within `timeout` seconds."""
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} not available after {timeout:.0f} s")
        fut = client.call_async(request)
        rclpy.spin_until_future_complete(self, fut, timeout_sec=timeout)
        if not fut.done():
            raise TimeoutError(f"service {client.srv_name} did not answer within {timeout:.0f} s")
        return fut.result()

    def set_bridge(self, **values: int) -> None:
        """Set integer parameters on the bridge node (e.g. seed, arm); RuntimeError if one is rejected."""
        req = SetParameters.Request()
        for name, v in values.items():
            req.parameters.append(ParameterMsg(
                name=name, value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=int(v))))
        res = self.call(self.bridge_params, req)
        bad = [r.reason for r in res.results if not r.successful]
        if bad:
            raise RuntimeError(f"bridge rejected parameters {values}: {bad}")

    def run_episode(self, seed: int, arm: int, timeout: float) -> EpisodeResult | None:
        """Reset the policy, set the bridge's seed and arm, reset the bridge and wait for that seed's
        episode result; None if none arrives within `timeout` seconds."""
        r = self.call(self.policy_reset, Trigger.Request())
        if not r.success:
            raise RuntimeError(f"policy reset failed: {r.message}")
        self.set_bridge(seed=seed, arm=arm)
        n_before = len(self.results)
        r = self.call(self.bridge_reset, Trigger.Request())
        if not r.success:
            raise RuntimeError(f"bridge reset failed: {r.message}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rclpy.spin_once(self, timeout_sec=0.05)
            for res in self.results[n_before:]:
                if res.seed == seed:
                    return res
        return None


def describe(result: EvalResult, params: dict, arm: int) -> None:
    """Fill the result's mode, mirror flag and executor from the policy node's parameters."""
    if params.get("arm") is not None and int(params["arm"]) != arm:
        raise RuntimeError(f"the policy node drives arm {params['arm']}, the evaluation asks for arm {arm}")
    result.mode = str(params.get("execution") or "unknown")
    result.mirror = bool(params.get("mirror")) and arm == 1
    ex = {key: params.get(name) for name, key in EXECUTOR_PARAMETERS.items()}
    if ex.get("n_execute") == 0:
        ex["n_execute"] = None  # the node's 0 = the whole chunk, act_evaluate's None
    result.executor = ex


def run_trials(node: RosEvaluator, result: EvalResult, args) -> None:
    """Trial i: seed SEED + i through the bridge and the node; appended to `result`."""
    for i in range(args.trials):
        seed = args.seed + i
        res = node.run_episode(seed, args.arm, args.episode_timeout)
        result.seeds.append(seed)
        if res is None:
            result.successes.append(False)
            result.lengths.append(0)
            result.timeouts.append(seed)
            print(f"trial {i} seed {seed}: TIMEOUT", flush=True)
            continue
        result.successes.append(bool(res.success))
        result.lengths.append(int(res.steps))
        print(f"trial {i} seed {seed}: {'success' if res.success else 'failure'} ({res.steps} steps)",
              flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The `mirror_arm_ros_eval` argument parser."""
    p = argparse.ArgumentParser(prog="mirror_arm_ros_eval", description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--seed", type=int, default=1000, help="trial i uses env seed SEED + i")
    p.add_argument("--arm", type=int, choices=(0, 1), default=1)
    p.add_argument("--bridge", default="mirror_arm_bridge", help="bridge node name (services prefix)")
    p.add_argument("--policy", default="act_policy_node", help="policy node name (services prefix)")
    p.add_argument("--episode-timeout", type=float, default=300.0, help="seconds per episode")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the nodes' services")
    p.add_argument("--json", default=None, help="write per-trial results here")
    p.add_argument("--record", default=None, help="write the received commands per episode here (.npz)")
    p.add_argument("--command-type", choices=("float64_array", "joint_trajectory"), default="float64_array",
                   help="--record: the commands topic's type (joint_trajectory: each first point)")
    p.add_argument("--no-enable", action="store_true", help="do not call the policy's ~/enable")
    return p


def main(argv: list[str] | None = None) -> int:
    """`mirror_arm_ros_eval` CLI: run the trials and print/write the EvalResult; returns the exit code
    (2 on a timeout or service error, 130 on Ctrl-C)."""
    from rclpy.utilities import remove_ros_args

    args = build_parser().parse_args(remove_ros_args(sys.argv if argv is None else ["x", *argv])[1:])
    rclpy.init(args=sys.argv if argv is None else None)
    node = RosEvaluator(args.bridge, args.policy, record=bool(args.record), command_type=args.command_type)
    result = EvalResult(arm=args.arm, mode="unknown", mirror=False)
    t0 = time.perf_counter()
    code = 0
    try:
        for c in (node.bridge_reset, node.bridge_params, node.policy_state, node.policy_reset,
                  node.policy_enable, node.policy_params):
            if not c.wait_for_service(timeout_sec=args.wait):
                raise TimeoutError(f"service {c.srv_name} not available after {args.wait:.0f} s")
        node.wait_active(args.wait)  # configured: executor parameters resolved from the checkpoint
        describe(result, node.policy_parameters(["arm", "mirror", *EXECUTOR_PARAMETERS]), args.arm)
        if not args.no_enable:
            node.call(node.policy_enable, SetBool.Request(data=True))
        run_trials(node, result, args)
        # let the last commands arrive before splitting them per episode
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    except (TimeoutError, RuntimeError) as e:
        print(f"mirror_arm_ros_eval: error: {e}", file=sys.stderr, flush=True)
        code = 2
    except KeyboardInterrupt:
        code = 130
    result.wall_time_s = time.perf_counter() - t0
    print(f"ROS eval {result.summary()}", flush=True)
    if args.json:
        result.write_json(args.json)
    if args.record:
        cmds = np.asarray(node.commands, dtype=np.float64).reshape(-1, 7)
        offsets = np.cumsum([0, *result.lengths])
        np.savez(args.record, commands=cmds, offsets=offsets, seeds=np.asarray(result.seeds),
                 successes=np.asarray(result.successes))
    node.destroy_node()
    rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
