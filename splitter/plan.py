"""The byte plan of a text split, without reading the file: how big the shards of a file of `size` bytes are.

The text splitter fills each shard up to the last record that fits under the limit, so every shard but the last
is just under `max_shard_bytes` (by less than one record). Planners and simulations use this; it is exact up to
record granularity.
"""

from __future__ import annotations


def shard_sizes(size: int, max_shard_bytes: int, header_bytes: int = 0) -> list[int]:
    if size <= max_shard_bytes:
        return [size]
    body = max(1, max_shard_bytes - header_bytes)
    data = size - header_bytes
    full, rest = divmod(data, body)
    return [max_shard_bytes] * full + ([rest + header_bytes] if rest else [])
