"""training.host_memory: with it on, a freed large tensor's pages are reused, not faulted in again."""

import json
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc setting")

# A fresh process (the setting is process-wide and cannot be undone) allocates, touches and frees
# 64 MB (a step's largest activations at config A are ~42 MB) 20 times, like 20 training steps,
# and counts the page faults of the last 5. (The first ones can fault: PyTorch's 64-byte aligned
# requests do not fit the freed block exactly until the heap has a few of them.)
PROBE = r"""
import json, resource, sys
import torch
from act_training.training.host_memory import keep_freed_memory
state = keep_freed_memory() if sys.argv[1] == "on" else "off"
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(20):
    if i == 15:
        f0 = faults()
    torch.ones(16 * 2**20)  # 64 MB of float32, freed at once
print(json.dumps({"state": state, "faults": faults() - f0}))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_keep_freed_memory_reuses_pages_of_a_freed_large_tensor():
    off, on = _probe("off"), _probe("on")
    pages = 5 * 64 * 2**20 // 4096
    assert on["state"] == "on"
    # glibc's default: each 64 MB block is mmapped and unmapped, so every page faults every time
    assert off["faults"] > pages // 2, off
    assert on["faults"] < pages // 20, on
