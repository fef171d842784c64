"""Record-aligned splitting of line-based text: CSV/TSV (RFC 4180 quoting, header repeated), JSON Lines, text.

A record ends at a newline outside quotes. Quote state is the parity of the quote characters seen since the
record began (an escaped quote `""` counts twice, so it never changes the state). Boundaries are found per chunk
with numpy, so the work per byte stays in C, and memory is a chunk plus at most one pending record.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from splitter.exceptions import CorruptInputError
from splitter.manifest import Manifest, ShardInfo
from splitter.sinks import ShardSink, _Handle

READ_CHUNK_BYTES = 4 * 1024**2
# A record still open after this many bytes is written straight to its own shard instead of being held in memory.
PENDING_CAP_BYTES = 8 * 1024**2
NEWLINE, QUOTE = 10, 34


class _Scratch:
    """Reused per split: fresh multi-megabyte arrays per chunk would cost a page fault per 4 KiB."""

    def __init__(self, size: int) -> None:
        self.mask = np.empty(size, dtype=bool)


def record_ends(arr: np.ndarray, parity: int, quoted: bool, scratch: _Scratch | None = None) -> tuple[np.ndarray, int]:
    """End offsets (exclusive) of the records that end in `arr` (the chunk's bytes), and the quote parity after.

    A newline ends a record when the quotes before it (since the record began) are even in number.
    """
    mask = (scratch or _Scratch(len(arr))).mask[: len(arr)]
    np.equal(arr, NEWLINE, out=mask)
    newlines = np.flatnonzero(mask)
    if quoted:
        np.equal(arr, QUOTE, out=mask)
        quotes = np.flatnonzero(mask) if mask.any() else None
    if not quoted or quotes is None:
        return (np.empty(0, dtype=np.int64) if parity else newlines + 1), parity
    before = np.searchsorted(quotes, newlines)
    ends = newlines[((before + parity) & 1) == 0] + 1
    return ends, (len(quotes) + parity) & 1


class _TextSplit:
    def __init__(self, stream: BinaryIO, sink: ShardSink, manifest: Manifest, quoted: bool, has_header: bool,
                 gzipped: bool) -> None:
        self.stream, self.sink, self.manifest = stream, sink, manifest
        self.quoted, self.has_header, self.gzipped = quoted, has_header, gzipped
        self.limit = manifest.max_shard_bytes
        self.header = b""
        self.budget = self.limit
        self.shard: _Handle | None = None
        self.shard_bytes = 0
        self.shard_records = 0
        self.shard_oversized = False
        self.records = 0  # records committed to shards so far: the next shard's first row
        self.offset = 0  # bytes of input consumed before `pending`
        self.pending = 0  # bytes of an unfinished record, at the start of self.buf
        self.buf = bytearray(PENDING_CAP_BYTES + READ_CHUNK_BYTES)
        self.arr = np.frombuffer(self.buf, dtype=np.uint8)
        self.scratch = _Scratch(READ_CHUNK_BYTES)
        self.parity = 0
        self.streaming = False  # writing a long record straight into its own shard
        self.long_record_at = 0

    # shards
    def _open(self) -> _Handle:
        if self.shard is None:
            self.shard = self.sink.begin(len(self.manifest.shards), self.gzipped)
            self.shard.write(self.header)
            self.shard_bytes = self.shard_records = 0
            self.shard_oversized = False
        return self.shard

    def _close(self) -> None:
        if self.shard is None:
            return
        name, size = self.shard.commit()
        self.manifest.shards.append(ShardInfo(name=name, bytes=size, records=self.shard_records,
                                              first_row=self.records, oversized=self.shard_oversized))
        if self.shard_oversized:
            self.manifest.warnings.append(
                f"record at row {self.records} is {self.shard_bytes} bytes, over max_shard_bytes "
                f"{self.limit}: it is alone in shard {len(self.manifest.shards) - 1}")
        self.records += self.shard_records
        self.shard = None
        self.shard_bytes = self.shard_records = 0
        self.shard_oversized = False

    def abort(self) -> None:
        if self.shard is not None:
            self.shard.abort()
            self.shard = None

    # records
    def _emit(self, data: memoryview, ends: np.ndarray) -> None:
        """Write the complete records data[:ends[-1]] into shards, cutting only at record ends."""
        cursor, i = 0, 0
        while i < len(ends):
            room = self.budget - self.shard_bytes
            j = int(np.searchsorted(ends, cursor + room, side="right")) - 1
            if j >= i:
                self._open().write(data[cursor:ends[j]])
                self.shard_bytes += int(ends[j]) - cursor
                self.shard_records += j - i + 1
                cursor, i = int(ends[j]), j + 1
                if i < len(ends):
                    self._close()
            elif self.shard_records:
                self._close()
            else:  # one record larger than a whole shard: alone in its own shard
                self._open().write(data[cursor:ends[i]])
                self.shard_bytes, self.shard_records, self.shard_oversized = int(ends[i]) - cursor, 1, True
                self._close()
                cursor, i = int(ends[i]), i + 1

    def _take_header(self, data: memoryview, ends: np.ndarray) -> tuple[memoryview, np.ndarray]:
        self.header = bytes(data[:ends[0]])
        self.manifest.header_bytes = len(self.header)
        self.budget = max(1, self.limit - len(self.header))
        return data[ends[0]:], ends[1:] - ends[0]

    def feed(self, new: int) -> None:
        """Process `new` bytes just read into the buffer after the `self.pending` bytes already there."""
        view = memoryview(self.buf)
        start = self.pending
        if self.streaming:
            used = self._continue_long_record(view[:new], self.arr[:new])
            if used == new:
                return
            # what follows the long record moves to the front of the buffer; it is at most one chunk
            self.buf[: new - used] = bytes(view[used:new])
            new, start = new - used, 0
        ends, self.parity = record_ends(self.arr[start:start + new], self.parity, self.quoted, self.scratch)
        if start:
            ends += start
        data = view[: start + new]
        if self.has_header and not self.header and len(ends):
            self.offset += int(ends[0])
            data, ends = self._take_header(data, ends)
        if len(ends):
            self._emit(data, ends)
            self.offset += int(ends[-1])
            data = data[int(ends[-1]):]
        self.pending = len(data)
        if self.pending:
            self.buf[: self.pending] = bytes(data)  # usually a partial record: small
        if self.has_header and not self.header and self.pending > PENDING_CAP_BYTES:
            raise CorruptInputError(f"{self.manifest.source}: no end of the header line in the first "
                                    f"{PENDING_CAP_BYTES} bytes (an unterminated quote, or not a text file?)")
        if self.pending > min(self.budget, PENDING_CAP_BYTES) and (self.header or not self.has_header):
            self._start_long_record()

    def read_into_buffer(self) -> int:
        """Read the next chunk after the pending bytes; returns how many bytes arrived."""
        view = memoryview(self.buf)
        return self.stream.readinto(view[self.pending:self.pending + READ_CHUNK_BYTES])  # type: ignore[attr-defined]

    def _start_long_record(self) -> None:
        self._close()
        self._open().write(memoryview(self.buf)[: self.pending])
        self.long_record_at = self.offset
        self.shard_bytes = self.pending
        self.offset += self.pending
        self.pending = 0
        self.streaming = True

    def _continue_long_record(self, chunk: memoryview, arr: np.ndarray) -> int:
        """Copy the long record's bytes; returns how many bytes of `chunk` it took (all, until it ends)."""
        ends, parity = record_ends(arr, self.parity, self.quoted, self.scratch)
        assert self.shard is not None
        if not len(ends):
            self.shard.write(chunk)
            self.shard_bytes += len(chunk)
            self.offset += len(chunk)
            self.parity = parity
            return len(chunk)
        end = int(ends[0])
        self.shard.write(chunk[:end])
        self.shard_bytes += end
        self.offset += end
        self.shard_records = 1
        self.shard_oversized = self.shard_bytes > self.budget
        self.streaming = False
        self.parity = 0
        if self.shard_bytes >= self.budget:
            self._close()
        return end

    def finish(self) -> None:
        if self.parity:
            start = self.long_record_at if self.streaming else self.offset
            raise CorruptInputError(
                f"{self.manifest.source}: unterminated quoted field: a quote opened in the record starting at "
                f"byte {start} is never closed (it would swallow the rest of the file)")
        if self.streaming:  # a long last record without a final newline
            self.shard_records, self.shard_oversized = 1, self.shard_bytes > self.budget
            self.streaming = False
        elif self.pending:
            rest = bytes(self.buf[: self.pending])
            if self.has_header and not self.header:
                self.header = rest  # header-only file without a final newline
                self.manifest.header_bytes = len(self.header)
            else:
                self._emit(memoryview(rest), np.array([len(rest)], dtype=np.int64))
                self.offset += len(rest)
            self.pending = 0
        if self.header and not self.manifest.shards and self.shard is None:
            self._open()  # header-only: one shard with the header, so the schema survives
        self._close()
        self.manifest.records = self.records


def split_text(stream: BinaryIO, sink: ShardSink, manifest: Manifest, *, quoted: bool, has_header: bool,
               gzipped: bool) -> None:
    job = _TextSplit(stream, sink, manifest, quoted, has_header, gzipped)
    try:
        while new := job.read_into_buffer():
            job.feed(new)
        job.finish()
    except BaseException:
        job.abort()
        raise
