"""The splitter against S3 on the emulator: streamed reads, multipart shard writes, deterministic keys, no half
shards after a failure; and ingest splitting an oversize upload into the job's ledger."""

from __future__ import annotations

import gzip
import uuid

import numpy as np
import pytest

from batchscore.aws import AwsTarget
from functions import ingest
from functions.context import FunctionContext
from splitter import CorruptInputError, split
from tests.functional.conftest import s3_event, sqs_records


@pytest.fixture
def bucket(target: AwsTarget) -> str:
    name = f"split-{uuid.uuid4().hex[:8]}"
    target.client("s3").create_bucket(Bucket=name)
    return name


def keys_under(s3, bucket: str, prefix: str) -> dict[str, int]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: o["Size"] for o in listing}


def test_s3_to_s3_split_is_deterministic(target: AwsTarget, bucket: str) -> None:
    s3 = target.client("s3")
    rows = "".join(f'{i},"text, with\nnewline {i}"\n' for i in range(60_000)).encode()
    s3.put_object(Bucket=bucket, Key="in/data.csv", Body=b"id,text\n" + rows)
    first = split(f"s3://{bucket}/in/data.csv", f"s3://{bucket}/shards", 200_000, client=s3)
    keys_first = keys_under(s3, bucket, "shards/")
    second = split(f"s3://{bucket}/in/data.csv", f"s3://{bucket}/shards", 200_000, client=s3)
    assert first.to_dict() == second.to_dict()
    assert keys_under(s3, bucket, "shards/") == keys_first
    assert sorted(keys_first) == [f"shards/data.{i:05d}.csv" for i in range(len(first.shards))]
    body = b"".join(s3.get_object(Bucket=bucket, Key=k)["Body"].read()[8:] for k in sorted(keys_first))
    assert body == rows and first.records == 60_000


def test_a_failed_split_leaves_no_shard_and_no_open_upload(target: AwsTarget, bucket: str) -> None:
    s3 = target.client("s3")
    lines = "".join(f"{v}\n" for v in np.random.default_rng(1).random(400_000)).encode()
    compressed = gzip.compress(b"v\n" + lines)
    s3.put_object(Bucket=bucket, Key="bad.csv.gz", Body=compressed[: len(compressed) * 3 // 4])
    with pytest.raises(CorruptInputError, match="bad.csv.gz: corrupt gzip data"):
        split(f"s3://{bucket}/bad.csv.gz", f"s3://{bucket}/out", 500_000, client=s3)
    assert keys_under(s3, bucket, "out/") == {}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_ingest_splits_an_oversize_upload_into_the_ledger(ctx: FunctionContext) -> None:
    # GIVEN a deployment whose max_shard_bytes is 64MiB by default: use a smaller limit for this job's stack
    ctx._deployment = ctx.deployment.with_settings(max_shard_bytes=4096)
    body = b"x\n" + b"".join(b"%d\n" % i for i in range(5000))
    ctx.s3.put_object(Bucket=ctx.stack.inbox_bucket, Key="j/big.csv", Body=body)
    ctx.s3.put_object(Bucket=ctx.stack.inbox_bucket, Key="j/bad.csv", Body=b'a\n"' + b"1\n" * 5000)
    ingest.handle_event(sqs_records(s3_event(ctx.stack.inbox_bucket, "j/big.csv", len(body)),
                                    s3_event(ctx.stack.inbox_bucket, "j/bad.csv", 10_003)), ctx)
    ledger = ctx.jobs.ledger("j")
    entry = ledger["j/big.csv"]
    assert entry.split and len(entry.shards) == 6
    # uncompressed text is not copied: each shard is the header plus a byte range of the object
    assert all(s.key == "j/big.csv" and s.bytes <= 4096 and s.header_bytes == 2 for s in entry.shards)
    assert [s.first_row for s in entry.shards][:2] == [0, entry.shards[0].records]
    assert sum(s.records or 0 for s in entry.shards) == 5000
    spans = [(s.range_start, s.range_end) for s in entry.shards]
    assert spans[0][0] == 2 and spans[-1][1] == len(body)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert b"".join(body[a:b] for a, b in spans) == body[2:]
    assert not keys_under(ctx.s3, ctx.stack.inbox_bucket, "_shards/j/")
    bad = ledger["j/bad.csv"]
    assert bad.shards == [] and bad.error is not None and "bad.csv: unterminated quoted field" in bad.error


def test_ingest_writes_shard_objects_for_compressed_text(ctx: FunctionContext) -> None:
    ctx._deployment = ctx.deployment.with_settings(max_shard_bytes=4096)
    lines = "".join(f"{v}\n" for v in np.random.default_rng(2).random(3000)).encode()
    body = gzip.compress(b"v\n" + lines)
    ctx.s3.put_object(Bucket=ctx.stack.inbox_bucket, Key="g/big.csv.gz", Body=body)
    ingest.handle_event(sqs_records(s3_event(ctx.stack.inbox_bucket, "g/big.csv.gz", len(body))), ctx)
    entry = ctx.jobs.ledger("g")["g/big.csv.gz"]
    assert entry.split and all(s.key.startswith("_shards/g/big.csv.gz/big.") for s in entry.shards)
    assert all(s.key.endswith(".csv.gz") and s.range_start is None for s in entry.shards)
    shards = [gzip.decompress(ctx.s3.get_object(Bucket=ctx.stack.inbox_bucket, Key=s.key)["Body"].read())
              for s in entry.shards]
    assert b"".join(s[2:] for s in shards) == lines
