"""A/B of training-step variants, alternated in one process, CPU seconds per step (docs/performance.md).

    TH=1 python benchmarks/try_train_step.py B base+fullvae,base,fused,cl,fused+cl 5 [bf16]

Arguments: config A|B|C (bench_lerobot's), variants (comma-separated, '+' combines), rounds, then
optionally bf16 autocast. Variants: base (the current model), fullvae (the CVAE encoder's last
layer computes every token, as before), fullsa (the first decoder layer's self-attention projects
its zero queries as before, instead of DecoderLayer's shortcut), fused (AdamW fused=True), cl
(channels_last trunk; now the model's default, so 'cl' only re-applies it).
"""

import os
import sys
import time
from dataclasses import replace

import numpy as np
import torch
from act_training.config import get_preset
from act_training.model.act import ACT, act_loss

BIG = dict(hidden_dim=512, dim_feedforward=3200, n_encoder_layers=4, n_vae_encoder_layers=4, chunk_size=100)
CONFIGS = {"B": {}, "A": dict(BIG, n_decoder_layers=1), "C": dict(BIG, n_decoder_layers=7)}
BATCH = 32


def build(v: str, mc, batch: dict, amp: str):
    torch.manual_seed(0)
    m = ACT(mc)
    if "cl" in v:
        m.backbones.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=1e-4, fused="fused" in v)
    if "fullvae" in v:
        full = m.vae_encoder.forward
        m.vae_encoder.forward = lambda x, pos, mask=None, first_only=False: full(x, pos, mask, False)
    if "fullsa" in v:
        layer0 = m.decoder.layers[0]
        full_layer = layer0.forward
        layer0.forward = lambda x, qp, mem, mem_pos, x_is_zero=False: full_layer(x, qp, mem, mem_pos, False)
    dtype = torch.bfloat16 if amp == "bf16" else None

    def step():
        ctx = torch.autocast("cpu", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)
        with ctx:
            a, mu, lv = m(batch["images"], batch["qpos"], batch["actions"], batch["action_is_pad"])
        ls = act_loss(a, batch["actions"], batch["action_is_pad"], mu, lv, 10.0)
        opt.zero_grad(set_to_none=True)
        ls["loss"].backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 10.0)
        opt.step()
    return step


def main() -> None:
    torch.set_num_threads(int(os.environ.get("TH", "1")))
    cfg, variants, rounds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
    amp = sys.argv[4] if len(sys.argv) > 4 else "off"
    mc = replace(get_preset("cpu").model, camera_names=("top",), state_dim=7, action_dim=7,
                 image_size=(96, 96),
                 crop=None, **CONFIGS[cfg])
    g = torch.Generator().manual_seed(0)
    batch = {"images": torch.rand(BATCH, 1, 3, 96, 96, generator=g),
             "qpos": torch.randn(BATCH, 7, generator=g),
             "actions": torch.randn(BATCH, mc.chunk_size, 7, generator=g),
             "action_is_pad": torch.zeros(BATCH, mc.chunk_size, dtype=torch.bool)}
    steps = {v: build(v, mc, batch, amp) for v in variants}
    for s in steps.values():  # warm-up
        s()
    res = {v: [] for v in variants}
    for _ in range(rounds):
        for v, s in steps.items():
            t = time.process_time()
            s()
            res[v].append(time.process_time() - t)
    med = {v: round(1e3 * float(np.median(x)), 1) for v, x in res.items()}
    print(cfg, amp, "CPU ms/step", med, "load", os.getloadavg()[0], flush=True)


if __name__ == "__main__":
    main()
