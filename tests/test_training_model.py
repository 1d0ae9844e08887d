"""act_training: ACT shapes, every decoder layer counts, padding ignored, tiny overfit."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from act_training.config import get_preset
from act_training.model.act import ACT, act_loss

torch.set_num_threads(1)


def tiny_cfg(**kw):
    mc = replace(get_preset("tiny").model, camera_names=("top", "wrist"), state_dim=7, action_dim=6)
    return replace(mc, **kw)


def batch(B=4, N=2, C=8, A=6, hw=(32, 32), seed=0):
    g = torch.Generator().manual_seed(seed)
    pad = torch.zeros(B, C, dtype=torch.bool)
    pad[0, 5:] = True
    return (torch.rand(B, N, 3, *hw, generator=g), torch.randn(B, 7, generator=g),
            torch.randn(B, C, A, generator=g), pad)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("use_vae", [True, False])
def test_shapes(shared, use_vae):
    m = ACT(tiny_cfg(shared_backbone=shared, use_vae=use_vae))
    assert len(m.backbones) == (1 if shared else 2)
    im, q, a, pad = batch()
    out, mu, lv = m(im, q, a, pad)
    assert out.shape == (4, 8, 6)
    assert (mu is None) == (not use_vae) and (mu is None or mu.shape == (4, 8) == lv.shape)
    out0, mu0, _ = m(im, q)  # inference: z = 0, no posterior
    assert out0.shape == (4, 8, 6) and mu0 is None
    with pytest.raises(ValueError, match="cameras"):
        m(im[:, :1], q)


def test_every_decoder_layer_feeds_the_output():
    torch.manual_seed(0)
    m = ACT(tiny_cfg(n_decoder_layers=3))
    im, q, a, pad = batch()
    out, _, _ = m(im, q)  # z = 0 path
    out.abs().sum().backward()
    for i, layer in enumerate(m.decoder.layers):
        g = sum(p.grad.abs().sum().item() for p in layer.parameters() if p.grad is not None)
        assert g > 0, f"decoder layer {i} does not influence the output"
    # and perturbing any one layer changes the prediction
    with torch.no_grad():
        base = m(im, q)[0]
        for i, layer in enumerate(m.decoder.layers):
            w = layer.ff[0].weight
            saved = w.clone()
            w += 0.5 * torch.randn_like(w)
            assert (m(im, q)[0] - base).abs().max() > 1e-3, f"decoder layer {i} has no effect"
            w.copy_(saved)


def test_padded_steps_do_not_affect_the_loss():
    m = ACT(tiny_cfg()).eval()  # eval: no dropout; z still sampled from the posterior
    im, q, a, pad = batch()
    a2 = a.clone()
    a2[pad] = 1e3  # garbage in the padded steps only
    losses = []
    for acts in (a, a2):
        torch.manual_seed(0)
        out, mu, lv = m(im, q, acts, pad)
        losses.append(act_loss(out, acts, pad, mu, lv, kl_weight=1.0))
    for k in ("loss", "l1", "kl"):
        assert torch.allclose(losses[0][k], losses[1][k]), k
    # without the mask the garbage would count
    out, mu, lv = m(im, q, a2, None)
    assert act_loss(out, a2, None, mu, lv, 1.0)["l1"] > 10


def test_tiny_overfit_loss_falls():
    torch.manual_seed(0)
    m = ACT(tiny_cfg(camera_names=("top",), n_decoder_layers=1))
    im, q, _, pad = batch(B=8, N=1, seed=1)
    a = torch.tanh(q[:, :6])[:, None, :] * torch.linspace(0.5, 1.5, 8)[None, :, None]  # learnable
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    first = None
    for _ in range(70):
        out, mu, lv = m(im, q, a, pad)
        ls = act_loss(out, a, pad, mu, lv, kl_weight=0.01)
        opt.zero_grad()
        ls["loss"].backward()
        opt.step()
        first = first if first is not None else ls["l1"].item()
    with torch.no_grad():
        l1_prior = act_loss(m(im, q)[0], a, pad, None, None, 0.0)["l1"].item()
    assert ls["l1"].item() < first / 5, (first, ls["l1"].item())
    assert l1_prior < first / 3, (first, l1_prior)
