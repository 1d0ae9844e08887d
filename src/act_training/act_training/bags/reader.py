"""Opening a rosbag2 recording for conversion: only the connections the mapping names.

`open_bag(path, topics)` returns a `BagSource`: the bag's topics and types, a type store built
from the definitions of the wanted connections only, and `messages()`, which yields
(topic, receive time, raw CDR bytes) in receive-time order and raises `BagCorrupt` where the
storage stops being readable (a corrupt page or chunk, a truncated file), after every message
before that point.

What real recordings hold and rosbags' own `AnyReader` refuses:
- connections whose type definitions cannot be parsed (service event topics `*_Event`, which
  rosbag2 stores as the raw `.srv` text; custom types with odd definitions): skipped when the
  mapping does not use them, named in `BagSource.skipped`;
- an mcap file without its summary and footer (a recording killed mid-write, a copy cut short):
  read sequentially up to where it ends (`BagSource.recovered`).
"""

from __future__ import annotations

import functools
import mmap
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Imported here, not per bag: with the base message types (~0.1 s) they are the converter's
# start-up, paid once for a multi-bag job.
import rosbags.typesys.stores.ros2_kilted  # noqa: F401
from rosbags.interfaces import MessageDefinition, MessageDefinitionFormat, Nodetype
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_mcap import McapReader
from rosbags.rosbag2.storage_mcap import decompress as mcap_decompress
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

from act_training.bags import cdr

# rosbags raises several exception types for broken storage (its own, sqlite3, yaml, zstd, ...).
RECOVERY_HINT = ("to recover the rest, rebuild the storage (mcap: `mcap recover IN.mcap -o OUT.mcap`; "
                 "sqlite3: `sqlite3 IN.db3 .recover | sqlite3 OUT.db3`), then `ros2 bag reindex` the "
                 "directory")


class BagError(RuntimeError):
    """A bag cannot be converted with this mapping; the message names the bag and the problem."""


class BagCorrupt(Exception):
    """The bag's storage is unreadable from this point on; every message before it was yielded."""

    def __init__(self, cause: BaseException):
        super().__init__(one_line(f"{type(cause).__name__}: {cause}"))


def one_line(text: str, limit: int = 300) -> str:
    """Collapse a (possibly multi-line) library message into one line of at most `limit` chars."""
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class BagSource:
    """An open bag: topics, a type store for the wanted connections, and their messages."""

    path: Path
    topics: dict[str, str]  # every topic in the bag -> its message type
    typestore: object
    skipped: list[str] = field(default_factory=list)  # "topic [type]" not parseable, not needed
    recovered: bool = False  # an mcap without summary/footer, read sequentially
    _reader: object = None
    _conns: list = field(default_factory=list)
    _files: list[Path] = field(default_factory=list)
    _fast: dict = field(default_factory=dict)  # msgtype -> direct CDR reader, or False (`cdr`)

    def messages(self) -> Iterator[tuple[str, int, bytes]]:
        """(topic, receive time ns, raw bytes) of the wanted connections; BagCorrupt at the end."""
        if self.recovered:
            yield from _scan_mcap_messages(self._files, {c.topic for c in self._conns})
            return
        storages = _indexed_mcap_storages(self._reader)
        if storages is not None:
            try:
                for st in storages:
                    yield from _mcap_chunk_messages(st, {c.topic for c in self._conns})
            except BagCorrupt:
                raise
            except Exception as e:  # noqa: BLE001 - as below: a broken chunk ends the readable part
                raise BagCorrupt(e) from None
            return
        it = self._reader.messages(connections=self._conns)
        while True:
            try:
                conn, rx, raw = next(it)
            except StopIteration:
                return
            except Exception as e:  # noqa: BLE001 - any storage failure ends the readable part
                raise BagCorrupt(e) from None
            yield conn.topic, rx, raw

    def message_count(self, topics: list[str]) -> int | None:
        """Messages on `topics` per the bag's index (None for a recovered mcap: not known)."""
        if self.recovered:
            return None
        return sum(c.msgcount for c in self._conns if c.topic in topics)

    def deserialize(self, raw, msgtype: str):
        """CDR bytes -> message object (raises on bytes that do not match the type).

        JointState, Float64MultiArray and Image go through `cdr`'s direct readers where the
        bag's definitions of them are the standard ones; rosbags reads everything else, and any
        message a direct reader declines."""
        fast = self._fast.get(msgtype)
        if fast is None:
            fast = self._fast[msgtype] = cdr.READERS.get(msgtype) if self._standard(msgtype) else False
        if fast:
            try:
                return fast(raw)
            except cdr.NotFast:
                pass
        return self.typestore.deserialize_cdr(bytes(raw), msgtype)

    def _standard(self, msgtype: str) -> bool:
        """Are msgtype and the types it holds defined here as in ROS 2 (what `cdr` reads)?"""
        std = _kilted_store().fielddefs
        have = self.typestore.fielddefs
        return msgtype in cdr.HOLDS and all(have.get(t) == std[t] for t in cdr.HOLDS[msgtype])

    def close(self) -> None:
        """Close the underlying reader (idempotent)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _parse_definition(msgdef, msgtype: str) -> dict:
    if msgdef.format == MessageDefinitionFormat.MSG:
        return get_types_from_msg(msgdef.data, msgtype)
    sep = "=" * 80 + "\n"
    typs: dict = {}
    parts = msgdef.data.split(sep)[1:] if msgdef.data.startswith(f"{sep}IDL: ") else [None]
    for part in parts:
        typs.update(get_types_from_idl(msgdef.data if part is None else part.split("\n", 1)[1]))
    return typs


@functools.cache
def _kilted_store():
    """The ROS 2 Kilted type store (built once; only read)."""
    return get_typestore(Stores.ROS2_KILTED)


def _is_standard(conn) -> bool:
    """Does the connection record (RIHS01 hash) the ROS 2 Kilted definition of its type?"""
    digest = getattr(conn, "digest", "") or ""
    std = _kilted_store()
    return (digest.startswith("RIHS01_") and conn.msgtype in std.fielddefs
            and std.hash_rihs01(conn.msgtype) == digest)


def _closure(fielddefs: dict, msgtype: str) -> dict:
    """msgtype's field definitions and those of every type it holds."""
    out: dict = {}
    todo = [msgtype]
    while todo:
        t = todo.pop()
        if t in out:
            continue
        out[t] = fielddefs[t]
        for _, desc in fielddefs[t][1]:
            while desc[0] in (Nodetype.ARRAY, Nodetype.SEQUENCE):
                desc = desc[1][0]
            if desc[0] == Nodetype.NAME:
                todo.append(desc[1])
    return out


