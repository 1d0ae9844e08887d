"""The converter's output in a child process: a `DemoWriter` on the other core.

HDF5 writes hold the GIL (h5py), and the LZF compression of every stored frame is a quarter of
a conversion; a thread cannot overlap it with reading the bag, a process can. `WriterProcess`
forks a child that owns the `DemoWriter` and mirrors its interface in the parent. Steps are
buffered and handed over in blocks of up to `block` steps: the frames are copied straight into
one of two slots of memory shared with the child (a pipe would cost ~2.7 ms a block of 64
frames, as much as the writing it moves), the rest goes by pipe; a slot is reused once the child
has resized its frames.

The child also resizes the frames to the stored size (the pipeline's one resize,
`bags.frames.resize_frame`): a raw camera frame comes as recorded, at any size, and a frame held
for several steps (a 30 Hz camera on a 50 Hz grid) is copied and resized once. The resize is a
third of the converter's own work: the converter hands a frame over unresized while the child is
free, and resizes it itself while the child is still on the previous block, so the two cores
share it by load. Frames already at the stored size (decoded JPEGs) are only copied.

Creating the file, a block and a commit are not waited for (the child answers them only with a
failure); discard, rollback, close and abort wait for the child's answer, and
`close` (the rename) comes after everything before it succeeded. Nothing about the output's
safety changes:

- the temporary file is the parent's (`DemoWriter.temporary_path` in the parent), so the
  parent's clean-up of it holds whatever happens to the child;
- a write that fails in the child (a full disk) is raised in the parent, as the same exception,
  at its next send or call; the child then discards every further block until told to abort;
- the child ignores SIGINT and SIGTERM (the parent decides: a Ctrl-C in a terminal reaches the
  whole process group) and aborts, removing the temporary file, when the parent goes away
  without a word (its end of the pipe closes).
"""

from __future__ import annotations

import atexit
import mmap
import multiprocessing
import multiprocessing.util  # noqa: F401 - its exit handler is registered before ours (below)
import os
import signal
import sys
import weakref
from pathlib import Path

import numpy as np
from mirror_arm_sim.hdf5_layout import DemoWriter, LayoutError


class WriterGone(OSError):
    """The writer process ended without answering (killed, or out of memory)."""


SLOTS = 2  # blocks in flight: one being written by the child, one being filled here
UNANSWERED = ("open", "begin", "steps", "commit")  # the child answers these only with a failure


ARENA_BYTES = 16 << 20  # per slot: 17 steps of one 480x640 camera, 64 of a 240x320 one


class _Slots:
    """SLOTS arenas of `ARENA_BYTES` in memory shared by fork, each with a semaphore that is free
    while neither process uses it. A block's frames are packed into one arena; the block's
    message says where each step's frame of each camera is ((offset, height, width))."""

    def __init__(self, ctx, cameras: list[str], block: int, hw: tuple[int, int],
                 arena_bytes: int = ARENA_BYTES):
        self.cameras, self.block, self.hw = list(cameras), int(block), tuple(hw)
        self.arena_bytes = int(arena_bytes)
        self._mem = mmap.mmap(-1, SLOTS * self.arena_bytes)  # anonymous, MAP_SHARED: the child sees it
        self.arenas = np.frombuffer(self._mem, np.uint8).reshape(SLOTS, self.arena_bytes)
        self.free = [ctx.Semaphore(1) for _ in range(SLOTS)]

    def frame(self, slot: int, where: tuple[int, int, int]) -> np.ndarray:
        """The (h, w, 3) frame packed at where = (offset, h, w) in a slot's arena (a view)."""
        off, h, w = where
        return self.arenas[slot, off:off + h * w * 3].reshape(h, w, 3)


