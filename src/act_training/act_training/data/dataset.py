"""Demo HDF5 -> ACT training samples, read lazily.

One sample is (episode, t):

    images         uint8 (N_cams, H, W, 3)   the file's size; prepare_images() converts/resizes
    qpos           float32 (state_dim,)       normalised
    actions        float32 (chunk, action_dim) normalised, steps t .. t+chunk-1; past the episode
                                               end padded with the last action
    action_is_pad  bool (chunk,)              True = padded (ignored by the loss and the CVAE)

The file is validated on open by `mirror_arm_sim.hdf5_layout.read_layout` (LayoutError naming
file, demo and key). qpos and actions (a few MB) are read into RAM once; images stay on disk and
are read one frame at a time (the layout stores one LZF-compressed frame per HDF5 chunk). Each
process (DataLoader worker, DDP rank) opens its own h5py handle on first use; handles are not
pickled. Augmentation (optional, training split only): a small random shift (edge-pad + crop)
and brightness/contrast jitter. There is deliberately NO random horizontal flip: flipping would
hand the network the mirrored arm's observations and void the mirror-transfer experiment.

Mirror augmentation (`data.mirror_augment`, off by default) is the opposite, deliberate choice:
every sample is served twice, as recorded and as the mirror map makes it (images flipped and
swapped as the map says, qpos and actions through its joint map), so one policy learns both
arms from raw observations. Index entry (e, t, m): m = 1 is the mirrored copy of (e, t).
Normalisation statistics then cover both copies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from mirror_arm_sim.hdf5_layout import LayoutError, LayoutInfo, image_key, read_layout
from torch.utils.data import Dataset

from act_training.config import DataConfig
from act_training.data.normalize import NormStats


@dataclass
class Augment:
    """Training image augmentation: a random shift of up to `shift_pixels` (edge padding) and
    brightness/contrast jitter (+- fractions). Never flips."""

    shift_pixels: int = 4
    brightness: float = 0.1
    contrast: float = 0.1

    def __call__(self, ims: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """ims uint8 (N, H, W, 3) -> uint8 (N, H, W, 3); each camera jittered independently."""
        out = np.empty_like(ims)
        s = self.shift_pixels
        H, W = ims.shape[1:3]
        for i, im in enumerate(ims):
            if s > 0:
                p = np.pad(im, ((s, s), (s, s), (0, 0)), mode="edge")
                dy, dx = rng.integers(0, 2 * s + 1, size=2)
                im = p[dy:dy + H, dx:dx + W]
            if self.brightness > 0 or self.contrast > 0:
                b = 1.0 + rng.uniform(-self.brightness, self.brightness)
                c = 1.0 + rng.uniform(-self.contrast, self.contrast)
                f = im.astype(np.float32)
                m = f.mean()
                f = (f - m) * c + m * b
                im = np.clip(f, 0, 255).astype(np.uint8)
            out[i] = im
        return out


def select_cameras(info: LayoutInfo, cfg: DataConfig) -> list[str]:
    """The cameras to train on: `cfg.cameras` (or all of the file's), checked against the file,
    cut to `cfg.max_cameras`."""
    cams = list(cfg.cameras) if cfg.cameras else list(info.camera_names)
    unknown = [c for c in cams if c not in info.camera_names]
    if unknown:
        raise LayoutError(f"{info.path}: cameras {unknown} not in the file (it has {info.camera_names})")
    if cfg.max_cameras:
        cams = cams[: cfg.max_cameras]
    return cams


def split_episodes(num_demos: int, val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Random split BY EPISODE; at least one val episode when there are >= 2 and val_fraction > 0."""
    if num_demos < 2 or val_fraction <= 0:
        return list(range(num_demos)), []
    n_val = min(num_demos - 1, max(1, round(num_demos * val_fraction)))
    perm = np.random.default_rng(seed).permutation(num_demos)
    return sorted(perm[n_val:].tolist()), sorted(perm[:n_val].tolist())


class ACTDataset(Dataset):
    """One sample per (episode, step[, mirrored copy]) of a demo HDF5 file: images (N, H, W, 3) uint8,
    normalised qpos (D,), the next `chunk_size` normalised actions (C, A), padded with the last
    one, and action_is_pad (C,). Frames are read lazily, one file handle per process."""

    def __init__(self, path: str | Path, chunk_size: int, episodes: list[int] | None = None,
                 cameras: list[str] | None = None, stats: NormStats | None = None,
                 augment: Augment | None = None, info: LayoutInfo | None = None, seed: int = 0,
                 mirror_map=None):
        self.path = Path(path)
        self.info = info if info is not None else read_layout(self.path)
        self.chunk_size = int(chunk_size)
        self.cameras = list(cameras) if cameras else list(self.info.camera_names)
        for c in self.cameras:
            if c not in self.info.camera_names:
                raise LayoutError(f"{self.path}: camera '{c}' not in the file ({self.info.camera_names})")
        self.episodes = list(range(self.info.num_demos)) if episodes is None else list(episodes)
        self.augment = augment
        self.seed = seed
        self.mirror_map = mirror_map  # mirror_arm_sim MirrorMap: also serve mirrored copies
        self.qpos: dict[int, np.ndarray] = {}  # as recorded
        self.actions: dict[int, np.ndarray] = {}
        self.mirrored: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # e -> (qpos, actions) mirrored
        with h5py.File(self.path, "r") as f:
            for e in self.episodes:
                g = f[f"demo_{e}"]
                self.qpos[e] = g["observations/qpos"][()].astype(np.float32)
                self.actions[e] = g["actions"][()].astype(np.float32)
                for key, arr in (("observations/qpos", self.qpos[e]), ("actions", self.actions[e])):
                    if not np.all(np.isfinite(arr)):
                        raise LayoutError(f"{self.path}: demo_{e}/{key}: contains NaN/inf")
        self.copies = (0, 1) if mirror_map is not None else (0,)
        if mirror_map is not None:
            if mirror_map.dim != self.info.state_dim or mirror_map.dim != self.info.action_dim:
                raise LayoutError(f"{self.path}: mirror map has {mirror_map.dim} joints, the file's qpos "
                                  f"{self.info.state_dim} and actions {self.info.action_dim}")
            for e in self.episodes:
                self.mirrored[e] = (mirror_map.qpos(self.qpos[e]), mirror_map.action(self.actions[e]))
        self.index = np.array(
            [(e, t, m) for e in self.episodes for m in self.copies for t in range(len(self.actions[e]))],
            dtype=np.int64,
        ).reshape(-1, 3)
        self.stats = stats if stats is not None else self.compute_stats()
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        self._ds: dict = {}
        self._rng: np.random.Generator | None = None

    # ------------------------------------------------------------------ stats
    def compute_stats(self, std_floor: float = 1e-2) -> NormStats:
        """Normalisation statistics over every step of this dataset's episodes (and mirrored copies)."""
        if not self.episodes:
            raise ValueError("cannot compute normalisation stats over zero episodes")
        q = np.concatenate([self._episode(e, m)[0] for e in self.episodes for m in self.copies])
        a = np.concatenate([self._episode(e, m)[1] for e in self.episodes for m in self.copies])
        return NormStats.compute(q, a, std_floor)

    def _episode(self, e: int, m: int) -> tuple[np.ndarray, np.ndarray]:
        """(qpos (T, D), actions (T, A)) of episode e, as recorded (m = 0) or mirrored (m = 1)."""
        return self.mirrored[e] if m else (self.qpos[e], self.actions[e])

    # ------------------------------------------------------------------ lazy file access
    def _handle(self) -> h5py.File:
        pid = os.getpid()
        if self._h5 is None or self._pid != pid:
            # a fresh handle per process: h5py handles must not cross fork()
            self._h5 = h5py.File(self.path, "r", rdcc_nbytes=4 * 1024 * 1024)
            self._pid = pid
            self._ds = {}
            self._rng = np.random.default_rng([self.seed, pid])
        return self._h5

    def _frames(self, e: int, t: int, mirrored: bool = False) -> np.ndarray:
        f = self._handle()
        # a camera swap needs its partner's frame, so read every camera the map may ask for
        names = self.cameras
        if mirrored:
            names = list(dict.fromkeys(self.cameras + [self.mirror_map.camera_name(c) for c in self.cameras]))
        frames = {}
        for c in names:
            ds = self._ds.get((e, c))
            if ds is None:
                if image_key(c) not in f[f"demo_{e}"]:
                    raise LayoutError(f"{self.path}: demo_{e}: the mirror map swaps in camera '{c}', "
                                      "which the file does not have")
                ds = self._ds[(e, c)] = f[f"demo_{e}"][image_key(c)]
            frames[c] = ds[t]
        if mirrored:
            frames = self.mirror_map.images(frames)
        return np.stack([frames[c] for c in self.cameras])

    def __getstate__(self):
        s = self.__dict__.copy()
        s["_h5"], s["_pid"], s["_ds"], s["_rng"] = None, None, {}, None
        return s

    def close(self) -> None:
        """Close this process's file handle (reopened on the next access)."""
        if self._h5 is not None:
            self._h5.close()
        self._h5, self._pid, self._ds = None, None, {}

    # ------------------------------------------------------------------ samples
    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        e, t, m = (int(x) for x in self.index[i])
        ims = self._frames(e, t, mirrored=bool(m))  # (N, H, W, 3) uint8
        if self.augment is not None:
            ims = self.augment(ims, self._rng)
        qpos, acts = self._episode(e, m)
        C = self.chunk_size
        chunk = acts[t:t + C]
        n = len(chunk)
        is_pad = np.zeros(C, dtype=bool)
        if n < C:
            chunk = np.concatenate([chunk, np.repeat(acts[-1:], C - n, axis=0)])
            is_pad[n:] = True
        st = self.stats
        return {
            "images": torch.from_numpy(np.ascontiguousarray(ims)),
            "qpos": torch.from_numpy(st.normalize_qpos(qpos[t]).astype(np.float32)),
            "actions": torch.from_numpy(st.normalize_actions(chunk).astype(np.float32)),
            "action_is_pad": torch.from_numpy(is_pad),
        }


def make_datasets(cfg: DataConfig, chunk_size: int, seed: int = 0) -> tuple[ACTDataset, ACTDataset | None]:
    """Validate the file, split by episode, compute stats on the TRAIN episodes, build both splits."""
    if not cfg.path:
        raise ValueError("no demo file given (data.path / --data)")
    info = read_layout(cfg.path)
    cams = select_cameras(info, cfg)
    train_eps, val_eps = split_episodes(info.num_demos, cfg.val_fraction, cfg.split_seed)
    aug = Augment(cfg.shift_pixels, cfg.brightness, cfg.contrast) if cfg.augment else None
    mm = None
    if cfg.mirror_augment:
        from mirror_arm_sim.mirror_map import load_mirror_map

        mm = load_mirror_map(cfg.mirror_map or None)
    train = ACTDataset(cfg.path, chunk_size, train_eps, cams, None, aug, info, seed, mm)
    train.stats = train.compute_stats(cfg.std_floor)
    val = (ACTDataset(cfg.path, chunk_size, val_eps, cams, train.stats, None, info, seed, mm)
           if val_eps else None)
    return train, val