def _build_typestore(bag: Path, wanted, others) -> tuple[object, list[str], list[str]]:
    """Type store from the wanted connections' definitions; (store, skipped others, warnings)."""
    typs: dict = {}
    notes: list[str] = []
    kilted = None
    for c in wanted:
        if c.msgtype in typs:
            continue
        if _is_standard(c):  # the recorded hash says: ROS 2's own definition, no need to parse it
            typs.update(_closure(_kilted_store().fielddefs, c.msgtype))
            continue
        why = "the bag has no definition"
        if c.msgdef.format != MessageDefinitionFormat.NONE and c.msgdef.data.strip():
            try:
                typs.update(_parse_definition(c.msgdef, c.msgtype))
                continue
            except Exception as e:  # noqa: BLE001 - rosbags' parser raises several types
                why = f"its definition in the bag cannot be parsed ({one_line(e, 120)})"
        kilted = kilted or _kilted_store()
        if c.msgtype not in kilted.fielddefs:
            raise BagError(f"{bag}: topic {c.topic}: unknown message type {c.msgtype}: {why}, and the "
                           "ROS 2 Kilted type store has none; expected a parseable .msg/.idl definition")
        notes.append(f"{bag}: topic {c.topic}: {why}; using the ROS 2 Kilted definition of {c.msgtype}")
        typs.update({k: v for k, v in kilted.fielddefs.items() if k not in typs})
    store = get_typestore(Stores.EMPTY)
    try:
        store.register(typs)
    except Exception as e:  # noqa: BLE001
        raise BagError(f"{bag}: the type definitions of {sorted({c.topic for c in wanted})} conflict: "
                       f"{one_line(e, 160)}") from None
    for c in wanted:
        if c.digest and c.digest.startswith("RIHS01_") and store.hash_rihs01(c.msgtype) != c.digest:
            raise BagError(f"{bag}: topic {c.topic}: the definition of {c.msgtype} does not match the hash "
                           f"the bag records ({c.digest}); expected matching definitions")
    skipped = []
    for c in others:
        try:
            if c.msgdef.format != MessageDefinitionFormat.NONE:
                _parse_definition(c.msgdef, c.msgtype)
        except Exception:  # noqa: BLE001 - not used: only named
            skipped.append(f"{c.topic} [{c.msgtype}]")
    return store, skipped, notes


