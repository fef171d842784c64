from __future__ import annotations

import pytest

from batchscore.cli import parse_overrides
from batchscore.config import parse_deployment
from batchscore.exceptions import ConfigError
from functions.dispatch import apply_overrides, batch_byte_limit

DEPLOYMENT = parse_deployment({"name": "churn", "code_configuration": {"code": ".", "scoring_script": "s.py"},
                               "settings": {"mini_batch_size": 10}})


def test_set_pairs_nest_and_keep_types() -> None:
    assert parse_overrides(["mini_batch_size=4", "retry_settings.timeout=60", "output_file_name=p.parquet"]) == {
        "mini_batch_size": 4, "retry_settings": {"timeout": 60}, "output_file_name": "p.parquet"}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["mini_batch_size"])


def test_job_yaml_overrides_the_deployment_for_that_job() -> None:
    job = apply_overrides(DEPLOYMENT, b"mini_batch_size: 2\nretry_settings: {max_retries: 0}\n", "j/job.yaml")
    assert job.settings.mini_batch_size == 2 and job.settings.retry_settings.max_retries == 0
    assert job.settings.retry_settings.timeout == 30  # the rest as deployed
    wrapped = apply_overrides(DEPLOYMENT, b"settings: {error_threshold: 5}\n", "j/job.yaml")
    assert wrapped.settings.error_threshold == 5


@pytest.mark.parametrize(("body", "message"), [
    (b"payload: dataframe\n", "j/job.yaml: payload cannot be set per job"),
    (b"mini_batch_size: 0\n", "j/job.yaml: settings: 1 problem(s)\n  mini_batch_size: Input should be greater"),
    (b"- a\n", "j/job.yaml: must be a mapping of settings"),
    (b"a: [\n", "j/job.yaml: not valid YAML"),
])
def test_bad_job_yaml_names_the_file_and_the_setting(body: bytes, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        apply_overrides(DEPLOYMENT, body, "j/job.yaml")
    assert str(error.value).startswith(message)


def test_fair_share_limit_without_max_mini_batch_bytes() -> None:
    settings = DEPLOYMENT.settings
    assert batch_byte_limit(settings, 1600 * 1024**2, worker_slots=2) == 100 * 1024**2
    assert batch_byte_limit(settings, 1000, worker_slots=2) == 64 * 1024  # never absurdly small
    explicit = DEPLOYMENT.with_settings(max_mini_batch_bytes="1MiB").settings
    assert batch_byte_limit(explicit, 800 * 1024**2, worker_slots=2) == 1024**2
