"""Keep freed memory in the training process, so a step does not fault its pages in again.

Why: PyTorch's CPU allocator takes every tensor from the C library's malloc. glibc serves blocks
larger than its mmap threshold (at most 32 MB) with a fresh mmap and gives them back on free, and
it trims the heap's free top back to the OS. A training step allocates and frees the same large
activations every step, so every step faults them in again: the kernel zeroes each page on first
touch. At LeRobot's default sizes (config A, docs/performance.md) that was ~230,000 page faults
and ~0.5 s of system time per step, about a tenth of the step.

`keep_freed_memory()` turns both off (mallopt M_MMAP_MAX = 0, M_TRIM_THRESHOLD = INT_MAX): large
blocks come from the heap, and freed memory stays there for the next step's tensors. The cost: the
process keeps its peak memory until it exits instead of returning it. Call it only in processes
that loop over the same work (the trainer, the training benchmark), never in the node.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def keep_freed_memory() -> str:
    """Set glibc's malloc to keep freed memory in this process. Returns what was done, for the log:
    "on" or "unavailable (<reason>)" (not Linux/glibc, or mallopt refused); never raises."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return f"unavailable (needs Linux with glibc, this is {platform.system()} {platform.libc_ver()[0]})"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
    except (OSError, AttributeError) as e:
        return f"unavailable ({e})"
    return "on" if ok else "unavailable (mallopt refused M_MMAP_MAX / M_TRIM_THRESHOLD)"
