"""Make a folder of churn-like CSV files: one big file and several small ones (the skew batchscore removes).

    python examples/tabular/generate_data.py OUT_DIR [--files 8] [--rows 20000] [--big-share 0.5] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "contract_years", "late_payments"]


def make_rows(rng: np.random.Generator, n: int, first_id: int) -> pd.DataFrame:
    tenure = rng.integers(0, 72, n)
    frame = pd.DataFrame({
        "customer_id": np.arange(first_id, first_id + n),
        "tenure_months": tenure,
        "monthly_charges": rng.normal(65, 20, n).round(2).clip(10, 150),
        "support_calls": rng.poisson(1.5, n),
        "contract_years": rng.choice([0, 1, 2], n, p=[0.5, 0.3, 0.2]),
        "late_payments": rng.poisson(0.5, n),
        "region": rng.choice(["north, east", "south", 'west "coast"'], n),
    })
    return frame


def churn_label(frame: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    score = (-0.04 * frame["tenure_months"] + 0.02 * frame["monthly_charges"] + 0.5 * frame["support_calls"]
             - 0.8 * frame["contract_years"] + 0.6 * frame["late_payments"] - 1.0)
    return (rng.random(len(frame)) < 1 / (1 + np.exp(-score))).astype(int)


def generate(out_dir: Path, files: int, rows: int, big_share: float, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    big = int(rows * big_share) if files > 1 else rows
    small = files - 1
    sizes = [big] + [(rows - big) // small + (1 if i < (rows - big) % small else 0) for i in range(small)]
    paths, first = [], 0
    for i, n in enumerate(sizes):
        path = out_dir / f"customers-{i:03d}.csv"
        make_rows(rng, n, first).to_csv(path, index=False)
        paths.append(path)
        first += n
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--big-share", type=float, default=0.5, help="share of the rows in the first file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = generate(args.out_dir, args.files, args.rows, args.big_share, args.seed)
    print(f"wrote {args.rows} rows in {len(paths)} files to {args.out_dir}")


if __name__ == "__main__":
    main()
