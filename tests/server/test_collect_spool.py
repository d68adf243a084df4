"""The spool on real files: framing, torn tails after a crash, CRC damage, segment rolling and cleanup."""

from __future__ import annotations

from collections import Counter

import pytest

from custlens.server.spool import HEADER, Spool, SpoolCorrupt, SpoolFull, decode, encode


def _all(sp: Spool, pos: int) -> list[bytes]:
    out = []
    while pos < sp.durable_end:
        recs, pos = sp.read(pos, max_bytes=64)
        out += recs
    return out


def test_collect_spool_torn_tail_is_cut_and_appends_continue(tmp_path):
    sp = Spool(tmp_path / "spool", limit_bytes=10**9)
    sp.open(0)
    end = sp.append([b"one", b"two" * 50, b"three"], Counter(web=3))
    sp.stop()
    seg = next((tmp_path / "spool").glob("*.seg"))
    with open(seg, "ab") as f:  # a crash in the middle of the next record
        f.write(encode(b"four")[:-2])
    sp2 = Spool(tmp_path / "spool", limit_bytes=10**9)
    sp2.open(0, tag_of=lambda p: "web")
    assert sp2.durable_end == end and sp2.torn_bytes == HEADER.size + 2
    assert sp2.pending == Counter(web=3)
    assert seg.stat().st_size == end
    assert _all(sp2, 0) == [b"one", b"two" * 50, b"three"]
    sp2.append([b"four"])
    assert _all(sp2, 0)[-1] == b"four"
    sp2.stop()


def test_collect_spool_crc_damage_detected(tmp_path):
    sp = Spool(tmp_path / "spool", limit_bytes=10**9)
    sp.open(0)
    sp.append([b"alpha", b"beta", b"gamma"])
    sp.stop()
    seg = next((tmp_path / "spool").glob("*.seg"))
    data = bytearray(seg.read_bytes())
    data[HEADER.size + 5 + HEADER.size + 1] ^= 0xFF  # flip a byte inside "beta"
    recs, used, need = decode(bytes(data))
    assert recs == [b"alpha"] and need == -1 and used == HEADER.size + 5
    seg.write_bytes(bytes(data))
    sp2 = Spool(tmp_path / "spool", limit_bytes=10**9)
    sp2.open(0, read_only=True)  # read-only open reports but does not cut
    assert sp2.durable_end == HEADER.size + 5 and seg.stat().st_size == len(data)


def test_collect_spool_segments_roll_and_old_ones_are_dropped(tmp_path):
    sp = Spool(tmp_path / "spool", limit_bytes=10**9, segment_bytes=100)
    sp.open(0)
    sp.start()
    payloads = [f"record-{i:03d}".encode() * 3 for i in range(20)]
    for p in payloads:
        sp.submit([p], Counter(web=1)).result(timeout=10)
    assert len(list((tmp_path / "spool").glob("*.seg"))) > 3
    assert _all(sp, 0) == payloads and sp.pending == Counter(web=20)
    half, pos = [], 0
    while len(half) < 10:
        recs, pos = sp.read(pos, max_bytes=1)
        half += recs
    sp.mark_committed(pos, Counter(web=len(half)))
    assert sp.pending == Counter(web=20 - len(half))
    starts = sorted(int(p.stem) for p in (tmp_path / "spool").glob("*.seg"))
    assert starts[0] <= pos and all(s >= 0 for s in starts) and len(starts) < 7
    assert _all(sp, pos) == payloads[len(half):]
    sp.stop()
    # reopening at the committed offset sees exactly the rest
    sp2 = Spool(tmp_path / "spool", limit_bytes=10**9, segment_bytes=100)
    sp2.open(pos, tag_of=lambda p: "web")
    assert sp2.pending == Counter(web=20 - len(half)) and _all(sp2, sp2.read_from) == payloads[len(half):]
    sp2.stop()


def test_collect_spool_limit_refuses_before_writing(tmp_path):
    sp = Spool(tmp_path / "spool", limit_bytes=1000)
    sp.open(0)
    sp.start()
    sp.submit([b"x" * 600], Counter()).result(timeout=10)
    with pytest.raises(SpoolFull):
        sp.submit([b"y" * 600], Counter())
    assert sp.durable_end == 600 + HEADER.size
    sp.mark_committed(sp.durable_end, Counter())
    sp.submit([b"y" * 600], Counter()).result(timeout=10)
    sp.stop()


def test_collect_spool_damage_inside_durable_range_is_an_error(tmp_path):
    sp = Spool(tmp_path / "spool", limit_bytes=10**9)
    sp.open(0)
    sp.append([b"abc", b"def"])
    seg = next((tmp_path / "spool").glob("*.seg"))
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF
    seg.write_bytes(bytes(data))
    recs, pos = sp.read(0, max_bytes=HEADER.size + 3)
    assert recs == [b"abc"]
    with pytest.raises(SpoolCorrupt):
        sp.read(pos)
    sp.stop()
