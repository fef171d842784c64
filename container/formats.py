"""Reading tabular inputs into pandas, whole or a few rows at a time, by the file's suffix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

# Rows read per chunk when streaming; run() may get fewer (row_batch_size) at a time.
STREAM_CHUNK_ROWS = 4096


def tabular_format(path: str | Path) -> str | None:
    name = str(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl"), (".ndjson", "jsonl"),
                        (".json", "jsonl"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return fmt
    return None


def read_frame(path: Path) -> pd.DataFrame:
    fmt = tabular_format(path)
    if fmt == "csv":
        table = pacsv.read_csv(path)
    elif fmt == "tsv":
        table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter="\t"))
    elif fmt == "jsonl":
        table = pajson.read_json(path)
    elif fmt == "parquet":
        table = pq.read_table(path)
    else:
        raise ValueError("not a tabular file (expected .csv, .tsv, .jsonl or .parquet, optionally .gz)")
    return _to_pandas(table)


def iter_frames(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """The file's rows, `rows` at a time, without holding the whole file."""
    for chunk in _iter_chunks(path):
        for start in range(0, len(chunk), rows):
            yield chunk.iloc[start:start + rows].reset_index(drop=True)


def _iter_chunks(path: Path) -> Iterator[pd.DataFrame]:
    fmt = tabular_format(path)
    if fmt in ("csv", "tsv"):
        yield from pd.read_csv(path, sep="," if fmt == "csv" else "\t", chunksize=STREAM_CHUNK_ROWS)
    elif fmt == "jsonl":
        yield from pd.read_json(path, lines=True, chunksize=STREAM_CHUNK_ROWS)
    elif fmt == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=STREAM_CHUNK_ROWS):
            yield _to_pandas(pa.Table.from_batches([batch]))
    else:
        raise ValueError("not a tabular file (expected .csv, .tsv, .jsonl or .parquet, optionally .gz)")


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas()
