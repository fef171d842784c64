"""Dead letters of the work queue: a batch that no delivery could complete (its worker crashed or was killed
every time) is recorded as failed with the last error, so the rest of the job still finishes."""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from batchscore import keys
from batchscore.config import Settings
from batchscore.jobs_table import finish_batch
from batchscore.records import BatchResult, Failure, WorkMessage
from functions.context import FunctionContext, sqs_entry_points
from splitter import count_records

logger = Logger(service="batchscore.functions")


def fail_dead_batch(ctx: FunctionContext, message: WorkMessage) -> None:
    job = ctx.jobs.get_job(message.job_id)
    batch = ctx.jobs.get_batch(message.job_id, message.batch_id)
    if job is None or batch is None or batch.status == "done":
        return
    dataframe = Settings.model_validate(job.settings).payload == "dataframe"
    reason = (f"the batch was delivered {max(batch.attempts, 1)} time(s) and never completed; last error: "
              f"{batch.last_error or 'the worker stopped without reporting one'}")
    failures = []
    for shard in batch.shards:
        rows = _rows(ctx, shard.key, shard.records) if dataframe else None
        if rows == 0:
            continue
        failures.append(Failure(source=keys.relative_source(shard.source), reason=reason, items=rows or 1,
                                row=shard.first_row if rows else None, batch_id=batch.batch_id))
    result = BatchResult(failed_items=sum(f.items for f in failures), failures=failures, worker="dead-letter")
    if finish_batch(ctx.jobs, ctx.sqs, ctx.stack.finalize_queue_url, message.job_id, message.batch_id, result):
        logger.error("poison batch recorded as failed", extra={"job_id": message.job_id,
                                                                "batch_id": message.batch_id, "reason": reason})


def _rows(ctx: FunctionContext, key: str, known: int | None) -> int | None:
    """Rows of a failed file, so they count against error_threshold as rows; None if it cannot be read."""
    if known is not None:  # every split shard knows its rows
        return known
    try:
        return count_records(f"s3://{ctx.stack.inbox_bucket}/{key}", client=ctx.s3)
    except Exception:  # an unreadable file counts as one item
        return None


def _record_handler(record: SQSRecord, ctx: FunctionContext) -> None:
    fail_dead_batch(ctx, WorkMessage.model_validate_json(record.body))


handle_event, handler = sqs_entry_points(_record_handler)
