"""Splitter properties: byte exactness, headers, limits, Parquet round trips, bounded memory, clear errors."""

from __future__ import annotations

import gzip
import io
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitter import CorruptInputError, Manifest, split
from splitter.text import READ_CHUNK_BYTES

FIELD_CHARS = st.sampled_from(list('ab,"\n\r\t é€😀x'))
field = st.text(FIELD_CHARS, max_size=12)


def encode_field(value: str, delimiter: str) -> str:
    if any(c in value for c in f'"\n\r{delimiter}'):
        return '"' + value.replace('"', '""') + '"'
    return value


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, int]:
    """A CSV/TSV file as bytes (quotes, embedded newlines, CRLF, unicode, BOM, no final newline) and its rows."""
    delimiter = draw(st.sampled_from([",", "\t"]))
    width = draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(field, min_size=width, max_size=width), min_size=1, max_size=40))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = []
    for row in rows:
        line = delimiter.join(encode_field(v, delimiter) for v in row)
        lines.append(line if line else '""')  # a record is never an empty line
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    bom = "\ufeff" if draw(st.booleans()) else ""
    return (bom + text).encode(), len(rows) - 1


def split_bytes(tmp_path: Path, data: bytes, name: str, limit: int) -> tuple[Manifest, list[bytes]]:
    source = tmp_path / name
    source.write_bytes(data)
    manifest = split(source, tmp_path / f"out-{limit}", limit)
    return manifest, [Path(s.name).read_bytes() for s in manifest.shards]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(csv_files(), st.integers(1, 300))
def test_csv_shards_are_the_file_byte_for_byte_with_the_header_repeated(tmp_path: Path, case: tuple[bytes, int],
                                                                        limit: int) -> None:
    data, data_rows = case
    manifest, shards = split_bytes(tmp_path, data, "f.csv", limit)
    header = data[:manifest.header_bytes]
    assert manifest.header_bytes > 0
    assert all(shard.startswith(header) for shard in shards)
    assert header + b"".join(shard[len(header):] for shard in shards) == data
    assert manifest.records == data_rows == sum(s.records for s in manifest.shards)
    first = 0
    for info, shard in zip(manifest.shards, shards, strict=True):
        assert info.first_row == first and info.bytes == len(shard)
        assert info.bytes <= limit or (info.oversized and info.records == 1) or len(header) >= limit
        first += info.records


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=30),
                max_size=50),
       st.booleans(), st.integers(1, 200))
def test_jsonl_and_text_cut_on_newlines_only(tmp_path: Path, lines: list[str], final_newline: bool,
                                             limit: int) -> None:
    data = ("\n".join(lines) + ("\n" if final_newline and lines else "")).encode()
    manifest, shards = split_bytes(tmp_path, data, "f.jsonl", limit)
    assert b"".join(shards) == data
    assert all(s.endswith(b"\n") for s in shards[:-1])
    assert manifest.header_bytes == 0


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    assert split_bytes(tmp_path, b"", "e.csv", 100)[0].shards == []
    manifest, shards = split_bytes(tmp_path, b"a,b\n", "h.csv", 100)
    assert shards == [b"a,b\n"] and manifest.records == 0
    assert split_bytes(tmp_path, b"a,b", "h2.csv", 100)[1] == [b"a,b"]


def test_a_record_bigger_than_the_limit_is_alone_with_a_warning(tmp_path: Path) -> None:
    data = b"h\n1\n" + b"x" * 500 + b"\n2\n"
    manifest, shards = split_bytes(tmp_path, data, "big.csv", 50)
    assert shards == [b"h\n1\n", b"h\n" + b"x" * 500 + b"\n", b"h\n2\n"]
    assert [s.oversized for s in manifest.shards] == [False, True, False]
    assert "row 1 is 501 bytes, over max_shard_bytes 50" in manifest.warnings[0]


