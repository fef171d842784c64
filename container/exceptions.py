"""Errors of the worker. A user-script error keeps the script's own traceback, apart from ours."""

from __future__ import annotations


class WorkerError(Exception):
    pass


class ScriptInitError(WorkerError):
    """init() of the scoring script raised; `user_traceback` is the script's own frames."""

    def __init__(self, message: str, user_traceback: str) -> None:
        super().__init__(message)
        self.user_traceback = user_traceback


class ScoringProcessDied(WorkerError):
    """The scoring process ended in the middle of a batch (crash, kill, or over its memory cap)."""

    def __init__(self, message: str, *, memory_killed: bool = False) -> None:
        super().__init__(message)
        self.memory_killed = memory_killed


class HandedBack(WorkerError):
    """The worker is stopping and its grace period ran out: the batch goes back to the queue, unwritten."""


class RunTimeout(Exception):
    """A run() call took longer than retry_settings.timeout. Raised inside the scoring process only."""
