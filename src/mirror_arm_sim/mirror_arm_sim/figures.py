"""Figures for docs/sim.md (needs matplotlib, which the package itself does not require).

    python -m mirror_arm_sim.figures --out docs/img
writes sim_randomisation.png (top view of the cell: bases, cube and target ranges, sampled
poses of both arms) and sim_top_views.png (96 px "top" observations of a few seeds, both arms).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .cell import default_cell


def plot_randomisation(path: Path, n: int = 200) -> None:
    """Top view of the cell (table, arm bases, cube and target ranges, `n` sampled poses per arm)
    saved as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    from .env import MirrorArmEnv

    cell = default_cell()
    t = cell.task
    env = MirrorArmEnv()
    fig, ax = plt.subplots(figsize=(8, 5.2))
    th = cell.table.half
    ax.add_patch(Rectangle((-th[0], -th[1]), 2 * th[0], 2 * th[1], fc="0.9", ec="0.6"))
    ax.axvline(0, color="k", lw=0.8, ls="--")
    ax.text(0.005, 0.29, "mirror plane x = 0\n(top camera above it)", fontsize=8)
    for k in (0, 1):
        arm = cell.arm_spec(k)
        bx, by, _ = arm.base_pos
        bh = arm.base_half
        ax.add_patch(Rectangle((bx - bh[0], by - bh[1]), 2 * bh[0], 2 * bh[1], fc="0.2"))
        ax.text(bx, by - 0.1, f"arm {k}", ha="center")
        sx = 1 if k == 0 else -1
        for (xr, yr, col, lab) in ((t.cube_x, t.cube_y, "tab:red", "cube"),
                                   (t.target_x, t.target_y, "tab:green", "target")):
            x0, x1 = sorted((sx * xr[0], sx * xr[1]))
            ax.add_patch(Rectangle((x0, yr[0]), x1 - x0, yr[1] - yr[0], fill=False, ec=col, lw=2,
                                   label=f"{lab} range ({(xr[1] - xr[0]) * 100:.0f} x "
                                         f"{(yr[1] - yr[0]) * 100:.0f} cm)" if k == 0 else None))
        cubes, targets = [], []
        for s in range(n):
            env.reset(seed=s, options={"arm": k})
            cubes.append(env.cube_pose()[0][:2])
            targets.append(env.target_pos()[:2])
        cubes, targets = np.array(cubes), np.array(targets)
        ax.scatter(cubes[:, 0], cubes[:, 1], s=4, c="tab:red", alpha=0.5)
        ax.scatter(targets[:, 0], targets[:, 1], s=4, c="tab:green", alpha=0.5)
    # one example episode with true sizes (seed 0, arm 0)
    env.reset(seed=0, options={"arm": 0})
    (cx, cy, _), tp = env.cube_pose()[0], env.target_pos()
    ax.add_patch(Circle(tp[:2], cell.target.radius, fc="tab:green", alpha=0.35,
                        label=f"target disk r = {cell.target.radius * 100:.1f} cm (seed 0)"))
    h = cell.cube.half
    yaw = env.task.cube_yaw
    ax.add_patch(Rectangle((cx - h, cy - h), 2 * h, 2 * h, angle=np.degrees(yaw), rotation_point="center",
                           fc="tab:red", label=f"cube {2 * h * 100:.0f} cm, yaw in "
                                               f"[{np.degrees(t.cube_yaw[0]):.0f}, "
                                               f"{np.degrees(t.cube_yaw[1]):.0f}] deg"))
    env.close()
    ax.set_xlim(-th[0], th[0])
    ax.set_ylim(-0.35, 0.35)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(f"Randomisation: {n} seeds per arm (arm 1 = mirror of arm 0, same seeds)")
    ax.legend(loc="lower center", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_top_views(path: Path, seeds=(0, 1, 2, 3)) -> None:
    """The 'top' observations at reset of `seeds` for arm 0 (first row) and arm 1, tiled into
    one PNG at `path`."""
    from PIL import Image

    from .env import MirrorArmEnv

    env = MirrorArmEnv()
    rows = []
    for arm in (0, 1):
        row = []
        for s in seeds:
            row += [env.reset(seed=s, options={"arm": arm})[0]["images"]["top"],
                    np.full((env.image_size[0], 2, 3), 255, np.uint8)]
        rows += [np.concatenate(row[:-1], axis=1), np.full((2, len(seeds) * 98 - 2, 3), 255, np.uint8)]
    env.close()
    img = np.concatenate(rows[:-1], axis=0)
    Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.NEAREST).save(path)


def main(argv=None) -> int:
    """Write both figures into --out (default docs/img); returns 0."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/img")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_randomisation(out / "sim_randomisation.png")
    plot_top_views(out / "sim_top_views.png")
    print(f"wrote {out / 'sim_randomisation.png'} and {out / 'sim_top_views.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
