"""Test scoring script that talks: print() and logging in init() and run(), to check where that output goes."""

import logging

log = logging.getLogger("chatty")


def init():
    log.info("model loaded")


def run(mini_batch):
    print(f"scoring {len(mini_batch)} rows")
    log.warning("first x is %s", mini_batch["x"].iloc[0])
    return mini_batch["x"] * 2
