"""`batchscore deploy` into the emulator, then a real job through the deployed stack's own resources."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from batchscore.aws import AwsTarget
from batchscore.cli import EXIT_OK, EXIT_USAGE, main
from tests.conftest import make_deployment, make_inputs

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/batchscore:test"


def deploy(target: AwsTarget, deployment: Path, stack: str, capsys: pytest.CaptureFixture[str],
           *extra: str) -> dict[str, str]:
    code = main(["deploy", str(deployment), "--stack-name", stack, "--image-uri", IMAGE,
                 "--endpoint-url", str(target.endpoint_url), "--json", *extra])
    assert code == EXIT_OK
    outputs: dict[str, str] = json.loads(capsys.readouterr().out)
    return outputs


def test_deploy_creates_the_whole_stack_sized_from_the_deployment(
        target: AwsTarget, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a deployment of 3 tasks with 2 workers and 3000 MiB each, 2 retries
    deployment = make_deployment(tmp_path, retry_settings={"max_retries": 2},
                                 resources={"instance_count": 3, "max_concurrency_per_instance": 2,
                                            "memory_mib": 3000})
    stack = f"dep-{uuid.uuid4().hex[:8]}"
    # WHEN it is deployed with an image
    outputs = deploy(target, deployment, stack, capsys)
    # THEN the functions run from that image with their own commands, fed by their queues
    lam = target.client("lambda")
    functions = {f["FunctionName"]: f for f in lam.list_functions()["Functions"]
                 if f["FunctionName"].startswith(stack + "-")}
    assert set(functions) == {f"{stack}-{n}" for n in ("ingest", "dispatch", "finalize", "deadletter")}
    env = functions[f"{stack}-dispatch"]["Environment"]["Variables"]
    assert env["BATCHSCORE_WORK_QUEUE_URL"] == outputs["WorkQueueUrl"]
    mappings = {m["FunctionArn"].rsplit(":", 1)[-1]: m for m in lam.list_event_source_mappings()["EventSourceMappings"]}
    assert mappings[f"{stack}-ingest"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mappings[f"{stack}-ingest"]["EventSourceArn"].endswith(outputs["IngestQueueUrl"].rsplit("/", 1)[-1])
    # AND the worker task is the smallest Fargate size with a vCPU per worker and the memory asked for
    ecs = target.client("ecs")
    task = ecs.describe_task_definition(taskDefinition=outputs["WorkerTaskDefinitionArn"])["taskDefinition"]
    assert task["memory"] == "4096"
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in
                  target.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]["Parameters"]}
    assert (parameters["TaskCpu"], parameters["MaxTasks"]) == ("2048", "3")  # (the emulator keeps no task cpu)
    container = task["containerDefinitions"][0]
    assert container["image"] == IMAGE
    assert container["entryPoint"] == ["python", "-m", "container.task"]
    assert container["command"] == ["--workers", "2"]
    services = ecs.describe_services(cluster=outputs["WorkerClusterName"],
                                     services=[f"{stack}-workers"])["services"]
    assert services and services[0]["desiredCount"] == 0  # nothing runs until there is work
    # AND a work message is dead-lettered after max_retries + 1 deliveries
    sqs = target.client("sqs")
    redrive = json.loads(sqs.get_queue_attributes(QueueUrl=outputs["WorkQueueUrl"], AttributeNames=["All"])
                         ["Attributes"]["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 3
    # AND the code, model and settings are in the artifacts bucket
    keys = {o["Key"] for o in target.client("s3").list_objects_v2(Bucket=outputs["ArtifactsBucketName"])["Contents"]}
    assert {"deployment/code/score.py", "deployment/model/factor.txt", "deployment/deployment.json"} <= keys

    # WHEN it is deployed again with a new image THEN the stack is updated in place
    assert main(["deploy", str(deployment), "--stack-name", stack, "--image-uri", IMAGE + "2",
                 "--endpoint-url", str(target.endpoint_url)]) == EXIT_OK
    assert f"stack {stack}: updated" in capsys.readouterr().out
    updated = target.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    assert updated["StackStatus"] == "UPDATE_COMPLETE"
    assert {"ParameterKey": "ImageUri", "ParameterValue": IMAGE + "2"} in updated["Parameters"]


def test_a_job_runs_through_the_deployed_stack(target: AwsTarget, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a deployed stack
    deployment = make_deployment(tmp_path / "dep", payload="dataframe", level="file", mini_batch_size=2)
    stack = f"job-{uuid.uuid4().hex[:8]}"
    outputs = deploy(target, deployment, stack, capsys)
    frames = make_inputs(tmp_path / "in", [120, 30, 30])
    endpoint = ["--endpoint-url", str(target.endpoint_url)]
    # WHEN a job is run by the local pollers and workers against that stack's resources
    code = main(["local", "run", str(tmp_path / "in"), "-d", str(deployment), "-o", str(tmp_path / "local"),
                 "--stack", stack, "--job-id", "j1", "-q", *endpoint])
    assert code == EXIT_OK
    # THEN the job went through the deployed buckets and table: status and outputs find it by the stack's name
    assert main(["status", "j1", "--stack-name", stack, "--json", *endpoint]) == EXIT_OK
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "succeeded" and status["succeeded_items"] == 180
    assert main(["outputs", "j1", "--stack-name", stack, "--download", str(tmp_path / "out"), *endpoint]) == EXIT_OK
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv")
    expected = pd.concat(frames.values())
    assert sorted(predictions["prediction"]) == sorted(expected["x"] * 2)
    s3 = target.client("s3")
    assert s3.head_object(Bucket=outputs["OutputBucketName"], Key="j1/_summary.json")["ContentLength"] > 0

    # WHEN another job is submitted with its files THEN they and the marker land in the deployed inbox
    assert main(["submit", "j2", "--stack-name", stack, "--input", str(tmp_path / "in"),
                 "--set", "mini_batch_size=1", *endpoint]) == EXIT_OK
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=outputs["InboxBucketName"], Prefix="j2/")["Contents"]}
    assert listed == {"j2/part-000.csv", "j2/part-001.csv", "j2/part-002.csv", "j2/job.yaml", "j2/_SUCCESS"}


def test_commands_name_the_missing_stack(target: AwsTarget, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = ["--endpoint-url", str(target.endpoint_url)]
    assert main(["status", "j", "--stack-name", "nope-stack", *endpoint]) == EXIT_USAGE
    assert main(["outputs", "j", "--stack-name", "nope-stack", *endpoint]) == EXIT_USAGE
    assert main(["submit", "j", "--stack-name", "nope-stack", *endpoint]) == EXIT_USAGE
    assert capsys.readouterr().err.count("--stack-name nope-stack: no such stack") == 3


def test_the_task_entry_point_runs_its_workers_and_stops_on_sigterm(target: AwsTarget, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from batchscore.stack import StackResources

    # GIVEN a deployed stack and the task's environment, as the task definition sets it
    outputs = deploy(target, make_deployment(tmp_path), f"task-{uuid.uuid4().hex[:8]}", capsys)
    env = os.environ | target.env() | StackResources.from_outputs(outputs).env()
    # WHEN the task's entry point starts with 2 workers
    task = subprocess.Popen([sys.executable, "-m", "container.task", "--workers", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline and len(workers) < 2:
            workers = [p for p in psutil.Process(task.pid).children()
                       if "container.worker" in " ".join(p.cmdline())]
            time.sleep(0.2)
        # THEN it runs two worker processes
        assert len(workers) == 2
        # AND on SIGTERM (ECS stopping the task) it stops them and exits cleanly, well within ECS's 30 s
        task.send_signal(signal.SIGTERM)
        assert task.wait(timeout=25) == 0, task.stderr.read() if task.stderr else ""
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    finally:
        if task.poll() is None:
            task.kill()
