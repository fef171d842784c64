"""Finalize: merge the batches' outputs in input order, write _summary.json, then _SUCCESS or _FAILED."""

from __future__ import annotations

import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from batchscore import keys
from batchscore.config import Settings
from batchscore.records import BatchRecord, FinalizeMessage, JobRecord, LedgerEntry
from functions.context import FunctionContext, sqs_entry_points

logger = Logger(service="batchscore.functions")

MAX_REASON_CHARS = 300


def finalize_job(ctx: FunctionContext, job_id: str) -> None:
    job = ctx.jobs.get_job(job_id)
    if job is None or job.status in ("succeeded", "failed"):
        return
    if job.status in ("running", "finalizing"):
        if job.done_batches < job.total_batches:
            logger.info("finalize before the last batch; ignored", extra={"job_id": job_id})
            return
        if not ctx.jobs.set_job_status(job_id, "finalizing", expected=("running", "finalizing")):
            return
    elif job.status != "failing":
        return
    settings = Settings.model_validate(job.settings)
    batches = ctx.jobs.batches(job_id)
    output_key = None
    if settings.output_action == "append_row" and job.status != "failing":
        output_key = merge_outputs(ctx, job_id, batches, settings.output_file_name)
    job = ctx.jobs.get_job(job_id) or job
    summary = build_summary(job, batches, settings, output_key, ctx.jobs.ledger(job_id),
                            memory_cap_mib=ctx.deployment.resources.memory_per_worker_mib)
    body = json.dumps(summary, indent=2).encode()
    ctx.s3.put_object(Bucket=ctx.stack.output_bucket, Key=keys.job_output_key(job_id, keys.SUMMARY), Body=body)
    marker = keys.SUCCEEDED_MARKER if summary["status"] == "succeeded" else keys.FAILED_MARKER
    ctx.s3.put_object(Bucket=ctx.stack.output_bucket, Key=keys.job_output_key(job_id, marker), Body=b"")
    ctx.jobs.set_job_status(job_id, summary["status"], expected=("finalizing", "failing"))
    logger.info("job finished", extra={"job_id": job_id, "status": summary["status"]})


def merge_outputs(ctx: FunctionContext, job_id: str, batches: list[BatchRecord], name: str) -> str:
    """Concatenate the batch parts, in batch order, into one file, built locally then uploaded.

    Parts are written by the workers in the output's own format: JSON Lines and CSV parts (all with the same
    header, the usual case) are joined as bytes, without parsing; Parquet parts, and CSV parts whose columns
    differ, are read as tables and written under one unified schema.
    """
    parts = [b for b in batches if b.result is not None and b.result.output_rows > 0]
    suffix = Path(name).suffix
    part_keys = [keys.part_key(job_id, b.batch_id, suffix) for b in parts]
    key = keys.job_output_key(job_id, name)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        if suffix == ".parquet" or not _join_text_parts(ctx, part_keys, path, header=suffix == ".csv"):
            tables = (_read_part(ctx, k) for k in part_keys)
            write_tables(path, tables, _unified_schema(ctx, part_keys))
        ctx.s3.upload_file(str(path), ctx.stack.output_bucket, key)
    return key


def _join_text_parts(ctx: FunctionContext, part_keys: list[str], path: Path, header: bool) -> bool:
    """Stream the parts into `path` one after another, each part's header line dropped after the first.

    False (and `path` incomplete) when a part's header differs from the first one's: the columns differ.
    """
    first: bytes | None = None
    with path.open("wb") as out:
        for key in part_keys:
            chunks = ctx.s3.get_object(Bucket=ctx.stack.output_bucket, Key=key)["Body"].iter_chunks(1024**2)
            if header:
                line, rest = _first_line(chunks)
                if first is None:
                    first = line
                    out.write(line)
                elif line != first:
                    return False
                out.write(rest)
            for chunk in chunks:
                out.write(chunk)
    return True


def _first_line(chunks: Any) -> tuple[bytes, bytes]:
    """(the first line with its newline, what followed it in the chunks read so far)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        end = buffer.find(b"\n")
        if end >= 0:
            return buffer[:end + 1], buffer[end + 1:]
    return buffer, b""


def _read_part(ctx: FunctionContext, key: str) -> pa.Table:
    body = ctx.s3.get_object(Bucket=ctx.stack.output_bucket, Key=key)["Body"].read()
    if key.endswith(".csv"):
        return pacsv.read_csv(io.BytesIO(body))
    if key.endswith(".jsonl"):
        return pajson.read_json(io.BytesIO(body))
    return pq.read_table(io.BytesIO(body))


def _unified_schema(ctx: FunctionContext, part_keys: list[str]) -> pa.Schema | None:
    schemas = []
    for key in part_keys:
        schema = None
        if key.endswith(".parquet"):
            tail = ctx.s3.get_object(Bucket=ctx.stack.output_bucket, Key=key, Range="bytes=-65536")["Body"].read()
            schema = _schema_from_tail(tail)
        schemas.append(schema or _read_part(ctx, key).schema)
    if not schemas:
        return None
    return pa.unify_schemas(schemas, promote_options="permissive")


def _schema_from_tail(tail: bytes) -> pa.Schema | None:
    """A Parquet file's schema is in its footer; read it from the last bytes when the footer fits in them."""
    if len(tail) < 8 or tail[-4:] != b"PAR1":
        return None
    footer_len = int.from_bytes(tail[-8:-4], "little")
    if footer_len + 8 > len(tail):
        return None
    try:
        return pq.read_schema(io.BytesIO(b"PAR1" + tail[-(footer_len + 8):]))
    except pa.ArrowInvalid:
        return None


