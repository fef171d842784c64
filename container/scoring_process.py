"""The supervisor's handle on its scoring process: start it, hand it tasks, enforce its memory cap."""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import psutil

from container.exceptions import HandedBack, ScoringProcessDied, ScriptInitError
from container.runtime import ScoringResult, ScriptSpec, Task, serve

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.05
# A hung init() is a failure too: it gets this long before the job fails.
INIT_TIMEOUT_S = 600
# run() overruns are stopped inside the scoring process; this is the backstop if that fails.
HARD_TIMEOUT_GRACE_S = 30


class ScoringProcess:
    def __init__(self, spec: ScriptSpec, memory_cap_mib: int) -> None:
        self.spec = spec
        self.memory_cap_mib = memory_cap_mib
        self.process: Any = None
        self.conn: Connection | None = None
        self.ready = False  # init() has returned in the current process
        self.peak_rss_mib = 0.0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def launch(self) -> None:
        """Start the process; its imports and init() run while the supervisor goes on (say, polling)."""
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, self.spec), daemon=True)
        self.process.start()
        child.close()
        self.conn = parent
        self.ready = False

    def start(self) -> None:
        """Wait for init() of a launched process (launching it if needed). Raises ScriptInitError."""
        if not self.alive:
            self.launch()
        kind, payload = self._wait(INIT_TIMEOUT_S, "init()")
        if kind == "init_failed":
            self.stop()
            message, user_tb = payload
            raise ScriptInitError(f"init() of the scoring script failed: {message}", user_tb)
        self.ready = True

    def score(self, task: Task, should_abort: Callable[[], bool] = lambda: False) -> ScoringResult:
        """Score one task. Raises ScoringProcessDied (crash, memory cap) or HandedBack (should_abort())."""
        if not self.alive or not self.ready:
            self.start()
        assert self.conn is not None
        self.peak_rss_mib = 0.0
        self.conn.send(task)
        calls = max(1, len(task.files))
        if task.level == "row":
            calls = max(calls, 1000)
        budget = task.timeout_s * (task.max_retries + 1) * calls + HARD_TIMEOUT_GRACE_S
        kind, payload = self._wait(budget, f"batch {task.batch_id}", should_abort)
        if kind == "error":
            raise ScoringProcessDied(f"scoring failed: {payload[0]}")
        # the process's own peak catches what sampling every POLL_INTERVAL_S misses in a short batch
        self.peak_rss_mib = max(self.peak_rss_mib, payload.max_rss_mib)
        return payload

    def _wait(self, timeout_s: float, what: str,
              should_abort: Callable[[], bool] = lambda: False) -> tuple[str, Any]:
        assert self.conn is not None and self.process is not None
        deadline = time.monotonic() + timeout_s
        while True:
            if should_abort():
                self.kill()
                raise HandedBack(f"stopped during {what}: the worker's stop grace period ran out")
            if self.conn.poll(POLL_INTERVAL_S):
                try:
                    return self.conn.recv()
                except EOFError:
                    pass
            rss = self.tree_rss_mib()
            self.peak_rss_mib = max(self.peak_rss_mib, rss)
            if rss > self.memory_cap_mib:
                self.kill()
                raise ScoringProcessDied(
                    f"the scoring process used {rss:.0f} MiB, over its cap of {self.memory_cap_mib} MiB "
                    "(memory_mib / max_concurrency_per_instance), and was killed", memory_killed=True)
            if not self.process.is_alive():
                code = self.process.exitcode
                self.process = None
                self.ready = False
                raise ScoringProcessDied(f"the scoring process died during {what} (exit code {code})")
            if time.monotonic() > deadline:
                self.kill()
                raise ScoringProcessDied(f"the scoring process did not finish {what} within {timeout_s:.0f} s")

    def tree_rss_mib(self) -> float:
        try:
            proc = psutil.Process(self.process.pid)
            total = proc.memory_info().rss
            for child in proc.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    continue
            return total / 1024**2
        except psutil.Error:
            return 0.0

    def kill(self) -> None:
        if self.process is not None:
            try:
                for child in psutil.Process(self.process.pid).children(recursive=True):
                    child.kill()
            except psutil.Error:
                pass
            self.process.kill()
            self.process.join(5)
        self.process = None
        self.ready = False

    def stop(self) -> None:
        if self.alive and self.conn is not None:
            try:
                self.conn.send(None)
                self.process.join(5)
            except (OSError, BrokenPipeError):
                pass
        self.kill()