def test_a_long_record_is_streamed_not_held(tmp_path: Path) -> None:
    # longer than the read chunk and the pending cap: written straight to its own shard
    big = b'"' + b"y\n" * (READ_CHUNK_BYTES * 3 // 2) + b'"\n'
    data = b"h\n1\n" + big + b"2\n"
    manifest, shards = split_bytes(tmp_path, data, "long.csv", 1024**2)
    assert b"h\n" + b"".join(s[2:] for s in shards) == data
    assert [s.records for s in manifest.shards] == [1, 1, 1] or [s.records for s in manifest.shards] == [1, 2]


def test_unterminated_quote_is_reported_with_the_file_name(tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    source.write_bytes(b"a,b\n1,2\n3,\"oops\n" + b"4,5\n" * 100)
    with pytest.raises(CorruptInputError, match=r"bad.csv: unterminated quoted field.* byte 8 "):
        split(source, tmp_path / "out", 64)
    assert list((tmp_path / "out").iterdir()) == []  # no shard left behind


def test_corrupt_gzip_and_parquet_name_the_file(tmp_path: Path) -> None:
    lines = "".join(f"{v}\n" for v in np.random.default_rng(0).random(10_000)).encode()
    compressed = gzip.compress(b"a\n" + lines)
    (tmp_path / "x.csv.gz").write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(CorruptInputError, match="x.csv.gz: corrupt gzip data"):
        split(tmp_path / "x.csv.gz", tmp_path / "o1", 100)
    (tmp_path / "y.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(CorruptInputError, match="y.parquet: not a valid Parquet file"):
        split(tmp_path / "y.parquet", tmp_path / "o2", 100)


def test_gzip_shards_are_gzip_and_rejoin_exactly(tmp_path: Path) -> None:
    data = b"id,text\n" + b"".join(b'%d,"line\nwith break"\n' % i for i in range(5000))
    manifest, shards = split_bytes(tmp_path, gzip.compress(data), "z.csv.gz", 10_000)
    assert len(shards) > 5 and all(Path(s.name).name.endswith(".csv.gz") for s in manifest.shards)
    plain = [gzip.decompress(s) for s in shards]
    assert b"id,text\n" + b"".join(p[8:] for p in plain) == data
    assert manifest.records == 5000


def test_binary_files_pass_through(tmp_path: Path) -> None:
    manifest, shards = split_bytes(tmp_path, bytes(range(256)) * 100, "image.png", 100)
    assert (manifest.split, shards, manifest.format) == (False, [], "binary")
    assert "not split" in manifest.warnings[0]


@pytest.mark.parametrize(("row_group_size", "limit"), [(1000, 20_000), (100_000, 20_000), (50, 3_000)])
def test_parquet_shards_read_back_to_the_same_table(tmp_path: Path, row_group_size: int, limit: int) -> None:
    rng = np.random.default_rng(0)
    table = pa.table({"id": np.arange(20_000), "v": rng.random(20_000),
                      "s": pa.array([f"s{i % 97}" for i in range(20_000)]),
                      "d": pa.array(rng.integers(0, 5, 20_000)).dictionary_encode()})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=row_group_size)
    table = pq.read_table(tmp_path / "t.parquet")  # the original, as Parquet gives it back
    manifest = split(tmp_path / "t.parquet", tmp_path / "out", limit)
    assert len(manifest.shards) > 1  # a single huge row group is re-chunked too
    parts = [pq.read_table(s.name) for s in manifest.shards]
    assert all(p.schema == table.schema for p in parts)
    assert pa.concat_tables(parts).equals(table)
    assert [s.first_row for s in manifest.shards] == list(np.cumsum([0] + [p.num_rows for p in parts[:-1]]))


def _peak_bytes(tmp_path: Path, rows: int) -> int:
    path = tmp_path / f"m{rows}.csv"
    line = b'1234,"quoted, text with ""escapes""",3.14159,abcdefghij\n'
    with path.open("wb") as handle:
        handle.write(b"a,b,c,d\n")
        block = line * 10_000
        for _ in range(rows // 10_000):
            handle.write(block)
    tracemalloc.start()
    split(path, tmp_path / f"out{rows}", 1024**2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    path.unlink()
    return peak


def test_memory_does_not_grow_with_the_file_size(tmp_path: Path) -> None:
    small = _peak_bytes(tmp_path, 200_000)  # ~11 MB
    large = _peak_bytes(tmp_path, 2_000_000)  # ~110 MB
    assert large < small * 1.25 + 1024**2, (small, large)
    assert large < 64 * 1024**2


def test_a_binary_stream_can_be_split(tmp_path: Path) -> None:
    stream = io.BufferedReader(io.BytesIO(b"a\n" + b"1\n" * 100))  # type: ignore[arg-type]
    manifest = split(stream, tmp_path / "o", 50, name="s.csv")
    assert manifest.records == 100 and len(manifest.shards) == 5
