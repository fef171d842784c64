"""The resources of a deployed stack, as its CloudFormation outputs name them."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

ENV_PREFIX = "BATCHSCORE_"


@dataclass(frozen=True)
class StackResources:
    inbox_bucket: str
    output_bucket: str
    artifacts_bucket: str
    ingest_queue_url: str
    dispatch_queue_url: str
    work_queue_url: str
    work_dead_letter_queue_url: str
    finalize_queue_url: str
    jobs_table: str

    # CloudFormation output key -> field
    OUTPUT_KEYS = {
        "InboxBucketName": "inbox_bucket",
        "OutputBucketName": "output_bucket",
        "ArtifactsBucketName": "artifacts_bucket",
        "IngestQueueUrl": "ingest_queue_url",
        "DispatchQueueUrl": "dispatch_queue_url",
        "WorkQueueUrl": "work_queue_url",
        "WorkDeadLetterQueueUrl": "work_dead_letter_queue_url",
        "FinalizeQueueUrl": "finalize_queue_url",
        "JobsTableName": "jobs_table",
    }

    @classmethod
    def from_outputs(cls, outputs: dict[str, str]) -> StackResources:
        missing = [key for key in cls.OUTPUT_KEYS if key not in outputs]
        if missing:
            raise KeyError(f"stack outputs lack {', '.join(missing)}")
        return cls(**{name: outputs[key] for key, name in cls.OUTPUT_KEYS.items()})

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StackResources:
        env = dict(os.environ) if env is None else env
        names = [f.name for f in fields(cls)]
        missing = [ENV_PREFIX + n.upper() for n in names if ENV_PREFIX + n.upper() not in env]
        if missing:
            raise KeyError(f"environment lacks {', '.join(missing)}")
        return cls(**{n: env[ENV_PREFIX + n.upper()] for n in names})

    def env(self) -> dict[str, str]:
        return {ENV_PREFIX + k.upper(): v for k, v in asdict(self).items()}
