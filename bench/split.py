"""Splitter throughput and memory against floors measured in the same run.

    python bench/split.py [--size-mb 1024] [--shard-mb 64] [--workdir DIR]

Makes a CSV with quoted fields (embedded commas, quotes and newlines) and a Parquet file of about --size-mb each,
then times, one after another:
  - CSV:     `batchscore split` vs GNU `split -C` (line-aligned byte copy: the floor for this work)
  - Parquet: `batchscore split` vs reading and rewriting the whole file with pyarrow
and prints wall times, peak RSS of each process, and the ratios (targets: CSV >= 0.7x split -C in throughput,
Parquet >= 1.0x the rewrite, peak RSS < 200 MB).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MiB = 1024**2


def make_csv(path: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    with path.open("wb") as handle:
        handle.write(b"id,name,comment,amount,flag\n")
        written, i = 0, 0
        while written < size:
            n = 50_000
            ids = np.arange(i, i + n)
            amounts = rng.random(n) * 1000
            lines = []
            for k in range(n):
                comment = '"said ""hi"", then\nleft"' if k % 10 == 0 else "plain text here"
                lines.append(f'{ids[k]},"Name, {ids[k] % 977}",{comment},{amounts[k]:.4f},{k % 2}\n')
            block = "".join(lines).encode()
            handle.write(block)
            written += len(block)
            i += n


def make_parquet(path: Path, size: int) -> None:
    rng = np.random.default_rng(1)
    with pq.ParquetWriter(path, pa.schema([("id", pa.int64()), ("v", pa.float64()), ("s", pa.string())])) as w:
        i = 0
        while not path.exists() or path.stat().st_size < size:
            n = 1_000_000
            w.write_table(pa.table({"id": np.arange(i, i + n), "v": rng.random(n),
                                    "s": pa.array(rng.integers(0, 10**9, n).astype(str))}), row_group_size=n)
            i += n
            if i > 400_000_000:
                break


def timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command, measured by GNU time (a fork of this Python process would
    count this process's memory as the child's)."""
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return wall, int(proc.stderr.strip().splitlines()[-1]) / 1024


REWRITE = ("import pyarrow.parquet as pq, sys\n"
           "pq.write_table(pq.read_table(sys.argv[1]), sys.argv[2])\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--shard-mb", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        make_csv(args.generate / "data.csv", args.size_mb * MiB)
        make_parquet(args.generate / "data.parquet", args.size_mb * MiB)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-split-", dir=args.workdir))
    batchscore = [sys.executable, "-m", "batchscore.cli", "split"]
    try:
        csv, parquet = work / "data.csv", work / "data.parquet"
        print(f"generating {args.size_mb} MB CSV and Parquet in {work} ...", flush=True)
        # in a child process: a forked child's peak RSS would otherwise include this process's memory
        subprocess.run([sys.executable, __file__, "--generate", str(work), "--size-mb", str(args.size_mb)],
                       check=True)
        size_csv, size_pq = csv.stat().st_size / MiB, parquet.stat().st_size / MiB
        shard = f"{args.shard_mb}MiB"
        # warm the page cache so both sides read from memory
        subprocess.run(["cat", str(csv), str(parquet)], stdout=subprocess.DEVNULL, check=True)
        (work / "gnu").mkdir()
        gnu_s, gnu_rss = timed(["split", "-C", f"{args.shard_mb}M", str(csv), "part-"], cwd=work / "gnu")
        ours_s, ours_rss = timed([*batchscore, str(csv), "--max-shard-bytes", shard, "-o", str(work / "ours-csv")])
        rw_s, rw_rss = timed([sys.executable, "-c", REWRITE, str(parquet), str(work / "rewrite.parquet")])
        pq_s, pq_rss = timed([*batchscore, str(parquet), "--max-shard-bytes", shard, "-o", str(work / "ours-pq")])
        print(f"\nCSV {size_csv:.0f} MB, shards of {shard}")
        print(f"  GNU split -C      {gnu_s:7.2f} s  {size_csv / gnu_s:7.0f} MB/s  peak RSS {gnu_rss:6.0f} MB")
        print(f"  batchscore split  {ours_s:7.2f} s  {size_csv / ours_s:7.0f} MB/s  peak RSS {ours_rss:6.0f} MB")
        print(f"  throughput ratio ours/GNU: {gnu_s / ours_s:.2f}x   (target >= 0.70x)")
        print(f"\nParquet {size_pq:.0f} MB, shards of {shard}")
        print(f"  pyarrow rewrite   {rw_s:7.2f} s  {size_pq / rw_s:7.0f} MB/s  peak RSS {rw_rss:6.0f} MB")
        print(f"  batchscore split  {pq_s:7.2f} s  {size_pq / pq_s:7.0f} MB/s  peak RSS {pq_rss:6.0f} MB")
        print(f"  throughput ratio ours/rewrite: {rw_s / pq_s:.2f}x   (target >= 1.00x)")
        print(f"\npeak RSS target < 200 MB: csv {ours_rss:.0f} MB, parquet {pq_rss:.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
