"""Measure what the scoring script needs, and choose level, batch size and shard size that fit the worker's cap.

The measurements run the user's script in the worker's own scoring process (container.scoring_process), capped
at the worker's memory: for each level the payload allows, the peak memory of the process tree while it scores
inputs of several sizes (prefixes of the largest sample file, written in its own format). A straight line
through those points, per level, predicts the peak for any input size; the real input's shards and mini-batches
come from the splitter's byte plan and the dispatcher's own packing code, run on the input's listed sizes.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from batchscore.config import Deployment, Settings
from batchscore.records import Shard
from container.exceptions import ScoringProcessDied, ScriptInitError
from container.runtime import ScriptSpec, Task, TaskFile
from container.scoring_process import ScoringProcess
from container.worker import thread_limits
from functions.dispatch import batch_byte_limit, pack
from splitter.formats import detect_format
from splitter.plan import shard_sizes

SAFETY = 0.8  # plan for at most 80% of the cap: the measured line is not the worst case
FRACTIONS = (0.25, 0.5, 1.0)  # of the largest sample file's rows
LEVELS = {"paths": ("mini_batch", "file"), "dataframe": ("mini_batch", "file", "row")}
MiB = 1024**2
ROW_LEVEL_CALLS = 4000  # run() calls per row-level measurement, at most
MIN_UNIT_BYTES = 64 * 1024  # no smaller shards or mini-batches are recommended


class PlanError(Exception):
    pass


@dataclass
class Fit:
    """peak_mib = base_mib + mib_per_mib * input_mib, from the measured points (input MiB, peak MiB)."""

    level: str
    points: list[tuple[float, float]]
    base_mib: float = 0.0
    mib_per_mib: float = 0.0
    linear: bool = True
    killed_at_mib: float | None = None  # the smallest input the cap killed the process on, if any
    rows_per_mib: float | None = None  # of the samples, when they are tabular

    @property
    def kib_per_row(self) -> float | None:
        return self.mib_per_mib * 1024 / self.rows_per_mib if self.rows_per_mib else None

    def fit(self) -> Fit:
        xs, ys = [p[0] for p in self.points], [p[1] for p in self.points]
        if len(xs) >= 2 and max(xs) > min(xs):
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
            self.mib_per_mib, self.base_mib = max(0.0, slope), my - max(0.0, slope) * mx
            # not linear: a point more than 10% of its value (and 20 MiB) off the line
            self.linear = all(abs(self.predict(x) - y) <= max(0.1 * y, 20) for x, y in self.points)
        elif ys:
            self.base_mib = max(ys)
        return self

    def predict(self, input_mib: float) -> float:
        return self.base_mib + self.mib_per_mib * input_mib

    def largest_input_mib(self, budget_mib: float) -> float | None:
        """The largest input whose predicted peak stays within budget; None if even an empty one does not fit."""
        if self.base_mib > budget_mib:
            return None
        return math.inf if self.mib_per_mib <= 0 else (budget_mib - self.base_mib) / self.mib_per_mib


@dataclass
class Plan:
    cap_mib: int
    runtime_mib: float
    init_mib: float
    fits: dict[str, Fit]
    input_files: int
    input_bytes: int
    largest_shard: int
    largest_batch: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    recommended: dict[str, Any] = field(default_factory=dict)
    current_verdict: str = ""


def make_samples(sample_dir: Path, out_dir: Path, max_rows: int | None = None) -> list[tuple[Path, int | None]]:
    """Inputs of several sizes: prefixes of the largest tabular sample file (of at most `max_rows` rows); else
    the sample files themselves."""
    files = sorted((p for p in sample_dir.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))),
                   key=lambda p: p.stat().st_size)
    if not files:
        raise PlanError(f"--sample {sample_dir}: no files")
    largest = files[-1]
    fmt = detect_format(largest.name)
    if fmt.compression is None and fmt.kind in ("csv", "tsv", "jsonl", "parquet"):
        table = _read(largest, fmt.kind)
        total = min(table.num_rows, max_rows or table.num_rows)
        samples: list[tuple[Path, int | None]] = []
        for fraction in FRACTIONS:
            rows = max(1, int(total * fraction))
            path = out_dir / f"{fraction:g}" / largest.name
            path.parent.mkdir(parents=True)
            _write(table.slice(0, rows), path, fmt.kind)
            samples.append((path, rows))
        return samples
    return [(path, None) for path in files[-len(FRACTIONS):]]


def _read(path: Path, kind: str) -> pa.Table:
    if kind == "parquet":
        return pq.read_table(path)
    if kind == "jsonl":
        return pajson.read_json(path)
    return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter="\t" if kind == "tsv" else ","))


def _write(table: pa.Table, path: Path, kind: str) -> None:
    if kind == "parquet":
        pq.write_table(table, path)
    elif kind == "jsonl":
        table.to_pandas().to_json(path, orient="records", lines=True)
    else:
        pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(delimiter="\t" if kind == "tsv" else ","))


class Probe:
    """Runs one task at a time in a fresh scoring process (a reused one keeps the heap of earlier tasks)."""

    def __init__(self, deployment: Deployment, workdir: Path, cap_mib: int) -> None:
        self.deployment, self.workdir, self.cap_mib = deployment, workdir, cap_mib
        model_dir = workdir / "model"
        if deployment.model is None:
            model_dir.mkdir()
        elif deployment.model.is_file():
            model_dir.mkdir()
            shutil.copy(deployment.model, model_dir / deployment.model.name)
        else:
            shutil.copytree(deployment.model, model_dir)
        (workdir / "bi_output").mkdir()
        settings = deployment.settings
        self.spec = ScriptSpec(code_dir=str(deployment.code_configuration.code) + "/",
                               scoring_script=deployment.code_configuration.scoring_script,
                               model_dir=str(model_dir), output_dir=str(workdir / "bi_output"),
                               environment=thread_limits(deployment) | dict(settings.environment_variables),
                               logging_level=settings.logging_level)

    def runtime_mib(self) -> float:
        """The scoring process before the user's script: the runtime and its libraries alone."""
        code = self.workdir / "stub"
        code.mkdir(exist_ok=True)
        (code / "stub.py").write_text("def init():\n    pass\n\n\ndef run(batch):\n    return batch\n")
        stub = ScriptSpec(code_dir=str(code) + "/", scoring_script="stub.py", model_dir=self.spec.model_dir,
                          output_dir=self.spec.output_dir, environment=self.spec.environment)
        return self._started_mib(stub)

    def after_init_mib(self) -> float:
        return self._started_mib(self.spec)

    def _started_mib(self, spec: ScriptSpec) -> float:
        process = ScoringProcess(spec, self.cap_mib)
        try:
            process.start()
            return process.tree_rss_mib()
        except ScriptInitError as exc:
            raise PlanError(f"{exc}\n{exc.user_traceback}") from None
        finally:
            process.kill()

    def peak_mib(self, level: str, files: list[Path]) -> float | None:
        """The task's peak memory; None when the cap killed it."""
        settings: Settings = self.deployment.settings
        out = self.workdir / "part.parquet"
        task = Task(batch_id="plan", payload=settings.payload, level=level,
                    files=[TaskFile(path=str(p), source=p.name) for p in files], out_path=str(out),
                    keep_columns=tuple(settings.keep_columns), row_batch_size=settings.row_batch_size,
                    max_retries=0, timeout_s=max(settings.retry_settings.timeout, 600))
        process = ScoringProcess(self.spec, self.cap_mib)
        try:
            process.start()
            process.score(task)
            return process.peak_rss_mib
        except ScoringProcessDied as exc:
            if exc.memory_killed:
                return None
            raise PlanError(f"scoring the sample at level {level} failed: {exc}") from None
        finally:
            process.kill()
            out.unlink(missing_ok=True)


