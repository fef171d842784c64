"""Which format a file is in, from its name (and, for Parquet and gzip, its first bytes)."""

from __future__ import annotations

from dataclasses import dataclass

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"

TEXT_FORMATS = {"csv", "tsv", "jsonl", "text"}
FORMATS = TEXT_FORMATS | {"parquet", "binary"}

_SUFFIXES = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".txt": "text", ".log": "text", ".parquet": "parquet", ".pq": "parquet",
}


@dataclass(frozen=True)
class FileFormat:
    kind: str  # csv | tsv | jsonl | text | parquet | binary
    compression: str | None = None  # "gzip" or None
    suffix: str = ""  # the full suffix shards carry, e.g. ".csv.gz"

    @property
    def splittable(self) -> bool:
        return self.kind in TEXT_FORMATS or (self.kind == "parquet" and self.compression is None)

    @property
    def has_header(self) -> bool:
        return self.kind in ("csv", "tsv")

    @property
    def quoted(self) -> bool:
        return self.kind in ("csv", "tsv")


def detect_format(name: str, head: bytes = b"", forced: str | None = None) -> FileFormat:
    """The format of `name`; `forced` (csv, tsv, jsonl, text, parquet, binary) overrides the suffix."""
    lower = name.lower().rsplit("/", 1)[-1]
    compression = None
    base = lower
    if lower.endswith(".gz"):
        compression, base = "gzip", lower[:-3]
    elif head.startswith(GZIP_MAGIC):
        compression = "gzip"
    dot = base.rfind(".")
    inner = base[dot:] if dot > 0 else ""
    suffix = inner + (".gz" if lower.endswith(".gz") else "")
    if forced is not None:
        if forced not in FORMATS:
            raise ValueError(f"unknown format {forced!r}; expected one of {', '.join(sorted(FORMATS))}")
        return FileFormat(forced, compression, suffix)
    kind = _SUFFIXES.get(inner)
    if kind is None and head.startswith(PARQUET_MAGIC):
        kind = "parquet"
    return FileFormat(kind or "binary", compression, suffix)
