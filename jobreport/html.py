"""One self-contained HTML page that shows what a job did, from its _summary.json (pictures embedded as PNG).

- input sizes before and after splitting (log-scale histogram): the skew and its fix;
- a timeline of every worker's batches, one lane per worker: idle time and stragglers;
- rows (or files) per second over the run; each batch's peak memory against the worker's cap;
- the failures (source, reason, tries, level) and the job's settings.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to PNG
import matplotlib.pyplot as plt  # noqa: E402

MiB = 1024**2
MAX_FAILURE_ROWS = 500


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def sizes_chart(summary: dict[str, Any]) -> str | None:
    inputs = summary.get("inputs") or []
    before = [i["bytes"] / MiB for i in inputs if i["bytes"]]
    after = [b / MiB for i in inputs for b in (i.get("shard_bytes") or [i["bytes"]]) if b]
    if not before:
        return None
    fig, ax = plt.subplots(figsize=(8, 3))
    low, high = min(before + after), max(before + after)
    bins = _log_bins(low, high)
    ax.hist(before, bins=bins, alpha=0.6, label=f"input files ({len(before)})")
    ax.hist(after, bins=bins, alpha=0.6, label=f"after splitting ({len(after)} shards)")
    ax.set_xscale("log")
    ax.set_xlabel("MiB")
    ax.set_ylabel("count")
    ax.legend()
    ax.set_title("Input sizes before and after splitting")
    return _png(fig)


def _log_bins(low: float, high: float, count: int = 30) -> list[float]:
    low, high = max(low, 1e-6), max(high, low * 1.01)
    ratio = (high / low) ** (1 / count)
    return [low * ratio**i for i in range(count + 1)]


def timeline_chart(summary: dict[str, Any]) -> str | None:
    batches = summary.get("batches") or []
    if not batches:
        return None
    start = min(b["started_at"] for b in batches)
    workers = sorted({b["worker"] for b in batches})
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.4 * len(workers)))
    for lane, worker in enumerate(workers):
        mine = [b for b in batches if b["worker"] == worker]
        ax.broken_barh([(b["started_at"] - start, b["finished_at"] - b["started_at"]) for b in mine],
                       (lane - 0.4, 0.8),
                       facecolors=["tab:red" if b["failed_items"] else "tab:blue" for b in mine],
                       edgecolor="white")
    ax.set_yticks(range(len(workers)), workers)
    ax.set_xlabel("seconds since the first batch started")
    ax.set_title("Batches per worker (red: with failed items)")
    return _png(fig)


def throughput_chart(summary: dict[str, Any]) -> str | None:
    batches = summary.get("batches") or []
    if not batches:
        return None
    start = min(b["started_at"] for b in batches)
    end = max(b["finished_at"] for b in batches)
    steps = 50
    width = max((end - start) / steps, 1e-3)
    rates = [0.0] * steps
    for b in batches:
        span = max(b["finished_at"] - b["started_at"], 1e-6)
        rate = b["succeeded_items"] / span  # spread evenly over the batch's time
        for i in range(steps):
            lo, hi = start + i * width, start + (i + 1) * width
            overlap = min(hi, b["finished_at"]) - max(lo, b["started_at"])
            if overlap > 0:
                rates[i] += rate * overlap / width
    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.plot([i * width for i in range(steps)], rates, drawstyle="steps-post")
    ax.set_xlabel("seconds since the first batch started")
    ax.set_ylabel(f"{summary.get('items_are', 'items')}/s")
    ax.set_title(f"{summary.get('items_are', 'items').capitalize()} scored per second")
    ax.set_ylim(bottom=0)
    return _png(fig)


def memory_chart(summary: dict[str, Any]) -> str | None:
    batches = [b for b in summary.get("batches") or [] if b.get("peak_rss_mib")]
    if not batches:
        return None
    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.bar(range(len(batches)), [b["peak_rss_mib"] for b in batches], color="tab:green")
    cap = summary.get("memory_cap_mib")
    if cap:
        ax.axhline(cap, color="tab:red", linestyle="--", label=f"cap {cap} MiB")
        ax.legend()
    ax.set_xlabel("batch")
    ax.set_ylabel("MiB")
    ax.set_title("Peak memory of each batch's scoring process")
    return _png(fig)


def render(summary: dict[str, Any]) -> str:
    e = html.escape
    status = summary.get("status", "?")
    batches = {b["batch_id"]: b for b in summary.get("batches") or []}
    charts = [c for c in (sizes_chart(summary), timeline_chart(summary), throughput_chart(summary),
                          memory_chart(summary)) if c]
    timings = summary.get("timings") or {}
    failures = summary.get("failures") or []
    rows = []
    for f in failures[:MAX_FAILURE_ROWS]:
        batch = batches.get(f.get("batch_id") or "", {})
        where = f"{f['source']}" + (f" (row {f['row']})" if f.get("row") is not None else "")
        rows.append(f"<tr><td>{e(where)}</td><td>{e(f['reason'])}</td><td>{f.get('items', 1)}</td>"
                    f"<td>{batch.get('deliveries', '')}</td><td>{e(str(batch.get('level', '')))}</td></tr>")
    more = (f"<p>... and {len(failures) - MAX_FAILURE_ROWS} more in _summary.json</p>"
            if len(failures) > MAX_FAILURE_ROWS else "")
    failures_html = ("<table><tr><th>source</th><th>reason</th><th>items</th><th>tries</th><th>level</th></tr>"
                     + "".join(rows) + "</table>" + more) if rows else "<p>None.</p>"
    settings = json.dumps(summary.get("settings") or {}, indent=2)
    images = "".join(f'<img src="{c}" alt="chart">' for c in charts)
    unit = e(summary.get("items_are", "items"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>batchscore job {e(summary.get('job_id', ''))}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 900px; }}
.succeeded {{ color: #1a7f37; }} .failed {{ color: #cf222e; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 4px; text-align: left; vertical-align: top; }}
img {{ display: block; margin: 1em 0; max-width: 100%; }}
pre {{ background: #f6f8fa; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>Job {e(summary.get('job_id', ''))}: <span class="{e(status)}">{e(status)}</span></h1>
<p id="totals">{summary.get('input_files', 0)} input file(s), {summary.get('shards', 0)} shard(s),
{summary.get('mini_batches', 0)} mini-batch(es); {summary.get('succeeded_items', 0)} {unit} scored,
{summary.get('failed_items', 0)} failed; {timings.get('wall_s') or 0:.1f} s from start to finish.</p>
{f'<p class="failed">{e(summary["error"])}</p>' if summary.get("error") else ''}
{images}
<h2>Failures</h2>
{failures_html}
<h2>Settings</h2>
<pre>{e(settings)}</pre>
</body></html>
"""
