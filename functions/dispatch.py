"""Dispatch: once every input of a job has its ledger entry, pack the shards into mini-batches and enqueue them."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import yaml
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from batchscore import keys
from batchscore.config import Deployment, Settings, format_validation_error
from batchscore.exceptions import ConfigError
from batchscore.records import BatchRecord, DispatchMessage, FinalizeMessage, JobRecord, Shard, WorkMessage
from functions.context import FunctionContext, sqs_entry_points

logger = Logger(service="batchscore.functions")

# Batches per worker slot when max_mini_batch_bytes is unset: enough that the largest-first order evens out.
FAIR_SHARE_BATCHES_PER_SLOT = 8
# Below this a batch's fixed costs (download, records, upload) outweigh what evening out would gain.
MIN_FAIR_SHARE_BYTES = 64 * 1024
# Settings a job may override in <job-id>/job.yaml, like Azure's per-job overrides; the rest shape the
# deployment (payload, level, the splitter's max_shard_bytes applied at upload) and stay as deployed.
JOB_OVERRIDABLE = frozenset({"mini_batch_size", "max_mini_batch_bytes", "output_action", "output_file_name",
                             "error_threshold", "retry_settings", "row_batch_size",
                             "keep_columns", "memory_fallback"})

# How long a job may wait for its inputs to be ingested (split) before it fails with the list of stragglers.
LEDGER_WAIT_TIMEOUT_S = 15 * 60
# Re-check delays while waiting for the ledger; SQS allows at most 900 s of message delay.
RECHECK_DELAYS_S = (1, 1, 2, 2, 5, 10, 30, 60)
SQS_SEND_BATCH = 10  # SQS SendMessageBatch maximum


def list_inputs(ctx: FunctionContext, job_id: str) -> dict[str, int]:
    paginator = ctx.s3.get_paginator("list_objects_v2")
    found: dict[str, int] = {}
    for page in paginator.paginate(Bucket=ctx.stack.inbox_bucket, Prefix=f"{job_id}/"):
        for obj in page.get("Contents", []):
            if keys.is_input(obj["Key"]):
                found[obj["Key"]] = obj["Size"]
    return found


def pack(shards: Iterable[Shard], mini_batch_size: int, max_bytes: int | None) -> list[list[Shard]]:
    """Group shards in order: at most mini_batch_size per batch, and at most max_bytes unless a shard is bigger."""
    batches: list[list[Shard]] = []
    current: list[Shard] = []
    current_bytes = 0
    for shard in shards:
        too_many = len(current) >= mini_batch_size
        too_big = max_bytes is not None and current and current_bytes + shard.bytes > max_bytes
        if current and (too_many or too_big):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(shard)
        current_bytes += shard.bytes
    if current:
        batches.append(current)
    return batches


def dispatch_job(ctx: FunctionContext, message: DispatchMessage) -> None:
    job_id = message.job_id
    existing = ctx.jobs.get_job(job_id)
    if existing is not None and existing.status == "running" and not existing.enqueued:
        # a dispatch that stopped between recording its batches and enqueuing them: finish it
        enqueue(ctx, [b for b in ctx.jobs.batches(job_id) if b.status == "pending"])
        ctx.jobs.mark_enqueued(job_id)
        return
    if existing is not None and existing.status != "dispatching":
        logger.info("job already dispatched", extra={"job_id": job_id, "status": existing.status})
        return
    inputs = list_inputs(ctx, job_id)
    ledger = ctx.jobs.ledger(job_id)
    missing = sorted(set(inputs) - set(ledger))
    if missing:
        _wait_for_ledger(ctx, message, missing)
        return
    job = JobRecord(job_id=job_id, status="dispatching", settings=ctx.deployment.settings.model_dump(mode="json"),
                    input_files=len(inputs), created_at=message.first_seen or time.time())
    try:
        settings = job_settings(ctx, job_id)
    except ConfigError as exc:
        fail_job(ctx, job, str(exc))
        return
    job.settings = settings.model_dump(mode="json")
    if not inputs:
        fail_job(ctx, job, f"no input files under s3://{ctx.stack.inbox_bucket}/{job_id}/")
        return
    entries = [ledger[key] for key in sorted(inputs)]
    shards = [shard for entry in entries for shard in entry.shards]
    job.shards = len(shards)
    job.failed_items = sum(1 for entry in entries if entry.error)  # unreadable at ingest: the file fails
    if not ctx.jobs.create_job(job):
        return
    batches = [
        BatchRecord(job_id=job_id, batch_id=keys.batch_id(i), index=i, shards=group,
                    bytes=sum(s.bytes for s in group))
        for i, group in enumerate(pack(shards, settings.mini_batch_size,
                                       batch_byte_limit(settings, sum(s.bytes for s in shards),
                                                        ctx.deployment.resources.workers)))
    ]
    ctx.jobs.put_batches(batches)
    ctx.jobs.mark_dispatched(job_id, len(batches))
    if not batches:
        send_finalize(ctx, job_id)
        return
    enqueue(ctx, batches)
    ctx.jobs.mark_enqueued(job_id)
    logger.info("job dispatched", extra={"job_id": job_id, "batches": len(batches), "shards": len(shards)})


def batch_byte_limit(settings: Settings, total_bytes: int, worker_slots: int) -> int:
    """max_mini_batch_bytes when set; else a fair share of the job, so no batch holds much more than its share.

    With FAIR_SHARE_BATCHES_PER_SLOT batches per worker slot, the largest batches (enqueued first) and the
    smallest ones (last) even out across workers, whatever the files' sizes.
    """
    if settings.max_mini_batch_bytes:
        return int(settings.max_mini_batch_bytes)
    fair = math.ceil(total_bytes / (FAIR_SHARE_BATCHES_PER_SLOT * max(1, worker_slots)))
    return max(fair, MIN_FAIR_SHARE_BYTES)


def job_settings(ctx: FunctionContext, job_id: str) -> Settings:
    """The deployment's settings with the job's own overrides from <job-id>/job.yaml, if there is one."""
    key = f"{job_id}/{keys.JOB_OVERRIDES}"
    try:
        body = ctx.s3.get_object(Bucket=ctx.stack.inbox_bucket, Key=key)["Body"].read()
    except ctx.s3.exceptions.NoSuchKey:
        return ctx.deployment.settings
    return apply_overrides(ctx.deployment, body, source=key).settings


def apply_overrides(deployment: Deployment, body: bytes, source: str) -> Deployment:
    try:
        raw = yaml.safe_load(body) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if isinstance(raw, dict) and set(raw) == {"settings"}:
        raw = raw["settings"]
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: must be a mapping of settings, got {type(raw).__name__}")
    fixed = sorted(set(raw) - JOB_OVERRIDABLE)
    if fixed:
        raise ConfigError(f"{source}: {', '.join(fixed)} cannot be set per job (per job: "
                          f"{', '.join(sorted(JOB_OVERRIDABLE))})")
    try:
        return deployment.with_settings(**raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source).replace(f"{source}: ", f"{source}: settings: ", 1)) \
            from None


def enqueue(ctx: FunctionContext, batches: list[BatchRecord]) -> None:
    """Largest first, so the longest work starts first and the run ends evenly."""
    batches = sorted(batches, key=lambda b: (-b.bytes, b.index))
    for start in range(0, len(batches), SQS_SEND_BATCH):
        chunk = batches[start:start + SQS_SEND_BATCH]
        entries = [{"Id": b.batch_id, "MessageBody": WorkMessage(job_id=b.job_id, batch_id=b.batch_id)
                    .model_dump_json()} for b in chunk]
        response = ctx.sqs.send_message_batch(QueueUrl=ctx.stack.work_queue_url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"could not enqueue batches {[f['Id'] for f in response['Failed']]}")


def _wait_for_ledger(ctx: FunctionContext, message: DispatchMessage, missing: list[str]) -> None:
    waited = time.time() - message.first_seen
    if waited > LEDGER_WAIT_TIMEOUT_S:
        job = JobRecord(job_id=message.job_id, status="dispatching",
                        settings=ctx.deployment.settings.model_dump(mode="json"), created_at=message.first_seen)
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        fail_job(ctx, job, f"{len(missing)} input file(s) were not ingested within "
                           f"{LEDGER_WAIT_TIMEOUT_S} s: {shown}")
        return
    delay = RECHECK_DELAYS_S[min(message.attempt, len(RECHECK_DELAYS_S) - 1)]
    again = message.model_copy(update={"attempt": message.attempt + 1})
    ctx.sqs.send_message(QueueUrl=ctx.stack.dispatch_queue_url, MessageBody=again.model_dump_json(),
                         DelaySeconds=delay)
    logger.info("waiting for ingest", extra={"job_id": message.job_id, "missing": len(missing)})


def fail_job(ctx: FunctionContext, job: JobRecord, reason: str) -> None:
    if not ctx.jobs.create_job(job):
        return
    ctx.jobs.set_job_status(job.job_id, "failing", error=reason)
    send_finalize(ctx, job.job_id)
    logger.error("job failed before dispatch", extra={"job_id": job.job_id, "reason": reason})


def send_finalize(ctx: FunctionContext, job_id: str) -> None:
    ctx.sqs.send_message(QueueUrl=ctx.stack.finalize_queue_url,
                         MessageBody=FinalizeMessage(job_id=job_id).model_dump_json())


def _record_handler(record: SQSRecord, ctx: FunctionContext) -> None:
    dispatch_job(ctx, DispatchMessage.model_validate_json(record.body))


handle_event, handler = sqs_entry_points(_record_handler)
