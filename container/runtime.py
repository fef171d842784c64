"""The scoring process: loads the user's script, calls init() once, and run() at the configured level.

It runs in a child process of the supervisor, so that a crash, a memory kill or a hung call costs the batch,
not the worker. Everything the supervisor needs comes back as a ScoringResult over a pipe.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from batchscore.observability import LinesToLog, configure_logging, log_keys, set_log_key
from container.exceptions import RunTimeout
from container.formats import iter_frames, read_frame

META_COLUMNS = ("source", "row")
MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class ScriptSpec:
    code_dir: str
    scoring_script: str
    model_dir: str
    output_dir: str
    environment: dict[str, str] = field(default_factory=dict)
    logging_level: str = "info"
    worker_id: str = ""


# At row level, per-call output frames are joined every this many calls
COMPACT_FRAMES = 256


@dataclass(frozen=True)
class TaskFile:
    path: str
    source: str
    first_row: int = 0


@dataclass(frozen=True)
class Task:
    batch_id: str
    payload: str
    level: str
    files: list[TaskFile]
    out_path: str
    keep_columns: tuple[str, ...] = ()
    row_batch_size: int = 1
    max_retries: int = 3
    timeout_s: float = 30.0
    job_id: str = ""


@dataclass
class ScoringFailure:
    source: str
    reason: str
    items: int
    row: int | None = None  # first row of the failed rows, when they are known


@dataclass
class ScoringResult:
    succeeded_items: int = 0
    failed_items: int = 0
    output_rows: int = 0
    failures: list[ScoringFailure] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    run_seconds: float = 0.0
    read_seconds: float = 0.0
    # the scoring process's peak resident size during this task (its own measure), children included
    max_rss_mib: float = 0.0

    def fail(self, source: str, items: int, exc: BaseException, user_traceback: str, row: int | None = None) -> None:
        self.failed_items += items
        self.failures.append(ScoringFailure(source=source, reason=one_line(exc), items=items, row=row))
        where = f"{source}" + (f" rows {row}-{row + items - 1}" if row is not None else "")
        self.tracebacks.append(f"--- {where} ({items} item(s))\n{user_traceback}")


def one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:MAX_REASON_CHARS]


def user_traceback(exc: BaseException, code_dir: str) -> str:
    """The traceback from the first frame in the user's code on: their frames first, not the runtime's."""
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith(code_dir):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def load_script(spec: ScriptSpec) -> ModuleType:
    os.environ.update(spec.environment)
    os.environ["AZUREML_MODEL_DIR"] = spec.model_dir
    os.environ["BATCHSCORE_MODEL_DIR"] = spec.model_dir
    os.environ["AZUREML_BI_OUTPUT_PATH"] = spec.output_dir
    sys.path.insert(0, spec.code_dir)
    path = Path(spec.code_dir) / spec.scoring_script
    module_spec = importlib.util.spec_from_file_location("score", path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load scoring script {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    for name in ("init", "run"):
        if not callable(getattr(module, name, None)):
            raise AttributeError(f"scoring script {spec.scoring_script} has no {name}() function")
    return module


def _on_alarm(signum: int, frame: Any) -> None:
    raise RunTimeout("run() did not return within retry_settings.timeout")


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt a run() call that overruns. Works in the scoring process's main thread, where run() is called."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Scorer:
    def __init__(self, module: ModuleType, spec: ScriptSpec) -> None:
        self.run_fn: Callable[[Any], Any] = module.run
        self.spec = spec

    @staticmethod
    def _source(source: str | None) -> None:
        """Lines logged while a file is scored carry its `source` (none for a mini-batch of several)."""
        set_log_key("source", source)

    def score(self, task: Task) -> ScoringResult:
        result = ScoringResult()
        frames: list[pd.DataFrame] = []
        if task.payload == "paths":
            self._score_paths(task, result, frames)
        else:
            self._score_frames(task, result, frames)
        result.output_rows = write_part(frames, Path(task.out_path))
        return result

    def _call(self, task: Task, arg: Any, expected_rows: int | None, result: ScoringResult) -> pd.DataFrame:
        """run(arg) with retries and a time limit; raises the last error when every try failed."""
        last: BaseException | None = None
        for _attempt in range(task.max_retries + 1):
            started = time.perf_counter()
            try:
                with time_limit(task.timeout_s):
                    out = self.run_fn(arg)
                return to_frame(out, expected_rows)
            except Exception as exc:  # the user's code may raise anything; it is recorded, not swallowed
                last = exc
            finally:
                result.run_seconds += time.perf_counter() - started
        assert last is not None
        raise last

    def _score_paths(self, task: Task, result: ScoringResult, frames: list[pd.DataFrame]) -> None:
        groups = [task.files] if task.level == "mini_batch" else [[f] for f in task.files]
        for group in groups:
            self._source(group[0].source if len(group) == 1 else None)
            try:
                frames.append(self._call(task, [f.path for f in group], None, result))
                result.succeeded_items += len(group)
            except Exception as exc:
                for f in group:
                    result.fail(f.source, 1, exc, user_traceback(exc, self.spec.code_dir))

    def _score_frames(self, task: Task, result: ScoringResult, frames: list[pd.DataFrame]) -> None:
        if task.level == "row":
            for f in task.files:
                self._score_rows(task, f, result, frames)
            return
        if task.level == "file":
            # one file in memory at a time: the batch's peak is its largest file's, not the sum of its files
            for f in task.files:
                self._source(f.source)
                frame = self._load(task, f, result)
                if frame is not None:
                    self._score_group(task, [(f, frame)], result, frames)
            return
        loaded = [(f, frame) for f in task.files if (frame := self._load(task, f, result)) is not None]
        self._score_group(task, loaded, result, frames)

    def _load(self, task: Task, f: TaskFile, result: ScoringResult) -> pd.DataFrame | None:
        started = time.perf_counter()
        try:
            return _checked(read_frame(Path(f.path)), task.keep_columns)
        except Exception as exc:
            result.fail(f.source, 1, _read_error(exc, f.source), traceback.format_exc())
            return None
        finally:
            result.read_seconds += time.perf_counter() - started

    def _score_group(self, task: Task, group: list[tuple[TaskFile, pd.DataFrame]], result: ScoringResult,
                     frames: list[pd.DataFrame]) -> None:
        """One run() call over the group's rows (all of a mini-batch, or one file)."""
        group = [(f, df) for f, df in group if len(df)]
        if not group:
            return
        data = pd.concat([df for _, df in group], ignore_index=True) if len(group) > 1 else group[0][1]
        meta = pd.concat([_meta(f, df, task.keep_columns) for f, df in group], ignore_index=True)
        try:
            predictions = self._call(task, data, len(data), result)
        except Exception as exc:
            for f, df in group:
                result.fail(f.source, len(df), exc, user_traceback(exc, self.spec.code_dir), row=f.first_row)
            return
        frames.append(join(meta, predictions))
        result.succeeded_items += len(data)

    def _score_rows(self, task: Task, f: TaskFile, result: ScoringResult, frames: list[pd.DataFrame]) -> None:
        offset = 0
        pending: list[pd.DataFrame] = []
        self._source(f.source)
        try:
            chunks = iter_frames(Path(f.path), task.row_batch_size)
            for chunk in chunks:
                _checked(chunk, task.keep_columns)
                meta = _meta(f, chunk, task.keep_columns, offset)
                offset += len(chunk)
                try:
                    predictions = self._call(task, chunk, len(chunk), result)
                except Exception as exc:
                    result.fail(f.source, len(chunk), exc, user_traceback(exc, self.spec.code_dir),
                                row=int(meta["row"].iloc[0]))
                    continue
                pending.append(join(meta, predictions))
                result.succeeded_items += len(chunk)
                if len(pending) >= COMPACT_FRAMES:  # thousands of one-row frames cost far more than their rows
                    frames.append(pd.concat(pending, ignore_index=True))
                    pending.clear()
        except Exception as exc:  # the file itself could not be read past `offset`
            result.fail(f.source, 1, _read_error(exc, f.source), traceback.format_exc())
        finally:
            if pending:
                frames.append(pd.concat(pending, ignore_index=True))


