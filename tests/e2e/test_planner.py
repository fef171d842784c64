"""`batchscore plan` against real jobs: what it approves runs without a memory kill, what it rejects is killed,
and its predicted peak is close to the peak the workers measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_deployment, make_inputs

pytestmark = pytest.mark.e2e


def cli(*args: str | Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "batchscore.cli", *map(str, args)], capture_output=True,
                            text=True, timeout=timeout)
    return result


def test_plan_rejects_what_gets_killed_and_its_recommendation_runs_within_the_cap(tmp_path: Path) -> None:
    # GIVEN a script whose model takes 64 MiB and which holds 10 KiB per row it scores, workers capped at 512 MiB,
    # and files of 40,000 rows: scoring a whole file at once needs about 400 MiB more than after init()
    make_inputs(tmp_path / "in", [40_000, 40_000, 30_000])
    make_inputs(tmp_path / "sample", [40_000])
    deployment = make_deployment(tmp_path / "dep", script="score_memory.py", payload="dataframe", level="file",
                                 mini_batch_size=1, memory_fallback=False,
                                 environment_variables={"MEM_KB_PER_ROW": "10", "MODEL_MIB": "64"},
                                 resources={"instance_count": 1, "max_concurrency_per_instance": 1,
                                            "memory_mib": 512})
    # WHEN the planner measures the script on the sample and looks at the input's sizes
    planned = cli("plan", "-d", deployment, "--sample", tmp_path / "sample", "--data", tmp_path / "in", "--json")
    assert planned.returncode == 0, planned.stderr
    report = json.loads(planned.stdout)
    levels = {row["level"]: row for row in report["levels"]}
    # THEN memory grows with the input at file level (not at row level, which streams), and the current
    # settings are rejected
    assert report["fits"]["file"]["mib_per_input_mib"] > 100
    assert 8 <= report["fits"]["file"]["kib_per_row"] <= 12.5  # the script holds 10 KiB per row
    assert 48 <= report["model_mib"] <= 80  # the script's model: 64 MiB over the runtime's own memory
    assert not levels["file"]["fits"] and levels["row"]["fits"]
    assert report["current"].startswith("does not fit")
    # AND the rejected settings do get killed for memory when run
    rejected = cli("local", "run", tmp_path / "in", "-d", deployment, "-o", tmp_path / "rejected", "-q")
    summary = json.loads((tmp_path / "rejected" / "_summary.json").read_text())
    assert summary["failed_items"] > 0, rejected.stderr
    assert any("over its cap of 512 MiB" in f["reason"] for f in summary["failures"])

    # WHEN its recommendation is written into the deployment file
    written = cli("plan", "-d", deployment, "--sample", tmp_path / "sample", "--data", tmp_path / "in", "--write",
                  "--json")
    assert written.returncode == 0, written.stderr
    recommended = json.loads(written.stdout)["recommended"]
    settings = yaml.safe_load(deployment.read_text())["settings"]
    assert recommended["level"] == "file"  # the configured level, with smaller shards
    assert settings["max_shard_bytes"] == recommended["max_shard_bytes"] < 900_000
    # THEN the job runs with every row scored and no memory kill
    approved = cli("local", "run", tmp_path / "in", "-d", deployment, "-o", tmp_path / "approved", "-q")
    assert approved.returncode == 0, approved.stderr
    summary = json.loads((tmp_path / "approved" / "_summary.json").read_text())
    assert summary["succeeded_items"] == 110_000 and summary["failed_items"] == 0
    assert not summary.get("memory_fallbacks")
    # AND the predicted peak is within 25% of the largest peak the workers measured
    measured = max(b["peak_rss_mib"] for b in summary["batches"])
    assert abs(recommended["predicted_peak_mib"] - measured) <= 0.25 * measured, (recommended, measured)


def test_plan_says_which_file_is_missing(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "dep", payload="dataframe")
    result = cli("plan", "-d", deployment, "--sample", tmp_path / "nowhere")
    assert result.returncode == 2
    assert f"--sample {tmp_path / 'nowhere'}: not a folder" in result.stderr
