"""A job explains itself: JSON log lines with the work's keys (the script's own print and logging included), and
embedded-metric-format records kept with the outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_deployment, make_inputs

pytestmark = pytest.mark.e2e


def test_script_output_and_worker_logs_carry_the_keys_and_metrics_add_up(tmp_path: Path) -> None:
    # GIVEN a script that prints and logs, and a job of three files scored one file at a time
    make_inputs(tmp_path / "in", [30, 20, 10])
    deployment = make_deployment(tmp_path / "dep", script="score_chatty.py", payload="dataframe", level="file",
                                 mini_batch_size=1, logging_level="info")
    # WHEN the job runs
    result = subprocess.run([sys.executable, "-m", "batchscore.cli", "local", "run", str(tmp_path / "in"), "-d",
                             str(deployment), "-o", str(tmp_path / "out"), "--job-id", "talk", "-q",
                             "--worker-log", str(tmp_path / "workers.log")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "workers.log").read_text().splitlines()
             if line.startswith("{")]
    # THEN the script's print() and logging are JSON lines with the worker, job, batch and file they came from
    printed = [r for r in lines if r["message"].startswith("scoring ")]
    assert sorted(r["message"] for r in printed) == ["scoring 10 rows", "scoring 20 rows", "scoring 30 rows"]
    for record in printed:
        assert record["job_id"] == "talk" and record["batch_id"].startswith("b") and record["worker"]
        assert record["stream"] == "stdout"
    by_source = {r["source"]: r for r in lines if r["message"].startswith("first x is")}
    assert set(by_source) == {"part-000.csv", "part-001.csv", "part-002.csv"}
    assert by_source["part-001.csv"]["level"] == "WARNING" and by_source["part-001.csv"]["message"] == "first x is 30"
    assert any(r["message"] == "model loaded" for r in lines)
    # AND the workers log each batch they finish, with its keys
    done = [r for r in lines if r["message"] == "batch done"]
    assert len(done) == 3 and all(r["job_id"] == "talk" for r in done)
    # AND the metrics records kept with the outputs add up to the summary
    records = [json.loads(line) for line in (tmp_path / "out" / "_metrics.jsonl").read_text().splitlines()]
    worker = [r for r in records if r["service"] == "worker"]
    assert all(r["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "batchscore" for r in records)
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert sum(r["ItemsScored"][0] for r in worker) == summary["succeeded_items"] == 60
    assert sum(r["BatchesDone"][0] for r in worker) == summary["mini_batches"] == 3
    assert all(r["MemoryPeak"][0] > 0 and r["job_id"] == "talk" for r in worker)