def _read_error(exc: BaseException, source: str) -> Exception:
    return ValueError(f"cannot read {source}: {one_line(exc)}")


def _checked(df: pd.DataFrame, keep_columns: tuple[str, ...]) -> pd.DataFrame:
    missing = [c for c in keep_columns if c not in df.columns]
    if missing:
        raise KeyError(f"keep_columns {missing} not among the file's columns {list(df.columns)[:20]}")
    return df


def _meta(f: TaskFile, df: pd.DataFrame, keep_columns: tuple[str, ...], offset: int = 0) -> pd.DataFrame:
    start = f.first_row + offset
    meta = pd.DataFrame({"source": f.source, "row": np.arange(start, start + len(df), dtype="int64")})
    for column in keep_columns:
        meta[column] = df[column].to_numpy()
    return meta


def to_frame(out: Any, expected_rows: int | None) -> pd.DataFrame:
    if isinstance(out, pd.DataFrame):
        frame = out.reset_index(drop=True)
    elif isinstance(out, pd.Series):
        frame = pd.DataFrame({"prediction": out.to_numpy()})
    elif isinstance(out, np.ndarray):
        if out.ndim == 2:
            frame = pd.DataFrame(out, columns=[f"prediction_{i}" for i in range(out.shape[1])])
        else:
            frame = pd.DataFrame({"prediction": out.reshape(-1)})
    elif isinstance(out, list | tuple):
        frame = pd.DataFrame({"prediction": list(out)})
    else:
        raise TypeError(f"run() must return a list, array, Series or DataFrame, got {type(out).__name__}")
    if expected_rows is not None and len(frame) != expected_rows:
        raise ValueError(f"run() returned {len(frame)} rows for {expected_rows} input rows; "
                         "it must return one element per input row")
    return frame


