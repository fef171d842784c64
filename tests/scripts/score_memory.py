"""Test scoring script with a known memory cost: its "model" (init()) holds MODEL_MIB MiB, and run() holds
MEM_KB_PER_ROW KiB per input row while it scores.

The memory planner's tests use it: a batch of n rows needs about n * MEM_KB_PER_ROW KiB more than the process
holds after init().
"""

import os
import time

import numpy as np

KB_PER_ROW = int(os.environ.get("MEM_KB_PER_ROW", "10"))
MODEL_MIB = int(os.environ.get("MODEL_MIB", "0"))
model = None


def init():
    global model
    model = np.ones(MODEL_MIB * 128 * 1024)  # every page touched


def run(mini_batch):
    block = np.ones(len(mini_batch) * KB_PER_ROW * 128)  # 128 float64 = 1 KiB, every page touched
    if block.nbytes > 16 * 1024**2:
        time.sleep(0.3)  # hold a big block long enough for the supervisor's memory sampling to see it
    return mini_batch["x"] * 2 + block[:1].sum() - 1
