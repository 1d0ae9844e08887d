"""act_training: ACT shapes, every decoder layer counts, the first decoder layer's shortcut for its
zero queries is multi-head attention, padding ignored, tiny overfit."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
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


def reference_self_attention(layer, x, query_pos):
    """nn.MultiheadAttention's computation of `layer.self_attn` on x, written out, with its dropout
    on the attention weights (B, heads, L, L): the definition the shortcut must equal."""
    mha = layer.self_attn
    B, L, d = x.shape
    heads, dh = mha.num_heads, d // mha.num_heads
    h = layer.norm1(x) if layer.pre_norm else x
    w, b = mha.in_proj_weight, mha.in_proj_bias

    def split(t):
        return t.view(B, L, heads, dh).transpose(1, 2)
    q = split(F.linear(h + query_pos, w[:d], b[:d]))
    k = split(F.linear(h + query_pos, w[d:2 * d], b[d:2 * d]))
    v = split(F.linear(h, w[2 * d:], b[2 * d:]))
    attn = F.dropout(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), -1), mha.dropout, mha.training)
    return mha.out_proj((attn @ v).transpose(1, 2).reshape(B, L, d))


@pytest.mark.parametrize("pre_norm", [False, True])
def test_the_first_decoder_layer_shortcut_is_self_attention_of_its_zero_queries(pre_norm):
    """ACT's decoder input is zero, so its first self-attention is computed without projecting
    B x chunk tokens (DecoderLayer._self_attention_of_zeros): in eval it equals nn.MultiheadAttention
    on the zeros, and in training, with the same dropout mask, the written-out attention."""
    torch.manual_seed(0)
    m = ACT(tiny_cfg(dropout=0.3, pre_norm=pre_norm, chunk_size=12))
    layer, d = m.decoder.layers[0], m.cfg.hidden_dim
    with torch.no_grad():  # at init every bias is 0 and v0 = 0: nothing to compare; make them count
        for name, p in layer.named_parameters():
            if "bias" in name or "norm" in name:
                p.add_(torch.randn_like(p))
    x, query_pos = torch.zeros(5, 12, d), torch.randn(1, 12, d)
    m.eval()
    with torch.no_grad():
        h = layer.norm1(x) if pre_norm else x
        want = layer.self_attn(h + query_pos, h + query_pos, h, need_weights=False)[0]
        got = layer._self_attention_of_zeros(5, query_pos)
    assert got.shape == (5, 12, d) and want.abs().max() > 0.1
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    m.train()
    torch.manual_seed(3)
    got = layer._self_attention_of_zeros(5, query_pos)
    torch.manual_seed(3)
    want = reference_self_attention(layer, x, query_pos)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (got[0] - got[1]).abs().max() > 1e-3  # each sample has its own dropout mask
    # and the whole decoder: the shortcut path and the full path agree in eval
    memory, memory_pos = torch.randn(5, 7, d), torch.randn(1, 7, d)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m.decoder(x, query_pos, memory, memory_pos, x_is_zero=True),
                                   m.decoder(x, query_pos, memory, memory_pos), atol=1e-5, rtol=1e-5)


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
