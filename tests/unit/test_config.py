from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from batchscore.config import load_deployment, parse_deployment
from batchscore.exceptions import ConfigError

EXAMPLES = Path(__file__).parents[2] / "examples" / "tabular"
BASE = {"name": "churn", "code_configuration": {"code": ".", "scoring_script": "score.py"}}


def test_example_deployments_are_valid(tmp_path: Path) -> None:
    # the example's model folder is made by `make demo`; a stand-in is enough to check the files
    shutil.copytree(EXAMPLES / "code", tmp_path / "code")
    (tmp_path / "model").mkdir()
    for name in ("deployment-paths.yaml", "deployment-dataframe.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
        deployment = load_deployment(tmp_path / name)
        assert deployment.code_configuration.code == tmp_path / "code"


def test_sizes_accept_units() -> None:
    d = parse_deployment(BASE | {"settings": {"max_shard_bytes": "64MiB", "max_mini_batch_bytes": "1GB"}})
    assert d.settings.max_shard_bytes == 64 * 1024**2
    assert d.settings.max_mini_batch_bytes == 10**9
    assert parse_deployment(BASE | {"settings": {"max_shard_bytes": 4096}}).settings.max_shard_bytes == 4096


def test_defaults_follow_azure() -> None:
    s = parse_deployment(BASE).settings
    assert (s.payload, s.level, s.mini_batch_size, s.error_threshold) == ("paths", "mini_batch", 10, -1)
    assert (s.retry_settings.max_retries, s.retry_settings.timeout) == (3, 30)


@pytest.mark.parametrize(
    ("settings", "where", "what"),
    [
        ({"level": "rows"}, "settings.level", "'mini_batch', 'file' or 'row'"),
        ({"mini_batch_size": 0}, "settings.mini_batch_size", "greater than or equal to 1"),
        ({"max_shard_bytes": "lots"}, "settings.max_shard_bytes", "byte"),
        ({"output_file_name": "out.xlsx"}, "settings.output_file_name", ".csv, .parquet, .jsonl"),
        ({"retry_settings": {"timeout": -1}}, "settings.retry_settings.timeout", "greater than 0"),
        ({"payload": "paths", "level": "row"}, "settings", "level 'row' needs payload 'dataframe'"),
        ({"mini_batch_sise": 3}, "settings.mini_batch_sise", "unknown setting"),
    ],
)
def test_bad_settings_name_the_setting(settings: dict, where: str, what: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_deployment(BASE | {"settings": settings}, source="dep.yaml")
    message = str(error.value)
    assert message.startswith("dep.yaml:")
    line = next(line for line in message.splitlines() if line.strip().startswith(where + ":"))
    assert what in line


def test_azure_only_keys_warn_but_do_not_fail(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        d = parse_deployment(BASE | {"endpoint_name": "e", "compute": "azureml:cpu"}, source="dep.yaml")
    assert d.name == "churn"
    assert "endpoint_name is an Azure ML setting" in caplog.text and "compute" in caplog.text


def test_unknown_top_level_key_fails() -> None:
    with pytest.raises(ConfigError, match="resourses: unknown setting"):
        parse_deployment(BASE | {"resourses": {}})


def test_files_are_checked_relative_to_the_deployment(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    path = tmp_path / "d.yaml"
    path.write_text("name: churn\ncode_configuration: {code: ./code, scoring_script: score.py}\n")
    with pytest.raises(ConfigError, match="scoring_script: .*score.py does not exist"):
        load_deployment(path)
    (tmp_path / "code" / "score.py").write_text("")
    assert load_deployment(path).scoring_script_path == tmp_path / "code" / "score.py"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_deployment(path)
    with pytest.raises(ConfigError, match="no such deployment file"):
        load_deployment(tmp_path / "missing.yaml")
