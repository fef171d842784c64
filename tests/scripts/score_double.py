"""Test scoring script: prediction = 2 * x, so every output row can be checked against its input.

A row whose `fail` column is 1 makes run() raise, so tests can place failures exactly.
"""

import os

import pandas as pd

factor = None


def init():
    global factor
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "factor.txt")) as handle:
        factor = int(handle.read())


def run(mini_batch):
    if isinstance(mini_batch, pd.DataFrame):
        if "fail" in mini_batch and (mini_batch["fail"] == 1).any():
            bad = mini_batch.loc[mini_batch["fail"] == 1, "x"].iloc[0]
            raise ValueError(f"cannot score x={bad}")
        return mini_batch["x"] * factor
    frames = []
    for path in mini_batch:
        if path.endswith(".bad"):
            raise ValueError(f"cannot score {os.path.basename(path)}")
        frame = pd.read_csv(path)
        frames.append(pd.DataFrame({"file": os.path.basename(path), "x": frame["x"], "y": frame["x"] * factor}))
    return pd.concat(frames, ignore_index=True)
