"""The whole local pipeline through the CLI: S3 upload -> ingest -> dispatch -> workers -> finalize -> OUT_DIR."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import make_deployment, make_inputs

pytestmark = pytest.mark.e2e


def run_cli(*args: str | Path, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchscore.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def read_output(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True)
    return pd.read_csv(path)


@pytest.mark.parametrize(
    ("level", "output"),
    [("mini_batch", "predictions.csv"), ("file", "predictions.parquet"), ("row", "predictions.jsonl")],
)
def test_dataframe_payload_scores_every_row_exactly_once(tmp_path: Path, level: str, output: str) -> None:
    # GIVEN skewed files (one big, several small, one empty of rows) in mixed formats
    inputs = make_inputs(tmp_path / "in", [900, 40, 35, 0, 25])
    inputs |= {f"sub/{k}": v for k, v in make_inputs(tmp_path / "in" / "sub", [30], fmt="parquet").items()}
    deployment = make_deployment(tmp_path / "dep", payload="dataframe", level=level, mini_batch_size=2,
                                 row_batch_size=7, keep_columns=["label"], output_file_name=output,
                                 max_shard_bytes="4KiB")
    # WHEN the folder is run through the local pipeline
    result = run_cli("local", "run", tmp_path / "in", "--deployment", deployment, "--output", tmp_path / "out")
    # THEN it succeeds and every input row appears once, with its source, row number and prediction
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert summary["status"] == "succeeded"
    assert summary["input_files"] == 6
    assert summary["shards"] >= 10  # the big file was split, and its rows keep their original numbers
    assert summary["succeeded_items"] == 900 + 40 + 35 + 25 + 30
    assert summary["failed_items"] == 0
    out = read_output(tmp_path / "out" / output)
    expected = pd.concat([frame.assign(source=name, row=range(len(frame))) for name, frame in inputs.items()])
    assert len(out) == len(expected)
    assert not out.duplicated(["source", "row"]).any()
    merged = expected.merge(out, on=["source", "row"], how="left", suffixes=("", "_out"))
    assert (merged["prediction"] == merged["x"] * 2).all()
    assert (merged["label_out"] == merged["label"]).all()
    # rows come ordered by source, then row
    assert list(out["source"]) == sorted(out["source"])
    assert out.groupby("source")["row"].apply(lambda r: r.is_monotonic_increasing).all()


@pytest.mark.parametrize("level", ["mini_batch", "file"])
def test_paths_payload_gives_run_the_files(tmp_path: Path, level: str) -> None:
    inputs = make_inputs(tmp_path / "in", [50, 20, 20, 10, 5])
    deployment = make_deployment(tmp_path / "dep", payload="paths", level=level, mini_batch_size=2)
    result = run_cli("local", "run", tmp_path / "in", "-d", deployment, "-o", tmp_path / "out", "--job-id", "j1")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert (summary["succeeded_items"], summary["mini_batches"], summary["job_id"]) == (5, 3, "j1")
    out = pd.read_csv(tmp_path / "out" / "predictions.csv")
    # run() saw each file under its own name, and each row of each file once
    assert sorted(out["file"].unique()) == sorted(inputs)
    assert sorted(out["x"]) == sorted(pd.concat(inputs.values())["x"])
    assert (out["y"] == out["x"] * 2).all()
    assert (tmp_path / "out" / "_SUCCESS").exists()


def test_failures_over_the_threshold_fail_the_job_but_lose_nothing_else(tmp_path: Path) -> None:
    # GIVEN rows that make run() raise, and a corrupt Parquet file
    make_inputs(tmp_path / "in", [20, 20, 20], fail_x=(3, 45))
    (tmp_path / "in" / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    deployment = make_deployment(tmp_path / "dep", payload="dataframe", level="row", row_batch_size=1,
                                 error_threshold=1, retry_settings={"max_retries": 1, "timeout": 30})
    result = run_cli("local", "run", tmp_path / "in", "-d", deployment, "-o", tmp_path / "out")
    # THEN the job fails (3 failed items > threshold 1), exit code 1, and each failure says why
    assert result.returncode == 1, result.stderr
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["succeeded_items"] == 58
    assert summary["failed_items"] == 3
    reasons = {(f["source"], f["row"]): f["reason"] for f in summary["failures"]}
    assert reasons[("part-000.csv", 3)] == "ValueError: cannot score x=3"
    assert reasons[("part-002.csv", 5)] == "ValueError: cannot score x=45"
    assert "broken.parquet" in reasons[("broken.parquet", None)]
    assert (tmp_path / "out" / "_FAILED").exists()
    # the rows that did score are all in the output
    out = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert len(out) == 58 and set(out["prediction"] // 2) == set(range(60)) - {3, 45}
    # the script's traceback is kept for the user
    errors = "".join(p.read_text() for p in (tmp_path / "out" / "_errors").iterdir())
    assert "score.py" in errors and "cannot score x=3" in errors


def test_init_failure_fails_fast_with_the_scripts_traceback(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in", [10, 10, 10])
    deployment = make_deployment(tmp_path / "dep", script="score_init_fails.py", payload="dataframe")
    result = run_cli("local", "run", tmp_path / "in", "-d", deployment, "-o", tmp_path / "out", timeout=120)
    assert result.returncode == 1
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert summary["status"] == "failed"
    assert "init() of the scoring script failed: FileNotFoundError: weights.bin is missing" in summary["error"]
    # the user's own frames, not the runtime's
    assert 'score.py", line 2, in load_weights' in summary["error"]
    assert "container/runtime.py" not in summary["error"]


def test_configuration_errors_exit_2_naming_the_setting(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in", [5])
    deployment = make_deployment(tmp_path / "dep", payload="paths", level="row", mini_batch_size=0)
    result = run_cli("local", "run", tmp_path / "in", "-d", deployment, "-o", tmp_path / "out")
    assert result.returncode == 2
    assert "settings.mini_batch_size" in result.stderr
    assert str(deployment) in result.stderr
    missing = run_cli("local", "run", tmp_path / "nope", "-d", make_deployment(tmp_path / "ok"), "-o", tmp_path / "o")
    assert missing.returncode == 2 and "nope" in missing.stderr


def test_per_job_settings_and_status_against_a_running_emulator(tmp_path: Path) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        make_inputs(tmp_path / "in", [5, 5, 5])
        deployment = make_deployment(tmp_path / "dep", payload="dataframe", level="file", mini_batch_size=10)
        common = ["--endpoint-url", endpoint, "--stack-name", "keep"]
        result = run_cli("local", "run", tmp_path / "in", "-d", deployment, "-o", tmp_path / "out", "--job-id",
                         "j1", "--set", "mini_batch_size=1", "--set", "output_file_name=p.jsonl", *common)
        assert result.returncode == 0, result.stderr
        summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
        assert summary["mini_batches"] == 3 and summary["output_file"] == "p.jsonl"
        status = run_cli("status", "j1", *common, "--json")
        report = json.loads(status.stdout)
        assert (report["status"], report["batches_done"], report["succeeded_items"]) == ("succeeded", 3, 15)
        assert run_cli("status", "nope", *common).returncode == 2
        bad = run_cli("local", "run", tmp_path / "in", "-d", deployment, "-o", tmp_path / "o2", "--set",
                      "level=row", *common)
        assert bad.returncode == 2 and "level cannot be set per job" in bad.stderr
    finally:
        server.stop()


def test_summary_only_keeps_what_the_script_writes_itself(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "in", [4, 6])
    deployment = make_deployment(tmp_path / "dep", script="score_bi_output.py", payload="paths",
                                 output_action="summary_only")
    result = run_cli("local", "run", tmp_path / "in", "-d", deployment, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "out" / "predictions.csv").exists()
    for name, frame in inputs.items():
        scored = pd.read_csv(tmp_path / "out" / name.replace(".csv", "-scored.csv"))
        assert list(scored["x"]) == list(frame["x"] * 2)
    assert json.loads((tmp_path / "out" / "_summary.json").read_text())["output_file"] is None