def open_bag(path: Path, topics: list[str]) -> tuple[BagSource, list[str]]:
    """Open a rosbag2 directory or single .mcap/.db3 file; (source, warnings). Raises BagError."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: bag not found")
    if not (path.is_dir() or path.suffix in (".mcap", ".db3")):
        raise BagError(f"{path}: not a rosbag2 directory or .mcap/.db3 file")
    try:
        reader = Reader(path)
        reader.open()
    except BagError:
        raise
    except Exception as e:  # noqa: BLE001
        files = _mcap_files(path)
        if files and _is_mcap_without_footer(files):
            return _open_recovered(path, files, topics)
        hint = ""
        if path.is_dir() and not (path / "metadata.yaml").exists():
            hint = " (no metadata.yaml: was the recording killed before it was closed? `ros2 bag reindex` it)"
        why = one_line(f"{type(e).__name__}: {e}")
        raise BagError(f"{path}: unreadable or corrupt bag: {why}{hint}") from None
    try:
        have = {}
        for c in reader.connections:
            have.setdefault(c.topic, c.msgtype)
        wanted = [c for c in reader.connections if c.topic in topics]
        others = [c for c in reader.connections if c.topic not in topics]
        store, skipped, notes = _build_typestore(path, wanted, others)
    except BaseException:
        reader.close()
        raise
    src = BagSource(path, have, store, skipped, _reader=reader, _conns=wanted)
    return src, notes


# ----------------------------------------------------------------------------------------------
# indexed mcap: the chunks read in place
#
# rosbags reads an mcap chunk by chunk into BytesIO objects, a dozen small reads and a copy per
# message. Here the file is mapped and each message is a memoryview of its chunk: an
# uncompressed chunk is never copied (the pipeline resizes a frame straight from the page cache).
# The order is rosbags': by log time, ties in chunk then record order. That is a sequential scan
# when the chunks, taken in file order, do not overlap in time, the case of every rosbag2
# recording; other files go through rosbags.

_MESSAGE = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def _indexed_mcap_storages(reader) -> list | None:
    """The reader's mcap files if each can be read chunk by chunk in file order, else None."""
    st = getattr(reader, "storage", None)
    if isinstance(st, McapReader):
        storages = [st]
    elif isinstance(st, DirectoryReader) and not st.metadata.compression_mode:
        storages = st.storages
    else:
        return None
    for s in storages:
        if not isinstance(s, McapReader) or not s.chunks or s.bio is None:
            return None
        prev = None
        for c in sorted(s.chunks, key=lambda c: c.chunk_start_offset):
            if c.compression not in ("", "zstd", "lz4") or (prev is not None and c.message_start_time
                                                              < prev.message_end_time):
                return None
            prev = c
    return storages


def _mcap_chunk_messages(storage, topics: set[str]) -> Iterator[tuple[str, int, memoryview]]:
    """(topic, log time, message bytes) of one indexed mcap file, in rosbags' order."""
    chans = {c.id: c.topic for c in storage.connections if c.topic in topics}
    if not chans:
        return
    fh = storage.bio
    size = fh.seek(0, 2)
    mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mm)
    starts = []
    try:
        for c in sorted(storage.chunks, key=lambda c: c.chunk_start_offset):
            if not any(c.channel_count.get(i) for i in chans):
                continue
            # The pages of the chunks before the last two leave this process's RSS (else the peak
            # would grow by the whole file). Read-only and file-backed, a page comes back from the
            # page cache if it is read again (a frame held over a block boundary is), and is
            # dropped again here; the last two chunks hold the frames still pending.
            starts.append(c.chunk_start_offset)
            upto = starts[-3] - starts[-3] % mmap.PAGESIZE if len(starts) >= 3 else 0
            if hasattr(mm, "madvise") and upto > 0:
                mm.madvise(mmap.MADV_DONTNEED, 0, upto)
            at = c.chunk_start_offset + 9 + 40 + len(c.compression)  # see rosbags' msgsrc
            if at + c.compressed_size > size:
                raise BagCorrupt(EOFError(f"chunk at byte {c.chunk_start_offset} runs past the end "
                                          f"of {Path(storage.path).name} ({size} bytes)"))
            (crc,) = _U32.unpack_from(view, c.chunk_start_offset + 9 + 24)
            data = mcap_decompress(view[at:at + c.compressed_size], c.compression,
                                   c.uncompressed_size, crc)
            yield from _chunk_records(memoryview(data), chans, c.message_start_time,
                                      c.message_end_time)
    finally:
        del view
        try:
            mm.close()
        except BufferError:  # frames still held downstream keep the map alive; freed with them
            pass


