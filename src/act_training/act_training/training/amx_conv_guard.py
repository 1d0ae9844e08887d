"""Trunk convolutions that oneDNN's AMX bf16 kernels get wrong run in fp32 instead.

On CPUs with AMX (Intel Sapphire Rapids and later), bf16 autocast sends a strided 3x3 convolution
to oneDNN's `brg_conv_fwd:avx10_1_512_amx` kernel (and its backward-weights sibling). With the
oneDNN 3.12 in this project's torch wheel, when the convolution's OUTPUT is one pixel wide, that
kernel reads scratch memory it never wrote: the forward pass returns garbage (NaN whenever the
reused heap held NaN) for every output row past the first, and the weight gradient is wrong when
the input is one pixel wide. The loss is NaN within a few steps (the trainer stops with
TrainingDiverged). It happens only with small images: a ResNet trunk's feature map is 1 px wide
at layer3 for 32 px wide inputs and at layer4 for inputs up to 64 px wide.

Measured on a Xeon with amx_bf16 (every 3x3 stride-2 ResNet shape with inputs up to 8x8 px and
batch 1..32; stride-1 and 1x1 convolutions, and the same kernels limited to AVX-512 bf16
(ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16), were right): wrong exactly when stride > 1, kernel > 1 and
the output width is 1. Limiting the whole process to AVX-512 would avoid it but halves bf16
training speed (cpu preset step 0.32 -> 0.61 s), so only the affected convolutions leave bf16;
they are the smallest ones in the trunk. The upstream bugs in this kernel family:
uxlfoundation/oneDNN#5494 (input buffer underestimated for strided AMX convolutions).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn


def cpu_has_amx() -> bool:
    """True where /proc/cpuinfo lists amx_bf16 (oneDNN then picks its AMX kernels for bf16)."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def amx_conv_is_wrong(conv: nn.Conv2d, out_hw: tuple[int, int]) -> bool:
    """Whether oneDNN's AMX bf16 kernel gets this convolution wrong (the measured domain above)."""
    kh, kw = conv.kernel_size
    return max(conv.stride) > 1 and max(kh, kw) > 1 and out_hw[1] == 1


class Fp32Conv2d(nn.Conv2d):
    """nn.Conv2d that runs in fp32 under autocast (same parameters and state_dict keys)."""

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


def trunk_conv_outputs(model: nn.Module, image_size: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """Output (h, w) of every Conv2d in `model.backbones` for (H, W) = image_size input frames
    (one fp32 batch-1 pass with hooks)."""
    sizes: dict[str, tuple[int, int]] = {}

    def record(name: str):
        def hook(mod, inp, out) -> None:  # returns None: the output is left as it is
            sizes.setdefault(name, tuple(out.shape[-2:]))
        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in model.backbones.named_modules()
             if isinstance(m, nn.Conv2d)]
    try:
        p = next(model.backbones.parameters())
        x = torch.zeros(1, 3, *image_size, device=p.device).to(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast(p.device.type, enabled=False):
            for bb in model.backbones:
                was_training = bb.training
                bb.eval()  # BatchNorm: running statistics untouched, and batch 1 is allowed
                try:
                    bb(x)
                finally:
                    bb.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return sizes


def guard_amx_convs(model: nn.Module, amp_dtype: torch.dtype | None, device: torch.device,
                    has_amx: bool | None = None) -> list[str]:
    """Switch the trunk convolutions that AMX bf16 gets wrong to Fp32Conv2d, in place; returns
    their names ('backbones.0.body.6.0.conv1', ...). Does nothing (returns []) unless training
    runs bf16 autocast on a CPU with AMX (`has_amx`: None = read /proc/cpuinfo)."""
    if amp_dtype != torch.bfloat16 or device.type != "cpu":
        return []
    if not (cpu_has_amx() if has_amx is None else has_amx):
        return []
    switched = []
    for name, out_hw in trunk_conv_outputs(model, model.cfg.image_size).items():
        conv = model.backbones.get_submodule(name)
        if amx_conv_is_wrong(conv, out_hw) and type(conv) is nn.Conv2d:
            conv.__class__ = Fp32Conv2d  # parameters, hooks and state_dict stay as they are
            switched.append(f"backbones.{name}")
    return switched
