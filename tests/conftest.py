from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

SCRIPTS = Path(__file__).parent / "scripts"


def make_inputs(folder: Path, rows_per_file: list[int], fmt: str = "csv", fail_x: tuple[int, ...] = ()) -> dict:
    """Files of rows with a unique x each; returns {relative name: DataFrame}."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, pd.DataFrame] = {}
    x = 0
    for i, n in enumerate(rows_per_file):
        frame = pd.DataFrame({"x": np.arange(x, x + n), "label": [f"r{v}, \"q\"" for v in range(x, x + n)]})
        frame["fail"] = frame["x"].isin(fail_x).astype(int)
        x += n
        name = f"part-{i:03d}.{fmt}"
        if fmt == "csv":
            frame.to_csv(folder / name, index=False)
        elif fmt == "parquet":
            frame.to_parquet(folder / name, index=False)
        elif fmt == "jsonl":
            frame.to_json(folder / name, orient="records", lines=True)
        written[name] = frame
    return written


def make_deployment(folder: Path, script: str = "score_double.py", **settings: Any) -> Path:
    code = folder / "code"
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCRIPTS / script, code / "score.py")
    model = folder / "model"
    model.mkdir(exist_ok=True)
    (model / "factor.txt").write_text("2")
    resources = settings.pop("resources", {"instance_count": 1, "max_concurrency_per_instance": 2,
                                           "memory_mib": 4096})
    body = {"name": "test", "code_configuration": {"code": "./code", "scoring_script": "score.py"},
            "model": "./model", "settings": settings, "resources": resources}
    path = folder / "deployment.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.fixture
def inputs_factory(tmp_path: Path):
    def factory(rows_per_file: list[int], **kwargs: Any) -> tuple[Path, dict]:
        folder = tmp_path / "inputs"
        return folder, make_inputs(folder, rows_per_file, **kwargs)

    return factory
