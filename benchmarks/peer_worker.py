"""One side of the LeRobot comparison (bench_lerobot.py starts two): builds one ACT of a named
config and times its training step / batch-1 chunk inference on request.

    python peer_worker.py --side lerobot --config A     # in the LeRobot venv: imports only torch + lerobot
    python peer_worker.py --side project --config A     # in the project's venv

Protocol: one JSON line per request on stdin, one JSON line per answer on stdout:
    {"op": "train", "n": 2, "amp": "off" | "auto"}  -> {"wall_s": [...], "cpu_s": [...]}
    {"op": "infer", "n": 20, "backend": "torch" | "onnx" | "onnx_int8"} -> {"wall_s": [...], "cpu_s": [...]}
The first line written is {"ready": true, ...}. Same sizes on both sides: one 96x96 camera,
state and action dim 7, batch 32, random weights and data (time does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# config -> (dim, ff, encoder layers, decoder layers, CVAE encoder layers, chunk)
CONFIGS = {"A": (512, 3200, 4, 1, 4, 100), "B": (256, 1024, 2, 1, 2, 50), "C": (512, 3200, 4, 7, 4, 100)}
BATCH, HW, DIM = 32, (96, 96), 7


def timed(fn, n: int) -> dict:
    wall, cpu = [], []
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"wall_s": wall, "cpu_s": cpu}


class LeRobotSide:
    """LeRobot 0.4.4 ACTPolicy: forward (loss), backward, clip 10, AdamW with its optimizer preset."""

    def __init__(self, cfg_name: str):
        import torch
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.act.configuration_act import ACTConfig
        from lerobot.policies.act.modeling_act import ACTPolicy

        d, ff, ne, nd, nv, chunk = CONFIGS[cfg_name]
        cfg = ACTConfig(
            input_features={"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(DIM,)),
                            "observation.images.top": PolicyFeature(type=FeatureType.VISUAL, shape=(3, *HW))},
            output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(DIM,))},
            chunk_size=chunk, n_action_steps=chunk, dim_model=d, dim_feedforward=ff, n_encoder_layers=ne,
            n_decoder_layers=nd, n_vae_encoder_layers=nv, pretrained_backbone_weights=None, device="cpu")
        torch.manual_seed(0)
        self.torch = torch
        self.policy = ACTPolicy(cfg)
        self.opt = torch.optim.AdamW(self.policy.get_optim_params(), lr=cfg.optimizer_lr,
                                     weight_decay=cfg.optimizer_weight_decay)
        self.batch = {"observation.state": torch.randn(BATCH, DIM),
                      "observation.images.top": torch.rand(BATCH, 3, *HW),
                      "action": torch.randn(BATCH, chunk, DIM),
                      "action_is_pad": torch.zeros(BATCH, chunk, dtype=torch.bool)}
        self.one = {k: v[:1] for k, v in self.batch.items() if k.startswith("observation")}
        self.params = sum(p.numel() for p in self.policy.parameters())

    def train(self, n: int, amp: str = "off") -> dict:
        def step():
            self.policy.train()
            loss, _ = self.policy.forward(self.batch)
            self.opt.zero_grad()
            loss.backward()
            self.torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 10.0)
            self.opt.step()
        return timed(step, n)

    def infer(self, n: int, backend: str = "torch") -> dict:
        def call():
            with self.torch.inference_mode():
                self.policy.predict_action_chunk(self.one)
        return timed(call, n)


class ProjectSide:
    """This project's ACT: the trainer's optimizer and loss, the runtime's predict_chunk."""

    def __init__(self, cfg_name: str):
        import dataclasses

        import numpy as np
        import torch
        from act_training.config import get_preset
        from act_training.data.normalize import NormStats
        from act_training.model.act import ACT, act_loss
        from act_training.runtime.policy import ACTPolicyRuntime
        from act_training.training.host_memory import keep_freed_memory
        from act_training.training.train import make_optimizer, resolve_amp

        d, ff, ne, nd, nv, chunk = CONFIGS[cfg_name]
        cfg = get_preset("cpu")
        # the trainer's process setting (training.host_memory), as `act_train` does
        self.host_memory = keep_freed_memory() if cfg.train.keep_freed_memory else "off"
        mc = dataclasses.replace(cfg.model, camera_names=("top",), state_dim=DIM, action_dim=DIM,
                                 image_size=HW, crop=None, hidden_dim=d, dim_feedforward=ff,
                                 n_encoder_layers=ne,
                                 n_decoder_layers=nd, n_vae_encoder_layers=nv, chunk_size=chunk)
        torch.manual_seed(0)
        self.torch, self.act_loss, self.resolve_amp, self.mc = torch, act_loss, resolve_amp, mc
        self.grad_clip = cfg.train.grad_clip
        self.model = ACT(mc)
        self.opt = make_optimizer(self.model, cfg.train)
        self.batch = {"images": torch.rand(BATCH, 1, 3, *HW), "qpos": torch.randn(BATCH, DIM),
                      "actions": torch.randn(BATCH, chunk, DIM),
                      "action_is_pad": torch.zeros(BATCH, chunk, dtype=torch.bool)}
        stats = NormStats(np.zeros(DIM), np.ones(DIM), np.zeros(DIM), np.ones(DIM))
        names = [f"j{i}" for i in range(DIM)]
        self.runtimes = {b: ACTPolicyRuntime(self.model, stats, ["top"], names, names, torch.device("cpu"),
                                             backend=b) for b in ("torch", "onnx", "onnx_int8")}
        rng = np.random.default_rng(0)
        self.obs = ({"top": rng.integers(0, 256, (*HW, 3), dtype=np.uint8)}, np.zeros(DIM, np.float32))
        self.int8_max_abs_diff = float(np.abs(self.runtimes["onnx_int8"].predict_chunk(*self.obs)
                                              - self.runtimes["onnx"].predict_chunk(*self.obs)).max())
        self.params = sum(p.numel() for p in self.model.parameters())

    def train(self, n: int, amp: str = "off") -> dict:
        torch = self.torch
        dtype = self.resolve_amp(amp, torch.device("cpu"))
        b = self.batch

        def step():
            self.model.train()
            ctx = torch.autocast("cpu", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)
            with ctx:
                a, mu, lv = self.model(b["images"], b["qpos"], b["actions"], b["action_is_pad"])
            loss = self.act_loss(a, b["actions"], b["action_is_pad"], mu, lv, self.mc.kl_weight)["loss"]
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.opt.step()
        return {**timed(step, n), "amp": str(dtype)}

    def infer(self, n: int, backend: str = "torch") -> dict:
        rt = self.runtimes[backend]
        rt.model.eval()
        return timed(lambda: rt.predict_chunk(*self.obs), n)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", choices=("lerobot", "project"), required=True)
    ap.add_argument("--config", choices=sorted(CONFIGS), required=True)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    side = (LeRobotSide if a.side == "lerobot" else ProjectSide)(a.config)
    out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not corrupt the protocol
    out.write(json.dumps({"ready": True, "params": side.params, "torch": torch.__version__,
                          "threads": torch.get_num_threads(),
                          "int8_max_abs_diff": getattr(side, "int8_max_abs_diff", None),
                          "host_memory": getattr(side, "host_memory", None),
                          "glibc_tunables": os.environ.get("GLIBC_TUNABLES")}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "train":
            res = side.train(req["n"], req.get("amp", "off"))
        else:
            res = side.infer(req["n"], req.get("backend", "torch"))
        out.write(json.dumps(res) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
