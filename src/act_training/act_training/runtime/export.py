"""act_export: a checkpoint's inference network as ONNX graphs, for ONNX Runtime.

    act_export --checkpoint runs/x/policy.pt            # -> runs/x/policy.<hash>.trunk0.onnx and
                                                        #    runs/x/policy.<hash>.decode.onnx: the cache
                                                        #    ACTPolicyRuntime.load(backend="onnx") reads
    act_export --checkpoint policy.pt --out policy.onnx [--opset 17] [--check]   # one whole graph
    act_export --checkpoint runs/x/policy.pt --int8     # + runs/x/policy.<hash>.decode-int8.onnx,
                                                        #   the cache of backend "onnx_int8"

The graphs are the network only, at z = 0 (the CVAE prior mean). The runtime runs it in two
halves (runtime.backends): a trunk per camera and the transformer ("decode"):

    trunk<i>  image   (B, 3, H, W) float32 in [0, 1], cropped and resized to the model size
              -> tokens (B, h*w, d)            (one trunk<i> per camera, or trunk0 when shared)
    decode    tokens  (B, N_cams*h*w, d), the cameras' tokens in camera order
              qpos    (B, state_dim) float32, normalised with the checkpoint's statistics
              -> actions (B, chunk, action_dim) float32, normalised
    --out     images  (B, N_cams, 3, H, W), qpos -> actions: both halves in one graph
    B is a dynamic axis.

`decode-int8` is `decode` with its matrix products dynamically quantised (ONNX Runtime's
`quantize_dynamic`: 7-bit int8 weights per output channel, uint8 activations quantised per call); the
trunk stays float32 (its convolutions gain nothing from ORT's integer kernels). It is ~2x faster
on the transformer and NOT within the float backends' 1e-4: its actions differ by a few
thousandths of a radian (docs/performance.md has the figures and the success rates).

Normalisation is NOT in the graph: the runtime's pipeline (resize, qpos normalisation, action
de-normalisation) is one implementation shared by every backend and by the trainer, and a second
copy inside the graph could drift from it. Whoever runs the .onnx file outside this package reads
the statistics from the checkpoint (`norm_stats`). Files are written atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from act_training.model.act import ACT
from act_training.runtime.backends import (
    DecodeGraph,
    InferenceGraph,
    TrunkGraph,
    example_inputs,
    trunk_cameras,
)
from act_training.training.checkpoint import CheckpointError

OPSET = 17
# bump when the exported graphs change (inputs, outputs, what is inside): invalidates caches
EXPORT_VERSION = 4  # 3: the int8 transformer (7-bit weights); 4: the zero-query self-attention shortcut


def export_onnx(model: ACT, out: str | Path | io.BytesIO, opset: int = OPSET) -> str | Path | io.BytesIO:
    """Export `model`'s whole inference forward (images, qpos -> actions) to `out` (a path, written
    atomically, or a BytesIO)."""
    return _export(InferenceGraph(model.eval()), example_inputs(model), ["images", "qpos"], out, opset)


def export_halves(model: ACT, out: dict[str, Path] | None = None,
                  opset: int = OPSET) -> dict[str, str | bytes]:
    """Export the runtime's graphs (module docstring): {"trunk<i>": ..., "decode": ...}, each to
    `out[name]` (written atomically; the path is returned) or, without `out`, as bytes."""
    model = model.eval()
    images, qpos = example_inputs(model)
    with torch.no_grad():
        tokens = torch.cat([model.camera_tokens(images[:, i], i) for i in range(images.shape[1])], 1)
    jobs = {f"trunk{i}": (TrunkGraph(model, i), (images[:, i],), ["image"], "tokens")
            for i in trunk_cameras(model)}
    jobs["decode"] = (DecodeGraph(model), (tokens, qpos), ["tokens", "qpos"], "actions")
    got = {}
    for name, (module, args, inputs, output) in jobs.items():
        dest = out[name] if out is not None else io.BytesIO()
        done = _export(module, args, inputs, dest, opset, output)
        got[name] = done.getvalue() if isinstance(done, io.BytesIO) else str(done)
    return got


def quantize_decode(decode: str | bytes, out: str | Path | None = None) -> str | bytes:
    """The int8 twin of the `decode` graph (a path or bytes; module docstring): written atomically
    to `out` (its path is returned) or, without `out`, returned as bytes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="act-int8-") as tmp:
        src = Path(tmp) / "decode.onnx"
        if isinstance(decode, bytes):
            src.write_bytes(decode)
        else:
            src = Path(decode)
        dest = Path(tmp) / "decode-int8.onnx"
        with _quiet_quantizer():
            # int8 weights per output channel (the smallest error of ORT's dynamic modes here) in
            # 7 bits (reduce_range): ORT's uint8 x int8 kernel on CPUs without VNNI (AVX2 only)
            # sums pairs of products in 16 bits (VPMADDUBSW), which full-range weights can
            # saturate; 7-bit weights cannot, so the graph computes the same on every x86 CPU.
            # Gemm and MatMul are every linear layer and attention product.
            quantize_dynamic(src, dest, op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                             reduce_range=True, weight_type=QuantType.QInt8)
        if out is None:
            return dest.read_bytes()
        out = Path(out)
        tmp_out = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            with open(dest, "rb") as f, open(tmp_out, "wb") as g:
                g.write(f.read())
                g.flush()
                os.fsync(g.fileno())
            os.replace(tmp_out, out)
        finally:
            tmp_out.unlink(missing_ok=True)
        return str(out)


