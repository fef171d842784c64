"""Each stage against the emulator, with resources built from infra/template.yaml itself."""

from __future__ import annotations

import json
import time

from batchscore.records import BatchResult, DispatchMessage, Failure, WorkMessage
from functions import dispatch, finalize, ingest
from functions.context import FunctionContext
from tests.functional.conftest import EVENTS, s3_event, sqs_records


def receive_all(ctx: FunctionContext, queue_url: str, wait_s: int = 1) -> list[dict]:
    found: list[dict] = []
    while True:
        got = ctx.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s)
        if not got.get("Messages"):
            return found
        found += got["Messages"]
        wait_s = 0


def test_template_wires_inbox_uploads_to_the_ingest_queue(ctx: FunctionContext) -> None:
    ctx.s3.put_object(Bucket=ctx.stack.inbox_bucket, Key="job1/a b+c.csv", Body=b"x\n1\n")
    bodies = [json.loads(m["Body"]) for m in receive_all(ctx, ctx.stack.ingest_queue_url)]
    records = [r for b in bodies for r in b.get("Records", [])]
    assert [r["s3"]["object"]["size"] for r in records] == [4]
    # and the ingest handler decodes the key as S3 encoded it
    ingest.handle_event(sqs_records(*[json.dumps(b) for b in bodies]), ctx)
    assert list(ctx.jobs.ledger("job1")) == ["job1/a b+c.csv"]


def test_ingest_records_inputs_and_ignores_test_events_and_internal_names(ctx: FunctionContext) -> None:
    test_event = (EVENTS / "s3_test_event.json").read_text()
    events = [s3_event(ctx.stack.inbox_bucket, key, 10) for key in ("j/a.csv", "_shards/j/a.csv/0.csv", "j/.x")]
    response = ingest.handle_event(sqs_records(test_event, *events, events[0]), ctx)
    assert response == {"batchItemFailures": []}
    ledger = ctx.jobs.ledger("j")
    assert list(ledger) == ["j/a.csv"]
    assert ledger["j/a.csv"].format == "csv" and ledger["j/a.csv"].shards[0].bytes == 10


def test_marker_starts_dispatch_once_the_ledger_covers_every_input(ctx: FunctionContext) -> None:
    for i in range(5):
        ctx.s3.put_object(Bucket=ctx.stack.inbox_bucket, Key=f"j/f{i}.csv", Body=b"x\n1\n" * (i + 1))
    receive_all(ctx, ctx.stack.ingest_queue_url)  # drained: ingest has not run yet
    ingest.handle_event(sqs_records(s3_event(ctx.stack.inbox_bucket, "j/_SUCCESS", 0)), ctx)
    [start] = receive_all(ctx, ctx.stack.dispatch_queue_url)
    # WHEN dispatch runs before ingest: it waits (a delayed re-check), and starts nothing
    dispatch.handle_event(sqs_records(start["Body"]), ctx)
    assert ctx.jobs.get_job("j") is None
    [recheck] = receive_all(ctx, ctx.stack.dispatch_queue_url, wait_s=3)
    assert DispatchMessage.model_validate_json(recheck["Body"]).attempt == 1
    # WHEN every input is ingested, dispatch packs mini-batches (mini_batch_size 2) and enqueues pointers
    ingest.handle_event(sqs_records(*[s3_event(ctx.stack.inbox_bucket, f"j/f{i}.csv", 4 * (i + 1))
                                      for i in range(5)]), ctx)
    dispatch.handle_event(sqs_records(recheck["Body"]), ctx)
    job = ctx.jobs.get_job("j")
    assert job is not None and (job.status, job.total_batches, job.input_files) == ("running", 3, 5)
    work = [WorkMessage.model_validate_json(m["Body"]) for m in receive_all(ctx, ctx.stack.work_queue_url)]
    # largest batch first
    assert [w.batch_id for w in work] == ["b000001", "b000002", "b000000"]  # 28, 20, 12 bytes
    # a replayed start message changes nothing
    dispatch.handle_event(sqs_records(recheck["Body"]), ctx)
    assert receive_all(ctx, ctx.stack.work_queue_url) == []


