"""Parquet splitting: whole row groups per shard while they fit; a row group larger than a shard is cut into
record batches of a size that fits. Shards keep the source's schema (and its metadata)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from splitter.exceptions import CorruptInputError
from splitter.manifest import Manifest, ShardInfo
from splitter.sinks import ShardSink

# Decoded rows held at once while copying; bounds memory for wide tables with huge row groups.
MAX_BATCH_ROWS = 65_536
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
    try:
        source = pq.ParquetFile(stream, pre_buffer=False, buffer_size=1024**2)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptInputError(f"{manifest.source}: not a valid Parquet file: {exc}") from exc
    schema = source.schema_arrow
    shards = plan(source.metadata, manifest.max_shard_bytes)
    compression = _compression(source.metadata)
    first_row = 0
    for index, pieces in enumerate(shards):
        handle = sink.begin(index)
        try:
            rows = 0
            with pq.ParquetWriter(handle.binary(), schema, compression=compression) as writer:
                for piece in pieces:
                    for batch in _read_piece(source, piece, manifest.source):
                        writer.write_batch(batch, row_group_size=MAX_BATCH_ROWS)
                        rows += batch.num_rows
            name, size = handle.commit()
        except BaseException:
            handle.abort()
            raise
        manifest.shards.append(ShardInfo(name=name, bytes=size, records=rows, first_row=first_row))
        first_row += rows
    manifest.records = first_row


def _read_piece(source: pq.ParquetFile, piece: _Piece, name: str):  # type: ignore[no-untyped-def]
    skipped = 0
    remaining = piece.rows
    try:
        for batch in source.iter_batches(batch_size=MAX_BATCH_ROWS, row_groups=[piece.row_group],
                                         use_threads=False):
            if skipped + batch.num_rows <= piece.start:
                skipped += batch.num_rows
                continue
            offset = max(0, piece.start - skipped)
            skipped += batch.num_rows
            batch = batch.slice(offset, remaining)
            remaining -= batch.num_rows
            yield batch
            if remaining <= 0:
                return
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptInputError(f"{name}: corrupt Parquet data in row group {piece.row_group}: {exc}") from exc


def _compression(metadata: pq.FileMetaData) -> str:
    if metadata.num_row_groups and metadata.row_group(0).num_columns:
        codec = metadata.row_group(0).column(0).compression
        if codec and codec.upper() in ("SNAPPY", "GZIP", "BROTLI", "ZSTD", "LZ4", "NONE", "UNCOMPRESSED"):
            return "NONE" if codec.upper() == "UNCOMPRESSED" else codec.lower()
    return "snappy"
