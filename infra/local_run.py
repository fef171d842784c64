"""`batchscore local run`: one job through the whole pipeline on this machine."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from batchscore import keys
from batchscore.aws import AwsTarget
from batchscore.config import Deployment
from batchscore.exceptions import BatchscoreError, ConfigError
from batchscore.observability import METRICS_FILE_ENV
from batchscore.records import JobRecord
from batchscore.stack import StackResources
from container.pool import WorkerPool
from functions import deadletter, dispatch, finalize, ingest
from functions.context import FunctionContext
from infra.deploy import deploy
from infra.emulator import EmbeddedEmulator
from infra.local import QueuePoller
from infra.stack import stack_resources, upload_deployment

logger = logging.getLogger(__name__)

UPLOAD_THREADS = 8
METRICS_FILE = "_metrics.jsonl"
STATUS_POLL_S = 0.25
TERMINAL = ("succeeded", "failed")


class LocalRunError(BatchscoreError):
    pass


@dataclass(frozen=True)
class LocalRun:
    input_dir: Path
    deployment: Deployment
    output_dir: Path
    job_id: str
    endpoint_url: str | None = None
    stack_name: str | None = None
    worker_log: Path | None = None
    # Locally a short visibility timeout, so a killed worker's batch comes back in seconds, not minutes;
    # a live worker keeps its batch by heartbeats at a third of it.
    work_visibility_s: int = 10
    stop_grace_s: float | None = None
    overrides: dict[str, Any] | None = None  # written as <job-id>/job.yaml: per-job settings
    emulator: EmbeddedEmulator | None = None  # one started early by the caller, else one is started here


def new_job_id(deployment: Deployment) -> str:
    return f"{deployment.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def input_files(input_dir: Path) -> Iterator[Path]:
    for path in sorted(input_dir.rglob("*")):
        rel = path.relative_to(input_dir)
        if path.is_file() and not any(part.startswith((".", "_")) for part in rel.parts):
            yield path


def run_local_job(run: LocalRun, on_progress: Callable[[JobRecord | None], None] | None = None) -> dict[str, Any]:
    """Run the job and return its summary; outputs are downloaded into run.output_dir."""
    if not run.input_dir.is_dir():
        raise ConfigError(f"INPUT_DIR {run.input_dir} is not a folder")
    files = list(input_files(run.input_dir))
    if not files:
        raise ConfigError(f"INPUT_DIR {run.input_dir} has no input files (names starting with . or _ are skipped)")
    marks = {"started": time.time()}
    with ExitStack() as stack:
        endpoint = run.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        if not endpoint:
            endpoint = stack.enter_context(run.emulator or EmbeddedEmulator()).endpoint_url
        target = AwsTarget(endpoint_url=endpoint, region=AwsTarget.from_env().region)
        stack_name = run.stack_name or f"batchscore-{uuid.uuid4().hex[:10]}"
        resources = deploy_local_stack(target, stack_name, run.deployment, run.work_visibility_s)
        ctx = FunctionContext(resources, target)
        # metrics (embedded metric format) of the workers and the in-process functions, kept with the outputs
        run.output_dir.mkdir(parents=True, exist_ok=True)
        metrics_file = run.output_dir / METRICS_FILE
        metrics_file.unlink(missing_ok=True)
        os.environ[METRICS_FILE_ENV] = str(metrics_file.resolve())
        stack.callback(os.environ.pop, METRICS_FILE_ENV, None)
        pool = WorkerPool(run.deployment.resources.workers, target, resources,
                          log_path=str(run.worker_log) if run.worker_log else None,
                          stop_grace_s=run.stop_grace_s).start()
        stack.callback(pool.stop)
        # one poller per queue: moto's ReceiveMessage is not atomic, so concurrent receivers of one queue can take
        # the same message several times over and push it past maxReceiveCount into its dead-letter queue
        for name, queue_url, module in (("ingest", resources.ingest_queue_url, ingest),
                                        ("dispatch", resources.dispatch_queue_url, dispatch),
                                        ("finalize", resources.finalize_queue_url, finalize),
                                        ("work-dlq", resources.work_dead_letter_queue_url, deadletter)):
            poller = QueuePoller(name, target, queue_url, partial(module.handle_event, ctx=ctx))
            poller.start()
            stack.callback(poller.stop)
        marks["uploading"] = time.time()
        upload_inputs(ctx.s3, resources.inbox_bucket, run.job_id, run.input_dir, files)
        submit_job(ctx.s3, resources.inbox_bucket, run.job_id, run.overrides)
        marks["submitted"] = time.time()
        wait_for_job(ctx, run.job_id, pool, on_progress)
        marks["finished"] = time.time()
        summary = download_outputs(ctx.s3, resources.output_bucket, run.job_id, run.output_dir)
        marks["downloaded"] = time.time()
        summary["local"] = local_timings(marks)
        (run.output_dir / keys.SUMMARY).write_text(json.dumps(summary, indent=2))
        return summary
    raise AssertionError("unreachable")


def local_timings(marks: dict[str, float]) -> dict[str, float]:
    """Where a local run's time went; `job_s` runs from the first upload to the job's end (splitting included)."""
    return {
        "setup_s": round(marks["uploading"] - marks["started"], 3),  # emulator, stack, deployment, workers
        "upload_s": round(marks["submitted"] - marks["uploading"], 3),
        "job_s": round(marks["finished"] - marks["uploading"], 3),
        "download_s": round(marks["downloaded"] - marks["finished"], 3),
        "submitted_at": round(marks["submitted"], 3),  # when the marker was written (epoch seconds)
    }


def deploy_local_stack(target: AwsTarget, stack_name: str, deployment: Deployment,
                       work_visibility_s: int = 10) -> StackResources:
    """An existing stack of that name (from `batchscore deploy` or an earlier run) is used as it is, with this
    deployment's code and settings uploaded; otherwise the stack is deployed as `batchscore deploy` would."""
    resources = stack_resources(target, stack_name)
    if resources is None:
        resources, _ = deploy(target, stack_name, deployment, work_visibility_s=work_visibility_s)
    else:
        take_over_functions(target, stack_name)
        upload_deployment(target, resources, deployment)
    return resources


