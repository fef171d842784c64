"""S3 key layout. Every key the system writes is derived here, so that retries land on the same key."""

from __future__ import annotations

from pathlib import PurePosixPath

START_MARKER = "_SUCCESS"
JOB_OVERRIDES = "job.yaml"
SHARDS_FOLDER = "_shards"
PARTS_FOLDER = "_parts"
ERRORS_FOLDER = "_errors"
SUMMARY = "_summary.json"
SUCCEEDED_MARKER = "_SUCCESS"
FAILED_MARKER = "_FAILED"

DEPLOYMENT_PREFIX = "deployment"


def job_of(key: str) -> str:
    return key.split("/", 1)[0]


def relative_source(key: str) -> str:
    """An input's name as the user gave it: its key without the job prefix."""
    return key.split("/", 1)[1] if "/" in key else key


def is_start_marker(key: str) -> bool:
    parts = key.split("/")
    return len(parts) == 2 and parts[1] == START_MARKER


def is_input(key: str) -> bool:
    """An input is any object under a job prefix, except the marker, job.yaml, and names starting with _ or .

    (Shards live under the top-level `_shards/`, so they are not inputs either.)
    """
    parts = key.split("/")
    if len(parts) < 2 or not parts[-1]:
        return False
    if len(parts) == 2 and parts[1] == JOB_OVERRIDES:
        return False
    return not any(part.startswith(("_", ".")) for part in parts)


def shard_key(source_key: str, index: int, suffix: str) -> str:
    """Deterministic, so splitting the same object twice writes the same keys: _shards/<job>/<path>/<stem>.N<suffix>.

    One top-level prefix for every job's shards, so that one bucket lifecycle rule can expire them.
    """
    job, rest = source_key.split("/", 1)
    base = rest.rsplit("/", 1)[-1]
    stem = base[: len(base) - len(suffix)] if suffix and base.lower().endswith(suffix) else base
    return f"{SHARDS_FOLDER}/{job}/{rest}/{stem}.{index:05d}{suffix}"


def batch_id(index: int) -> str:
    return f"b{index:06d}"


def part_suffix(output_file_name: str) -> str:
    """A batch's output part is written in the job's output format, so that finalize can join parts as bytes."""
    return PurePosixPath(output_file_name).suffix or ".parquet"


def part_key(job_id: str, batch: str, suffix: str = ".parquet") -> str:
    return f"{job_id}/{PARTS_FOLDER}/{batch}{suffix}"


def error_key(job_id: str, batch: str) -> str:
    return f"{job_id}/{ERRORS_FOLDER}/{batch}.txt"


def job_output_key(job_id: str, name: str) -> str:
    return f"{job_id}/{name}"


def artifact_key(*parts: str) -> str:
    return str(PurePosixPath(DEPLOYMENT_PREFIX, *parts))