def test_a_batch_counts_once_and_finalize_runs_once(ctx: FunctionContext) -> None:
    ctx.s3.put_object(Bucket=ctx.stack.inbox_bucket, Key="j/a.csv", Body=b"x\n1\n")
    ingest.handle_event(sqs_records(s3_event(ctx.stack.inbox_bucket, "j/a.csv", 4)), ctx)
    dispatch.dispatch_job(ctx, DispatchMessage(job_id="j", first_seen=time.time()))
    result = BatchResult(succeeded_items=0, failed_items=1,
                         failures=[Failure(source="a.csv", reason="ValueError: no")])
    first = ctx.jobs.complete_batch("j", "b000000", result)
    again = ctx.jobs.complete_batch("j", "b000000", result)
    assert first is not None and (first.done_batches, first.failed_items) == (1, 1)
    assert again is None
    finalize.finalize_job(ctx, "j")
    finalize.finalize_job(ctx, "j")
    summary = json.loads(ctx.s3.get_object(Bucket=ctx.stack.output_bucket, Key="j/_summary.json")["Body"].read())
    assert (summary["status"], summary["failed_items"], summary["mini_batches"]) == ("succeeded", 1, 1)
    assert summary["failures"][0]["reason"] == "ValueError: no"
    assert ctx.jobs.get_job("j").status == "succeeded"  # type: ignore[union-attr]


def test_a_job_without_inputs_fails_with_a_reason(ctx: FunctionContext) -> None:
    dispatch.dispatch_job(ctx, DispatchMessage(job_id="empty", first_seen=time.time()))
    finalize.finalize_job(ctx, "empty")
    summary = json.loads(ctx.s3.get_object(Bucket=ctx.stack.output_bucket, Key="empty/_summary.json")["Body"].read())
    assert summary["status"] == "failed"
    assert summary["error"] == f"no input files under s3://{ctx.stack.inbox_bucket}/empty/"
    ctx.s3.head_object(Bucket=ctx.stack.output_bucket, Key="empty/_FAILED")


def test_job_yaml_overrides_apply_to_that_job_only(ctx: FunctionContext) -> None:
    for i in range(4):
        ctx.s3.put_object(Bucket=ctx.stack.inbox_bucket, Key=f"o/f{i}.csv", Body=b"x\n1\n")
    ctx.s3.put_object(Bucket=ctx.stack.inbox_bucket, Key="o/job.yaml", Body=b"mini_batch_size: 1\n")
    ingest.handle_event(sqs_records(*[s3_event(ctx.stack.inbox_bucket, f"o/f{i}.csv", 4) for i in range(4)]), ctx)
    dispatch.dispatch_job(ctx, DispatchMessage(job_id="o", first_seen=time.time()))
    job = ctx.jobs.get_job("o")
    assert job is not None and job.total_batches == 4 and job.settings["mini_batch_size"] == 1
    assert job.input_files == 4  # job.yaml is not an input


def test_a_bad_job_yaml_fails_the_job_saying_why(ctx: FunctionContext) -> None:
    ctx.s3.put_object(Bucket=ctx.stack.inbox_bucket, Key="b/f.csv", Body=b"x\n1\n")
    ctx.s3.put_object(Bucket=ctx.stack.inbox_bucket, Key="b/job.yaml", Body=b"mini_batch_size: -3\n")
    ingest.handle_event(sqs_records(s3_event(ctx.stack.inbox_bucket, "b/f.csv", 4)), ctx)
    dispatch.dispatch_job(ctx, DispatchMessage(job_id="b", first_seen=time.time()))
    finalize.finalize_job(ctx, "b")
    summary = json.loads(ctx.s3.get_object(Bucket=ctx.stack.output_bucket, Key="b/_summary.json")["Body"].read())
    assert summary["status"] == "failed"
    assert "b/job.yaml: settings: 1 problem(s)" in summary["error"] and "mini_batch_size" in summary["error"]
