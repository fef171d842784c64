"""The headline claim: one huge file among small ones finishes about as fast as the same rows spread evenly.

    python bench/skew.py [--rows 2000000] [--workers 2]

Generates the same rows twice, once skewed (one file holds 80% of them, the rest in small files) and once even
(equal files), trains the example model, and runs each through `batchscore local run` (dataframe payload, file
level, the embedded emulator), with the splitter on (max_shard_bytes small enough to split the big file) and off.
Prints each job's wall time and the ratios skewed / even (target with splitting on: at most 1.15).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "tabular"))
from generate_data import make_rows  # noqa: E402
from train import train  # noqa: E402


def write_files(folder: Path, sizes: list[int]) -> int:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first = 0
    for i, n in enumerate(sizes):
        make_rows(rng, n, first).to_csv(folder / f"part-{i:04d}.csv", index=False)
        first += n
    return sum((folder / f"part-{i:04d}.csv").stat().st_size for i in range(len(sizes)))


def deployment(folder: Path, model_dir: Path, name: str, max_shard: str, workers: int) -> Path:
    body = {"name": name, "code_configuration": {"code": str(ROOT / "examples/tabular/code"),
                                                 "scoring_script": "score.py"},
            "model": str(model_dir),
            "settings": {"payload": "dataframe", "level": "file", "mini_batch_size": 4, "max_shard_bytes": max_shard,
                         "output_file_name": "predictions.parquet"},
            "resources": {"instance_count": 1, "max_concurrency_per_instance": workers, "memory_mib": 4096 * workers}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def run(inputs: Path, dep: Path, out: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "batchscore.cli", "local", "run", str(inputs), "-d", str(dep),
                             "-o", str(out), "-q"], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"run failed: {result.stderr[-2000:]}")
    return wall, json.loads((out / "_summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--small-files", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case; the median counts")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-skew-"))
    model = work / "model"
    train(model)
    big = int(args.rows * 0.8)
    skewed = [big] + [(args.rows - big) // args.small_files] * args.small_files
    skewed[-1] += args.rows - sum(skewed)
    even_count = args.small_files + 1
    even = [args.rows // even_count] * even_count
    even[-1] += args.rows - sum(even)
    total = write_files(work / "skewed", skewed)
    write_files(work / "even", even)
    # on: shards of about a fair share of the job; off: nothing is ever split
    shard = f"{max(1, total // (8 * args.workers) // 1024)}KiB"
    print(f"{args.rows:,} rows, {total / 1024**2:.0f} MB of CSV; skewed: 1 file of 80% + {args.small_files} small; "
          f"even: {even_count} equal files; {args.workers} workers; splitter on = max_shard_bytes {shard}")
    times: dict[tuple[str, str], list[float]] = {}
    for attempt in range(args.repeat):  # cases interleaved, so drift on a noisy machine hits them alike
        for label, max_shard in (("on", shard), ("off", "100GB")):
            for layout in ("skewed", "even"):
                dep = deployment(work, model, f"skew-{label}-{layout}", max_shard, args.workers)
                wall, summary = run(work / layout, dep, work / f"out-{label}-{layout}-{attempt}")
                job_s = summary["local"]["job_s"]  # first upload to the job's end: splitting included
                times.setdefault((label, layout), []).append(job_s)
                print(f"  splitter {label:3s} {layout:6s}: job {job_s:6.2f} s (command {wall:6.2f} s), "
                      f"{summary['shards']} shards, {summary['mini_batches']} batches, "
                      f"{summary['succeeded_items']:,} rows", flush=True)
    results = {case: statistics.median(values) for case, values in times.items()}
    for label in ("on", "off"):
        ratio = results[(label, "skewed")] / results[(label, "even")]
        target = "  (target <= 1.15)" if label == "on" else ""
        print(f"skewed / even, splitter {label}: {ratio:.2f}{target}")


if __name__ == "__main__":
    main()
