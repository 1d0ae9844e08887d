"""The converter's own reading of indexed mcap files (`bags.reader`, chunks read in place).

It must give rosbags' messages in rosbags' order (log time; ties in chunk, then record order),
whatever the chunks hold: zstd, lz4 or no compression, CRCs, records out of time order inside a
chunk, equal log times. Files it cannot read that way (chunks overlapping in time) go through
rosbags. A chunk that fails its CRC ends the readable part of the bag, as a corrupt page does.
"""

from __future__ import annotations

import random
from pathlib import Path

import h5py
import numpy as np
import pytest
from act_training.bags.convert import convert_bags
from act_training.bags.mapping import BagConfig
from act_training.bags.reader import BagCorrupt, _indexed_mcap_storages, open_bag
from bag_synth import base_config, write_bag
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer
from mirror_arm_sim.hdf5_layout import read_layout

TOPICS = ["/cam/top", "/follower/joint_states", "/commands"]


def rewrite(src: Path, dst: Path, compression=CompressionType.ZSTD, chunk_size=64 << 10,
            reorder=None) -> Path:
    """Copy an mcap with the `mcap` package's writer (CRCs on); reorder(list) permutes messages."""
    with open(src, "rb") as f:
        r = make_reader(f)
        summary = r.get_summary()
        msgs = [(ch.id, m.log_time, m.publish_time, m.sequence, bytes(m.data))
                for _, ch, m in r.iter_messages(log_time_order=False)]
    if reorder is not None:
        msgs = reorder(msgs)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "wb") as f:
        w = Writer(f, chunk_size=chunk_size, compression=compression, enable_crcs=True)
        w.start(profile="ros2", library="test")
        sid = {s.id: w.register_schema(s.name, s.encoding, s.data) for s in summary.schemas.values()}
        cid = {c.id: w.register_channel(c.topic, c.message_encoding, sid[c.schema_id], c.metadata)
               for c in summary.channels.values()}
        for ch, t, pub, seq, data in msgs:
            w.add_message(cid[ch], t, data, pub, seq)
        w.finish()
    return dst


def messages_both_ways(bag: Path):
    """(ours, rosbags') message lists of the bag: (topic, log time, bytes)."""
    src, _ = open_bag(bag, TOPICS)
    try:
        ours = [(t, rx, bytes(raw)) for t, rx, raw in src.messages()]
        theirs = [(c.topic, rx, bytes(raw)) for c, rx, raw in src._reader.messages(connections=src._conns)]
        fast = _indexed_mcap_storages(src._reader) is not None
    finally:
        src.close()
    return ours, theirs, fast


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """A 3 s rosbags-written mcap bag (one file, uncompressed chunks without CRCs)."""
    bag = write_bag(tmp_path_factory.mktemp("plain") / "bag", duration_s=3.0, storage="mcap")
    return next(bag.glob("*.mcap"))


@pytest.mark.parametrize("compression", [CompressionType.ZSTD, CompressionType.LZ4, CompressionType.NONE])
def test_chunks_read_in_place_give_rosbags_messages(plain, tmp_path, compression):
    f = rewrite(plain, tmp_path / "x.mcap", compression=compression)
    ours, theirs, fast = messages_both_ways(f)
    assert fast, "an indexed mcap with chunks in time order should be read in place"
    assert len(ours) == 3 * (30 + 100 + 50) and ours == theirs


@pytest.mark.parametrize("chunk_size,shuffle", [(16 << 20, True), (8 << 10, False)],
                         ids=["one-chunk-shuffled", "small-chunks-ties-across"])
def test_records_out_of_order_and_equal_times_keep_rosbags_order(plain, tmp_path, chunk_size, shuffle):
    def quantize(msgs):  # equal log times on different topics and within one topic
        if shuffle:
            msgs = random.Random(0).sample(msgs, len(msgs))  # out of log-time order in the chunk
        return [(ch, (t // 20_000_000) * 20_000_000, pub, seq, d) for ch, t, pub, seq, d in msgs]

    f = rewrite(plain, tmp_path / "x.mcap", chunk_size=chunk_size, reorder=quantize)
    ours, theirs, fast = messages_both_ways(f)
    assert fast and ours == theirs
    assert len({rx for _, rx, _ in ours}) < len(ours) / 2  # the ties are there


def test_chunks_overlapping_in_time_go_through_rosbags(plain, tmp_path):
    def swap_halves(msgs):  # a later chunk starts before an earlier one ends
        h = len(msgs) // 2
        return msgs[h:] + msgs[:h]

    f = rewrite(plain, tmp_path / "x.mcap", reorder=swap_halves)
    ours, theirs, fast = messages_both_ways(f)
    assert not fast and ours == theirs


def test_same_hdf5_from_compressed_chunks(plain, tmp_path):
    cfg = BagConfig.from_dict(base_config())
    f = rewrite(plain, tmp_path / "z" / "x.mcap")
    convert_bags([plain], cfg, tmp_path / "a.h5", progress=False, writer_process=False)
    convert_bags([f], cfg, tmp_path / "b.h5", progress=False, writer_process=False)
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert a.attrs["num_demos"] == b.attrs["num_demos"] == 1
        assert len(a["demo_0/actions"]) > 100
        for key in ("observations/image", "observations/qpos", "actions"):
            np.testing.assert_array_equal(a[f"demo_0/{key}"][:], b[f"demo_0/{key}"][:])


def test_chunk_failing_its_crc_ends_the_readable_part(plain, tmp_path):
    # uncompressed: only the CRC can tell (a zstd frame would also fail to decompress)
    f = rewrite(plain, tmp_path / "x.mcap", chunk_size=32 << 10, compression=CompressionType.NONE)
    with open(f, "rb") as fh:
        chunks = sorted(make_reader(fh).get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset)
    mid = chunks[len(chunks) // 2]
    data = bytearray(f.read_bytes())
    at = mid.chunk_start_offset + mid.chunk_length // 2  # inside a frame's bytes
    data[at] ^= 0xFF
    f.write_bytes(bytes(data))

    src, _ = open_bag(f, TOPICS)
    seen = []
    with pytest.raises(BagCorrupt):
        for _topic, rx, _ in src.messages():
            seen.append(rx)
    src.close()
    assert 0 < len(seen) < 3 * 180 and max(seen) <= mid.message_start_time

    rep = convert_bags([f], BagConfig.from_dict(base_config()), tmp_path / "o.h5", progress=False)
    (n,) = read_layout(tmp_path / "o.h5").episode_lengths
    assert 10 < n < 150, n
    notes = rep.warnings
    assert any("storage unreadable after" in w and "ros2 bag reindex" in w for w in notes), notes