def measure(deployment: Deployment, sample_dir: Path,
            on_step: Callable[[str], None] = lambda _: None) -> tuple[float, float, dict[str, Fit]]:
    """(MiB of the runtime alone, MiB after the script's import and init(), a fit per level)."""
    cap = deployment.resources.memory_per_worker_mib
    with tempfile.TemporaryDirectory(prefix="batchscore-plan-") as tmp:
        work = Path(tmp)
        samples = make_samples(sample_dir, work / "samples")
        # row level calls run() once per row_batch_size rows: measured on shorter prefixes, which is enough to
        # see how its memory grows (little: rows are streamed)
        row_rows = ROW_LEVEL_CALLS * deployment.settings.row_batch_size
        row_samples = make_samples(sample_dir, work / "row-samples", row_rows)
        probe = Probe(deployment, work / "probe", cap)
        runtime_mib = probe.runtime_mib()
        init_mib = probe.after_init_mib()
        on_step(f"runtime alone: {runtime_mib:.0f} MiB; after the script's import and init(): {init_mib:.0f} MiB")
        fits: dict[str, Fit] = {}
        for level in LEVELS[deployment.settings.payload]:
            fit = Fit(level, [])
            chosen = [p for p, _ in (row_samples if level == "row" else samples)]
            sizes = [p.stat().st_size for p in chosen]
            full, rows = (row_samples if level == "row" else samples)[-1]
            if rows:
                fit.rows_per_mib = rows / (full.stat().st_size / MiB)
            if level == "mini_batch":
                # a mini-batch of many small files: copies of the smallest sample
                runs = [(k * sizes[0], [chosen[0]] * k) for k in (1, 2, 4)]
            else:
                runs = [(size, [path]) for size, path in zip(sizes, chosen, strict=True)]
            for size, files in runs:
                peak = probe.peak_mib(level, files)
                if peak is None:
                    fit.killed_at_mib = size / MiB
                    on_step(f"{level}: {size / MiB:.1f} MiB of input: killed at the {cap} MiB cap")
                    break
                fit.points.append((size / MiB, peak))
                on_step(f"{level}: {size / MiB:.1f} MiB of input: peak {peak:.0f} MiB")
            fits[level] = fit.fit()
        return runtime_mib, init_mib, fits


