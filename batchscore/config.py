"""The deployment file: Azure ML batch-deployment names, validated once into a frozen object."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ByteSize, ConfigDict, Field, ValidationError, field_validator, model_validator

from batchscore.exceptions import ConfigError

logger = logging.getLogger(__name__)

# Keys an Azure ML batch deployment may carry that mean nothing here: warned about, not rejected,
# so that an Azure deployment file can be used as it is.
AZURE_ONLY_KEYS = frozenset(
    {"$schema", "endpoint_name", "compute", "environment", "type", "tags", "properties", "instance_type",
     "description"}
)
AZURE_ONLY_SETTINGS = frozenset({"instance_type"})
OUTPUT_SUFFIXES = (".csv", ".parquet", ".jsonl")
DEFAULT_MAX_SHARD_BYTES = 64 * 1024**2


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CodeConfiguration(_Frozen):
    code: Path
    scoring_script: str = Field(min_length=1)


class RetrySettings(_Frozen):
    max_retries: int = Field(default=3, ge=0)
    timeout: float = Field(default=30.0, gt=0, description="seconds a single run() call may take")


class Settings(_Frozen):
    payload: Literal["paths", "dataframe"] = "paths"
    level: Literal["mini_batch", "file", "row"] = "mini_batch"
    mini_batch_size: int = Field(default=10, ge=1)
    max_mini_batch_bytes: ByteSize | None = None
    max_shard_bytes: ByteSize = ByteSize(DEFAULT_MAX_SHARD_BYTES)
    row_batch_size: int = Field(default=1, ge=1)
    keep_columns: tuple[str, ...] = ()
    output_action: Literal["append_row", "summary_only"] = "append_row"
    output_file_name: str = "predictions.csv"
    error_threshold: int = Field(default=-1, ge=-1)
    retry_settings: RetrySettings = RetrySettings()
    logging_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    environment_variables: dict[str, str] = Field(default_factory=dict)
    # a batch whose scoring process hits the memory cap is retried a level finer (mini_batch -> file -> row)
    memory_fallback: bool = True

    @field_validator("logging_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("output_file_name")
    @classmethod
    def _output_suffix(cls, value: str) -> str:
        if "/" in value or not value.endswith(OUTPUT_SUFFIXES):
            raise ValueError(f"must be a file name ending in one of {', '.join(OUTPUT_SUFFIXES)}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _level_fits_payload(self) -> Settings:
        if self.level == "row" and self.payload != "dataframe":
            raise ValueError("level 'row' needs payload 'dataframe' (run() cannot be given part of a file path)")
        if self.keep_columns and self.payload != "dataframe":
            raise ValueError("keep_columns needs payload 'dataframe'")
        if self.max_shard_bytes < 1024:
            raise ValueError("max_shard_bytes must be at least 1KiB")
        return self


class Resources(_Frozen):
    instance_count: int = Field(default=1, ge=1)
    max_concurrency_per_instance: int = Field(default=1, ge=1)
    memory_mib: int = Field(default=2048, ge=128)

    @property
    def workers(self) -> int:
        return self.instance_count * self.max_concurrency_per_instance

    @property
    def memory_per_worker_mib(self) -> int:
        return self.memory_mib // self.max_concurrency_per_instance


class Deployment(_Frozen):
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # it becomes part of job ids and S3 keys
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,40}", value):
            raise ValueError(f"must be 2 to 41 lowercase letters, digits or '-', starting with a letter or digit; "
                             f"got {value!r}")
        return value
    code_configuration: CodeConfiguration
    model: Path | None = None
    settings: Settings = Settings()
    resources: Resources = Resources()

    @property
    def scoring_script_path(self) -> Path:
        return self.code_configuration.code / self.code_configuration.scoring_script

    def with_settings(self, **overrides: Any) -> Deployment:
        merged = self.settings.model_dump() | overrides
        return self.model_copy(update={"settings": Settings.model_validate(merged)})


def load_deployment(path: str | Path) -> Deployment:
    """Read and validate a deployment file; relative paths in it are relative to the file's folder."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such deployment file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of settings, got {type(raw).__name__}")
    deployment = parse_deployment(raw, source=str(path))
    return _resolve_paths(deployment, path.parent, source=str(path))


def parse_deployment(raw: dict[str, Any], source: str = "deployment") -> Deployment:
    raw = dict(raw)
    for key in sorted(AZURE_ONLY_KEYS & raw.keys()):
        logger.warning("%s: %s is an Azure ML setting that batchscore ignores", source, key)
        raw.pop(key)
    settings = raw.get("settings")
    if isinstance(settings, dict):
        settings = dict(settings)
        for key in sorted(AZURE_ONLY_SETTINGS & settings.keys()):
            logger.warning("%s: settings.%s is an Azure ML setting that batchscore ignores", source, key)
            settings.pop(key)
        raw["settings"] = settings
    try:
        return Deployment.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        message = re.sub(r"^Value error, ", "", message)
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def _resolve_paths(deployment: Deployment, base: Path, source: str) -> Deployment:
    code = (base / deployment.code_configuration.code).resolve()
    script = code / deployment.code_configuration.scoring_script
    if not code.is_dir():
        raise ConfigError(f"{source}: code_configuration.code: folder {code} does not exist")
    if not script.is_file():
        raise ConfigError(f"{source}: code_configuration.scoring_script: {script} does not exist")
    model = None
    if deployment.model is not None:
        model = (base / deployment.model).resolve()
        if not model.exists():
            raise ConfigError(f"{source}: model: {model} does not exist")
    return deployment.model_copy(
        update={"code_configuration": deployment.code_configuration.model_copy(update={"code": code}),
                "model": model}
    )
