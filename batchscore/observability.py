"""Logs and metrics that explain a job, for functions, workers and the scoring script alike.

- Logs are JSON lines (aws-lambda-powertools' formatter) carrying the keys of the work at hand: `worker`,
  `job_id`, `batch_id`, `source`. In the scoring process the script's own `logging` records and `print` output
  go through the same formatter, with the same keys.
- Metrics are CloudWatch embedded-metric-format records (powertools `Metrics`): printed to stdout, where Lambda
  and the ECS log driver pick them up at no API cost, or appended to $BATCHSCORE_METRICS_FILE when it is set
  (a local run points it at OUT_DIR/_metrics.jsonl). Job and batch ids are metadata, not dimensions, so that
  CloudWatch does not bill a new metric per job.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit

NAMESPACE = "batchscore"
METRICS_FILE_ENV = "BATCHSCORE_METRICS_FILE"


_formatter: LambdaPowertoolsFormatter | None = None  # the process's, once configure_logging has run


def configure_logging(service: str, level: str = "info", stream: TextIO | None = None, **keys: Any) -> None:
    """JSON lines on `stream` (stderr) for every logger of this process, each carrying `keys` and those that
    log_keys / set_log_key add."""
    global _formatter
    formatter = _formatter = LambdaPowertoolsFormatter(service=service)
    formatter.append_keys(**keys)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def set_log_key(name: str, value: Any) -> None:
    """Every later line carries `name` (or no longer does, for None). A no-op before configure_logging."""
    if _formatter is not None:
        if value is None:
            _formatter.remove_keys([name])
        else:
            _formatter.append_keys(**{name: value})


@contextmanager
def log_keys(**keys: Any) -> Iterator[None]:
    """Lines logged inside the block carry `keys`."""
    for name, value in keys.items():
        set_log_key(name, value)
    try:
        yield
    finally:
        for name in keys:
            set_log_key(name, None)


class LinesToLog(io.TextIOBase):
    """A text stream whose lines become log records (for a scoring script's print())."""

    def __init__(self, logger: logging.Logger, level: int, stream_name: str) -> None:
        self.logger, self.level, self.stream_name = logger, level, stream_name
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                self.logger.log(self.level, line, extra={"stream": self.stream_name})
        return len(text)

    def flush(self) -> None:
        if self._partial.strip():
            self.logger.log(self.level, self._partial, extra={"stream": self.stream_name})
        self._partial = ""


def emit_metrics(service: str, values: list[tuple[str, MetricUnit, float]], **metadata: Any) -> None:
    """One embedded-metric-format record of `values`, with `metadata` (job_id, batch_id, ...) as properties."""
    metrics = Metrics(namespace=NAMESPACE, service=service)
    try:
        for name, unit, value in values:
            metrics.add_metric(name=name, unit=unit, value=value)
        for key, value in metadata.items():
            metrics.add_metadata(key=key, value=value)
        line = json.dumps(metrics.serialize_metric_set())
    finally:
        metrics.clear_metrics()
    path = os.environ.get(METRICS_FILE_ENV)
    if path:
        with open(path, "a") as handle:  # one write per record: records from several processes do not mix
            handle.write(line + "\n")
    else:
        print(line, flush=True)