def list_sizes(data: str, target: Any = None) -> list[tuple[str, int]]:
    """(name, bytes) of the real input: a local folder walked, or an s3:// prefix listed (nothing is read)."""
    if data.startswith("s3://"):
        bucket, _, prefix = data[5:].partition("/")
        s3 = target.client("s3")
        found = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found += [(o["Key"], o["Size"]) for o in page.get("Contents", [])
                      if not o["Key"].rsplit("/", 1)[-1].startswith((".", "_"))]
        return found
    root = Path(data)
    if not root.is_dir():
        raise PlanError(f"--data {data}: not a folder or s3:// prefix")
    return [(str(p.relative_to(root)), p.stat().st_size) for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)]


def shards_of(sizes: list[tuple[str, int]], settings: Settings) -> list[Shard]:
    shards = []
    for name, size in sizes:
        splittable = detect_format(name).splittable
        pieces = shard_sizes(size, int(settings.max_shard_bytes)) if splittable else [size]
        shards += [Shard(key=f"{name}#{i}", source=name, bytes=b) for i, b in enumerate(pieces)]
    return shards


def largest_batch(shards: list[Shard], settings: Settings, workers: int) -> int:
    limit = batch_byte_limit(settings, sum(s.bytes for s in shards), workers)
    return max((sum(s.bytes for s in batch) for batch in pack(shards, settings.mini_batch_size, limit)), default=0)


