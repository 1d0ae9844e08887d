"""What machine a figure was measured on: CPU model, the SIMD flags that change training speed
and precision (AVX2, AVX-512, avx512_bf16, AMX), cores, torch threads. Reports name it so that a
figure can be compared with a run on another machine of the same kind."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The flags that decide which kernels (and, with train.amp=auto, which precision) a run uses.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """(model name, the RELEVANT_FLAGS this CPU has) from /proc/cpuinfo ('' and [] elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "", []
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, [f for f in RELEVANT_FLAGS if f in flags]


def machine_info(precision: str | None = None, threads: int | None = None) -> dict:
    """A small dict for reports: cpu, flags, cores, precision and threads used."""
    model, flags = cpu_model_and_flags()
    info = {"cpu": model, "cpu_flags": flags, "cores": os.cpu_count() or 0,
            "python": platform.python_version()}
    if precision is not None:
        info["precision"] = precision
    if threads is not None:
        info["threads"] = threads
    return info


def describe(info: dict) -> str:
    """One line: 'AMD EPYC, 2 cores, flags avx2 fma avx512f avx512_bf16, bf16, 2 threads'."""
    parts = [info.get("cpu") or "unknown CPU", f"{info.get('cores', '?')} cores",
             "flags " + (" ".join(info.get("cpu_flags") or []) or "none of " + "/".join(RELEVANT_FLAGS))]
    if info.get("precision"):
        parts.append(str(info["precision"]))
    if info.get("threads"):
        parts.append(f"{info['threads']} threads")
    return ", ".join(parts)
