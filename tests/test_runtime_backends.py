"""Inference backends: ONNX Runtime and the frozen TorchScript graph give eager PyTorch's chunks
(random and trained weights, real units), the ONNX cache, act_export, act_evaluate --backend."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from act_training.config import make_config
from act_training.data.synthetic import write_synthetic_demos
from act_training.runtime import backends
from act_training.runtime.export import cache_paths
from act_training.runtime.export import main as export_main
from act_training.runtime.policy import ACTPolicyRuntime
from act_training.training.train import train
from node_testlib import make_tiny_checkpoint

pytest.importorskip("onnxruntime")
torch.set_num_threads(1)
TOL = 1e-4  # real units (rad), the bar


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory):
    # action_std 2.0: a wide action scale, so that normalised differences are magnified in real units
    return make_tiny_checkpoint(tmp_path_factory.mktemp("rand") / "policy.pt", action_std=2.0)


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("trained")
    demos = write_synthetic_demos(d / "demos.hdf5", num_demos=3, T=24, hw=(32, 32))
    cfg = make_config("tiny", [f"data.path={demos}", f"train.out_dir={d / 'run'}", "train.steps=20",
                               "train.eval_every=0", "train.ckpt_every=0", "train.log_every=10"])
    return train(cfg)


def observations(rt: ACTPolicyRuntime, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ims = {c: rng.integers(0, 256, (batch, *rt.frame_size, 3), dtype=np.uint8) for c in rt.camera_names}
    q = (rt.stats.qpos_mean + rng.normal(0, 0.5, (batch, rt.state_dim))).astype(np.float32)
    return ims, q


@pytest.mark.parametrize("backend", ["onnx", "jit"])
@pytest.mark.parametrize("which", ["random_ckpt", "trained_ckpt"])
def test_backend_matches_eager_torch(backend, which, request):
    ckpt = request.getfixturevalue(which)
    ref = ACTPolicyRuntime.load(ckpt, backend="torch")
    rt = ACTPolicyRuntime.load(ckpt, backend=backend)
    assert rt.backend == backend
    for batch in (1, 5):  # the exported graph's batch axis is dynamic
        ims, q = observations(ref, batch, seed=batch)
        want = ref.predict_chunk_batch(ims, q)
        got = rt.predict_chunk_batch(ims, q)
        assert got.shape == want.shape == (batch, ref.chunk_size, ref.action_dim)
        assert got.dtype == np.float32
        assert np.abs(got - want).max() <= TOL
    one_ims, one_q = observations(ref, 1, seed=9)
    np.testing.assert_allclose(rt.predict_chunk({c: v[0] for c, v in one_ims.items()}, one_q[0]),
                               ref.predict_chunk({c: v[0] for c, v in one_ims.items()}, one_q[0]), atol=TOL)


def test_onnx_cache_is_keyed_by_the_checkpoint(tmp_path):
    ck = make_tiny_checkpoint(tmp_path / "policy.pt", seed=1)
    rt = ACTPolicyRuntime.load(ck, backend="onnx")
    first = cache_paths(ck, rt.model)
    assert sorted(first) == ["decode", "trunk0"]  # one shared trunk, then the transformer
    assert all(p.is_file() and p.parent == ck.parent for p in first.values())
    mtimes = [p.stat().st_mtime_ns for p in first.values()]
    ACTPolicyRuntime.load(ck, backend="onnx")  # reused, not exported again
    assert [p.stat().st_mtime_ns for p in first.values()] == mtimes
    (user_graph := ck.with_name("policy.onnx")).write_bytes(b"a user's own file")
    make_tiny_checkpoint(ck, seed=2)  # retrained in place: the stale graphs must not be run
    rt = ACTPolicyRuntime.load(ck, backend="onnx")
    second = cache_paths(ck, rt.model)
    assert all(p.is_file() for p in second.values())
    assert not any(p.exists() for p in first.values()) and user_graph.is_file()
    ims, q = observations(rt, 2)
    want = ACTPolicyRuntime.load(ck).predict_chunk_batch(ims, q)
    assert np.abs(rt.predict_chunk_batch(ims, q) - want).max() <= TOL


def test_onnx_without_a_writable_directory_exports_in_memory(tmp_path):
    ck = make_tiny_checkpoint(tmp_path / "ro" / "policy.pt")
    os.chmod(ck.parent, 0o555)
    try:
        if os.access(ck.parent, os.W_OK):  # root ignores the mode bits
            pytest.skip("running as root: directory permissions are not enforced")
        rt = ACTPolicyRuntime.load(ck, backend="onnx")
        assert not list(ck.parent.glob("*.onnx"))
        ims, q = observations(rt, 1)
        assert np.abs(rt.predict_chunk_batch(ims, q) - ACTPolicyRuntime.load(ck).predict_chunk_batch(ims, q)
                      ).max() <= TOL
    finally:
        os.chmod(ck.parent, 0o755)


@pytest.mark.parametrize("backend", ["torch", "onnx", "jit"])
def test_image_tokens_then_decode_is_predict_chunk(backend, tmp_path):
    """The node's split path (each camera frame encoded once, the transformer per tick) gives the
    chunk predict_chunk gives, for two cameras with a trunk each, on every backend."""
    ck = make_tiny_checkpoint(tmp_path / "two.pt", cameras=("top", "wrist"), shared_backbone=False)
    rt = ACTPolicyRuntime.load(ck, backend=backend)
    ims, q = observations(rt, 3, seed=4)
    want = rt.predict_chunk_batch(ims, q)
    assert np.abs(want - ACTPolicyRuntime.load(ck).predict_chunk_batch(ims, q)).max() <= TOL
    for b in range(3):
        tokens = {c: rt.encode_image(c, ims[c][b]) for c in rt.camera_names}
        assert all(t.dtype == np.float32 and t.ndim == 2 for t in tokens.values())
        np.testing.assert_allclose(rt.predict_from_tokens(tokens, q[b]), want[b], atol=1e-5)
    stale = {"top": rt.encode_image("top", ims["top"][0]), "wrist": tokens["wrist"]}  # an older top frame
    assert np.abs(rt.predict_from_tokens(stale, q[2]) - want[2]).max() > 1e-3
    with pytest.raises(KeyError, match="no image tokens for cameras \\['wrist'\\]"):
        rt.predict_from_tokens({"top": tokens["top"]}, q[0])
    with pytest.raises(KeyError, match="no camera 'side'"):
        rt.encode_image("side", ims["top"][0])


def test_unknown_backend_is_a_clear_error(random_ckpt):
    with pytest.raises(ValueError, match="unknown inference backend 'tensorrt'.*torch, jit, onnx"):
        ACTPolicyRuntime.load(random_ckpt, backend="tensorrt")


def test_act_export_cli(random_ckpt, tmp_path, capsys):
    out = tmp_path / "exported.onnx"
    assert export_main(["--checkpoint", str(random_ckpt), "--out", str(out), "--check"]) == 0
    captured = capsys.readouterr()
    assert out.is_file() and captured.out.strip() == str(out)  # --out: the whole network, one graph
    diff = float(captured.err.split("=")[1].split()[0])
    assert diff <= TOL
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["images", "qpos"]
    assert [o.name for o in sess.get_outputs()] == ["actions"]
    assert sess.get_inputs()[0].shape[0] == "batch"  # dynamic batch axis
    # default output: the runtime's cache of two halves next to the checkpoint, checked as it runs
    assert export_main(["--checkpoint", str(random_ckpt), "--check"]) == 0
    captured = capsys.readouterr()
    model = ACTPolicyRuntime.load(random_ckpt).model
    assert captured.out.split() == [str(p) for p in cache_paths(random_ckpt, model).values()]
    assert float(captured.err.split("=")[1].split()[0]) <= TOL
    # --int8: also the quantised transformer of backend onnx_int8, in the cache the runtime reads
    assert export_main(["--checkpoint", str(random_ckpt), "--int8"]) == 0
    int8 = cache_paths(random_ckpt, model, int8=True)["decode"]
    assert capsys.readouterr().out.split()[-1] == str(int8) and int8.is_file()


def test_act_export_bad_checkpoint_one_line_exit_2(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert export_main(["--checkpoint", str(junk)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("act_export: error:") and "junk.pt" in err[0]
    assert not list(tmp_path.glob("*.onnx"))


@pytest.mark.slow
def test_act_evaluate_same_trials_with_both_backends(trained_ckpt, tmp_path):
    """act_evaluate --backend onnx reproduces --backend torch seed by seed (successes, lengths and
    the arm's final joint positions), on mirrored arm 1 in ensemble mode."""
    from act_training.evaluation.rollouts import main as evaluate_main

    results = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.json"
        rc = evaluate_main(["--checkpoint", str(trained_ckpt), "--arm", "1", "--mode", "ensemble",
                            "--trials", "3", "--seed", "7", "--max-steps", "25", "--n-envs", "2",
                            "--backend", backend, "--json", str(out)])
        assert rc == 0
        results[backend] = json.loads(out.read_text())
    t, o = results["torch"], results["onnx"]
    assert t["seeds"] == o["seeds"] == [7, 8, 9]
    assert t["successes"] == o["successes"] and t["lengths"] == o["lengths"]
    np.testing.assert_allclose(np.asarray(o["final_qpos"]), np.asarray(t["final_qpos"]), atol=1e-3)


def test_onnx_int8_stays_within_a_few_thousandths_of_torch_and_caches_beside_the_float_graphs(
        trained_ckpt, tmp_path):
    """backend onnx_int8: the trunk's float graph and an int8 transformer, cached next to the
    float graphs (neither evicts the other); its chunks are close to eager torch's, not 1e-4."""
    ck = tmp_path / "policy.pt"
    ck.write_bytes(trained_ckpt.read_bytes())
    ref = ACTPolicyRuntime.load(ck, backend="torch")
    rt = ACTPolicyRuntime.load(ck, backend="onnx_int8")
    assert rt.backend == rt.network.name == "onnx_int8"
    floats, int8 = cache_paths(ck, rt.model), cache_paths(ck, rt.model, int8=True)
    assert int8["decode"].name.endswith(".decode-int8.onnx") and int8["trunk0"] == floats["trunk0"]
    ACTPolicyRuntime.load(ck, backend="onnx")
    assert all(p.is_file() for p in [*floats.values(), *int8.values()])
    graph = int8["decode"].read_bytes()
    assert b"DynamicQuantizeLinear" in graph or b"MatMulInteger" in graph or b"DynamicQuantizeMatMul" in graph
    ims, q = observations(ref, 8, seed=3)
    want, got = ref.predict_chunk_batch(ims, q), rt.predict_chunk_batch(ims, q)
    diff = np.abs(got - want) / ref.stats.action_std  # in action standard deviations
    assert diff.mean() <= 0.02 and diff.max() <= 0.1, (diff.mean(), diff.max())  # here: 0.007, 0.034
    assert diff.max() > TOL  # it is the quantised graph that ran, not the float one
    assert TOL < rt.network.int8_deviation <= backends.INT8_MAX_DEVIATION  # the check at load


def test_onnx_int8_refuses_a_cpu_whose_int8_kernels_deviate(trained_ckpt, tmp_path, monkeypatch):
    """The load-time check against the float graph: above the limit, a one-line error naming the
    deviation and the float backend, instead of a policy that is off."""
    ck = tmp_path / "policy.pt"
    ck.write_bytes(trained_ckpt.read_bytes())
    monkeypatch.setattr(backends, "INT8_MAX_DEVIATION", 1e-6)  # any real int8 graph deviates more
    with pytest.raises(RuntimeError, match=r"backend 'onnx_int8': the int8 transformer deviates from the "
                                           r"float one by [0-9.e-]+ action std on this CPU \(limit 1e-06\): "
                                           r"use backend 'onnx'"):
        ACTPolicyRuntime.load(ck, backend="onnx_int8")
