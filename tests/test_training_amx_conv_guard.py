"""act_training: the trunk convolutions that oneDNN's AMX bf16 kernel gets wrong (strided, output
1 px wide) are found from the image size and run in fp32; on an AMX CPU a bf16 training step at
such a size stays finite on a heap full of NaN (it went NaN within a few steps without the guard)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest
import torch
from act_training.config import get_preset
from act_training.model.act import ACT
from act_training.training.amx_conv_guard import Fp32Conv2d, cpu_has_amx, guard_amx_convs

CPU = torch.device("cpu")


def resnet18_act(hw):
    mc = replace(get_preset("tiny").model, camera_names=("top",), state_dim=7, action_dim=6,
                 image_size=hw, backbone_layers=4)
    torch.manual_seed(0)
    return ACT(mc)


def test_guard_switches_exactly_the_strided_convs_with_a_one_pixel_wide_output():
    m = resnet18_act((32, 16))  # layer3 output 2x1, layer4 output 1x1
    keys = list(m.state_dict())
    names = guard_amx_convs(m, torch.bfloat16, CPU, has_amx=True)
    assert names == ["backbones.0.body.6.0.conv1", "backbones.0.body.7.0.conv1"]
    for name, mod in m.named_modules():
        assert isinstance(mod, Fp32Conv2d) == (name in names), name
    assert list(m.state_dict()) == keys  # checkpoints are unchanged
    # nothing to do: a trunk whose maps stay wider than 1 px, another CPU, fp32 training
    assert guard_amx_convs(resnet18_act((96, 96)), torch.bfloat16, CPU, has_amx=True) == []
    assert guard_amx_convs(resnet18_act((32, 16)), torch.bfloat16, CPU, has_amx=False) == []
    assert guard_amx_convs(resnet18_act((32, 16)), None, CPU, has_amx=True) == []


def test_a_switched_conv_computes_in_fp32_under_bf16_autocast():
    m = resnet18_act((32, 16))
    guard_amx_convs(m, torch.bfloat16, CPU, has_amx=True)
    conv = m.backbones[0].body[6][0].conv1
    x = torch.randn(2, conv.in_channels, 4, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x.bfloat16())
    assert y.dtype == torch.float32
    ref = torch.nn.functional.conv2d(x.bfloat16().float(), conv.weight, None, conv.stride, conv.padding)
    torch.testing.assert_close(y, ref)


STEP_ON_A_NAN_HEAP = textwrap.dedent("""
    import sys, torch
    from dataclasses import replace
    from act_training.config import get_preset
    from act_training.model.act import ACT, act_loss
    from act_training.training.amx_conv_guard import guard_amx_convs
    from act_training.training.host_memory import keep_freed_memory
    keep_freed_memory()  # freed blocks are reused, so uninitialised reads see the NaNs below
    torch.set_num_threads(1)
    mc = replace(get_preset("tiny").model, camera_names=("top",), state_dim=7, action_dim=6,
                 image_size=(32, 16), backbone_layers=4, hidden_dim=64)
    torch.manual_seed(0)
    m = ACT(mc)
    print("switched", guard_amx_convs(m, torch.bfloat16, torch.device("cpu")))
    g = torch.Generator().manual_seed(1)
    B = 16
    im, q = torch.rand(B, 1, 3, 32, 16, generator=g), torch.randn(B, 7, generator=g)
    a, pad = torch.randn(B, mc.chunk_size, 6, generator=g), torch.zeros(B, mc.chunk_size, dtype=torch.bool)
    bad = 0
    for _ in range(10):
        junk = [torch.full((n,), float("nan")) for n in (10**3, 10**4, 10**5, 10**6, 4 * 10**6)]
        del junk
        m.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, mu, lv = m(im, q, a, pad)
        loss = act_loss(out, a, pad, mu, lv, mc.kl_weight)["loss"]
        loss.backward()
        grads = [p.grad for p in m.parameters() if p.grad is not None]
        bad += not (torch.isfinite(loss) and all(torch.isfinite(x).all() for x in grads))
    print("non-finite steps", bad)
""")


@pytest.mark.skipif(not cpu_has_amx(), reason="this CPU has no amx_bf16 (the bug is in oneDNN's AMX kernel)")
def test_bf16_step_on_amx_stays_finite_on_a_nan_heap():
    r = subprocess.run([sys.executable, "-c", STEP_ON_A_NAN_HEAP], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "switched ['backbones.0.body.6.0.conv1', 'backbones.0.body.7.0.conv1']" in r.stdout, r.stdout
    assert "non-finite steps 0" in r.stdout, r.stdout
