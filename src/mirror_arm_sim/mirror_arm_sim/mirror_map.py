"""The mirror map: how arm 0's observations and actions become arm 1's, and back.

One implementation, loaded from configuration (YAML), used by the symmetry test, the
evaluator and the policy node. For joint vectors:

    mirror(q)[i] = sign[i] * q[perm[i]] + offset[i]

and for cameras: camera `c` of the mirrored scene is camera `swap[c]` (or `c`), flipped
horizontally when `c` is in `flip_cameras`. The map must be an involution (applying it twice
is the identity); `validate()` checks that, so a mis-typed config fails loudly at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import yaml


@dataclass(frozen=True)
class MirrorMap:
    """Joint signs/permutation/offsets plus per-camera flips and swaps. See module docstring."""

    joint_signs: tuple[float, ...]
    joint_permutation: tuple[int, ...] | None = None
    joint_offsets: tuple[float, ...] | None = None
    flip_cameras: tuple[str, ...] = ()
    camera_swaps: dict[str, str] = field(default_factory=dict)
    joint_names: tuple[str, ...] | None = None  # documentation/validation only

    def __post_init__(self) -> None:
        self.validate()

    @property
    def dim(self) -> int:
        """Number of joints the map acts on."""
        return len(self.joint_signs)

    def validate(self) -> None:
        """Raise ValueError unless the map is consistent (+-1 signs, a true permutation, matching
        lengths, paired camera swaps) and its joint map is an involution."""
        d = self.dim
        if d == 0:
            raise ValueError("mirror map: joint_signs is empty")
        if any(s not in (-1.0, 1.0) for s in self.joint_signs):
            raise ValueError(f"mirror map: joint_signs must be +1/-1, found {self.joint_signs}")
        if self.joint_permutation is not None:
            perm = list(self.joint_permutation)
            if sorted(perm) != list(range(d)):
                raise ValueError(
                    f"mirror map: joint_permutation must be a permutation of 0..{d - 1}, found {perm}"
                )
        if self.joint_offsets is not None and len(self.joint_offsets) != d:
            raise ValueError(
                f"mirror map: joint_offsets has {len(self.joint_offsets)} entries, expected {d}"
            )
        if self.joint_names is not None and len(self.joint_names) != d:
            raise ValueError(
                f"mirror map: joint_names has {len(self.joint_names)} entries, expected {d}"
            )
        for a, b in self.camera_swaps.items():
            if self.camera_swaps.get(b) != a:
                raise ValueError(f"mirror map: camera swap {a}->{b} has no inverse {b}->{a}")
        probe = np.linspace(-1.3, 2.1, d)
        if not np.allclose(self.joints(self.joints(probe)), probe, atol=1e-9):
            raise ValueError(
                "mirror map is not an involution (mirror(mirror(q)) != q): check that "
                "signs, permutation and offsets are consistent"
            )

    # --- joint space -----------------------------------------------------------------------
    def joints(self, q: np.ndarray) -> np.ndarray:
        """Mirror joint vectors. q: (..., D) -> (..., D), same dtype."""
        q = np.asarray(q)
        if q.shape[-1] != self.dim:
            raise ValueError(f"mirror map: expected last dim {self.dim}, found shape {q.shape}")
        out = q[..., list(self.joint_permutation)] if self.joint_permutation else q
        out = out * np.asarray(self.joint_signs, dtype=q.dtype if q.dtype.kind == "f" else None)
        if self.joint_offsets is not None:
            out = out + np.asarray(self.joint_offsets, dtype=out.dtype)
        return out.astype(q.dtype, copy=False)

    # qpos and actions live in the same joint space for position control.
    qpos = joints
    action = joints

    # --- cameras ---------------------------------------------------------------------------
    def camera_name(self, name: str) -> str:
        """The camera of the original scene whose (flipped) image is `name` in the mirror."""
        return self.camera_swaps.get(name, name)

    def image(self, name: str, image: np.ndarray) -> np.ndarray:
        """Mirror one camera image (..., H, W, C) as seen by camera `name` (before swapping)."""
        if name in self.flip_cameras:
            return np.ascontiguousarray(image[..., :, ::-1, :])
        return image

    def images(self, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Mirror a dict camera -> (..., H, W, C): swap cameras and flip horizontally."""
        out = {}
        for name in images:
            src = self.camera_name(name)
            if src not in images:
                raise KeyError(f"mirror map: camera '{name}' swaps with '{src}', which is missing")
            out[name] = self.image(src, images[src])
        return out

    # --- configuration ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict) -> MirrorMap:
        """A map from its dict form (see to_dict); ValueError on unknown or missing keys."""
        known = {
            "joint_signs", "joint_permutation", "joint_offsets", "flip_cameras", "camera_swaps",
            "joint_names",
        }
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"mirror map: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        if "joint_signs" not in d:
            raise ValueError("mirror map: missing required key 'joint_signs'")
        return cls(
            joint_signs=tuple(float(s) for s in d["joint_signs"]),
            joint_permutation=tuple(int(i) for i in d["joint_permutation"])
            if d.get("joint_permutation") is not None else None,
            joint_offsets=tuple(float(o) for o in d["joint_offsets"])
            if d.get("joint_offsets") is not None else None,
            flip_cameras=tuple(d.get("flip_cameras") or ()),
            camera_swaps=dict(d.get("camera_swaps") or {}),
            joint_names=tuple(d["joint_names"]) if d.get("joint_names") else None,
        )

    def to_dict(self) -> dict:
        """The map as a plain dict (YAML/JSON-ready)."""
        return {
            "joint_signs": list(self.joint_signs),
            "joint_permutation": list(self.joint_permutation) if self.joint_permutation else None,
            "joint_offsets": list(self.joint_offsets) if self.joint_offsets else None,
            "flip_cameras": list(self.flip_cameras),
            "camera_swaps": dict(self.camera_swaps),
            "joint_names": list(self.joint_names) if self.joint_names else None,
        }

    @classmethod
    def from_yaml(cls, path: str | Path) -> MirrorMap:
        """Load a map from a YAML file (the mapping itself or under a `mirror_map` key); errors name
        the file."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"mirror map file not found: {path}") from None
        if isinstance(data, dict) and "mirror_map" in data:
            data = data["mirror_map"]
        if not isinstance(data, dict):
            raise ValueError(f"mirror map file {path}: expected a mapping, found {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def cell_mirror_map_path() -> Path:
    """Path of the embedded cell's mirror map configuration."""
    return Path(str(resources.files("mirror_arm_sim") / "config" / "mirror_map.yaml"))


def load_mirror_map(path: str | Path | None = None) -> MirrorMap:
    """Load a mirror map; `None` (or "cell") means the embedded cell's configuration."""
    if path is None or str(path) in ("", "cell"):
        path = cell_mirror_map_path()
    return MirrorMap.from_yaml(path)
