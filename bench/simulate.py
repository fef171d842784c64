"""Makespan at scale, by discrete-event simulation of the real packing and splitting plan.

    python bench/simulate.py [--max-shard-mb 64] [--mini-batch-size 10]

For synthetic file-size distributions (lognormal and Zipf; 100 to 100,000 files) on 1 to 1,000 simulated
workers, it compares makespan / ideal (ideal = total work / workers, where total work is the scoring time plus
the overhead of the fewest batches that mini_batch_size allows) of:
  - Azure's behaviour: mini-batches of `mini_batch_size` files in listing order, no splitting, handed to
    workers first come first served;
  - ours: files split by the splitter's plan (splitter.plan.shard_sizes), packed by functions.dispatch.pack with
    the fair-share limit (functions.dispatch.batch_byte_limit), largest batch first (as dispatch enqueues).
A worker's throughput (bytes/s of CSV parsed and scored by the example model) is measured on this machine first;
each batch also pays a fixed overhead (download, records, upload). Target for ours: at most 1.10 wherever there
is enough work to go round (each worker can get at least 4 full shards).
"""

from __future__ import annotations

import argparse
import heapq
import io
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "tabular"))

from batchscore.config import parse_deployment  # noqa: E402
from batchscore.records import Shard  # noqa: E402
from functions.dispatch import batch_byte_limit, pack  # noqa: E402
from splitter.plan import shard_sizes  # noqa: E402

BATCH_OVERHEAD_S = 0.05  # per batch: a download, two record writes and an upload, measured locally
MiB = 1024**2


def measure_throughput() -> float:
    """Bytes of CSV per second one worker parses and scores with the example model."""
    from generate_data import FEATURES, make_rows
    from train import train

    model_path = train(Path("/tmp/bench-simulate-model"))
    model = pickle.loads(model_path.read_bytes())
    data = make_rows(np.random.default_rng(0), 200_000, 0).to_csv(index=False).encode()
    started = time.perf_counter()
    frame = pd.read_csv(io.BytesIO(data))
    model.predict_proba(frame[FEATURES])
    return len(data) / (time.perf_counter() - started)


def makespan(batch_seconds: list[float], workers: int) -> float:
    """Greedy: each batch, in the given order, goes to the worker that frees up first."""
    free = [0.0] * min(workers, max(1, len(batch_seconds)))
    heapq.heapify(free)
    for seconds in batch_seconds:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free)


def azure(sizes: np.ndarray, workers: int, mini_batch_size: int, rate: float) -> float:
    batches = [sizes[i:i + mini_batch_size].sum() for i in range(0, len(sizes), mini_batch_size)]
    return makespan([b / rate + BATCH_OVERHEAD_S for b in batches], workers)


def ours(sizes: np.ndarray, workers: int, deployment, rate: float) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    limit = int(deployment.settings.max_shard_bytes)
    shards = [Shard(key=f"j/{i}/{k}", source=f"j/{i}", bytes=b)
              for i, size in enumerate(sizes) for k, b in enumerate(shard_sizes(int(size), limit))]
    byte_limit = batch_byte_limit(deployment.settings, int(sizes.sum()), workers)
    batches = pack(shards, deployment.settings.mini_batch_size, byte_limit)
    seconds = sorted((sum(s.bytes for s in b) / rate + BATCH_OVERHEAD_S for b in batches), reverse=True)
    return makespan(seconds, workers), len(shards)


def distributions(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    lognormal = rng.lognormal(mean=np.log(8 * MiB), sigma=1.5, size=n)
    ranks = np.arange(1, n + 1)
    zipf = 4 * 1024 * MiB / ranks**1.1  # the largest file 4 GiB, then a long tail
    return {"lognormal": np.maximum(lognormal, 1024).astype(np.int64),
            "zipf": np.maximum(rng.permutation(zipf), 1024).astype(np.int64)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-shard-mb", type=int, default=64)
    parser.add_argument("--mini-batch-size", type=int, default=10)
    parser.add_argument("--rate-mb-s", type=float, default=None, help="skip the measurement; use this rate")
    args = parser.parse_args()
    rate = args.rate_mb_s * MiB if args.rate_mb_s else measure_throughput()
    deployment = parse_deployment({"name": "sim", "code_configuration": {"code": ".", "scoring_script": "s.py"},
                                   "settings": {"mini_batch_size": args.mini_batch_size,
                                                "max_shard_bytes": args.max_shard_mb * MiB}})
    print(f"worker throughput {rate / MiB:.1f} MB/s (measured), batch overhead {BATCH_OVERHEAD_S} s, "
          f"max_shard_bytes {args.max_shard_mb} MiB, mini_batch_size {args.mini_batch_size}")
    print(f"{'sizes':10s} {'files':>7s} {'workers':>7s} {'GB':>8s} {'shards':>7s}  {'azure':>7s} {'ours':>7s}  "
          f"enough work")
    rng = np.random.default_rng(0)
    worst = 0.0
    for n in (100, 1_000, 10_000, 100_000):
        for name, sizes in distributions(rng, n).items():
            for workers in (1, 10, 100, 1_000):
                # the contract caps a batch at mini_batch_size files: that many batches' overhead is unavoidable
                least_batches = -(-n // args.mini_batch_size)
                ideal = (sizes.sum() / rate + least_batches * BATCH_OVERHEAD_S) / workers
                ours_s, shards = ours(sizes, workers, deployment, rate)
                enough = sizes.sum() >= 4 * workers * args.max_shard_mb * MiB
                if enough:
                    worst = max(worst, ours_s / ideal)
                print(f"{name:10s} {n:7d} {workers:7d} {sizes.sum() / 1e9:8.1f} {shards:7d}  "
                      f"{azure(sizes, workers, args.mini_batch_size, rate) / ideal:7.2f} {ours_s / ideal:7.2f}  "
                      f"{'yes' if enough else 'no'}")
    print(f"worst ours where there is enough work: {worst:.2f} (target <= 1.10)")


if __name__ == "__main__":
    main()
