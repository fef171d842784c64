"""The worker: long-polls the work queue and scores one mini-batch at a time in its scoring process.

Usage (the ECS task's command; locally the runner starts one per worker slot):
    python -m container.worker --worker-id ID
Stack resources and the AWS endpoint come from the environment (BATCHSCORE_*, AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from batchscore import keys
from batchscore.aws import AwsTarget
from batchscore.config import Deployment, Settings
from batchscore.jobs_table import JobsTable, finish_batch
from batchscore.observability import configure_logging, emit_metrics, log_keys
from batchscore.records import BatchRecord, BatchResult, Failure, FinalizeMessage, JobRecord, WorkMessage
from batchscore.stack import StackResources
from container.exceptions import ScoringProcessDied, ScriptInitError
from container.runtime import ScoringResult, ScriptSpec, Task, TaskFile
from container.scoring_process import ScoringProcess
from splitter import count_records

logger = logging.getLogger("batchscore.worker")

POLL_WAIT_S = 2  # long-poll wait; short enough that a stopping worker notices promptly
DOWNLOAD_THREADS = 4
RANGE_CHUNK_BYTES = 1024**2
# ECS waits 30 s (the task's default stopTimeout) between SIGTERM and SIGKILL; hand back before that.
DEFAULT_STOP_GRACE_S = 25.0
FINER = {"mini_batch": "file", "file": "row"}


def thread_limits(deployment: Deployment) -> dict[str, str]:
    """Native thread pools (OpenMP, BLAS) sized to this worker's share of the machine's cores, so that
    max_concurrency_per_instance scoring processes do not each start one thread per core and fight."""
    share = str(max(1, (os.cpu_count() or 1) // deployment.resources.max_concurrency_per_instance))
    return {name: share for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                     "NUMEXPR_NUM_THREADS")}


def fallback_levels(settings: Settings) -> list[str]:
    """The configured level, then (with memory_fallback) each finer level the payload allows."""
    levels: list[str] = [settings.level]
    while settings.memory_fallback and levels[-1] in FINER:
        finer = FINER[levels[-1]]
        if finer == "row" and settings.payload != "dataframe":
            break
        levels.append(finer)
    return levels


class _Stop(BaseException):
    """Raised by SIGTERM while the worker is idle: nothing to finish, so stop at once.

    A BaseException, like KeyboardInterrupt: botocore treats an Exception raised inside a request (here, the
    long poll the signal interrupts) as a connection error and retries it, which held a stop for the whole poll.
    """


class Heartbeat:
    """Keeps a message invisible to other workers while this one works on it."""

    def __init__(self, sqs: Any, queue_url: str, receipt: str, visibility_s: int) -> None:
        self.sqs, self.queue_url, self.receipt = sqs, queue_url, receipt
        self.visibility_s = visibility_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.visibility_s / 3):
            try:
                self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=self.receipt,
                                                   VisibilityTimeout=self.visibility_s)
            except Exception:  # a missed beat only risks a redelivery, which is counted once anyway
                logger.warning("visibility heartbeat failed for %s", self.queue_url, exc_info=True)


class Worker:
    def __init__(self, stack: StackResources, target: AwsTarget, worker_id: str, workdir: Path,
                 stop_grace_s: float = DEFAULT_STOP_GRACE_S) -> None:
        self.stack, self.worker_id, self.workdir = stack, worker_id, workdir
        session = target.session()
        self.s3 = target.client("s3", session)
        self.sqs = target.client("sqs", session)
        self.jobs = JobsTable.connect(stack.jobs_table, target, session)
        self.stopping = False
        self.busy = False
        self.stop_grace_s = stop_grace_s
        self._headers: dict[tuple[str, int], bytes] = {}  # keys carry the job id: one small entry per split file
        self.stop_deadline = float("inf")
        self.deployment = self._fetch_deployment()
        logging.getLogger().setLevel(self.deployment.settings.logging_level.upper())
        self.visibility_s = int(self.sqs.get_queue_attributes(
            QueueUrl=stack.work_queue_url, AttributeNames=["VisibilityTimeout"])["Attributes"]["VisibilityTimeout"])
        self.scoring = ScoringProcess(self._script_spec(), self.deployment.resources.memory_per_worker_mib)

    def _fetch_deployment(self) -> Deployment:
        body = self.s3.get_object(Bucket=self.stack.artifacts_bucket,
                                  Key=keys.artifact_key("deployment.json"))["Body"].read()
        deployment = Deployment.model_validate(json.loads(body))
        for folder in ("code", "model"):
            self._download_prefix(keys.artifact_key(folder) + "/", self.workdir / folder)
        return deployment

    def _download_prefix(self, prefix: str, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.stack.artifacts_bucket,
                                                                       Prefix=prefix):
            for obj in page.get("Contents", []):
                path = dest / obj["Key"][len(prefix):]
                path.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(self.stack.artifacts_bucket, obj["Key"], str(path))

    def _script_spec(self) -> ScriptSpec:
        # a model given as a single file is seen at AZUREML_MODEL_DIR as the folder holding it (as on Azure)
        model_dir = self.workdir / "model"
        output_dir = self.workdir / "bi_output"
        output_dir.mkdir(exist_ok=True)
        settings = self.deployment.settings
        return ScriptSpec(code_dir=str(self.workdir / "code") + os.sep,
                          scoring_script=self.deployment.code_configuration.scoring_script,
                          model_dir=str(model_dir), output_dir=str(output_dir),
                          environment=thread_limits(self.deployment) | dict(settings.environment_variables),
                          logging_level=settings.logging_level, worker_id=self.worker_id)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        logger.info("worker %s polling %s", self.worker_id, self.stack.work_queue_url)
        self.scoring.launch()  # imports and init() overlap the wait for the first batch
        try:
            while not self.stopping:
                response = self.sqs.receive_message(QueueUrl=self.stack.work_queue_url, MaxNumberOfMessages=1,
                                                    WaitTimeSeconds=POLL_WAIT_S)
                for message in response.get("Messages", []):
                    self.busy = True
                    try:
                        self.handle(message)
                    finally:
                        self.busy = False
        except _Stop:
            # stopped while idle: the scoring process holds no work, so it need not wind down politely
            self.scoring.kill()
        finally:
            self.scoring.stop()

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # busy: finish the current batch within the grace period (ECS sends SIGKILL after its stopTimeout),
        # else hand it back unwritten; idle: stop now (a message received but not handled becomes visible again).
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.stop_grace_s
        if not self.busy:
            raise _Stop()

    def handle(self, message: dict[str, Any]) -> None:
        work = WorkMessage.model_validate_json(message["Body"])
        receipt = message["ReceiptHandle"]
        job = self.jobs.get_job(work.job_id)
        batch = self.jobs.get_batch(work.job_id, work.batch_id)
        if job is None or batch is None or batch.status == "done" or job.status != "running":
            self._delete(receipt)  # counted already, or its job failed: nothing to do
            return
        with log_keys(job_id=job.job_id, batch_id=batch.batch_id):
            self._handle(job, batch, receipt)

    def _handle(self, job: JobRecord, batch: BatchRecord, receipt: str) -> None:
        try:
            with Heartbeat(self.sqs, self.stack.work_queue_url, receipt, self.visibility_s):
                result = self.process(job, batch)
        except ScriptInitError as exc:
            self._fail_job(job, exc)
            self._delete(receipt)
            return
        except Exception as exc:  # crash, kill or hand-back: the batch goes back to the queue, counted nowhere
            reason = f"{type(exc).__name__}: {exc}"
            logger.warning("batch %s/%s not completed, handed back: %s", job.job_id, batch.batch_id, reason)
            self.jobs.record_attempt(job.job_id, batch.batch_id, reason)
            self._release(receipt)
            return
        finish_batch(self.jobs, self.sqs, self.stack.finalize_queue_url, job.job_id, batch.batch_id, result)
        self._delete(receipt)
        logger.info("batch done", extra={"level_used": result.level, "succeeded_items": result.succeeded_items,
                                         "failed_items": result.failed_items, "peak_rss_mib": result.peak_rss_mib})
        emit_metrics("worker", [
            ("ItemsScored", MetricUnit.Count, result.succeeded_items),
            ("ItemsFailed", MetricUnit.Count, result.failed_items),
            ("BatchesDone", MetricUnit.Count, 1),
            ("BatchesFailed", MetricUnit.Count, 1 if result.failed_items else 0),
            ("BatchDuration", MetricUnit.Seconds, round(result.finished_at - result.started_at, 3)),
            ("MemoryPeak", MetricUnit.Megabytes, result.peak_rss_mib),
        ], job_id=job.job_id, batch_id=batch.batch_id, worker=self.worker_id, level=result.level)

    def process(self, job: JobRecord, batch: BatchRecord) -> BatchResult:
        settings = Settings.model_validate(job.settings)
        started = time.time()
        batch_dir = Path(tempfile.mkdtemp(prefix=f"{batch.batch_id}-", dir=self.workdir))
        try:
            t0 = time.perf_counter()
            files = self._download(batch, batch_dir)
            download_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            part = batch_dir / f"part{keys.part_suffix(settings.output_file_name)}"
            scored, level, tried = self._score_with_fallback(batch, settings, files, part)
            score_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            self._upload_outputs(job.job_id, batch.batch_id, scored, part)
            upload_s = time.perf_counter() - t0
        finally:
            shutil.rmtree(batch_dir, ignore_errors=True)
        return BatchResult(
            succeeded_items=scored.succeeded_items, failed_items=scored.failed_items,
            output_rows=scored.output_rows, worker=self.worker_id, level=level, levels_tried=tried,
            failures=[Failure(source=f.source, reason=f.reason, items=f.items, row=f.row, batch_id=batch.batch_id)
                      for f in scored.failures],
            started_at=started, finished_at=time.time(), peak_rss_mib=round(self.scoring.peak_rss_mib, 1),
            seconds={"download": round(download_s, 4), "score": round(score_s, 4), "upload": round(upload_s, 4),
                     "run": round(scored.run_seconds, 4), "read": round(scored.read_seconds, 4)},
        )

    def _score_with_fallback(self, batch: BatchRecord, settings: Settings, files: list[TaskFile],
                             out_path: Path) -> tuple[ScoringResult, str, list[str]]:
        """Score at the configured level; each time the memory cap kills the scoring process, one level finer."""
        levels = fallback_levels(settings)
        tried: list[str] = []
        for level in levels:
            task = Task(batch_id=batch.batch_id, payload=settings.payload, level=level, files=files,
                        out_path=str(out_path), keep_columns=tuple(settings.keep_columns),
                        row_batch_size=settings.row_batch_size, max_retries=settings.retry_settings.max_retries,
                        timeout_s=settings.retry_settings.timeout, job_id=batch.job_id)
            try:
                return self.scoring.score(task, should_abort=self._grace_expired), level, tried
            except ScoringProcessDied as exc:
                if not exc.memory_killed:
                    raise
                tried.append(level)
                logger.warning("batch %s: %s at level %s", batch.batch_id, exc, level)
                if level == levels[-1]:
                    suffix = f" (also at level {', '.join(tried[:-1])})" if len(tried) > 1 else ""
                    return self._all_failed(batch, settings, files, f"{exc}{suffix}"), level, tried
        raise AssertionError("unreachable")

    def _download(self, batch: BatchRecord, batch_dir: Path) -> list[TaskFile]:
        def fetch(item: tuple[int, Any]) -> TaskFile:
            i, shard = item
            # one folder per file, so that the script sees the file's own name
            path = batch_dir / f"{i:05d}" / Path(shard.key).name
            path.parent.mkdir()
            if shard.range_start is None:
                self.s3.download_file(self.stack.inbox_bucket, shard.key, str(path))
            else:
                self._download_range(shard, path)
            return TaskFile(path=str(path), source=keys.relative_source(shard.source), first_row=shard.first_row)

        with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
            return list(pool.map(fetch, enumerate(batch.shards)))

    def _download_range(self, shard: Any, path: Path) -> None:
        """A shard of uncompressed text: the source's header, then its byte range, as one ordinary file."""
        with path.open("wb") as out:
            if shard.header_bytes:
                out.write(self._header(shard.key, shard.header_bytes))
            if shard.range_end > shard.range_start:
                body = self.s3.get_object(Bucket=self.stack.inbox_bucket, Key=shard.key,
                                          Range=f"bytes={shard.range_start}-{shard.range_end - 1}")["Body"]
                for chunk in body.iter_chunks(RANGE_CHUNK_BYTES):
                    out.write(chunk)

    def _header(self, key: str, size: int) -> bytes:
        """A split file's header, fetched once per worker however many of its shards come this way."""
        if (key, size) not in self._headers:
            body = self.s3.get_object(Bucket=self.stack.inbox_bucket, Key=key, Range=f"bytes=0-{size - 1}")
            self._headers[(key, size)] = body["Body"].read()
        return self._headers[(key, size)]

    @staticmethod
    def _all_failed(batch: BatchRecord, settings: Settings, files: list[TaskFile], reason: str) -> ScoringResult:
        """Every item of the batch failed for one reason; for the dataframe payload, items are rows, counted."""
        result = ScoringResult()
        err = RuntimeError(reason)
        for shard, local in zip(batch.shards, files, strict=True):
            rows = shard.records
            if settings.payload == "dataframe" and rows is None:
                try:
                    rows = count_records(local.path)
                except Exception:  # unreadable: it counts as one item, as a file that cannot be read does
                    rows = None
            if settings.payload != "dataframe" or rows is None:
                result.fail(local.source, 1, err, reason)
            elif rows:
                result.fail(local.source, rows, err, reason, row=shard.first_row)
        return result

    def _upload_outputs(self, job_id: str, batch_id: str, scored: ScoringResult, part: Path) -> None:
        if scored.output_rows:
            self.s3.upload_file(str(part), self.stack.output_bucket, keys.part_key(job_id, batch_id, part.suffix))
        if scored.tracebacks:
            self.s3.put_object(Bucket=self.stack.output_bucket, Key=keys.error_key(job_id, batch_id),
                               Body="\n".join(scored.tracebacks).encode())
        output_dir = Path(self.scoring.spec.output_dir)
        for path in sorted(p for p in output_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(output_dir).as_posix()
            self.s3.upload_file(str(path), self.stack.output_bucket, keys.job_output_key(job_id, rel))
            path.unlink()

    def _fail_job(self, job: JobRecord, exc: ScriptInitError) -> None:
        logger.error("%s\n%s", exc, exc.user_traceback)
        error = f"{exc}\n{exc.user_traceback}"
        if self.jobs.set_job_status(job.job_id, "failing", expected=("running",), error=error):
            self.s3.put_object(Bucket=self.stack.output_bucket, Key=keys.error_key(job.job_id, "init"),
                               Body=error.encode())
            self.sqs.send_message(QueueUrl=self.stack.finalize_queue_url,
                                  MessageBody=FinalizeMessage(job_id=job.job_id).model_dump_json())

    def _release(self, receipt: str) -> None:
        """Make the message visible again now; SQS counts the delivery and dead-letters it after too many."""
        try:
            self.sqs.change_message_visibility(QueueUrl=self.stack.work_queue_url, ReceiptHandle=receipt,
                                               VisibilityTimeout=0)
        except Exception:  # it comes back when its visibility timeout ends anyway
            logger.warning("could not hand back a message of %s", self.stack.work_queue_url, exc_info=True)

    def _grace_expired(self) -> bool:
        return self.stopping and time.monotonic() > self.stop_deadline

    def _delete(self, receipt: str) -> None:
        self.sqs.delete_message(QueueUrl=self.stack.work_queue_url, ReceiptHandle=receipt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m container.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker-id", default=f"worker-{os.getpid()}")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temp folder)")
    parser.add_argument("--stop-grace", type=float, default=DEFAULT_STOP_GRACE_S, metavar="SECONDS",
                        help="after SIGTERM, how long the current batch may run before it is handed back")
    args = parser.parse_args(argv)
    configure_logging("batchscore.worker", "info", sys.stderr, worker=args.worker_id)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"batchscore-{args.worker_id}-"))
    try:
        Worker(StackResources.from_env(), AwsTarget.from_env(), args.worker_id, workdir, args.stop_grace).run()
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