def join(meta: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    clashes = {c: f"prediction_{c}" for c in predictions.columns if c in meta.columns}
    return pd.concat([meta, predictions.rename(columns=clashes)], axis=1)


def write_part(frames: list[pd.DataFrame], path: Path) -> int:
    """The batch's output rows in the format its suffix names (.parquet, .csv with a header line, or .jsonl)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return 0
    if path.suffix == ".jsonl":
        with path.open("w") as handle:
            for frame in frames:
                frame.to_json(handle, orient="records", lines=True)
        return sum(len(f) for f in frames)
    tables = [pa.Table.from_pandas(f, preserve_index=False) for f in frames]
    table = pa.concat_tables(tables, promote_options="permissive")
    if path.suffix == ".csv":
        pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="needed"))
    else:
        pq.write_table(table, path)
    return table.num_rows


def _reset_peak_rss() -> None:
    """Start a new peak: Linux resets a process's VmHWM when "5" is written to its clear_refs."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _peak_rss_mib() -> float:
    """The process's peak resident size since _reset_peak_rss (or its life, where that cannot be reset), plus
    its waited-for children's; exact where the supervisor's sampling can miss a short peak."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024 + children
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + children


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the supervisor dies, so a kill -9 of it leaves no orphan scoring."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the supervisor's own cleanup is all there is


def serve(conn: Any, spec: ScriptSpec) -> None:
    """Entry point of the scoring process: init() once, then one Task per message until told to stop."""
    _die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # the script's logging and print() become JSON log lines with the worker's, job's and batch's keys
    configure_logging("batchscore.script", spec.logging_level, sys.__stderr__, worker=spec.worker_id)
    script_log = logging.getLogger("score")
    sys.stdout = LinesToLog(script_log, logging.INFO, "stdout")
    sys.stderr = LinesToLog(script_log, logging.WARNING, "stderr")
    try:
        module = load_script(spec)
        module.init()
    except Exception as exc:
        conn.send(("init_failed", (one_line(exc), user_traceback(exc, spec.code_dir))))
        return
    conn.send(("ready", None))
    scorer = Scorer(module, spec)
    while True:
        task = conn.recv()
        if task is None:
            return
        with log_keys(job_id=task.job_id, batch_id=task.batch_id, source=None):
            try:
                _reset_peak_rss()
                result = scorer.score(task)
                result.max_rss_mib = _peak_rss_mib()
                conn.send(("done", result))
            except Exception as exc:  # our own failure (say, an output that cannot be stored): fail the batch
                conn.send(("error", (one_line(exc), traceback.format_exc())))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
