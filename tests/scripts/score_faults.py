"""Test scoring script whose behaviour is steered by the data, so each fault can be placed exactly.

Columns: x (unique id; prediction = 2 * x), fail (1: run() raises), and optional ones:
  sleep_s   seconds to sleep per call (slow batches, timeouts)
  crash     1: the scoring process exits at once (a crash no retry inside the process can fix)
  mem_kb    KiB to allocate and hold per row for half a second (memory-cap tests)
With FAULTS_STARTED_DIR set, each run() call first leaves a file there named <pid>-<first x>-<ns>, so a test
can act while a call is in progress, and count the calls each file got.
"""

import os
import time

import numpy as np


def init():
    pass


def run(df):
    started_dir = os.environ.get("FAULTS_STARTED_DIR")
    if started_dir:
        name = f"{os.getpid()}-{int(df['x'].iloc[0])}-{time.monotonic_ns()}"
        open(os.path.join(started_dir, name), "w").close()
    if "crash" in df and (df["crash"] == 1).any():
        os._exit(3)
    if "mem_kb" in df:
        hold = np.ones(int(df["mem_kb"].sum()) * 1024 // 8)
        time.sleep(0.5)
        del hold
    if "sleep_s" in df:
        time.sleep(float(df["sleep_s"].max()))
    if (df["fail"] == 1).any():
        raise ValueError(f"cannot score x={df.loc[df['fail'] == 1, 'x'].iloc[0]}")
    return df["x"] * 2
