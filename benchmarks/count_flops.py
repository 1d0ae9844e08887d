"""FLOPs of one training step (forward + backward, batch 32) of bench_lerobot's configs, per side,
counted by torch's FlopCounterMode (matrix products and convolutions), and of the image trunk alone.

    python benchmarks/count_flops.py project B A C
    .venv-lerobot/bin/python benchmarks/count_flops.py lerobot B A C   # LeRobot's venv

A time ratio between the two sides can only beat their work ratio where one side's kernels run at
a higher FLOP rate: docs/performance.md uses these counts to say what limits the fp32 train step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_worker  # noqa: E402


def step_flops(side: str, cfg: str) -> tuple[float, float | None]:
    """(GFLOP of a training step's forward + backward, GFLOP of the trunk alone (project only))."""
    torch.manual_seed(0)
    if side == "lerobot":
        s = peer_worker.LeRobotSide(cfg)

        def fwd_bwd():
            s.policy.train()
            s.policy.forward(s.batch)[0].backward()
        trunk = None
    else:
        from act_training.model.act import act_loss

        s = peer_worker.ProjectSide(cfg)
        m, b = s.model, s.batch

        def fwd_bwd():
            m.train()
            a, mu, lv = m(b["images"], b["qpos"], b["actions"], b["action_is_pad"])
            act_loss(a, b["actions"], b["action_is_pad"], mu, lv, s.mc.kl_weight)["loss"].backward()
        counter = FlopCounterMode(display=False)
        with counter:
            m.backbones[0](b["images"][:, 0]).sum().backward()
        trunk = counter.get_total_flops() / 1e9
    counter = FlopCounterMode(display=False)
    with counter:
        fwd_bwd()
    return counter.get_total_flops() / 1e9, trunk


def main() -> int:
    side, cfgs = sys.argv[1], sys.argv[2:] or ["B", "A", "C"]
    for cfg in cfgs:
        total, trunk = step_flops(side, cfg)
        extra = f", trunk {trunk:.1f} GFLOP" if trunk is not None else ""
        print(f"{side} config {cfg}: train step {total:.1f} GFLOP{extra}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
