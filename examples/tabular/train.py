"""Train the example churn model on generated data (no downloads) and save it as model/model.pkl.

    python examples/tabular/train.py [MODEL_DIR]
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

sys.path.insert(0, str(Path(__file__).parent))
from generate_data import FEATURES, churn_label, make_rows  # noqa: E402


def train(model_dir: Path, rows: int = 20000, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    frame = make_rows(rng, rows, 0)
    model = HistGradientBoostingClassifier(max_iter=50, random_state=seed)
    model.fit(frame[FEATURES], churn_label(frame, rng))
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "model"
    print(f"saved {train(target)}")