@contextlib.contextmanager
def _quiet_quantizer():
    # quantize_dynamic logs "Please consider to run pre-processing before quantization" on the root
    # logger on every call; the graphs here are already shape-inferred and folded by the exporter
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _export(module, args, inputs: list[str], out, opset: int, output: str = "actions"):
    if opset < 17:
        raise ValueError(f"opset {opset}: need >= 17 (LayerNormalization)")
    dyn = {name: {0: "batch"} for name in [*inputs, output]}
    kwargs = dict(input_names=inputs, output_names=[output], dynamic_axes=dyn,
                  opset_version=opset, dynamo=False, do_constant_folding=True)
    with warnings.catch_warnings():
        # the TorchScript-based exporter warns that it is deprecated in favour of dynamo=True,
        # which needs onnxscript and takes ~10x longer here; the graph it writes is what we test
        warnings.simplefilter("ignore")
        if isinstance(out, io.BytesIO):
            torch.onnx.export(module.eval(), args, out, **kwargs)
            return out
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            torch.onnx.export(module.eval(), args, str(tmp), **kwargs)
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


def cache_paths(checkpoint: str | Path, model: ACT, opset: int = OPSET,
                int8: bool = False) -> dict[str, Path]:
    """Where the ONNX graphs of `checkpoint` are cached: {half: <dir>/<stem>.<hash>.<half>.onnx};
    with `int8`, "decode" is the quantised <stem>.<hash>.decode-int8.onnx."""
    p = Path(checkpoint)
    key = checkpoint_hash(p, opset)
    names = [f"trunk{i}" for i in trunk_cameras(model)] + ["decode"]
    paths = {n: p.with_name(f"{p.stem}.{key}.{n}.onnx") for n in names}
    if int8:
        paths["decode"] = p.with_name(f"{p.stem}.{key}.decode-int8.onnx")
    return paths