def write_tables(path: Path, tables: Any, schema: pa.Schema | None) -> None:
    suffix = path.suffix
    if schema is None:
        schema = pa.schema([])
    if suffix == ".parquet":
        with pq.ParquetWriter(path, schema) as writer:
            for table in tables:
                writer.write_table(table.select(schema.names).cast(schema))
    elif suffix == ".csv":
        with pacsv.CSVWriter(path, schema, write_options=pacsv.WriteOptions(quoting_style="needed")) as writer:
            for table in tables:
                writer.write_table(table.select(schema.names).cast(schema))
    elif suffix == ".jsonl":
        with path.open("w") as handle:
            for table in tables:
                table.to_pandas().to_json(handle, orient="records", lines=True)
    else:
        raise ValueError(f"unsupported output file type {suffix}")


def build_summary(job: JobRecord, batches: list[BatchRecord], settings: Settings, output_key: str | None,
                  ledger: dict[str, LedgerEntry] | None = None, memory_cap_mib: int | None = None) -> dict[str, Any]:
    failures: list[dict[str, Any]] = []
    warnings: list[str] = []
    inputs: list[dict[str, Any]] = []
    for key, entry in sorted((ledger or {}).items()):
        source = keys.relative_source(key)
        inputs.append({"source": source, "bytes": entry.bytes, "shard_bytes": [s.bytes for s in entry.shards]})
        if entry.error:
            failures.append({"source": source, "reason": entry.error[:MAX_REASON_CHARS], "items": 1,
                             "row": None, "batch_id": None})
        warnings += [f"{source}: {w}" for w in entry.warnings]
    batch_seconds = 0.0
    per_batch: list[dict[str, Any]] = []
    fallbacks: list[dict[str, Any]] = []
    for batch in batches:
        if batch.result is None:
            continue
        r = batch.result
        batch_seconds += max(0.0, r.finished_at - r.started_at)
        per_batch.append({"batch_id": batch.batch_id, "files": len(batch.shards), "bytes": batch.bytes,
                          "worker": r.worker, "level": r.level, "succeeded_items": r.succeeded_items,
                          "failed_items": r.failed_items, "started_at": r.started_at, "finished_at": r.finished_at,
                          "seconds": r.seconds, "peak_rss_mib": r.peak_rss_mib, "deliveries": batch.attempts + 1})
        if r.levels_tried:
            fallbacks.append({"batch_id": batch.batch_id, "killed_at": r.levels_tried,
                              "level": None if r.level in r.levels_tried else r.level})
        for failure in batch.result.failures:
            failures.append({"source": failure.source, "reason": failure.reason[:MAX_REASON_CHARS],
                             "items": failure.items, "row": failure.row, "batch_id": batch.batch_id})
    over_threshold = settings.error_threshold != -1 and job.failed_items > settings.error_threshold
    failed = job.status == "failing" or job.error is not None or over_threshold
    finished = time.time()
    summary: dict[str, Any] = {
        "status": "failed" if failed else "succeeded",
        "job_id": job.job_id,
        "input_files": job.input_files,
        "shards": job.shards,
        "mini_batches": job.total_batches,
        "succeeded_items": job.succeeded_items,
        "failed_items": job.failed_items,
        "items_are": "rows" if settings.payload == "dataframe" else "files",
        "error_threshold": settings.error_threshold,
        "failures": failures,
        "warnings": warnings,
        "memory_fallbacks": fallbacks,
        "output_file": output_key.split("/", 1)[1] if output_key else None,
        "timings": {
            "created_at": job.created_at,
            "dispatched_at": job.dispatched_at,
            "finished_at": finished,
            "wall_s": round(finished - job.created_at, 3) if job.created_at else None,
            "batch_seconds_total": round(batch_seconds, 3),
        },
        "batches": per_batch,
        "memory_cap_mib": memory_cap_mib,
        "settings": settings.model_dump(mode="json"),
        "inputs": inputs,
    }
    if job.error:
        summary["error"] = job.error
    elif over_threshold:
        summary["error"] = (f"{job.failed_items} failed {summary['items_are']} exceed error_threshold "
                            f"{settings.error_threshold}")
    return summary


def _record_handler(record: SQSRecord, ctx: FunctionContext) -> None:
    finalize_job(ctx, FinalizeMessage.model_validate_json(record.body).job_id)


handle_event, handler = sqs_entry_points(_record_handler)
