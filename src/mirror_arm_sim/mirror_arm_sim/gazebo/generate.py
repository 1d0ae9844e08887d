"""`mirror_arm_gazebo_generate --out DIR`: write the Gazebo artefacts of the cell.

    DIR/mirror_arm_cell.sdf     the world (gz sim -r DIR/mirror_arm_cell.sdf)
    DIR/mirror_arm_cell.urdf    both arms, for robot_state_publisher
    DIR/ros_gz_bridge.yaml      ros_gz_bridge config (active arm --arm for the wrist camera)

`--check` loads the SDF with libsdformat and the URDF with urdfdom/urdf_parser_py (where
installed) and fails on any error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cell import default_cell
from .bridge_config import bridge_yaml, build_bridge_config
from .sdf import DEFAULT_IMAGE_SIZE, build_sdf
from .tree import build_tree
from .urdf import build_urdf

SDF_FILE = "mirror_arm_cell.sdf"
URDF_FILE = "mirror_arm_cell.urdf"
BRIDGE_FILE = "ros_gz_bridge.yaml"


def generate(out: str | Path, arm: int = 0, image_size=DEFAULT_IMAGE_SIZE, cameras=None,
             wrist_cameras: bool = True) -> dict[str, Path]:
    """Write the cell's SDF world, URDF and ros_gz_bridge YAML into `out` (image_size (H, W), the
    active `arm`'s wrist camera bridged); returns their paths by kind ('sdf', 'urdf', 'bridge')."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cell = default_cell(wrist_cameras=wrist_cameras)
    tree = build_tree(cell)
    paths = {"sdf": out / SDF_FILE, "urdf": out / URDF_FILE, "bridge": out / BRIDGE_FILE}
    paths["sdf"].write_text(build_sdf(cell, tuple(int(v) for v in image_size), tree))
    paths["urdf"].write_text(build_urdf(cell, tree=tree))
    paths["bridge"].write_text(bridge_yaml(build_bridge_config(cell, arm, cameras)))
    return paths


def check(paths: dict[str, Path]) -> list[str]:
    """Errors from the real parsers (an unavailable parser is reported, not an error)."""
    from .parsers import ParserUnavailable, check_sdf, check_urdf_cli, parse_urdf_py

    errors = []
    try:
        rep = check_sdf(paths["sdf"])
        errors += [f"sdf: {e}" for e in rep.errors]
        print(f"[check] libsdformat ({rep.library}): {len(rep.errors)} errors", file=sys.stderr)
    except ParserUnavailable as exc:
        print(f"[check] SDF not checked: {exc}", file=sys.stderr)
    try:
        ok, text = check_urdf_cli(paths["urdf"])
        if not ok:
            errors.append(f"urdf (check_urdf): {text}")
        print(f"[check] urdfdom check_urdf: {'ok' if ok else 'FAILED'}", file=sys.stderr)
    except ParserUnavailable as exc:
        print(f"[check] URDF not checked by urdfdom: {exc}", file=sys.stderr)
    try:
        parse_urdf_py(paths["urdf"].read_text())
    except ParserUnavailable as exc:
        print(f"[check] URDF not checked by urdf_parser_py: {exc}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - report any parser failure
        errors.append(f"urdf (urdf_parser_py): {exc}")
    return errors


def main(argv=None) -> int:
    """`mirror_arm_gazebo_generate` CLI: write the files and print their paths; with --check,
    returns 1 if a parser reports errors, else 0."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--arm", type=int, default=0, choices=(0, 1), help="active arm (its wrist camera)")
    ap.add_argument("--image-size", type=int, nargs=2, default=list(DEFAULT_IMAGE_SIZE), metavar=("H", "W"))
    ap.add_argument("--cameras", nargs="*", default=None, help="cameras to bridge (default: all)")
    ap.add_argument("--no-wrist-cameras", action="store_true", help="top camera only")
    ap.add_argument("--check", action="store_true", help="parse the results with the real parsers")
    a = ap.parse_args(argv)
    paths = generate(a.out, a.arm, a.image_size, a.cameras, not a.no_wrist_cameras)
    for p in paths.values():
        print(p)
    if a.check:
        errors = check(paths)
        for e in errors:
            print(e, file=sys.stderr)
        return 1 if errors else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