def take_over_functions(target: AwsTarget, stack_name: str) -> None:
    """Disable a deployed stack's event-source mappings, so the local pollers get its queues' messages.

    The emulator cannot run the functions' image, and would otherwise swallow the messages trying to. On AWS the
    functions run themselves: polling beside them is refused rather than done silently.
    """
    cfn = target.client("cloudformation")
    mappings = [r["PhysicalResourceId"] for r in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
                if r.get("ResourceType") == "AWS::Lambda::EventSourceMapping" and r.get("PhysicalResourceId")]
    if not mappings:
        return
    if not target.endpoint_url:
        raise ConfigError(f"--stack {stack_name}: its functions run on AWS; submit jobs to it with `batchscore "
                          "submit` instead of running them locally")
    lam = target.client("lambda")
    for uuid_ in mappings:
        lam.update_event_source_mapping(UUID=uuid_, Enabled=False)


def upload_inputs(s3: Any, bucket: str, job_id: str, input_dir: Path, files: list[Path]) -> None:
    def put(path: Path) -> None:
        s3.upload_file(str(path), bucket, f"{job_id}/{path.relative_to(input_dir).as_posix()}")

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        list(pool.map(put, files))


def submit_job(s3: Any, bucket: str, job_id: str, overrides: dict[str, Any] | None = None) -> None:
    """Start a job whose inputs are uploaded: its overrides (job.yaml) first, then the marker."""
    if overrides:
        s3.put_object(Bucket=bucket, Key=f"{job_id}/{keys.JOB_OVERRIDES}",
                      Body=yaml.safe_dump(overrides, sort_keys=True).encode())
    s3.put_object(Bucket=bucket, Key=f"{job_id}/{keys.START_MARKER}", Body=b"")


def wait_for_job(ctx: FunctionContext, job_id: str, pool: WorkerPool,
                 on_progress: Callable[[JobRecord | None], None] | None) -> JobRecord:
    while True:
        job = ctx.jobs.get_job(job_id)
        if on_progress is not None:
            on_progress(job)
        if job is not None and job.status in TERMINAL:
            return job
        if pool.replaced > 3 * pool.size:
            raise LocalRunError(f"worker processes keep exiting ({pool.replaced} replaced); "
                                "run with --worker-log to see why")
        time.sleep(STATUS_POLL_S)


def list_outputs(s3: Any, bucket: str, job_id: str) -> list[tuple[str, int]]:
    """(key, bytes) of a job's outputs, without the per-batch parts that finalize merged."""
    prefix = f"{job_id}/"
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"][len(prefix):].startswith(keys.PARTS_FOLDER + "/"):
                found.append((obj["Key"], obj["Size"]))
    return found


def download_outputs(s3: Any, bucket: str, job_id: str, output_dir: Path) -> dict[str, Any]:
    output_dir.mkdir(parents=True, exist_ok=True)
    for key, _ in list_outputs(s3, bucket, job_id):
        path = output_dir / key[len(job_id) + 1:]
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(path))
    summary_path = output_dir / keys.SUMMARY
    if not summary_path.exists():
        raise LocalRunError(f"job {job_id} has no {keys.SUMMARY} in s3://{bucket}/{job_id}/ (not finished yet?)")
    result: dict[str, Any] = json.loads(summary_path.read_text())
    return result
