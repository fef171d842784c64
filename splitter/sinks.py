"""Where shards go: a local folder or an S3 prefix. A shard is committed whole or not at all."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

# S3's minimum part size is 5 MiB; 8 MiB parts keep a shard writer's buffer small and the part count low.
S3_PART_BYTES = 8 * 1024**2
# gzip level 1: shards are transient work files; speed matters more than the last percent of size.
GZIP_LEVEL = 1


class _Counting(io.RawIOBase):
    """Counts the bytes that reach the destination (compressed bytes, for a gzip shard)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(data)
        self.inner.write(data)
        self.count += n
        return n


class ShardHandle(Protocol):
    def write(self, data: bytes | memoryview) -> None: ...
    def commit(self) -> tuple[str, int]: ...
    def abort(self) -> None: ...


class _Handle:
    def __init__(self, name: str, raw: Any, on_commit: Callable[[], None], on_abort: Callable[[], None],
                 gzipped: bool) -> None:
        self.name = name
        self.raw = raw
        self.counter = _Counting(raw)
        self.writer: Any = gzip.GzipFile(fileobj=self.counter, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) \
            if gzipped else self.counter
        self._on_commit, self._on_abort = on_commit, on_abort

    def write(self, data: bytes | memoryview) -> None:
        self.writer.write(data)

    def binary(self) -> BinaryIO:
        """A file object for writers that want one (Parquet)."""
        return self.writer  # type: ignore[no-any-return]

    def commit(self) -> tuple[str, int]:
        if self.writer is not self.counter:
            self.writer.close()
        self._on_commit()
        return self.name, self.counter.count

    def abort(self) -> None:
        self._on_abort()


class ShardSink(Protocol):
    def begin(self, index: int, gzipped: bool = False) -> _Handle: ...
    def remove(self, name: str) -> None: ...


class LocalSink:
    """Shards as files `<dest>/<name_for(index)>`; written to a temporary name and renamed when complete."""

    def __init__(self, dest: Path, name_for: Callable[[int], str]) -> None:
        self.dest, self.name_for = dest, name_for
        dest.mkdir(parents=True, exist_ok=True)

    def begin(self, index: int, gzipped: bool = False) -> _Handle:
        path = self.dest / self.name_for(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        handle = partial.open("wb")

        def commit() -> None:
            handle.close()
            os.replace(partial, path)

        def abort() -> None:
            handle.close()
            partial.unlink(missing_ok=True)

        return _Handle(str(path), handle, commit, abort, gzipped)

    def remove(self, name: str) -> None:
        Path(name).unlink(missing_ok=True)


class S3Sink:
    """Shards as objects `s3://<bucket>/<key_for(index)>`, streamed with multipart uploads that abort on failure."""

    def __init__(self, bucket: str, key_for: Callable[[int], str], client: Any) -> None:
        self.bucket, self.key_for, self.client = bucket, key_for, client

    def begin(self, index: int, gzipped: bool = False) -> _Handle:
        import smart_open

        key = self.key_for(index)
        writer: Any = smart_open.open(f"s3://{self.bucket}/{key}", "wb", compression="disable",
                                 transport_params={"client": self.client, "min_part_size": S3_PART_BYTES})
        return _Handle(f"s3://{self.bucket}/{key}", writer, writer.close, writer.terminate, gzipped)

    def remove(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=name.removeprefix(f"s3://{self.bucket}/"))


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


class RangeSink:
    """Writes nothing: a split into it only plans. For uncompressed text, shard i is then the source's header
    followed by a byte range of the source (see byte_ranges), which a reader can fetch with a ranged GET."""

    def begin(self, index: int, gzipped: bool = False) -> _Handle:
        if gzipped:
            raise ValueError("a gzip stream has no byte ranges to plan; write the shards instead")
        return _Handle(f"range:{index}", _Discard(), lambda: None, lambda: None, False)

    def remove(self, name: str) -> None:
        pass


def byte_ranges(header_bytes: int, shard_bytes: list[int]) -> list[tuple[int, int]]:
    """Source byte ranges [start, end) of the shards' bodies (each shard repeats the header in front)."""
    ranges, start = [], header_bytes
    for size in shard_bytes:
        end = start + size - header_bytes
        ranges.append((start, end))
        start = end
    return ranges
