"""Records of the jobs table and the messages between the stages. Plain data, serialised as JSON."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Shard(_Record):
    """A unit of work: a whole input object, or one shard of it. `first_row` is its row in the original file."""

    key: str
    source: str
    bytes: int
    first_row: int = 0
    records: int | None = None
    # A shard of uncompressed text is not copied: it is the source's first `header_bytes` bytes followed by
    # bytes [range_start, range_end) of the source object `key`, fetched with ranged GETs.
    range_start: int | None = None
    range_end: int | None = None
    header_bytes: int = 0


class LedgerEntry(_Record):
    """What ingest made of one input object."""

    source: str
    bytes: int
    format: str
    split: bool = False
    shards: list[Shard] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    error: str | None = None


class Failure(_Record):
    """Items that failed: `items` rows from `row` of `source` (dataframe payload), or files (paths payload).

    `row` is None when the rows are unknown (a file that could not be read counts as one item).
    """

    source: str
    reason: str
    items: int = 1
    row: int | None = None
    batch_id: str | None = None


class BatchResult(_Record):
    succeeded_items: int = 0
    failed_items: int = 0
    output_rows: int = 0
    failures: list[Failure] = Field(default_factory=list)
    worker: str = ""
    level: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    seconds: dict[str, float] = Field(default_factory=dict)
    peak_rss_mib: float = 0.0
    levels_tried: list[str] = Field(default_factory=list)  # levels whose scoring process hit the memory cap


class BatchRecord(_Record):
    job_id: str
    batch_id: str
    index: int
    shards: list[Shard]
    bytes: int
    status: Literal["pending", "done"] = "pending"
    result: BatchResult | None = None
    attempts: int = 0  # deliveries that ended without completing the batch (crash, kill, hand-back)
    last_error: str | None = None


JobStatus = Literal["dispatching", "running", "failing", "finalizing", "succeeded", "failed"]


class JobRecord(_Record):
    job_id: str
    status: JobStatus
    settings: dict
    total_batches: int = 0
    done_batches: int = 0
    succeeded_items: int = 0
    failed_items: int = 0
    input_files: int = 0
    shards: int = 0
    error: str | None = None
    enqueued: bool = False
    created_at: float = 0.0
    dispatched_at: float = 0.0
    finished_at: float = 0.0


class DispatchMessage(_Record):
    job_id: str
    attempt: int = 0
    first_seen: float = 0.0


class WorkMessage(_Record):
    """A pointer to a batch record: the file list lives in the table, so a message stays small at any size."""

    job_id: str
    batch_id: str


class FinalizeMessage(_Record):
    job_id: str


def is_valid_job_id(job_id: str) -> bool:
    """A job id is one S3 folder name, and not one of the names the system keeps for itself (_x, .x)."""
    return bool(job_id) and "/" not in job_id and not job_id.startswith(("_", "."))