class WriterProcess:
    """A forked child that will hold a `DemoWriter`; the methods the converter uses.

    `WriterProcess(camera_names, image_hw, block)` forks (the converter's CLI starts it after it
    imports torch, before any torch op, so the child shares torch's pages); `open(path, **kwargs)` then
    has the child create `DemoWriter(path, camera_names=..., **kwargs)`. `image_hw` is the
    stored frame size (the mapping's `image_size`): frames of any size are resized to it in the
    child (`resizes_frames`). `block` is the most steps handed over at once (the converter's
    `flush_every`)."""

    resizes_frames = True  # `RemoteEpisode.append` takes frames at any size

    def __init__(self, camera_names: list[str], image_hw: tuple[int, int], block: int = 64,
                 arena_bytes: int = ARENA_BYTES):
        self.camera_names = list(camera_names)
        self.path: Path | None = None
        self.tmp_path: Path | None = None
        ctx = multiprocessing.get_context("fork")  # instant, and the child needs nothing new
        self._slots = _Slots(ctx, camera_names, block, image_hw, arena_bytes)
        self._next_slot = 0
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self._conn, self._slots),
                                 name="act_bag_to_hdf5-writer", daemon=True)
        self._proc.start()
        child.close()
        self._n = 0
        self._episode: RemoteEpisode | None = None
        self._closed = False
        _LIVE.add(self)

    def open(self, path: str | Path, **kwargs) -> WriterProcess:
        """Have the child create the file (not waited for: a failure is raised at the next send
        or call). The temporary file is this process's `DemoWriter.temporary_path(path)`."""
        self.path = Path(path)
        self.tmp_path = DemoWriter.temporary_path(self.path)
        self._send(("open", self.path, self.tmp_path, {**kwargs, "camera_names": self.camera_names}))
        return self

    @property
    def num_demos(self) -> int:
        """Episodes committed so far."""
        return self._n

    def begin_episode(self, attrs: dict | None = None, flush_every: int = 16) -> RemoteEpisode:
        """Start an episode; see `DemoWriter.begin_episode`."""
        if self._episode is not None:
            raise LayoutError("DemoWriter: an episode is already open; commit() or discard() it first")
        self._send(("begin", dict(attrs or {})))
        self._episode = RemoteEpisode(self, min(max(1, int(flush_every)), self._slots.block))
        return self._episode

    def drop_demos_from(self, n: int) -> None:
        """Remove demo_n and later (committed or open); see `DemoWriter.drop_demos_from`."""
        if self._episode is not None:
            self._episode._drop_buffer()
            self._episode = None
        self._call("drop", int(n))
        self._n = min(self._n, int(n))

    def close(self) -> Path:
        """Finish the file and rename it into place (in the child); waits for it."""
        if self._episode is not None:
            raise LayoutError("DemoWriter.close(): an episode is still open; commit() or discard() it")
        self._call("close")
        self._end(wait=False)
        return self.path

    def abort(self) -> None:
        """Close and remove the temporary file; the child ends. Raises nothing: it runs on the
        way out of a failure, whose exception is the one to report."""
        try:
            if not self._closed:
                self._conn.send(("abort",))
                while self._conn.poll(30):  # earlier answers (an error already raised) come first
                    ok, _ = self._conn.recv()
                    if ok:
                        break
        except Exception:  # noqa: BLE001 - a dead child, a broken pipe: nothing left to tell
            pass
        finally:
            self._end()
            if self.tmp_path is not None:
                _remove(self.tmp_path)

    # -- transport --------------------------------------------------------------------------
    def _send(self, msg) -> None:
        if self._closed:
            raise LayoutError(f"{self.path}: the writer is closed")
        if self._conn.poll():  # the child reported a failed write: raise it here
            self._answer()
        try:
            self._conn.send(msg)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            self._gone()

    def _call(self, *msg):
        self._send(msg)
        return self._answer()

    def _answer(self):
        try:
            ok, value = self._conn.recv()
        except (EOFError, ConnectionResetError):
            self._gone()
        if not ok:
            raise value
        return value

    def _take_slot(self) -> int:
        """A slot the child is done with (waits while it writes the other one)."""
        k = self._next_slot
        while not self._slots.free[k].acquire(timeout=0.5):
            if not self._proc.is_alive():
                self._gone()
        self._next_slot = (k + 1) % SLOTS
        return k

    def _gone(self):
        self._proc.join(timeout=5)
        what = f"while writing {self.tmp_path.name}" if self.tmp_path is not None else "before writing"
        raise WriterGone(f"the writer process ended (exit code {self._proc.exitcode}) {what}")

    def _end(self, wait: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        self._conn.close()
        if not wait:  # it answered its last call and is exiting (~20 ms): reaped by multiprocessing
            return
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


# Writers still open when the interpreter exits (an exception that escaped every handler) are
# aborted first: the child ignores SIGTERM, so multiprocessing's own exit handler, which
# terminates and then joins daemonic children, would wait for it forever. Registered after
# multiprocessing's handler, this one runs before it.
_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _abort_live_writers() -> None:
    for w in list(_LIVE):
        w.abort()


class RemoteEpisode:
    """The parent's side of `EpisodeAppender`: steps are checked and packed here, sent in blocks."""

    def __init__(self, writer: WriterProcess, flush_every: int):
        self._w, self._flush_every = writer, flush_every
        self._slot: int | None = None  # the arena being filled
        self._used = 0  # bytes of it
        self._where: dict[str, list[tuple[int, int, int]]] = {}  # camera -> (offset, h, w) per step
        self._last: dict[str, tuple[object, tuple[int, int, int]]] = {}  # camera -> (frame, where)
        self._qpos: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []
        self._sent = 0

    @property
    def num_steps(self) -> int:
        """Steps appended so far (sent or buffered)."""
        return self._sent + len(self._qpos)

    def append(self, images: dict[str, np.ndarray], qpos, action) -> None:
        """Add one step: images camera -> (H, W, 3) uint8 at any size (resized in the child),
        qpos (state_dim,), action (action_dim,). The frames are copied at once; the same frame
        object as the camera's last step is not copied again."""
        slots = self._w._slots
        for cam in images:
            if cam not in slots.cameras:
                raise LayoutError(f"camera '{cam}' is not one of the writer's {slots.cameras}")
        limit = slots.arena_bytes // (2 * len(slots.cameras))  # a step's frames fit in half an arena
        for cam in slots.cameras:
            im = images.get(cam)
            if not isinstance(im, np.ndarray) or im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                what = "missing" if im is None else f"{getattr(im, 'shape', '?')} {getattr(im, 'dtype', '?')}"
                raise LayoutError(f"camera '{cam}': image {what} at step {self.num_steps}, "
                                  "expected (H, W, 3) uint8")
        new = sum(min(images[c].nbytes, limit) for c in slots.cameras
                  if self._last.get(c, (None,))[0] is not images[c])
        if self._slot is not None and self._used + new > slots.arena_bytes:
            self._flush()
        if self._slot is None:
            self._slot, self._used = self._w._take_slot(), 0
            self._last.clear()
        for cam in slots.cameras:
            im = images[cam]  # its identity says whether it is the camera's last frame again
            last = self._last.get(cam)
            if last is None or last[0] is not im:
                frame = im
                # resized here when it is too large for the arena (1080p and up with two
                # cameras), or when the child is still on the previous block
                if im.shape[:2] != slots.hw and (im.nbytes > limit or self._child_busy()):
                    frame = _resize(im, slots.hw)
                h, w = frame.shape[:2]
                where = (self._used, h, w)
                slots.frame(self._slot, where)[...] = frame
                self._used += frame.nbytes
                last = self._last[cam] = (im, where)
            self._where.setdefault(cam, []).append(last[1])
        self._qpos.append(np.asarray(qpos, dtype=np.float32).reshape(-1))
        self._actions.append(np.asarray(action, dtype=np.float32).reshape(-1))
        if len(self._qpos) >= self._flush_every:
            self._flush()

    def _child_busy(self) -> bool:
        """Is the child still on the previous block? Then this process resizes the frame itself
        (the two cores share the resizes by who is free: the split depends on the bag, the
        frame size and the machine's load, so it is not fixed)."""
        try:
            return any(self._w._slots.free[k].get_value() == 0 for k in range(SLOTS) if k != self._slot)
        except NotImplementedError:  # sem_getvalue (macOS): the child resizes every frame
            return False

    def _flush(self) -> None:
        if self._slot is None:
            return
        k, self._slot, self._last = self._slot, None, {}
        where, self._where = self._where, {}
        qpos, actions, self._qpos, self._actions = self._qpos, self._actions, [], []
        if not qpos:
            self._w._slots.free[k].release()
            return
        try:
            q, a = np.stack(qpos), np.stack(actions)
        except BaseException:
            self._w._slots.free[k].release()
            raise
        self._w._send(("steps", k, where, q, a))
        self._sent += len(q)

    def commit(self) -> int:
        """Finish the episode; returns its index i (`demo_{i}`). Not waited for: a failure is
        raised at the writer's next send or call (at the latest `close`, before the rename)."""
        self._flush()
        self._w._send(("commit",))
        i, self._w._n = self._w._n, self._w._n + 1
        self._w._episode = None
        return i

    def discard(self) -> None:
        """Drop the episode: nothing of it stays in the file's demo list."""
        self._drop_buffer()
        self._w._episode = None
        self._w._call("discard")

    def _drop_buffer(self) -> None:
        if self._slot is not None:
            self._w._slots.free[self._slot].release()
        self._slot, self._where, self._last, self._qpos, self._actions = None, {}, {}, [], []


def _resize(im: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The pipeline's resize (`bags.frames.resize_frame`; torch is imported on first use)."""
    from act_training.bags.frames import resize_frame

    return resize_frame(im, hw)


def _unpack(slots: _Slots, k: int, where: dict[str, list[tuple[int, int, int]]]) -> dict[str, np.ndarray]:
    """camera -> (n, h, w, 3) stored frames of a block: each packed frame resized once."""
    out = {}
    for cam, places in where.items():
        block = np.empty((len(places), *slots.hw, 3), np.uint8)
        done: dict[tuple[int, int, int], int] = {}
        for i, w in enumerate(places):
            j = done.get(w)
            if j is not None:
                block[i] = block[j]
                continue
            im = slots.frame(k, w)
            block[i] = im if im.shape[:2] == slots.hw else _resize(im, slots.hw)
            done[w] = i
        out[cam] = block
    return out


def _serve(conn, parent_end, slots: _Slots) -> None:
    """The child: a DemoWriter driven by the parent's messages, until close, abort or EOF."""
    parent_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch = sys.modules.get("torch")
    if torch is not None:
        # One torch thread: the resize then never enters an OpenMP region, which is not safe in
        # a child forked from a process whose thread pool already ran (a library caller's).
        torch.set_num_threads(1)
    writer = episode = failed = tmp_path = None
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone: leave nothing behind
            msg = ("abort",)
        op = msg[0]
        try:
            if op == "steps":  # the slot is the parent's again once its frames are resized
                k, where, qpos, actions = msg[1:]
                try:
                    images = _unpack(slots, k, where) if failed is None else None
                finally:
                    slots.free[k].release()
                if images is not None:
                    episode.extend(images, qpos, actions)
                continue
            if op == "abort":
                try:
                    if writer is not None:
                        writer.abort()  # closing on a full disk can fail: the file goes anyway
                finally:
                    if tmp_path is not None:
                        _remove(tmp_path)
                    _reply(conn, True, None)
                break
            if failed is not None:  # messages are dropped; every call gets the failure
                if op not in UNANSWERED:
                    _reply(conn, False, failed)
                continue
            if op == "open":
                path, tmp_path, kwargs = msg[1:]
                writer = DemoWriter(path, tmp_path=tmp_path, **kwargs)
            elif op == "begin":
                episode = writer.begin_episode(msg[1], flush_every=1)
            elif op == "commit":
                episode.commit()
                episode = None
            elif op == "discard":
                if episode is not None:
                    episode.discard()
                episode = None
                _reply(conn, True, None)
            elif op == "drop":
                writer.drop_demos_from(msg[1])
                episode = None
                _reply(conn, True, None)
            elif op == "close":
                writer.close()
                _reply(conn, True, None)
                break
        except BaseException as e:  # noqa: BLE001 - the first failure is the parent's to raise
            failed = e
            _reply(conn, False, e)  # unasked after UNANSWERED ones: the parent polls before each send
    conn.close()
    os._exit(0)


def _reply(conn, ok: bool, value) -> None:
    try:
        conn.send((ok, value))
    except (BrokenPipeError, OSError):
        pass
    except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
        conn.send((ok, OSError(str(value)) if isinstance(value, OSError) else RuntimeError(str(value))))


def _remove(path: Path) -> None:
    """Remove a temporary file if it is there; never raises (it runs on the way out of a failure)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