def _chunk_records(data: memoryview, chans: dict[int, str], start: int, end: int) -> list:
    """(topic, log time, bytes) of the chunk's wanted Message records, sorted by log time (stable)."""
    out = []
    pos, n = 0, len(data)
    unpack_u64, unpack_msg = _U64.unpack_from, _MESSAGE.unpack_from
    while pos < n:
        if pos + 9 > n:
            raise BagCorrupt(EOFError(f"truncated record header at byte {pos} of a chunk"))
        op = data[pos]
        (length,) = unpack_u64(data, pos + 1)
        body, pos = pos + 9, pos + 9 + length
        if pos > n:
            raise BagCorrupt(EOFError(f"record of {length} bytes at byte {body - 9} of a chunk runs "
                                      f"past its end ({n} bytes)"))
        if op == 0x05:
            if length < 22:
                raise BagCorrupt(ValueError(f"invalid message record length {length}"))
            cid, _, t, _ = unpack_msg(data, body)
            topic = chans.get(cid)
            if topic is not None and start <= t <= end:
                out.append((topic, t, data[body + 22:pos]))
    out.sort(key=_log_time)
    return out


def _log_time(m: tuple) -> int:
    return m[1]


# ----------------------------------------------------------------------------------------------
# mcap without summary/footer: sequential scan (the `mcap` package's StreamReader)


def _mcap_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix == ".mcap" else []
    return sorted(path.glob("*.mcap"))


def _is_mcap_without_footer(files: list[Path]) -> bool:
    magic = b"\x89MCAP0\r\n"
    for f in files:
        with open(f, "rb") as fh:
            if fh.read(8) != magic:
                return False
            fh.seek(0, 2)
            if fh.tell() < 16:
                return True
            fh.seek(-8, 2)
            if fh.read(8) != magic:
                return True
    return False


class _McapConn:
    def __init__(self, topic: str, msgtype: str, msgdef, digest: str = ""):
        self.topic, self.msgtype, self.msgdef, self.digest = topic, msgtype, msgdef, digest


def _scan_mcap_records(files: list[Path]):
    """Every record of the files in order; BagCorrupt where one stops being readable."""
    from mcap.exceptions import McapError
    from mcap.stream_reader import StreamReader

    for f in files:
        with open(f, "rb") as fh:
            try:
                yield from StreamReader(fh, validate_crcs=True).records
            except (McapError, ValueError, OSError) as e:
                raise BagCorrupt(e) from None


def _open_recovered(path: Path, files: list[Path], topics: list[str]) -> tuple[BagSource, list[str]]:
    from mcap.records import Channel, Schema

    schemas, conns, end = {}, {}, None
    try:
        for rec in _scan_mcap_records(files):
            if isinstance(rec, Schema):
                schemas[rec.id] = rec
            elif isinstance(rec, Channel) and rec.topic not in conns:
                s = schemas.get(rec.schema_id)
                fmt = MessageDefinitionFormat.IDL if s is not None and s.encoding == "ros2idl" else (
                    MessageDefinitionFormat.MSG if s is not None and s.data else MessageDefinitionFormat.NONE)
                msgdef = MessageDefinition(fmt, s.data.decode() if s is not None else "")
                conns[rec.topic] = _McapConn(rec.topic, s.name if s is not None else "", msgdef)
    except BagCorrupt as e:
        end = str(e)
    wanted = [c for c in conns.values() if c.topic in topics]
    others = [c for c in conns.values() if c.topic not in topics]
    store, skipped, notes = _build_typestore(path, wanted, others)
    notes.insert(0, f"{path}: mcap storage without summary or footer (a recording cut short?): read "
                 f"sequentially up to where it ends ({end or 'no damaged record found'}); {RECOVERY_HINT}")
    src = BagSource(path, {t: c.msgtype for t, c in conns.items()}, store, skipped, recovered=True,
                    _conns=wanted, _files=files)
    return src, notes


def _scan_mcap_messages(files: list[Path], topics: set[str]) -> Iterator[tuple[str, int, bytes]]:
    from mcap.records import Channel, Message

    chan_topic: dict[int, str] = {}
    for rec in _scan_mcap_records(files):
        if isinstance(rec, Message):
            topic = chan_topic.get(rec.channel_id)
            if topic in topics:
                yield topic, rec.log_time, rec.data
        elif isinstance(rec, Channel):
            chan_topic[rec.id] = rec.topic