def plan(deployment: Deployment, runtime_mib: float, init_mib: float, fits: dict[str, Fit],
         sizes: list[tuple[str, int]]) -> Plan:
    settings, resources = deployment.settings, deployment.resources
    cap = resources.memory_per_worker_mib
    budget = SAFETY * cap
    shards = shards_of(sizes, settings)
    biggest_shard = max((s.bytes for s in shards), default=0)
    biggest_batch = largest_batch(shards, settings, resources.workers)
    result = Plan(cap_mib=cap, runtime_mib=runtime_mib, init_mib=init_mib, fits=fits, input_files=len(sizes),
                  input_bytes=sum(s for _, s in sizes), largest_shard=biggest_shard, largest_batch=biggest_batch)
    for level, fit in fits.items():
        unit = biggest_batch if level == "mini_batch" else biggest_shard
        predicted = fit.predict(unit / MiB)
        largest = fit.largest_input_mib(budget)
        if fit.killed_at_mib is not None and largest is not None:
            largest = min(largest, fit.killed_at_mib * SAFETY)
        result.rows.append({
            "level": level, "unit": "mini-batch" if level == "mini_batch" else "shard", "unit_bytes": unit,
            "predicted_peak_mib": round(predicted, 1), "largest_fitting_mib": largest,
            "fits": predicted <= budget and (fit.killed_at_mib is None or unit / MiB < fit.killed_at_mib * SAFETY),
            "linear": fit.linear,
        })
    current = next(r for r in result.rows if r["level"] == settings.level)
    result.current_verdict = (
        f"fits: level {settings.level} peaks at about {current['predicted_peak_mib']:.0f} MiB of the {cap} MiB cap"
        if current["fits"] else
        f"does not fit: level {settings.level} would peak at about {current['predicted_peak_mib']:.0f} MiB, over "
        f"{SAFETY:.0%} of the {cap} MiB cap")
    result.recommended = recommend(deployment, result, shards)
    return result


def recommend(deployment: Deployment, result: Plan, shards: list[Shard]) -> dict[str, Any]:
    """The configured level when it fits, with smaller shards (and mini-batches) if that is what it takes; else
    the next finer level that fits. And the most workers per instance whose share of memory_mib holds the peak."""
    settings, resources = deployment.settings, deployment.resources
    budget = SAFETY * result.cap_mib
    levels = [lv for lv in ("mini_batch", "file", "row") if lv in result.fits]
    candidates = levels[levels.index(settings.level):]
    unsplittable = max((s.bytes for s in shards if not detect_format(s.source).splittable), default=0)
    chosen: dict[str, Any] | None = None
    for level in candidates:
        fit = result.fits[level]
        largest = fit.largest_input_mib(budget)
        if largest is not None and fit.killed_at_mib is not None:
            largest = min(largest, fit.killed_at_mib * SAFETY)
        if largest is None or largest * MiB < MIN_UNIT_BYTES:
            continue
        limit = math.inf if largest == math.inf else int(largest * MiB)
        max_shard = int(settings.max_shard_bytes)
        max_batch = int(settings.max_mini_batch_bytes) if settings.max_mini_batch_bytes else None
        if level != "row":
            if unsplittable > limit:
                continue  # a file that cannot be split is already too big at this level
            if limit < max_shard:
                max_shard = max(MIN_UNIT_BYTES, int(limit) // 1024 * 1024)
            if level == "mini_batch" and limit != math.inf and (max_batch is None or limit < max_batch):
                if result.largest_batch > limit:
                    max_batch = max(MIN_UNIT_BYTES, int(limit) // 1024 * 1024)
        unit = min(result.largest_shard, max_shard)
        if level == "mini_batch":
            unit = min(result.largest_batch, max_batch or result.largest_batch)
        chosen = {"level": level, "mini_batch_size": settings.mini_batch_size, "max_shard_bytes": max_shard,
                  "predicted_peak_mib": round(fit.predict(unit / MiB), 1)}
        if max_batch:
            chosen["max_mini_batch_bytes"] = max_batch
        break
    if chosen is None:
        raise PlanError(f"no level fits the {result.cap_mib} MiB cap per worker, even with small shards: "
                        "raise resources.memory_mib or lower max_concurrency_per_instance")
    peak = max(chosen["predicted_peak_mib"], 1.0)
    chosen["max_concurrency_per_instance"] = max(1, min(8, int(resources.memory_mib * SAFETY // peak)))
    return chosen
