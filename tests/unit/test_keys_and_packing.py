from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from batchscore import keys
from batchscore.records import Shard
from functions.dispatch import pack


def test_inputs_exclude_markers_overrides_and_hidden_names() -> None:
    assert keys.is_input("job/a.csv") and keys.is_input("job/nested/deeper/b.parquet")
    assert not keys.is_input("job/_SUCCESS")
    assert not keys.is_input("job/job.yaml")
    assert keys.is_input("job/sub/job.yaml")  # only the job's own overrides file is special
    assert not keys.is_input("job/.hidden.csv") and not keys.is_input("_shards/job/a.csv/00000.csv")
    assert not keys.is_input("job/sub/") and not keys.is_input("toplevel.csv")
    assert keys.is_start_marker("job/_SUCCESS") and not keys.is_start_marker("job/sub/_SUCCESS")


def test_source_is_the_users_name() -> None:
    assert keys.relative_source("job-1/sub/a.csv") == "sub/a.csv"


sizes = st.lists(st.integers(min_value=0, max_value=10_000), max_size=60)


@given(sizes, st.integers(min_value=1, max_value=7), st.one_of(st.none(), st.integers(1, 20_000)))
def test_packing_keeps_order_and_limits(byte_sizes: list[int], per_batch: int, max_bytes: int | None) -> None:
    shards = [Shard(key=f"j/{i}", source=f"j/{i}", bytes=b) for i, b in enumerate(byte_sizes)]
    batches = pack(shards, per_batch, max_bytes)
    assert [s for b in batches for s in b] == shards  # every shard once, in order
    for batch in batches:
        assert 1 <= len(batch) <= per_batch
        if max_bytes is not None and len(batch) > 1:
            assert sum(s.bytes for s in batch) <= max_bytes
