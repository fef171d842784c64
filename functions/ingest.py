"""Ingest: every uploaded object gets a ledger entry (split into shards when oversize); a marker starts the job."""

from __future__ import annotations

import time

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from batchscore import keys
from batchscore.observability import emit_metrics
from batchscore.records import DispatchMessage, LedgerEntry, Shard
from functions.context import FunctionContext, sqs_entry_points
from functions.sqs_events import s3_objects
from splitter import CorruptInputError, RangeSink, S3Sink, byte_ranges, detect_format, split

logger = Logger(service="batchscore.functions")


def ingest_object(ctx: FunctionContext, bucket: str, key: str, size: int) -> None:
    if bucket != ctx.stack.inbox_bucket:
        logger.warning("ignoring object from unexpected bucket", extra={"bucket": bucket, "key": key})
        return
    job_id = keys.job_of(key)
    if keys.is_start_marker(key):
        message = DispatchMessage(job_id=job_id, first_seen=time.time())
        ctx.sqs.send_message(QueueUrl=ctx.stack.dispatch_queue_url, MessageBody=message.model_dump_json())
        logger.info("job start marker seen", extra={"job_id": job_id})
        return
    if not keys.is_input(key):
        return
    started = time.perf_counter()
    entry = ledger_entry(ctx, bucket, key, size)
    ctx.jobs.put_ledger_entry(job_id, entry)
    logger.info("ingested", extra={"job_id": job_id, "source": key, "shards": len(entry.shards)})
    if entry.split:
        emit_metrics("ingest", [("BytesSplit", MetricUnit.Bytes, size), ("Shards", MetricUnit.Count, len(entry.shards)),
                                ("SplitDuration", MetricUnit.Seconds, round(time.perf_counter() - started, 3))],
                     job_id=job_id, source=keys.relative_source(key))


def ledger_entry(ctx: FunctionContext, bucket: str, key: str, size: int) -> LedgerEntry:
    """The object itself when it fits (or cannot be split); otherwise its shards.

    Uncompressed text is only scanned: its shards are byte ranges of the object (plus its header), so nothing is
    copied. Compressed text and Parquet are split into shard objects, streamed from S3 to S3.
    """
    fmt = detect_format(key)
    limit = int(ctx.deployment.settings.max_shard_bytes)
    if size <= limit or not fmt.splittable:
        return LedgerEntry(source=key, bytes=size, format=fmt.kind, shards=[Shard(key=key, source=key, bytes=size)])
    ranged = fmt.kind != "parquet" and fmt.compression is None
    sink: RangeSink | S3Sink = RangeSink() if ranged else S3Sink(
        bucket, lambda i: keys.shard_key(key, i, fmt.suffix), ctx.s3)
    try:
        manifest = split(f"s3://{bucket}/{key}", sink, limit, client=ctx.s3, name=keys.relative_source(key))
    except CorruptInputError as exc:
        logger.warning("cannot split", extra={"source": key, "reason": str(exc)})
        return LedgerEntry(source=key, bytes=size, format=fmt.kind, error=str(exc))
    if ranged:
        spans = byte_ranges(manifest.header_bytes, [s.bytes for s in manifest.shards])
        shards = [Shard(key=key, source=key, bytes=s.bytes, first_row=s.first_row, records=s.records,
                        range_start=start, range_end=end, header_bytes=manifest.header_bytes)
                  for s, (start, end) in zip(manifest.shards, spans, strict=True)]
    else:
        prefix = f"s3://{bucket}/"
        shards = [Shard(key=s.name.removeprefix(prefix), source=key, bytes=s.bytes, first_row=s.first_row,
                        records=s.records) for s in manifest.shards]
    return LedgerEntry(source=key, bytes=size, format=fmt.kind, split=True, shards=shards,
                       warnings=manifest.warnings)


def _record_handler(record: SQSRecord, ctx: FunctionContext) -> None:
    for bucket, key, size in s3_objects(record.body):
        ingest_object(ctx, bucket, key, size)


handle_event, handler = sqs_entry_points(_record_handler)
