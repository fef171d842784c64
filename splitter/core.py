"""split(): one file in (local path, s3:// URL or binary file object), shards out, manifest back."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from splitter.exceptions import CorruptInputError, SplitError
from splitter.formats import FileFormat, detect_format
from splitter.manifest import Manifest
from splitter.sinks import LocalSink, S3Sink, ShardSink
from splitter.text import split_text


@contextmanager
def _open_source(source: str | Path | BinaryIO, client: Any) -> Iterator[tuple[BinaryIO, str, int]]:
    if isinstance(source, str | Path):
        name = str(source)
        if not name.startswith("s3://"):
            with open(name, "rb", buffering=0) as local:  # chunks are read straight into our buffer
                yield local, name, _size_of(local, name)
            return
        import smart_open

        params = {"client": client} if client is not None else {}
        with smart_open.open(name, "rb", compression="disable", transport_params=params) as handle:
            yield handle, name, _size_of(handle, name)
    else:
        yield source, getattr(source, "name", "<stream>"), _size_of(source, "")


def _size_of(handle: Any, name: str) -> int:
    if name and not name.startswith("s3://"):
        return Path(name).stat().st_size
    for attr in ("content_length", "_content_length"):
        if isinstance(getattr(handle, attr, None), int):
            return int(getattr(handle, attr))
    try:
        here = handle.tell()
        end = handle.seek(0, 2)
        handle.seek(here)
        return int(end)
    except (OSError, AttributeError):
        return -1


def shard_name(stem: str, index: int, suffix: str) -> str:
    return f"{stem}.{index:05d}{suffix}"


def sink_for(dest: str | Path, source_name: str, fmt: FileFormat, client: Any = None) -> ShardSink:
    """Shards named `<stem>.<index>.<suffix>` under a local folder or an s3://bucket/prefix."""
    base = source_name.rstrip("/").rsplit("/", 1)[-1]
    stem = base[: len(base) - len(fmt.suffix)] if fmt.suffix and base.lower().endswith(fmt.suffix) else base
    dest = str(dest)
    if dest.startswith("s3://"):
        bucket, _, prefix = dest[5:].partition("/")
        prefix = prefix.rstrip("/")
        if client is None:
            import boto3

            client = boto3.client("s3")
        return S3Sink(bucket, lambda i: "/".join(p for p in (prefix, shard_name(stem, i, fmt.suffix)) if p), client)
    return LocalSink(Path(dest), lambda i: shard_name(stem, i, fmt.suffix))


_allocator_tuned = False


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the kernel at once.

    The splitter's per-chunk arrays (record ends, quote positions) are a few MB each; by default glibc maps each
    one fresh and unmaps it when freed, so every chunk paid a page fault per 4 KiB: 140,000 faults and a third
    of the time of splitting 512 MB. With a higher mmap threshold and trim threshold the same pages are reused.
    Peak memory does not grow: the splitter holds the same few buffers at a time. A no-op off glibc.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return
    _allocator_tuned = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 * 1024**2)
        libc.mallopt(m_trim_threshold, 128 * 1024**2)
    except (OSError, AttributeError):
        pass


def split(source: str | Path | BinaryIO, dest: str | Path | ShardSink, max_shard_bytes: int, *,
          fmt: str | None = None, client: Any = None, name: str | None = None) -> Manifest:
    """Split `source` into shards of at most `max_shard_bytes` (cut between records only) at `dest`.

    `dest` is a local folder, an s3:// prefix or a ShardSink. Unsplittable files (binary, gzip Parquet) are
    not copied: the manifest says so and lists no shards. Raises CorruptInputError naming the file.
    """
    if max_shard_bytes < 1:
        raise ValueError("max_shard_bytes must be positive")
    keep_freed_memory()
    with _open_source(source, client) as (stream, source_name, size):
        source_name = name or source_name
        head = stream.peek(8)[:8] if hasattr(stream, "peek") else b""
        file_format = detect_format(source_name, head, fmt)
        manifest = Manifest(source=source_name, bytes=size, format=file_format.kind,
                            compression=file_format.compression, max_shard_bytes=max_shard_bytes,
                            split=file_format.splittable)
        if not file_format.splittable:
            manifest.warnings.append(f"{file_format.kind} files are not split; passed through whole")
            return manifest
        sink = dest if not isinstance(dest, str | Path) else sink_for(dest, source_name, file_format, client)
        try:
            _split_stream(stream, sink, manifest, file_format)
        except BaseException:
            for shard in manifest.shards:  # the complete shards written before the failure
                sink.remove(shard.name)
            raise
        return manifest


def _split_stream(stream: BinaryIO, sink: ShardSink, manifest: Manifest, fmt: FileFormat) -> None:
    if fmt.kind == "parquet":
        from splitter.parquet import split_parquet  # pyarrow is imported only when a Parquet file is split

        split_parquet(stream, sink, manifest)
        return
    gzipped = fmt.compression == "gzip"
    reader: Any = gzip.GzipFile(fileobj=stream, mode="rb") if gzipped else stream
    try:
        split_text(reader, sink, manifest, quoted=fmt.quoted, has_header=fmt.has_header, gzipped=gzipped)
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise CorruptInputError(f"{manifest.source}: corrupt gzip data: {exc}") from exc
    except OSError as exc:
        raise SplitError(f"{manifest.source}: could not read: {exc}") from exc


def count_records(source: str | Path, fmt: str | None = None, client: Any = None) -> int:
    """Records (rows, without the header) in a local file or s3:// object, counted as split() cuts them. Streams."""
    import numpy as np

    from splitter.text import READ_CHUNK_BYTES, record_ends

    with _open_source(source, client) as (handle, name, _size):
        head = handle.peek(8)[:8] if hasattr(handle, "peek") else b""
        file_format = detect_format(name, head, fmt)
        if file_format.kind == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(handle).metadata.num_rows)
        if not file_format.splittable:
            raise ValueError(f"{name}: {file_format.kind} files have no records to count")
        reader: Any = gzip.GzipFile(fileobj=handle, mode="rb") if file_format.compression == "gzip" else handle
        ends = parity = consumed = last_end = 0
        while chunk := reader.read(READ_CHUNK_BYTES):
            found, parity = record_ends(np.frombuffer(chunk, dtype=np.uint8), parity, file_format.quoted)
            if len(found):
                ends += len(found)
                last_end = consumed + int(found[-1])
            consumed += len(chunk)
        records = ends + (1 if consumed > last_end else 0)  # a last record without a final newline
        return max(0, records - 1) if file_format.has_header else records
