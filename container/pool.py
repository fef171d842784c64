"""The worker processes of one task: `size` of them, each one replaced when it exits, as ECS replaces a task.

Used by the ECS task's entry point (container.task) and, as the stand-in for the whole service, by local runs.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from batchscore.aws import AwsTarget
from batchscore.stack import StackResources

logger = logging.getLogger(__name__)


class WorkerPool:
    """`size` worker processes; one that exits unexpectedly is replaced."""

    def __init__(self, size: int, target: AwsTarget, stack: StackResources, log_path: str | None = None,
                 stop_grace_s: float | None = None, inherit_output: bool = False, id_prefix: str = "worker"):
        """Worker output goes to `log_path`, or to this process's own stdout/stderr with `inherit_output`, else
        nowhere (the job's records and summary carry what a user needs)."""
        self.size = size
        self.id_prefix = id_prefix
        self.extra_args = ["--stop-grace", str(stop_grace_s)] if stop_grace_s is not None else []
        self.env = os.environ | target.env() | stack.env() | {"PYTHONUNBUFFERED": "1"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.log: Any = None if inherit_output else subprocess.DEVNULL
        if log_path:
            self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.replaced = 0
        self._stopping = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="worker-pool", daemon=True)

    def start(self) -> WorkerPool:
        for i in range(self.size):
            self._spawn(f"{self.id_prefix}-{i}")
        self._monitor.start()
        return self

    def _spawn(self, worker_id: str) -> None:
        self.procs[worker_id] = subprocess.Popen(
            [sys.executable, "-m", "container.worker", "--worker-id", worker_id, *self.extra_args],
            env=self.env, stdout=self.log, stderr=self.log)

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for worker_id, proc in list(self.procs.items()):
                if proc.poll() is not None and not self._stopping.is_set():
                    logger.warning("%s exited with %s; starting a replacement", worker_id, proc.returncode)
                    self.replaced += 1
                    self._spawn(worker_id)

    def stop(self, grace_s: float = 30) -> None:
        self._stopping.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.log not in (None, subprocess.DEVNULL):
            self.log.close()
