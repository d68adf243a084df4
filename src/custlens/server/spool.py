"""Durable append-only spool: CRC-checked, length-prefixed records in segment files, group-committed with fsync.

Offsets are global byte positions: a segment file is named by the offset of its first byte and the
next segment starts where the previous one ends, so `durable_end - committed` is the un-flushed backlog.
A torn tail (crash mid-write) fails its CRC and is cut off on open; it was never acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import struct
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path

log = logging.getLogger("custlens.spool")

HEADER = struct.Struct("<II")  # payload length, crc32 over (length bytes + payload)
_LEN = struct.Struct("<I")
MAX_RECORD = 8 * 1024 * 1024
SUFFIX = ".seg"
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


class SpoolFull(Exception):
    """The un-flushed backlog would pass the spool limit: the caller should answer 429 and retry later."""


class SpoolCorrupt(Exception):
    """A record inside the durable range fails its CRC (disk damage, not a torn tail)."""


def encode(payload: bytes) -> bytes:
    """One framed record: length, CRC, payload."""
    n = len(payload)
    if n > MAX_RECORD:
        raise ValueError(f"spool record of {n} bytes exceeds {MAX_RECORD}")
    return HEADER.pack(n, zlib.crc32(payload, zlib.crc32(_LEN.pack(n)))) + payload


def decode(buf: bytes | memoryview) -> tuple[list[bytes], int, int | None]:
    """Whole valid records at the start of buf → (payloads, bytes consumed, size needed for an incomplete next one).

    A record with a bad CRC or an impossible length stops decoding; `needed` is then -1.
    """
    out: list[bytes] = []
    pos, n = 0, len(buf)
    mv = memoryview(buf)
    while pos + HEADER.size <= n:
        length, crc = HEADER.unpack_from(mv, pos)
        if length > MAX_RECORD:
            return out, pos, -1
        end = pos + HEADER.size + length
        if end > n:
            return out, pos, HEADER.size + length
        payload = bytes(mv[pos + HEADER.size:end])
        if zlib.crc32(payload, zlib.crc32(_LEN.pack(length))) != crc:
            return out, pos, -1
        out.append(payload)
        pos = end
    return out, pos, (HEADER.size if pos < n else None)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Item:
    __slots__ = ("data", "tags", "future", "n", "loop")

    def __init__(self, data: bytes | list[bytes], tags: Counter[str], future: Future[int] | asyncio.Future[int] | None, n: int,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.data, self.tags, self.future, self.n, self.loop = data, tags, future, n, loop


def _resolve(waiters: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    """Runs on the event loop: settle every request future of one group commit."""
    for fut, res in waiters:
        if fut.done():
            continue
        if isinstance(res, BaseException):
            fut.set_exception(res)
        else:
            fut.set_result(res)


class Spool:
    """The spool folder. One group-commit thread appends; one reader (the warehouse writer) consumes."""

    def __init__(self, folder: Path, *, limit_bytes: int, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.folder = Path(folder)
        self.limit_bytes = limit_bytes
        self.segment_bytes = segment_bytes
        self.segments: list[int] = []  # start offsets, ascending; the last one is appended to
        self.durable_end = 0  # everything before this offset is fsync'd
        self.committed = 0  # everything before this offset is in the warehouse
        self.read_from = 0  # where the warehouse writer starts after open()
        self.pending: Counter[str] = Counter()  # durable, uncommitted records by tag (write key)
        self.lost_bytes = 0  # spool bytes missing below the committed offset's expectations (reported)
        self.torn_bytes = 0  # bytes cut from a torn tail on open
        self.acct_lock = threading.RLock()  # durable_end/committed/pending change together under it
        self._qlock = threading.Lock()
        self._queued = 0
        self._q: queue.Queue[_Item | None] = queue.Queue()
        self._fd: int | None = None
        self._thread: threading.Thread | None = None
        self.data_ready = threading.Event()
        self.error: str | None = None

    # ----- opening and recovery -----
    def _path(self, start: int) -> Path:
        return self.folder / f"{start:020d}{SUFFIX}"

    def _list(self) -> list[int]:
        if not self.folder.exists():
            return []
        return sorted(int(p.stem) for p in self.folder.glob("*" + SUFFIX) if p.stem.isdigit())

    def open(self, committed: int, tag_of: Callable[[bytes], str | tuple[str | None, int] | None] | None = None, *,
             read_only: bool = False) -> None:
        """Find the spool's end (cutting a torn tail unless read_only) and count the uncommitted records."""
        if not read_only:
            self.folder.mkdir(parents=True, exist_ok=True)
        segs = self._list()
        self.committed = committed
        if not segs:
            self.segments = [committed]
            self.durable_end = committed
            self.read_from = committed
            if not read_only:
                self._path(committed).touch()
                _fsync_dir(self.folder)
            return
        last = segs[-1]
        size = self._path(last).stat().st_size
        valid = self._valid_length(last, size)
        if valid < size:
            self.torn_bytes = size - valid
            log.warning("spool: cut a torn tail of %d bytes from %s", size - valid, self._path(last))
            if not read_only:
                with open(self._path(last), "r+b") as f:
                    f.truncate(valid)
                    f.flush()
                    os.fsync(f.fileno())
        end = last + valid
        self.segments = segs
        if committed > end or committed < segs[0]:
            # The spool does not hold the committed offset (folder removed or replaced): keep what is there.
            self.lost_bytes = max(0, segs[0] - committed)
            if committed > end and not read_only:
                self.segments.append(committed)
                self._path(committed).touch()
                _fsync_dir(self.folder)
                end = committed
            self.read_from = max(committed, segs[0]) if committed <= end else end
        else:
            self.read_from = committed
        self.durable_end = end
        if tag_of is not None:
            pos = self.read_from
            while pos < self.durable_end:
                recs, pos = self.read(pos)
                for r in recs:
                    tag = tag_of(r)
                    if isinstance(tag, tuple):  # (tag, number of events in the record)
                        if tag[0] is not None and tag[1]:
                            self.pending[tag[0]] += tag[1]
                    elif tag is not None:
                        self.pending[tag] += 1

    def _valid_length(self, start: int, size: int) -> int:
        """Length of the prefix of segment `start` made of whole, CRC-valid records."""
        pos, want = 0, 4 * 1024 * 1024
        with open(self._path(start), "rb") as f:
            while pos < size:
                f.seek(pos)
                recs, used, need = decode(f.read(min(size - pos, want)))
                pos += used
                if need == -1:
                    break
                if used == 0:
                    if need is None or pos + need > size:
                        break
                    want = need  # one record larger than the chunk
                else:
                    want = 4 * 1024 * 1024
        return pos

    # ----- appending -----
    @property
    def pending_bytes(self) -> int:
        """Bytes accepted (queued or durable) but not yet in the warehouse."""
        return self.durable_end + self._queued - self.committed

    def start(self) -> None:
        """Start the group-commit thread."""
        self._open_fd()
        self._thread = threading.Thread(target=self._run, name="custlens-spool", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish queued appends and stop the thread."""
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout=30)
            self._thread = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open_fd(self) -> None:
        if self._fd is None:
            self._fd = os.open(self._path(self.segments[-1]), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def submit(self, payloads: Iterable[bytes], tags: Counter[str]) -> Future[int]:
        """Queue records for the next group commit; the future resolves (to the end offset) once fsync'd."""
        data = b"".join(encode(p) for p in payloads)
        fut: Future[int] = Future()
        with self._qlock:
            if self.pending_bytes + len(data) > self.limit_bytes:
                raise SpoolFull(self.pending_bytes)
            self._queued += len(data)
        self._q.put(_Item(data, tags, fut, len(data)))
        return fut

    def submit_async(self, payloads: list[bytes], tags: Counter[str], loop: asyncio.AbstractEventLoop
                     ) -> asyncio.Future[int]:
        """Like submit, for a request handler on `loop`: the returned asyncio future resolves once fsync'd.

        Framing (CRC) happens on the spool thread, and a group commit wakes each event loop once for all its
        requests (not once per request), so the event loop does as little as possible per request.
        """
        for p in payloads:
            if len(p) > MAX_RECORD:
                raise ValueError(f"spool record of {len(p)} bytes exceeds {MAX_RECORD}")
        n = sum(len(p) for p in payloads) + HEADER.size * len(payloads)
        fut: asyncio.Future[int] = loop.create_future()
        with self._qlock:
            if self.pending_bytes + n > self.limit_bytes:
                raise SpoolFull(self.pending_bytes)
            self._queued += n
        self._q.put(_Item(payloads, tags, fut, n, loop))
        return fut

    def append(self, payloads: Iterable[bytes], tags: Counter[str] | None = None) -> int:
        """Append and fsync synchronously (offline tools, no thread running); returns the new end offset."""
        data = b"".join(encode(p) for p in payloads)
        self._open_fd()
        self._write([_Item(data, tags or Counter(), None, len(data))], queued=False)
        return self.durable_end

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._q.get()
            if item is None:
                break
            batch, size = [item], item.n
            while size < 8 * 1024 * 1024:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                size += nxt.n
            try:
                self._write(batch, queued=True)
            except Exception as e:  # noqa: BLE001 — reported to every waiting request
                self.error = repr(e)
                log.exception("spool: append failed")
                with self._qlock:
                    self._queued -= size
                self._settle(batch, e)

    def _write(self, batch: list[_Item], *, queued: bool) -> None:
        assert self._fd is not None
        if self.durable_end - self.segments[-1] >= self.segment_bytes:
            self._roll()
        data = b"".join([it.data if isinstance(it.data, bytes) else b"".join([encode(p) for p in it.data])
                         for it in batch])
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)
        tags: Counter[str] = Counter()
        for it in batch:
            tags.update(it.tags)
        with self.acct_lock:
            self.durable_end += len(data)
            self.pending.update(tags)
            if queued:
                with self._qlock:
                    self._queued -= len(data)
        self.data_ready.set()
        self._settle(batch, self.durable_end)

    @staticmethod
    def _settle(batch: list[_Item], result: int | BaseException) -> None:
        """Resolve the futures of a group commit: asyncio ones with one wake-up per event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | BaseException]]] = {}
        for it in batch:
            if it.future is None:
                continue
            if it.loop is not None:
                by_loop.setdefault(it.loop, []).append((it.future, result))  # type: ignore[arg-type]
            elif not it.future.done():
                if isinstance(result, BaseException):
                    it.future.set_exception(result)
                else:
                    it.future.set_result(result)
        for loop, waiters in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, waiters)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _roll(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        start = self.durable_end
        self._path(start).touch()
        _fsync_dir(self.folder)
        with self.acct_lock:
            self.segments.append(start)
        self._open_fd()

    # ----- reading and committing -----
    def read(self, pos: int, max_bytes: int = 4 * 1024 * 1024) -> tuple[list[bytes], int]:
        """Durable records from pos (at most about max_bytes) → (payloads, offset after them)."""
        with self.acct_lock:
            segs = list(self.segments)
            end = self.durable_end
        while pos < end:
            i = max(k for k, s in enumerate(segs) if s <= pos) if segs and segs[0] <= pos else None
            if i is None:
                raise SpoolCorrupt(f"offset {pos} is before the first spool segment")
            seg_end = segs[i + 1] if i + 1 < len(segs) else end
            if pos >= seg_end:
                pos = seg_end
                continue
            with open(self._path(segs[i]), "rb") as f:
                f.seek(pos - segs[i])
                buf = f.read(min(seg_end - pos, max_bytes))
                recs, used, need = decode(buf)
                while not recs and need is not None and len(buf) < need <= seg_end - pos:
                    f.seek(pos - segs[i])  # the first record is larger than max_bytes
                    buf = f.read(need)
                    recs, used, need = decode(buf)
            if not recs:
                if pos + used >= seg_end:
                    pos = seg_end
                    continue
                raise SpoolCorrupt(f"spool record at offset {pos} in {self._path(segs[i])} fails its check")
            return recs, pos + used
        return [], pos

    def mark_committed(self, offset: int, tags: Counter[str]) -> None:
        """Record that everything before offset is in the warehouse (call under acct_lock, right after COMMIT)."""
        with self.acct_lock:
            self.committed = offset
            self.pending.subtract(tags)
            self.pending = +self.pending
        self._drop_old()

    def _drop_old(self) -> None:
        with self.acct_lock:
            segs = list(self.segments)
        for i, s in enumerate(segs[:-1]):
            if segs[i + 1] <= self.committed:
                try:
                    self._path(s).unlink()
                except FileNotFoundError:
                    pass
                with self.acct_lock:
                    if s in self.segments:
                        self.segments.remove(s)
