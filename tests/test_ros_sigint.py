"""Ctrl-C / SIGTERM on a spinning ROS process end the spin cleanly (`mirror_arm_sim.ros_signals`):
never by a KeyboardInterrupt raised in the middle of rclpy code, nor by a context shut down under
the executor, which both printed tracebacks when `ros2 launch` stopped the policy node or bridge."""

import signal
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("rclpy")

SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from mirror_arm_sim.ros_signals import StopOnSignal

    stop = StopOnSignal()
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("sigint_probe")
    ticks = []
    node.create_timer(0.001, lambda: ticks.append(1))  # keeps the executor building tasks
    after = []
    def interrupt():
        while len(ticks) < 50:
            threading.Event().wait(0.01)
        os.kill(os.getpid(), int(sys.argv[1]))
        n = len(ticks)
        threading.Event().wait(0.3)
        after.append(len(ticks) - n)
    t = threading.Thread(target=interrupt)
    t.start()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        stop.spin(executor)
        print("ended: returned", stop.requested)
    except KeyboardInterrupt:
        print("ended: KeyboardInterrupt")
    t.join()
    print("ticks after the signal", after[0])
    node.destroy_node()
    rclpy.try_shutdown()
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_spinning_returns_from_spin(sig):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(int(sig))], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"ended: returned {int(sig)}" in out.stdout, out.stdout + out.stderr
    # the spin stopped at the signal: the 1 kHz timer ran at most a few more times
    after = int(out.stdout.split("ticks after the signal")[1])
    assert after < 50, out.stdout
    assert "Traceback" not in out.stderr, out.stderr


def test_a_signal_during_start_up_ends_the_process_once_it_spins():
    code = ("import os, signal, time\nfrom mirror_arm_sim.ros_signals import StopOnSignal\n"
            "stop = StopOnSignal()\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(0.2)\n"
            "print('start-up went on')\n"
            "class Executor:\n    class context:\n        ok = staticmethod(lambda: True)\n"
            "    def spin_once(self, timeout_sec):\n        raise AssertionError('spun')\n"
            "stop.spin(Executor())\nprint('returned', stop.requested)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.split("\n")[:2] == ["start-up went on", f"returned {int(signal.SIGINT)}"], \
        out.stdout + out.stderr


def test_a_second_signal_during_start_up_interrupts_it():
    code = ("import os, signal, time\nfrom mirror_arm_sim.ros_signals import StopOnSignal\nStopOnSignal()\n"
            "os.kill(os.getpid(), signal.SIGINT)\ntime.sleep(0.2)\n"
            "try:\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(5)\n"
            "    print('not interrupted')\nexcept KeyboardInterrupt:\n    print('interrupted')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "interrupted", out.stdout + out.stderr
