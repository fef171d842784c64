"""What a split produced: the source, and per shard its name, bytes, records and first row."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ShardInfo:
    name: str
    bytes: int
    records: int
    first_row: int
    oversized: bool = False  # a single record larger than max_shard_bytes, alone in its shard


@dataclass
class Manifest:
    source: str
    bytes: int
    format: str
    compression: str | None
    max_shard_bytes: int
    split: bool
    shards: list[ShardInfo] = field(default_factory=list)
    records: int = 0
    header_bytes: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
