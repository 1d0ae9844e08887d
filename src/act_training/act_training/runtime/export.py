"""act_export: a checkpoint's inference network as an ONNX graph, for ONNX Runtime.

    act_export --checkpoint runs/x/policy.pt            # -> runs/x/policy.<hash>.onnx (the cache
                                                        #    ACTPolicyRuntime.load(backend="onnx") reads)
    act_export --checkpoint policy.pt --out policy.onnx [--opset 17] [--check]

The graph is the network only, at z = 0 (the CVAE prior mean), as the runtime runs it:

    inputs   images  (B, N_cams, 3, H, W) float32 in [0, 1], cropped and resized to the model size
             qpos    (B, state_dim) float32, normalised with the checkpoint's statistics
    output   actions (B, chunk, action_dim) float32, normalised
    B is a dynamic axis.

Normalisation is NOT in the graph: the runtime's pipeline (resize, qpos normalisation, action
de-normalisation) is one implementation shared by every backend and by the trainer, and a second
copy inside the graph could drift from it. Whoever runs the .onnx file outside this package reads
the statistics from the checkpoint (`norm_stats`). Files are written atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import warnings
from pathlib import Path

import torch

from act_training.model.act import ACT
from act_training.runtime.backends import InferenceGraph, example_inputs
from act_training.training.checkpoint import CheckpointError

OPSET = 17
# bump when the exported graph changes (inputs, outputs, what is inside): invalidates caches
EXPORT_VERSION = 1


def export_onnx(model: ACT, out: str | Path | io.BytesIO, opset: int = OPSET) -> str | Path | io.BytesIO:
    """Export `model`'s inference forward (see module docstring) to `out` (a path, written
    atomically, or a BytesIO)."""
    if opset < 17:
        raise ValueError(f"opset {opset}: need >= 17 (LayerNormalization)")
    graph = InferenceGraph(model.eval()).eval()
    args = example_inputs(model)
    dyn = {"images": {0: "batch"}, "qpos": {0: "batch"}, "actions": {0: "batch"}}
    kwargs = dict(input_names=["images", "qpos"], output_names=["actions"], dynamic_axes=dyn,
                  opset_version=opset, dynamo=False, do_constant_folding=True)
    with warnings.catch_warnings():
        # the TorchScript-based exporter warns that it is deprecated in favour of dynamo=True,
        # which needs onnxscript and takes ~10x longer here; the graph it writes is what we test
        warnings.simplefilter("ignore")
        if isinstance(out, io.BytesIO):
            torch.onnx.export(graph, args, out, **kwargs)
            return out
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            torch.onnx.export(graph, args, str(tmp), **kwargs)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return out


def checkpoint_hash(checkpoint: str | Path, opset: int = OPSET) -> str:
    """12 hex digits of sha256(checkpoint bytes, opset, EXPORT_VERSION): the cache key."""
    h = hashlib.sha256(f"act-onnx-v{EXPORT_VERSION}-opset{opset}".encode())
    with open(checkpoint, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def cache_path(checkpoint: str | Path, opset: int = OPSET) -> Path:
    """Where the ONNX graph of `checkpoint` is cached: <dir>/<stem>.<hash>.onnx."""
    p = Path(checkpoint)
    return p.with_name(f"{p.stem}.{checkpoint_hash(p, opset)}.onnx")


def cached_onnx(model: ACT, checkpoint: str | Path | None, opset: int = OPSET) -> str | bytes:
    """The ONNX graph of `model` loaded from `checkpoint`: the cached file's path, exporting it
    first when missing (stale exports of the same stem are removed); the graph's bytes when there
    is no checkpoint path or its directory is not writable."""
    if checkpoint is None:
        return export_onnx(model, io.BytesIO(), opset).getvalue()
    path = cache_path(checkpoint, opset)
    if path.is_file():
        return str(path)
    if not os.access(path.parent, os.W_OK):
        return export_onnx(model, io.BytesIO(), opset).getvalue()
    for old in path.parent.glob(f"{Path(checkpoint).stem}.*.onnx"):
        if old != path and len(old.suffixes) >= 2:
            old.unlink(missing_ok=True)
    return str(export_onnx(model, path, opset))


# ----------------------------------------------------------------------------- CLI
def parity(checkpoint: str | Path, onnx_path: str | Path, batch: int = 4) -> float:
    """Largest |ONNX - eager torch| over random inputs, in real (de-normalised) units."""
    from act_training.runtime.backends import OnnxBackend, TorchBackend
    from act_training.runtime.policy import ACTPolicyRuntime

    rt = ACTPolicyRuntime.load(checkpoint)
    images, qpos = example_inputs(rt.model, batch)
    ref = TorchBackend(rt.model)(images, qpos)
    got = OnnxBackend(str(onnx_path))(images, qpos)
    return float(((got - ref).abs() * torch.as_tensor(rt.stats.action_std)).max())


def build_parser() -> argparse.ArgumentParser:
    """The `act_export` argument parser."""
    p = argparse.ArgumentParser(prog="act_export", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="policy checkpoint (.pt) written by act_train")
    p.add_argument("--out", help="ONNX file to write (default: the runtime's cache, <stem>.<hash>.onnx "
                                 "next to the checkpoint)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset, >= 17 (default {OPSET})")
    p.add_argument("--check", action="store_true",
                   help="compare ONNX Runtime with eager PyTorch on random inputs (max |diff|, real units)")
    return p


def main(argv: list[str] | None = None) -> int:
    """`act_export` CLI: export the checkpoint's network to ONNX (and optionally check it against
    torch); prints the file's path, returns the exit code (2 on an error)."""
    a = build_parser().parse_args(argv)
    from act_training.runtime.policy import ACTPolicyRuntime

    try:
        if a.opset < 17:
            raise ValueError(f"--opset {a.opset}: expected >= 17")
        rt = ACTPolicyRuntime.load(a.checkpoint)
        out = Path(a.out) if a.out else cache_path(a.checkpoint, a.opset)
        export_onnx(rt.model, out, a.opset)
        if a.check:
            print(f"act_export: max |onnx - torch| = {parity(a.checkpoint, out):.3g} (real units)",
                  file=sys.stderr)
    except (CheckpointError, ValueError, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]  # torch's errors span lines
        print(f"act_export: error: {first}", file=sys.stderr)
        return 2
    print(out)
    return 0


__all__ = ["OPSET", "cache_path", "cached_onnx", "checkpoint_hash", "export_onnx", "main"]

if __name__ == "__main__":
    sys.exit(main())
