"""Dropout with a cheaper random draw: 16 random bits per element instead of a Bernoulli sample.

nn.Dropout's CPU kernel draws one `bernoulli_` sample per element, single-threaded: 11.4 ms for
the 1.6 M activations of one cpu-preset feed-forward layer (batch 32 x 50 x 1024) on a 2-core
Xeon. Filling a quarter as many int64 with random bits takes 1.2 ms, the whole forward 3.0 ms;
each element keeps its value when its 16 bits, read as a signed integer, are at or above a
threshold. A cpu-preset fp32 training step (16 such layers at p = 0.1; the attention weights keep
nn.MultiheadAttention's own dropout) is 6.7 % faster
(503 -> 471 ms, alternated in one process). Same function as
nn.Dropout (kept values scaled by 1 / (1 - p), dropped ones 0, identity in eval mode) with p
rounded to a multiple of 1/65536 (0.1 -> 0.100006). It draws from torch's default generator, so
a run is reproducible from a seed and a resume restores its stream like any other draw.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_LEVELS = 1 << 16
_INT64_MIN = -(1 << 63)  # random_(from=INT64_MIN, to=None): all 64 bits random


def dropout16(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Dropout of `x` (any shape) with probability p, from 16 random bits per element."""
    if not training or p <= 0.0:
        return x
    dropped = round(p * _LEVELS)
    if dropped >= _LEVELS:
        return x * 0.0
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(_INT64_MIN, None)
    r = bits.view(torch.int16)[:n].view(x.shape)
    # P(r >= dropped - 2^15) = (2^16 - dropped) / 2^16 = 1 - p; the mask carries the 1 / (1 - p)
    mask = (r >= dropped - _LEVELS // 2).to(x.dtype).mul_(_LEVELS / (_LEVELS - dropped))
    return x * mask


class Dropout16(nn.Module):
    """nn.Dropout(p) drawn with `dropout16` (same behaviour, p rounded to a multiple of 1/65536)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout16(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
