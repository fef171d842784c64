"""Streaming, bounded-memory, format-aware sharding of one file. Knows bytes and formats only."""

from splitter.core import count_records, split
from splitter.exceptions import CorruptInputError, SplitError
from splitter.formats import FileFormat, detect_format
from splitter.manifest import Manifest, ShardInfo
from splitter.sinks import LocalSink, RangeSink, S3Sink, byte_ranges

__all__ = ["CorruptInputError", "FileFormat", "LocalSink", "Manifest", "RangeSink", "S3Sink", "ShardInfo", "SplitError",
           "byte_ranges", "count_records", "detect_format", "split"]
