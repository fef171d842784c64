"""The jobs table: ledger entries, job records and batch records of every job, in one DynamoDB table.

Items are keyed pk = "job#<id>" and sk = "job" | "file#<source key>" | "batch#<batch id>". Every state change
that must happen once is a conditional write, so redelivered messages and racing workers change nothing twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from batchscore.records import BatchRecord, BatchResult, FinalizeMessage, JobRecord, LedgerEntry

JOB_SK = "job"
FILE_PREFIX = "file#"
BATCH_PREFIX = "batch#"


def _now() -> Decimal:
    return Decimal(f"{time.time():.3f}")


def _pk(job_id: str) -> str:
    return f"job#{job_id}"


def _is_condition_failure(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


class JobsTable:
    def __init__(self, table: Any, client: Any) -> None:
        """`table` is a boto3 DynamoDB Table resource, `client` the matching low-level client."""
        self.table = table
        self.client = client

    @classmethod
    def connect(cls, name: str, target: Any, session: Any = None) -> JobsTable:
        session = session or target.session()
        return cls(target.resource("dynamodb", session).Table(name), target.client("dynamodb", session))

    # ledger
    def put_ledger_entry(self, job_id: str, entry: LedgerEntry) -> None:
        self.table.put_item(Item={"pk": _pk(job_id), "sk": FILE_PREFIX + entry.source,
                                  "data": entry.model_dump_json()})

    def ledger(self, job_id: str) -> dict[str, LedgerEntry]:
        return {item["sk"][len(FILE_PREFIX):]: LedgerEntry.model_validate_json(item["data"])
                for item in self._query(job_id, FILE_PREFIX)}

    # job
    def create_job(self, job: JobRecord) -> bool:
        """Create the job record, or take over one left half-dispatched. False if the job was dispatched before."""
        try:
            self.table.put_item(
                Item=self._job_item(job),
                ConditionExpression="attribute_not_exists(pk) OR #s = :dispatching",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":dispatching": "dispatching"},
            )
            return True
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise

    def get_job(self, job_id: str) -> JobRecord | None:
        item = self.table.get_item(Key={"pk": _pk(job_id), "sk": JOB_SK}, ConsistentRead=True).get("Item")
        return None if item is None else self._job_from_item(item)

    def set_job_status(self, job_id: str, status: str, *, expected: tuple[str, ...] = (),
                       error: str | None = None) -> bool:
        """Move the job to `status` if it is in one of `expected` (any status when empty)."""
        names = {"#s": "status"}
        values: dict[str, Any] = {":new": status, ":now": _now()}
        update = "SET #s = :new, finished_at = :now"
        if error is not None:
            update += ", #e = :error"
            names["#e"] = "error"
            values[":error"] = error
        kwargs: dict[str, Any] = {}
        if expected:
            placeholders = []
            for i, state in enumerate(expected):
                values[f":x{i}"] = state
                placeholders.append(f":x{i}")
            kwargs["ConditionExpression"] = f"#s IN ({', '.join(placeholders)})"
        try:
            self.table.update_item(Key={"pk": _pk(job_id), "sk": JOB_SK}, UpdateExpression=update,
                                   ExpressionAttributeNames=names, ExpressionAttributeValues=values, **kwargs)
            return True
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise

    def mark_dispatched(self, job_id: str, total_batches: int) -> None:
        self.table.update_item(
            Key={"pk": _pk(job_id), "sk": JOB_SK},
            UpdateExpression="SET #s = :running, total_batches = :n, dispatched_at = :now",
            ConditionExpression="#s = :dispatching",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":running": "running", ":dispatching": "dispatching", ":n": total_batches,
                                       ":now": _now()},
        )

    def mark_enqueued(self, job_id: str) -> None:
        self.table.update_item(Key={"pk": _pk(job_id), "sk": JOB_SK}, UpdateExpression="SET enqueued = :t",
                               ExpressionAttributeValues={":t": True})

    # batches
    def put_batches(self, batches: list[BatchRecord]) -> None:
        with self.table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as writer:
            for batch in batches:
                writer.put_item(Item={"pk": _pk(batch.job_id), "sk": BATCH_PREFIX + batch.batch_id,
                                      "status": batch.status, "data": batch.model_dump_json(exclude={"status"})})

    def get_batch(self, job_id: str, batch_id: str) -> BatchRecord | None:
        item = self.table.get_item(Key={"pk": _pk(job_id), "sk": BATCH_PREFIX + batch_id},
                                   ConsistentRead=True).get("Item")
        return None if item is None else self._batch_from_item(item)

    def record_attempt(self, job_id: str, batch_id: str, error: str) -> None:
        """A delivery of the batch ended without completing it; kept for the dead-letter handler's reason."""
        try:
            self.table.update_item(
                Key={"pk": _pk(job_id), "sk": BATCH_PREFIX + batch_id},
                UpdateExpression="ADD attempts :one SET last_error = :error",
                ConditionExpression="#s = :pending",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":one": 1, ":error": error[:2000], ":pending": "pending"},
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise

    def batches(self, job_id: str) -> list[BatchRecord]:
        records = [self._batch_from_item(item) for item in self._query(job_id, BATCH_PREFIX)]
        return sorted(records, key=lambda b: b.index)

    def complete_batch(self, job_id: str, batch_id: str, result: BatchResult) -> JobRecord | None:
        """Count a batch once: returns the job as updated, or None if this batch was already counted."""
        table = self.table.name
        try:
            self.client.transact_write_items(TransactItems=[
                {"Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": _pk(job_id)}, "sk": {"S": BATCH_PREFIX + batch_id}},
                    "UpdateExpression": "SET #s = :done, #r = :result",
                    "ConditionExpression": "#s = :pending",
                    "ExpressionAttributeNames": {"#s": "status", "#r": "result"},
                    "ExpressionAttributeValues": {":done": {"S": "done"}, ":pending": {"S": "pending"},
                                                  ":result": {"S": result.model_dump_json()}},
                }},
                {"Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": _pk(job_id)}, "sk": {"S": JOB_SK}},
                    "UpdateExpression": "ADD done_batches :one, succeeded_items :ok, failed_items :bad",
                    "ExpressionAttributeValues": {":one": {"N": "1"}, ":ok": {"N": str(result.succeeded_items)},
                                                  ":bad": {"N": str(result.failed_items)}},
                }},
            ])
        except ClientError as exc:
            if _is_condition_failure(exc):
                return None
            raise
        return self.get_job(job_id)

    # helpers
    def _query(self, job_id: str, prefix: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(_pk(job_id)) & Key("sk").begins_with(prefix),
                                  "ConsistentRead": True}
        while True:
            page = self.table.query(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    @staticmethod
    def _job_item(job: JobRecord) -> dict[str, Any]:
        item = job.model_dump(exclude={"settings", "error"})
        item = {k: (Decimal(f"{v:.3f}") if isinstance(v, float) else v) for k, v in item.items()}
        item |= {"pk": _pk(job.job_id), "sk": JOB_SK, "settings": json.dumps(job.settings)}
        if job.error:
            item["error"] = job.error
        return item

    @staticmethod
    def _job_from_item(item: dict[str, Any]) -> JobRecord:
        data = {k: v for k, v in item.items() if k not in ("pk", "sk")}
        data["settings"] = json.loads(data.get("settings", "{}"))
        for key in ("created_at", "dispatched_at", "finished_at"):
            data[key] = float(data.get(key, 0) or 0)
        for key in ("total_batches", "done_batches", "succeeded_items", "failed_items", "input_files", "shards"):
            data[key] = int(data.get(key, 0) or 0)
        return JobRecord.model_validate(data)

    @staticmethod
    def _batch_from_item(item: dict[str, Any]) -> BatchRecord:
        data = json.loads(item["data"])
        data["status"] = item["status"]
        data["attempts"] = int(item.get("attempts", 0))
        data["last_error"] = item.get("last_error")
        if "result" in item:
            data["result"] = json.loads(item["result"])
        return BatchRecord.model_validate(data)


def finish_batch(jobs: JobsTable, sqs: Any, finalize_queue_url: str, job_id: str, batch_id: str,
                 result: BatchResult) -> bool:
    """Count the batch once; the update that completes the job's last batch triggers finalize.

    Returns False when the batch had been counted already (a redelivered or duplicated message).
    """
    updated = jobs.complete_batch(job_id, batch_id, result)
    if updated is None:
        return False
    if updated.status == "running" and updated.done_batches >= updated.total_batches:
        sqs.send_message(QueueUrl=finalize_queue_url, MessageBody=FinalizeMessage(job_id=job_id).model_dump_json())
    return True
