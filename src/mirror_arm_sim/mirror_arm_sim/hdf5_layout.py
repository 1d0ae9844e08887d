"""The demonstration HDF5 layout: one writer and one validating reader.

Lives in the lowest package so the demo generator (here), the rosbag converter and the
training dataset (act_training) share it. Documented in docs/hdf5_layout.md.

    /                        attrs: layout_version, num_demos, camera_names (json list),
                                    joint_names (json list), action_names (json list),
                                    control_hz, arm, source, image_height, image_width
    demo_{i}/observations/image            (T, H, W, 3) uint8   first camera (seed layout)
    demo_{i}/observations/images/<camera>  (T, H, W, 3) uint8   every camera
    demo_{i}/observations/qpos             (T, state_dim) float32
    demo_{i}/actions                       (T, action_dim) float32
    demo_{i}                 attrs: num_steps, success (optional), seed (optional)

Writing is atomic: `DemoWriter` writes `<path>.tmp-<pid>` and renames it on `close()`; an
exception inside the `with` block removes the temporary file and leaves `path` untouched.
`add_episode` takes a whole episode; `begin_episode()` returns an `EpisodeAppender` for
producers that stream steps (the rosbag converter) without holding an episode in memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

LAYOUT_VERSION = 1


class LayoutError(ValueError):
    """An HDF5 file does not follow the demo layout. The message names file, demo and key."""


@dataclass
class LayoutInfo:
    """What a reader needs to know about a demo file, read from its attributes."""

    path: Path
    layout_version: int
    num_demos: int
    camera_names: list[str]
    joint_names: list[str]
    action_names: list[str]
    control_hz: float
    image_shape: tuple[int, int]  # (H, W)
    episode_lengths: list[int]
    state_dim: int
    action_dim: int
    attrs: dict = field(default_factory=dict)


def _json_attr(attrs, key, default):
    if key not in attrs:
        return default
    v = attrs[key]
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        return json.loads(v)
    return [x.decode() if isinstance(x, bytes) else str(x) for x in v]


class DemoWriter:
    """Append episodes to a new demo file, atomically. Use as a context manager."""

    def __init__(
        self,
        path: str | Path,
        camera_names: list[str],
        joint_names: list[str],
        action_names: list[str] | None = None,
        control_hz: float = 50.0,
        arm: int = 0,
        source: str = "",
        extra_attrs: dict | None = None,
        compression: str | None = "lzf",
        tmp_path: str | Path | None = None,
    ):
        """`tmp_path`: where to write before the rename (default `temporary_path(path)`: this
        process's; a writer in a child process is given its parent's)."""
        if not camera_names:
            raise ValueError("DemoWriter: at least one camera is required")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = Path(tmp_path) if tmp_path is not None else self.temporary_path(self.path)
        self.camera_names = list(camera_names)
        self.joint_names = list(joint_names)
        self.action_names = list(action_names or joint_names)
        self.compression = compression
        # A small chunk cache: frames are written once, a whole chunk each, so a large cache only
        # defers their compression to the episode's flush (15 ms of a 500-step episode's 35 ms,
        # all of it spent while the producer waits for the commit).
        self._f = h5py.File(self.tmp_path, "w", rdcc_nbytes=64 << 10)
        self._n = 0
        self._hw: tuple[int, int] | None = None
        self._open_episode: EpisodeAppender | None = None
        a = self._f.attrs
        a["layout_version"] = LAYOUT_VERSION
        a["num_demos"] = 0
        a["camera_names"] = json.dumps(self.camera_names)
        a["joint_names"] = json.dumps(self.joint_names)
        a["action_names"] = json.dumps(self.action_names)
        a["control_hz"] = float(control_hz)
        a["arm"] = int(arm)
        a["source"] = source
        for k, v in (extra_attrs or {}).items():
            a[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)

    @staticmethod
    def temporary_path(path: str | Path) -> Path:
        """Where this process writes `path` before renaming it into place."""
        path = Path(path)
        return path.with_name(f"{path.name}.tmp-{os.getpid()}")

    @property
    def num_demos(self) -> int:
        """Episodes written so far."""
        return self._n

    def add_episode(
        self,
        images: dict[str, np.ndarray],
        qpos: np.ndarray,
        actions: np.ndarray,
        attrs: dict | None = None,
    ) -> int:
        """Add one episode. images: camera -> (T, H, W, 3) uint8; qpos (T, S); actions (T, A)."""
        qpos = np.asarray(qpos, dtype=np.float32)
        actions = np.asarray(actions, dtype=np.float32)
        T = len(qpos)
        if qpos.ndim != 2 or qpos.shape[1] != len(self.joint_names):
            raise LayoutError(f"qpos shape {qpos.shape}, expected (T, {len(self.joint_names)})")
        if actions.shape != (T, len(self.action_names)):
            raise LayoutError(f"actions shape {actions.shape}, expected ({T}, {len(self.action_names)})")
        if set(images) != set(self.camera_names):
            raise LayoutError(f"cameras {sorted(images)}, expected {self.camera_names}")
        g = self._f.create_group(f"demo_{self._n}")
        obs = g.create_group("observations")
        imgs = obs.create_group("images")
        for k, name in enumerate(self.camera_names):
            im = np.asarray(images[name])
            if im.dtype != np.uint8 or im.ndim != 4 or im.shape[0] != T or im.shape[3] != 3:
                raise LayoutError(
                    f"camera '{name}': images {im.shape} {im.dtype}, expected ({T}, H, W, 3) uint8"
                )
            if self._hw is None:
                self._hw = im.shape[1:3]
                self._f.attrs["image_height"], self._f.attrs["image_width"] = self._hw
            elif im.shape[1:3] != self._hw:
                raise LayoutError(f"camera '{name}': image size {im.shape[1:3]}, expected {self._hw}")
            chunks = (1, *im.shape[1:])
            ds = imgs.create_dataset(name, data=im, chunks=chunks, compression=self.compression)
            if k == 0:
                obs["image"] = ds  # hard link: the seed's single-camera key, no extra bytes
        obs.create_dataset("qpos", data=qpos)
        g.create_dataset("actions", data=actions)
        g.attrs["num_steps"] = T
        for k, v in (attrs or {}).items():
            g.attrs[k] = v
        self._n += 1
        self._f.attrs["num_demos"] = self._n
        return self._n - 1

    def begin_episode(self, attrs: dict | None = None, flush_every: int = 16) -> EpisodeAppender:
        """Start an episode written incrementally (streaming), one step or a few at a time.

        For producers that must not hold an episode in memory (the rosbag converter). Call
        `append(...)` any number of times, then `commit()` (the episode becomes `demo_{i}`) or
        `discard()`. One open episode at a time; `add_episode` is the whole-episode equivalent.
        """
        if self._open_episode is not None:
            raise LayoutError("DemoWriter: an episode is already open; commit() or discard() it first")
        self._open_episode = EpisodeAppender(self, f"demo_{self._n}", attrs or {}, flush_every)
        return self._open_episode

    def close(self) -> Path:
        """Finish the file and move it into place."""
        if self._f is None:
            return self.path
        if self._open_episode is not None:
            raise LayoutError("DemoWriter.close(): an episode is still open; commit() or discard() it")
        self._f.close()
        self._f = None
        os.replace(self.tmp_path, self.path)
        return self.path

    def drop_demos_from(self, n: int) -> None:
        """Remove demo_n and later (committed or open): a producer's rollback, e.g. of a bag that
        failed halfway. Later episodes are numbered from n again."""
        if self._open_episode is not None:
            self._open_episode.discard()
        for i in range(int(n), self._n):
            del self._f[f"demo_{i}"]
        self._n = min(self._n, int(n))
        self._f.attrs["num_demos"] = self._n

    def abort(self) -> None:
        """Close and remove the temporary file (also when closing fails, e.g. on a full disk)."""
        try:
            if self._f is not None:
                f, self._f = self._f, None
                f.close()
        finally:
            self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> DemoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class EpisodeAppender:
    """One episode being written step by step (from `DemoWriter.begin_episode`).

    Steps are buffered `flush_every` at a time and appended to resizable datasets, so memory
    stays bounded however long the episode is. The file attribute `num_demos` only counts the
    episode after `commit()`; `discard()` removes the group (a crash before `commit` is covered
    by the writer's temporary file).
    """

    def __init__(self, writer: DemoWriter, name: str, attrs: dict, flush_every: int):
        self._w, self.name, self._attrs = writer, name, dict(attrs)
        self._flush_every = max(1, int(flush_every))
        self._buf: list[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]] = []
        self._g = None
        self._ds: dict = {}
        self._written = 0

    @property
    def num_steps(self) -> int:
        """Steps appended so far (written or buffered)."""
        return self._written + len(self._buf)

    def append(self, images: dict[str, np.ndarray], qpos, action) -> None:
        """Add one step: images camera -> (H, W, 3) uint8, qpos (state_dim,), action (action_dim,)."""
        w = self._w
        qpos = np.asarray(qpos, dtype=np.float32).reshape(-1)
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if qpos.shape != (len(w.joint_names),):
            raise LayoutError(f"{self.name}: qpos shape {qpos.shape}, expected ({len(w.joint_names)},)")
        if action.shape != (len(w.action_names),):
            raise LayoutError(f"{self.name}: action shape {action.shape}, expected ({len(w.action_names)},)")
        if set(images) != set(w.camera_names):
            raise LayoutError(f"{self.name}: cameras {sorted(images)}, expected {w.camera_names}")
        for cam in w.camera_names:
            im = images[cam]
            if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
                raise LayoutError(f"{self.name}: camera '{cam}': image {im.shape} {im.dtype}, "
                                  "expected (H, W, 3) uint8")
            self._size(cam, im.shape[:2])
        self._buf.append(({c: np.array(images[c]) for c in w.camera_names}, qpos, action))
        if len(self._buf) >= self._flush_every:
            self._flush()

    def _create(self) -> None:
        w = self._w
        H, W = w._hw
        g = w._f.create_group(self.name)
        obs = g.create_group("observations")
        imgs = obs.create_group("images")
        # The handles are kept for the episode: looking them up per write costs, and a write that
        # fails (full disk) then raises here instead of in a handle's destructor.
        self._ds = {}
        for k, cam in enumerate(w.camera_names):
            ds = imgs.create_dataset(cam, shape=(0, H, W, 3), maxshape=(None, H, W, 3), dtype=np.uint8,
                                     chunks=(1, H, W, 3), compression=w.compression)
            self._ds[cam] = ds
            if k == 0:
                obs["image"] = ds
        S, A = len(w.joint_names), len(w.action_names)
        self._ds["qpos"] = obs.create_dataset("qpos", shape=(0, S), maxshape=(None, S), dtype=np.float32,
                                              chunks=(256, S))
        self._ds["actions"] = g.create_dataset("actions", shape=(0, A), maxshape=(None, A), dtype=np.float32,
                                               chunks=(256, A))
        self._g = g

    def extend(self, images: dict[str, np.ndarray], qpos, actions) -> None:
        """Add n steps at once: images camera -> (n, H, W, 3) uint8, qpos (n, state_dim),
        actions (n, action_dim); written straight through (after any buffered steps)."""
        w = self._w
        qpos = np.asarray(qpos, dtype=np.float32)
        actions = np.asarray(actions, dtype=np.float32)
        n = len(qpos)
        if qpos.shape != (n, len(w.joint_names)) or actions.shape != (n, len(w.action_names)):
            raise LayoutError(f"{self.name}: qpos {qpos.shape} / actions {actions.shape}, expected "
                              f"({n}, {len(w.joint_names)}) / ({n}, {len(w.action_names)})")
        if set(images) != set(w.camera_names):
            raise LayoutError(f"{self.name}: cameras {sorted(images)}, expected {w.camera_names}")
        for cam in w.camera_names:
            im = images[cam]
            if im.dtype != np.uint8 or im.ndim != 4 or im.shape[0] != n or im.shape[3] != 3:
                raise LayoutError(f"{self.name}: camera '{cam}': images {im.shape} {im.dtype}, "
                                  f"expected ({n}, H, W, 3) uint8")
            self._size(cam, im.shape[1:3])
        self._flush()
        self._write(images, qpos, actions)

    def _size(self, cam: str, hw) -> None:
        w = self._w
        if w._hw is not None and tuple(hw) != tuple(w._hw):
            raise LayoutError(f"{self.name}: camera '{cam}': image size {tuple(hw)}, expected {w._hw}")
        if w._hw is None:
            w._hw = tuple(hw)
            w._f.attrs["image_height"], w._f.attrs["image_width"] = w._hw

    def _flush(self) -> None:
        if not self._buf:
            return
        buf, self._buf = self._buf, []
        self._write({cam: np.stack([b[0][cam] for b in buf]) for cam in self._w.camera_names},
                    np.stack([b[1] for b in buf]), np.stack([b[2] for b in buf]))

    def _write(self, images: dict[str, np.ndarray], qpos: np.ndarray, actions: np.ndarray) -> None:
        if self._g is None:
            self._create()
        n, t0 = len(qpos), self._written
        for key, block in (*((cam, images[cam]) for cam in self._w.camera_names),
                           ("qpos", qpos), ("actions", actions)):
            ds = self._ds[key]
            ds.resize(t0 + n, axis=0)
            ds[t0:] = block
        self._written += n

    def commit(self) -> int:
        """Finish the episode; returns its index i (`demo_{i}`)."""
        self._flush()
        w = self._w
        if self.num_steps == 0:
            raise LayoutError(f"{self.name}: cannot commit an empty episode")
        self._g.attrs["num_steps"] = self.num_steps
        for k, v in self._attrs.items():
            self._g.attrs[k] = v
        for ds in self._ds.values():
            ds.flush()  # a write that fails (full disk) raises here, not in a destructor
        self._ds = {}
        w._n += 1
        w._f.attrs["num_demos"] = w._n
        w._open_episode = None
        return w._n - 1

    def discard(self) -> None:
        """Drop the episode: nothing of it stays in the file's demo list."""
        self._buf.clear()
        if self._g is not None:
            del self._w._f[self.name]
            self._g = None
        self._w._open_episode = None


def read_layout(path: str | Path) -> LayoutInfo:
    """Open and validate a demo file; raise LayoutError naming file, demo and key on problems."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"demo file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise LayoutError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        a = f.attrs
        if "num_demos" not in a:
            raise LayoutError(f"{path}: missing file attribute 'num_demos'")
        n = int(a["num_demos"])
        version = int(a.get("layout_version", 1))
        if version > LAYOUT_VERSION:
            raise LayoutError(
                f"{path}: layout_version {version} is newer than this reader ({LAYOUT_VERSION})"
            )
        if n <= 0:
            raise LayoutError(f"{path}: num_demos is {n}, expected > 0")
        cams = _json_attr(a, "camera_names", None)
        lengths, hw, sdim, adim = [], None, None, None
        for i in range(n):
            d = f"demo_{i}"
            if d not in f:
                raise LayoutError(f"{path}: missing group '{d}' (num_demos={n})")
            g = f[d]
            for key in ("observations/qpos", "actions"):
                if key not in g:
                    raise LayoutError(f"{path}: {d}: missing dataset '{key}'")
            if cams is None:
                cams = sorted(g["observations/images"]) if "observations/images" in g else ["image"]
            q, act = g["observations/qpos"], g["actions"]
            T = q.shape[0]
            if q.ndim != 2 or act.ndim != 2:
                raise LayoutError(f"{path}: {d}: qpos {q.shape} / actions {act.shape} must be 2-D")
            if act.shape[0] != T:
                raise LayoutError(f"{path}: {d}: actions has {act.shape[0]} steps, qpos has {T}")
            for key, ds in (("observations/qpos", q), ("actions", act)):
                if ds.dtype.kind != "f":
                    raise LayoutError(f"{path}: {d}/{key}: dtype {ds.dtype}, expected float32")
            sdim = sdim or q.shape[1]
            adim = adim or act.shape[1]
            if q.shape[1] != sdim or act.shape[1] != adim:
                raise LayoutError(
                    f"{path}: {d}: state/action dims {q.shape[1]}/{act.shape[1]}, "
                    f"expected {sdim}/{adim} as in demo_0"
                )
            for cam in cams:
                key = "observations/image" if cam == "image" else f"observations/images/{cam}"
                if key not in g:
                    raise LayoutError(f"{path}: {d}: missing dataset '{key}' (camera '{cam}')")
                im = g[key]
                if im.dtype != np.uint8 or im.ndim != 4 or im.shape[3] != 3:
                    raise LayoutError(
                        f"{path}: {d}/{key}: {im.shape} {im.dtype}, expected (T, H, W, 3) uint8"
                    )
                if im.shape[0] != T:
                    raise LayoutError(f"{path}: {d}/{key}: {im.shape[0]} frames, qpos has {T} steps")
                hw = hw or im.shape[1:3]
                if im.shape[1:3] != hw:
                    raise LayoutError(f"{path}: {d}/{key}: image size {im.shape[1:3]}, expected {hw}")
            lengths.append(T)
        joints = _json_attr(a, "joint_names", [f"joint_{j}" for j in range(sdim)])
        return LayoutInfo(
            path=path,
            layout_version=version,
            num_demos=n,
            camera_names=list(cams),
            joint_names=list(joints),
            action_names=list(_json_attr(a, "action_names", joints)),
            control_hz=float(a.get("control_hz", 50.0)),
            image_shape=tuple(int(x) for x in hw),
            episode_lengths=lengths,
            state_dim=int(sdim),
            action_dim=int(adim),
            attrs={k: (v.item() if hasattr(v, "item") else v) for k, v in a.items()},
        )


def image_key(camera: str) -> str:
    """Dataset key (inside demo_i) of a camera's images."""
    return "observations/image" if camera == "image" else f"observations/images/{camera}"
