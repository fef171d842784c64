"""Parquet splitting: whole row groups per shard while they fit; a row group larger than a shard is cut into
record batches of a size that fits. Shards keep the source's schema (and its metadata)."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from splitter.exceptions import CorruptInputError
from splitter.manifest import Manifest, ShardInfo
from splitter.sinks import ShardSink

# Rows decoded at a time while copying: small batches from one thread kept peak memory lowest and were also
# fastest on a 300 MB file (145 MB peak RSS vs 219 MB with 64k-row batches decoded by threads).
MAX_BATCH_ROWS = 16384
# Rows per row group written in a shard: batches are gathered to this many, so shards read efficiently
# (on the same file: 176 MB peak RSS; 131k-row groups took it to 210 MB).
WRITE_GROUP_ROWS = 65536
# Batches decoded ahead of the shard writer, on the decoding thread
READ_AHEAD = 4
# A column whose values keep changing gives up dictionary encoding when its dictionary reaches this size. The
# default (1 MiB) suits the default row group of 1M rows; our groups are 16 times smaller, so is this budget:
# the same bytes of dictionary per row. With 1 MiB every 65k-row group of unique doubles was dictionary-encoded
# to no purpose, half the time of a split.
DICTIONARY_PAGE_BYTES = 64 * 1024
# Shards are re-encoded, so their size only approximates the source's bytes per row; aim a little low.
SIZE_SAFETY = 0.9


@dataclass
class _Piece:
    row_group: int
    start: int  # row within the row group
    rows: int


def plan(metadata: pq.FileMetaData, limit: int) -> list[list[_Piece]]:
    """Shards as lists of row-group pieces: consecutive row groups while they fit, big ones cut by rows."""
    target = max(1, int(limit * SIZE_SAFETY))
    shards: list[list[_Piece]] = []
    current: list[_Piece] = []
    current_bytes = 0
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        size = max(sum(group.column(c).total_compressed_size for c in range(group.num_columns)), 1)
        if group.num_rows == 0:
            continue
        if size > target:
            if current:
                shards.append(current)
                current, current_bytes = [], 0
            parts = math.ceil(size / target)
            step = math.ceil(group.num_rows / parts)
            shards.extend([[_Piece(i, start, min(step, group.num_rows - start))]
                           for start in range(0, group.num_rows, step)])
            continue
        if current and current_bytes + size > target:
            shards.append(current)
            current, current_bytes = [], 0
        current.append(_Piece(i, 0, group.num_rows))
        current_bytes += size
    if current:
        shards.append(current)
    return shards


def split_parquet(stream: BinaryIO, sink: ShardSink, manifest: Manifest) -> None:
    # Arrow's default pool (mimalloc) holds on to what a split frees: 210 MB peak on a 300 MB file, against 130 MB
    # through glibc's malloc (which keep_freed_memory tunes), at the same speed
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        source = pq.ParquetFile(stream, pre_buffer=False, buffer_size=1024**2)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptInputError(f"{manifest.source}: not a valid Parquet file: {exc}") from exc
    sizes = [sum(p.rows for p in pieces) for pieces in plan(source.metadata, manifest.max_shard_bytes)]
    writer = _ShardWriter(sink, manifest, source.schema_arrow, _compression(source.metadata))
    try:
        for batch in _batches(source, manifest.source):
            while batch.num_rows:
                room = sizes[len(manifest.shards)] - writer.rows
                writer.write(batch.slice(0, room))
                batch = batch.slice(min(room, batch.num_rows))
                if writer.rows == sizes[len(manifest.shards)]:
                    writer.commit()
    except BaseException:
        writer.abort()
        raise
    manifest.records = sum(s.records for s in manifest.shards)


class _ShardWriter:
    """One shard at a time: rows written through a ParquetWriter into the sink's handle."""

    def __init__(self, sink: ShardSink, manifest: Manifest, schema: pa.Schema, compression: str) -> None:
        self.sink, self.manifest, self.schema, self.compression = sink, manifest, schema, compression
        self.handle: Any = None
        self.writer: pq.ParquetWriter | None = None
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.rows = 0
        self.first_row = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self.writer is None:
            self.handle = self.sink.begin(len(self.manifest.shards))
            self.writer = pq.ParquetWriter(self.handle.binary(), self.schema, compression=self.compression,
                                           dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES)
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        self.rows += batch.num_rows
        if self.pending_rows >= WRITE_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.pending and self.writer is not None:
            self.writer.write_table(pa.Table.from_batches(self.pending, schema=self.schema),
                                    row_group_size=WRITE_GROUP_ROWS)
        self.pending, self.pending_rows = [], 0

    def commit(self) -> None:
        assert self.writer is not None
        self._flush()
        self.writer.close()
        name, size = self.handle.commit()
        self.manifest.shards.append(ShardInfo(name=name, bytes=size, records=self.rows, first_row=self.first_row))
        self.first_row += self.rows
        self.writer, self.handle, self.rows = None, None, 0

    def abort(self) -> None:
        self.pending, self.pending_rows = [], 0
        if self.handle is not None:
            self.handle.abort()
        self.writer, self.handle = None, None


def _batches(source: pq.ParquetFile, name: str) -> Iterator[pa.RecordBatch]:
    """Every row of the file in order, one pass, a bounded number of rows at a time.

    Decoded on a thread of its own, READ_AHEAD batches ahead, so that decoding the source and encoding the
    shards (both in pyarrow's C++, without the GIL) use two cores.
    """
    done = object()
    batches: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()

    def decode() -> None:
        try:
            for batch in source.iter_batches(batch_size=MAX_BATCH_ROWS, use_threads=False):
                while not stop.is_set():
                    try:
                        batches.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            batches.put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            batches.put(exc)

    reader = threading.Thread(target=decode, name="parquet-decode", daemon=True)
    reader.start()
    try:
        while (item := batches.get()) is not done:
            if isinstance(item, BaseException):
                if isinstance(item, pa.ArrowInvalid | OSError):
                    raise CorruptInputError(f"{name}: corrupt Parquet data: {item}") from item
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def _compression(metadata: pq.FileMetaData) -> str:
    if metadata.num_row_groups and metadata.row_group(0).num_columns:
        codec = metadata.row_group(0).column(0).compression
        if codec and codec.upper() in ("SNAPPY", "GZIP", "BROTLI", "ZSTD", "LZ4", "NONE", "UNCOMPRESSED"):
            return "NONE" if codec.upper() == "UNCOMPRESSED" else codec.lower()
    return "snappy"