def cached_onnx(model: ACT, checkpoint: str | Path | None, opset: int = OPSET,
                int8: bool = False) -> dict[str, str | bytes]:
    """The ONNX graphs of `model` loaded from `checkpoint` (`export_halves`' dict; with `int8`,
    "decode" is `quantize_decode`'s and "decode-float" the float graph it came from, for
    backends.check_int8): the cached files' paths, exporting them first when missing (other
    checkpoints' exports of the same stem are removed); the graphs' bytes when there is no
    checkpoint path or its directory is not writable."""
    if checkpoint is None or not os.access(Path(checkpoint).parent, os.W_OK):
        graphs = export_halves(model, None, opset)
        if int8:
            graphs["decode-float"] = graphs["decode"]
            graphs["decode"] = quantize_decode(graphs["decode"])
        return graphs
    float_paths = cache_paths(checkpoint, model, opset)
    paths = cache_paths(checkpoint, model, opset, int8=int8)
    extra = {"decode-float": str(float_paths["decode"])} if int8 else {}
    if all(p.is_file() for p in [*paths.values(), *float_paths.values()]):
        return {**{n: str(p) for n, p in paths.items()}, **extra}
    key, stem = checkpoint_hash(checkpoint, opset), Path(checkpoint).stem
    ours = re.compile(rf"{re.escape(stem)}\.([0-9a-f]{{12}})\.(trunk\d+|decode|decode-int8)\.onnx")
    for old in Path(checkpoint).parent.glob(f"{stem}.*.onnx"):
        # the cache of another checkpoint (or opset) under this name is stale; a user's own
        # files (e.g. <stem>.onnx) do not match the cache's pattern and are left alone
        if (m := ours.fullmatch(old.name)) and m.group(1) != key:
            old.unlink(missing_ok=True)
    if not all(p.is_file() for p in float_paths.values()):
        export_halves(model, float_paths, opset)
    if int8 and not paths["decode"].is_file():
        quantize_decode(str(float_paths["decode"]), paths["decode"])
    return {**{n: str(p) for n, p in paths.items()}, **extra}


# ----------------------------------------------------------------------------- CLI
def parity(checkpoint: str | Path, onnx_path: str | Path | None = None, batch: int = 4) -> float:
    """Largest |ONNX - eager torch| over random inputs, in real (de-normalised) units: of the whole
    graph at `onnx_path`, or (None) of the runtime's cached halves."""
    from act_training.runtime.backends import TorchBackend, onnx_session
    from act_training.runtime.policy import ACTPolicyRuntime

    rt = ACTPolicyRuntime.load(checkpoint)
    images, qpos = example_inputs(rt.model, batch)
    ref = TorchBackend(rt.model)(images, qpos)
    if onnx_path is None:
        got = ACTPolicyRuntime.load(checkpoint, backend="onnx").network(images, qpos)
    else:
        sess = onnx_session(str(onnx_path), threads=torch.get_num_threads())
        got = torch.from_numpy(sess.run(["actions"], {"images": images.numpy(), "qpos": qpos.numpy()})[0])
    return float(((got - ref).abs() * torch.as_tensor(rt.stats.action_std)).max())


def build_parser() -> argparse.ArgumentParser:
    """The `act_export` argument parser."""
    p = argparse.ArgumentParser(prog="act_export", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="policy checkpoint (.pt) written by act_train")
    p.add_argument("--out", help="write the whole network as one ONNX file here (default: the runtime's "
                                 "cache of two halves, <stem>.<hash>.<half>.onnx next to the checkpoint)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset, >= 17 (default {OPSET})")
    p.add_argument("--int8", action="store_true",
                   help="also write backend onnx_int8's int8 transformer (<stem>.<hash>.decode-int8.onnx)")
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
        if a.out:
            outs = [str(export_onnx(rt.model, Path(a.out), a.opset))]
        else:
            outs = list(cached_onnx(rt.model, a.checkpoint, a.opset).values())
            if a.int8:
                outs.append(cached_onnx(rt.model, a.checkpoint, a.opset, int8=True)["decode"])
        if a.check:
            diff = parity(a.checkpoint, a.out if a.out else None)
            print(f"act_export: max |onnx - torch| = {diff:.3g} (real units)", file=sys.stderr)
    except (CheckpointError, ValueError, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]  # torch's errors span lines
        print(f"act_export: error: {first}", file=sys.stderr)
        return 2
    print("\n".join(outs))
    return 0


__all__ = ["OPSET", "cache_paths", "cached_onnx", "checkpoint_hash", "export_halves", "export_onnx", "main",
           "quantize_decode"]

if __name__ == "__main__":
    sys.exit(main())
