"""The scoring runtime in-process: levels, output shape, retries, timeouts (no AWS, no emulator)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from container.runtime import Scorer, ScriptSpec, Task, TaskFile, load_script, to_frame
from tests.conftest import SCRIPTS, make_inputs


@pytest.fixture
def scorer(tmp_path: Path):
    def build(source: str) -> Scorer:
        code = tmp_path / "code"
        code.mkdir(exist_ok=True)
        (code / "score.py").write_text(source)
        model = tmp_path / "model"
        model.mkdir(exist_ok=True)
        (model / "factor.txt").write_text("3")
        spec = ScriptSpec(code_dir=str(code) + "/", scoring_script="score.py", model_dir=str(model),
                          output_dir=str(tmp_path / "bi"))
        module = load_script(spec)
        module.init()
        return Scorer(module, spec)

    return build


def task_for(tmp_path: Path, files: dict, **kwargs) -> Task:
    task_files = [TaskFile(path=str(tmp_path / "in" / name), source=name, first_row=100 * i)
                  for i, name in enumerate(files)]
    defaults = {"batch_id": "b1", "payload": "dataframe", "level": "file", "out_path": str(tmp_path / "part.parquet"),
                "max_retries": 0, "timeout_s": 5}
    return Task(files=task_files, **(defaults | kwargs))


@pytest.mark.parametrize("level", ["mini_batch", "file", "row"])
def test_each_level_scores_each_row_once_with_its_original_row_number(scorer, tmp_path: Path, level: str) -> None:
    files = make_inputs(tmp_path / "in", [12, 0, 5])
    s = scorer((SCRIPTS / "score_double.py").read_text())
    result = s.score(task_for(tmp_path, files, level=level, row_batch_size=4, keep_columns=("label",)))
    out = pq.read_table(tmp_path / "part.parquet").to_pandas()
    assert (result.succeeded_items, result.failed_items, result.output_rows) == (17, 0, 17)
    assert list(out.columns) == ["source", "row", "label", "prediction"]
    assert list(out["row"]) == list(range(0, 12)) + list(range(200, 205))
    assert list(out["prediction"]) == [3 * x for x in range(17)]


def test_row_level_failure_fails_only_that_call(scorer, tmp_path: Path) -> None:
    files = make_inputs(tmp_path / "in", [6], fail_x=(4,))
    s = scorer((SCRIPTS / "score_double.py").read_text())
    result = s.score(task_for(tmp_path, files, level="row", row_batch_size=2))
    assert (result.succeeded_items, result.failed_items) == (4, 2)
    assert (result.failures[0].source, result.failures[0].row, result.failures[0].items) == ("part-000.csv", 4, 2)
    assert result.failures[0].reason == "ValueError: cannot score x=4"
    assert "score.py" in result.tracebacks[0]


def test_wrong_length_is_an_error_saying_so(scorer, tmp_path: Path) -> None:
    files = make_inputs(tmp_path / "in", [5])
    s = scorer("def init():\n    pass\n\ndef run(df):\n    return [1, 2]\n")
    result = s.score(task_for(tmp_path, files))
    assert result.failed_items == 5
    assert result.failures[0].reason == ("ValueError: run() returned 2 rows for 5 input rows; "
                                         "it must return one element per input row")


def test_retries_then_succeeds(scorer, tmp_path: Path) -> None:
    files = make_inputs(tmp_path / "in", [3])
    s = scorer("calls = []\ndef init():\n    pass\n\ndef run(df):\n    calls.append(1)\n"
               "    if len(calls) < 3:\n        raise RuntimeError('flaky')\n    return df['x']\n")
    assert s.score(task_for(tmp_path, files, max_retries=2)).succeeded_items == 3
    s2 = scorer("def init():\n    pass\n\ndef run(df):\n    raise RuntimeError('always')\n")
    assert s2.score(task_for(tmp_path, files, max_retries=2)).failed_items == 3


def test_a_call_over_the_timeout_is_stopped_and_fails(scorer, tmp_path: Path) -> None:
    files = make_inputs(tmp_path / "in", [3])
    s = scorer("import time\ndef init():\n    pass\n\ndef run(df):\n    while True:\n        time.sleep(0.01)\n")
    result = s.score(task_for(tmp_path, files, timeout_s=0.2, max_retries=1))
    assert result.failed_items == 3
    assert "RunTimeout" in result.failures[0].reason
    assert result.run_seconds < 2


def test_paths_payload_counts_files(scorer, tmp_path: Path) -> None:
    files = make_inputs(tmp_path / "in", [3, 4])
    shutil.copy(tmp_path / "in" / "part-000.csv", tmp_path / "in" / "c.bad")
    files["c.bad"] = None
    s = scorer((SCRIPTS / "score_double.py").read_text())
    result = s.score(task_for(tmp_path, files, payload="paths", level="file"))
    assert (result.succeeded_items, result.failed_items) == (2, 1)
    assert result.failures[0].source == "c.bad"
    out = pq.read_table(tmp_path / "part.parquet").to_pandas()
    assert sorted(out["x"]) == [0, 1, 2, 3, 4, 5, 6]


def test_to_frame_shapes() -> None:
    assert list(to_frame([1, 2], 2)["prediction"]) == [1, 2]
    assert list(to_frame(np.ones((2, 3)), 2).columns) == ["prediction_0", "prediction_1", "prediction_2"]
    assert list(to_frame(pd.DataFrame({"a": [1]}, index=[7]), 1).index) == [0]
    with pytest.raises(TypeError, match="must return a list, array, Series or DataFrame, got int"):
        to_frame(3, None)
