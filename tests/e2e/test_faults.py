"""Faults with real processes: kill -9, memory cap, timeouts, poison batches, SIGTERM, duplicates, heartbeat.

Each test checks the invariant users rely on: every input row is in the output or in the failures, never both,
never twice.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest

from tests.conftest import make_deployment

pytestmark = pytest.mark.e2e


def write_inputs(folder: Path, files: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """files: [{"rows": n, **constant extra columns}]; x is unique across all files."""
    folder.mkdir(parents=True, exist_ok=True)
    written, x = {}, 0
    for i, spec in enumerate(files):
        n = spec.pop("rows")
        frame = pd.DataFrame({"x": np.arange(x, x + n), "fail": 0, **spec})
        x += n
        name = f"f{i:03d}.csv"
        frame.to_csv(folder / name, index=False)
        written[name] = frame
    return written


def start(tmp_path: Path, deployment: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "batchscore.cli", "local", "run", str(tmp_path / "in"),
                             "-d", str(deployment), "-o", str(tmp_path / "out"), "-q", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: int = 240) -> int:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode in (0, 1), err
    return proc.returncode


def supervisors(cli: subprocess.Popen[str]) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(cli.pid).children():
        try:
            if "container.worker" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def scoring_processes(cli: subprocess.Popen[str]) -> list[psutil.Process]:
    """The supervisors' scoring processes (not multiprocessing's resource trackers beside them)."""
    found = []
    for worker in supervisors(cli):
        try:
            found += [c for c in worker.children() if "spawn_main" in " ".join(c.cmdline())]
        except psutil.Error:
            continue
    return found


def wait_until(condition: Callable[[], Any], timeout_s: float = 60,
               cli: subprocess.Popen[str] | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    said = ""
    if cli is not None:  # what the CLI said explains most hangs
        cli.kill()
        said = "\nthe CLI said:\n" + cli.communicate()[1][-3000:]
    raise AssertionError("condition not met in time" + said)


def check_exactly_once(out_dir: Path, inputs: dict[str, pd.DataFrame]) -> dict[str, Any]:
    summary = json.loads((out_dir / "_summary.json").read_text())
    expected = {(name, row) for name, frame in inputs.items() for row in range(len(frame))}
    path = out_dir / "predictions.csv"
    empty = not path.exists() or path.stat().st_size == 0  # no row scored: an empty file
    out = pd.DataFrame(columns=["source", "row", "prediction"]) if empty else pd.read_csv(path)
    scored = list(zip(out["source"], out["row"], strict=True))
    assert len(scored) == len(set(scored)), "a row was written twice"
    failed: set[tuple[str, int]] = set()
    for failure in summary["failures"]:
        rows = (range(failure["row"], failure["row"] + failure["items"]) if failure["row"] is not None
                else range(len(inputs[failure["source"]])))
        for row in rows:
            assert (failure["source"], row) not in failed, "a row failed twice"
            failed.add((failure["source"], row))
    assert not failed & set(scored), "a row both scored and failed"
    assert failed | set(scored) == expected, "a row was lost"
    by_key = {(s, r): p for s, r, p in zip(out["source"], out["row"], out["prediction"], strict=True)}
    for name, frame in inputs.items():
        for row, x in enumerate(frame["x"]):
            if (name, row) in by_key:
                assert by_key[(name, row)] == 2 * x
    assert summary["succeeded_items"] == len(scored) and summary["failed_items"] == len(failed)
    return summary


def test_kill_9_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(7)
    for trial in range(3):
        root = tmp_path / f"t{trial}"
        inputs = write_inputs(root / "in", [{"rows": 40, "sleep_s": 0.4} for _ in range(16)])
        deployment = make_deployment(root / "dep", script="score_faults.py", payload="dataframe", level="file",
                                     mini_batch_size=2)
        cli = start(root, deployment)
        kills = 0
        wait_until(lambda: scoring_processes(cli), 90)  # noqa: B023 - the lambda runs now
        while kills < 3 and cli.poll() is None:
            time.sleep(rng.uniform(0.3, 1.5))
            victims = supervisors(cli) if rng.random() < 0.5 else scoring_processes(cli)
            if victims:
                rng.choice(victims).send_signal(signal.SIGKILL)
                kills += 1
        assert finish(cli) == 0
        summary = check_exactly_once(root / "out", inputs)
        assert summary["failed_items"] == 0 and kills > 0


def test_memory_cap_kill_falls_back_to_a_finer_level(tmp_path: Path) -> None:
    # a mini-batch of 4 files needs ~4 x 150 MiB on top of the process; one file fits under the 450 MiB cap
    inputs = write_inputs(tmp_path / "in", [{"rows": 100, "mem_kb": 1536} for _ in range(4)])
    resources = {"instance_count": 1, "max_concurrency_per_instance": 1, "memory_mib": 450}
    deployment = make_deployment(tmp_path / "dep", script="score_faults.py", payload="dataframe",
                                 level="mini_batch", mini_batch_size=4, resources=resources)
    assert finish(start(tmp_path, deployment)) == 0
    summary = check_exactly_once(tmp_path / "out", inputs)
    assert summary["memory_fallbacks"] == [{"batch_id": "b000000", "killed_at": ["mini_batch"], "level": "file"}]
    assert summary["batches"][0]["level"] == "file"


def test_memory_cap_kill_without_fallback_fails_the_items_with_a_reason(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in", [{"rows": 100, "mem_kb": 1536} for _ in range(4)])
    resources = {"instance_count": 1, "max_concurrency_per_instance": 1, "memory_mib": 450}
    deployment = make_deployment(tmp_path / "dep", script="score_faults.py", payload="dataframe",
                                 level="mini_batch", mini_batch_size=4, resources=resources, memory_fallback=False)
    assert finish(start(tmp_path, deployment)) == 0  # error_threshold -1: failures are reported, not fatal
    summary = check_exactly_once(tmp_path / "out", inputs)
    assert summary["failed_items"] == 400
    assert "over its cap of 450 MiB" in summary["failures"][0]["reason"]


def test_poison_batch_and_timeouts_fail_alone_and_the_rest_completes(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in", [{"rows": 10}, {"rows": 10, "crash": 1}, {"rows": 10, "sleep_s": 30},
                                             {"rows": 10}, {"rows": 10}])
    deployment = make_deployment(tmp_path / "dep", script="score_faults.py", payload="dataframe", level="file",
                                 mini_batch_size=1, error_threshold=20,
                                 retry_settings={"max_retries": 1, "timeout": 1})
    assert finish(start(tmp_path, deployment)) == 0  # 20 failed rows, within the threshold of 20
    summary = check_exactly_once(tmp_path / "out", inputs)
    reasons = {f["source"]: f["reason"] for f in summary["failures"]}
    assert reasons["f001.csv"].startswith("the batch was delivered 2 time(s) and never completed")
    assert "exit code 3" in reasons["f001.csv"]
    assert reasons["f002.csv"] == "RunTimeout: run() did not return within retry_settings.timeout"
    assert summary["succeeded_items"] == 30 and summary["status"] == "succeeded"


def test_sigterm_hands_the_batch_back_after_the_grace_period(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in", [{"rows": 5, "sleep_s": 4} for _ in range(4)])
    started = tmp_path / "started"
    started.mkdir()
    deployment = make_deployment(tmp_path / "dep", script="score_faults.py", payload="dataframe", level="file",
                                 mini_batch_size=1, environment_variables={"FAULTS_STARTED_DIR": str(started)})
    cli = start(tmp_path, deployment, "--worker-stop-grace", "1")
    first = wait_until(lambda: sorted(started.iterdir()), 90)[0]  # a 4 s run() call began
    scoring_pid = int(first.name.split("-")[0])
    psutil.Process(scoring_pid).parent().send_signal(signal.SIGTERM)  # its supervisor: 1 s grace, then hand back
    assert finish(cli) == 0
    summary = check_exactly_once(tmp_path / "out", inputs)
    assert summary["failed_items"] == 0
    assert max(b["deliveries"] for b in summary["batches"]) == 2  # the handed-back batch ran again


def test_duplicated_messages_count_once_and_heartbeats_keep_long_batches(tmp_path: Path) -> None:
    from moto.server import ThreadedMotoServer

    from batchscore.aws import AwsTarget
    from batchscore.jobs_table import JobsTable
    from batchscore.records import WorkMessage

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        target = AwsTarget(endpoint_url=f"http://{host}:{port}")
        # one batch of 14 s (the slow file alone): longer than the local 10 s visibility timeout
        inputs = write_inputs(tmp_path / "in", [{"rows": 5, "sleep_s": 14}] + [{"rows": 5} for _ in range(5)])
        started = tmp_path / "started"
        started.mkdir()
        deployment = make_deployment(tmp_path / "dep", script="score_faults.py", payload="dataframe",
                                     level="file", mini_batch_size=2, max_mini_batch_bytes=60,
                                     environment_variables={"FAULTS_STARTED_DIR": str(started)})
        cli = start(tmp_path, deployment, "--endpoint-url", target.endpoint_url, "--job-id", "dup")
        cfn = target.client("cloudformation")
        outputs = wait_until(lambda: [s.get("Outputs") for s in cfn.describe_stacks()["Stacks"]
                                      if s.get("Outputs")], 60)[0]
        values = {o["OutputKey"]: o["OutputValue"] for o in outputs}
        jobs = JobsTable.connect(values["JobsTableName"], target)
        wait_until(lambda: (job := jobs.get_job("dup")) is not None and job.status == "running", 60, cli)
        sqs = target.client("sqs")
        for batch in jobs.batches("dup")[1:]:  # every batch but the slow one enqueued a second time
            sqs.send_message(QueueUrl=values["WorkQueueUrl"],
                             MessageBody=WorkMessage(job_id="dup", batch_id=batch.batch_id).model_dump_json())
        assert finish(cli) == 0
        summary = check_exactly_once(tmp_path / "out", inputs)
        assert summary["failed_items"] == 0
        # the slow file's run() was called once: its message was not handed to the second worker meanwhile
        assert [p.name.split("-")[1] for p in started.iterdir()].count("0") == 1
    finally:
        server.stop()
