"""`batchscore report` on a real local job: the page shows the job's figures, failures and settings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_deployment, make_inputs

pytestmark = pytest.mark.e2e


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchscore.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_report_of_a_real_job_shows_its_sizes_timeline_memory_failures_and_settings(tmp_path: Path) -> None:
    # GIVEN a finished job with one big file (split into shards) and one failing row
    make_inputs(tmp_path / "in", [6000, 50, 50], fail_x=(6010,))
    deployment = make_deployment(tmp_path / "dep", payload="dataframe", level="file", mini_batch_size=2,
                                 max_shard_bytes="64KiB", keep_columns=["label"])
    assert cli("local", "run", tmp_path / "in", "-d", deployment, "-o", tmp_path / "out", "-q").returncode == 0
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    # WHEN its report is rendered
    result = cli("report", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "out" / "report.html").read_text()
    # THEN it is one self-contained page: four charts embedded, nothing fetched from elsewhere
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 4 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "http://" not in page and "https://" not in page
    # AND it carries the job's own figures, its failure with the script's reason, and its settings
    assert f"Job {summary['job_id']}" in page and "succeeded" in page
    assert f"{summary['shards']} shard(s)" in page and f"{summary['succeeded_items']} rows scored" in page
    assert summary["shards"] > 3  # the big file was split: the sizes chart has something to show
    # (at file level the failing row fails its whole file: 50 rows from row 0)
    assert "<td>part-001.csv (row 0)</td><td>ValueError: cannot score x=6010</td><td>50</td>" in page
    assert "&quot;max_shard_bytes&quot;: 65536" in page


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Chromium (.ci/run installs it)")
def test_the_report_renders_in_headless_chromium_without_console_errors(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in", [300, 40])
    deployment = make_deployment(tmp_path / "dep", payload="dataframe", level="file")
    assert cli("local", "run", tmp_path / "in", "-d", deployment, "-o", tmp_path / "out", "-q").returncode == 0
    assert cli("report", tmp_path / "out").returncode == 0
    shot = tmp_path / "report.png"
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1000,2000",
         (tmp_path / "out" / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "report.html" in line]
    assert not console, console
