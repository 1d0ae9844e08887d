"""act_training: Dropout16 is dropout: drops a fraction p, scales the rest by 1 / (1 - p), passes the
gradient through the same mask, is the identity in eval mode and reproducible from the seed."""

from __future__ import annotations

import math

import pytest
import torch
from act_training.model.dropout import Dropout16, dropout16


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drops_a_fraction_p_and_keeps_the_mean(p):
    torch.manual_seed(0)
    x = torch.ones(1_000_003)  # odd size: the last int64 of random bits is used in part
    y = dropout16(x, p)
    kept = y != 0
    n = x.numel()
    sd = math.sqrt(p * (1 - p) / n)
    assert abs((1 - kept.float().mean().item()) - p) < 5 * sd
    scale = 65536 / (65536 - round(p * 65536))
    assert torch.all(y[kept] == scale)
    assert abs(y.mean().item() - 1.0) < 5 * sd / (1 - p)


def test_every_bit_position_is_random():
    # all four int16 of each int64 draw: the drop rate is p in each position (no biased top bit)
    torch.manual_seed(1)
    y = dropout16(torch.ones(400_000), 0.5)
    for k in range(4):
        rate = (y[k::4] == 0).float().mean().item()
        assert abs(rate - 0.5) < 0.01, (k, rate)


def test_gradient_uses_the_same_mask_and_shapes_are_kept():
    torch.manual_seed(2)
    x = torch.randn(3, 5, 7, requires_grad=True)
    y = dropout16(x, 0.3)
    assert y.shape == x.shape
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.where(y != 0, 1 / (1 - round(0.3 * 65536) / 65536), 0.0))


def test_module_eval_identity_seeded_and_p_checked():
    m = Dropout16(0.2)
    x = torch.randn(64, 32)
    torch.manual_seed(3)
    a = m(x)
    torch.manual_seed(3)
    b = m(x)
    assert torch.equal(a, b) and not torch.equal(a, x)
    m.eval()
    assert m(x) is x
    assert torch.equal(Dropout16(0.0)(x), x) and torch.count_nonzero(Dropout16(1.0)(x)) == 0
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout16(1.5)
