"""Load-test dashboard: one self-contained HTML page from the Locust runs under var/perf/runs/.

Each run folder (`var/perf/runs/<run_id>/`, run ids sort chronologically) holds the
per-attempt `requests.csv` written by perf/locustfile.py and a `settings.json`. This module
reads one run, computes its summary (`run_summary`, usable without any HTML), and writes a
page with summary cards, hand-drawn inline SVG charts, per-endpoint and per-persona tables,
and a comparison with the previous runs that flags regressions. The page loads nothing from
anywhere: no scripts, no fonts, no stylesheets, so nginx can serve it at /perf/ and it opens
as a plain file too. Everything taken from the data is HTML-escaped.

Definitions (shared by the cards, the tables and the tests):
- final records: rows with is_retry_record false; requests = their count
- success_rate: successful final records / requests
- p50/p95 response time: over successful final records; median TTFT over those with a ttft
- percentiles: nearest rank, sorted values at index round(q * (n - 1)) (Python's round)
- tokens/s: tokens of successful final records / run span, where the span is
  max(elapsed_s + response_time/1000) - min(elapsed_s) over final records
- count_429: every row (final or retry) with status 429; retries: rows with is_retry_record

    .venv/bin/python -m perf.dashboard [--runs var/perf/runs] [--out var/perf/dashboard/index.html] [--run RUN_ID]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import html
import json
import math
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from webapp.config.env import REPO_ROOT

REQUIRED_COLUMNS = ("elapsed_s", "status_code", "response_time", "success", "is_retry_record")
REGRESSION_THRESHOLD = 0.20  # p95 up or tokens/s down by more than this vs the previous run
HISTOGRAM_BINS = 20
TIME_BUCKETS = 30
MAX_POINTS = 1500  # per scatter series; more points only make the file bigger, not the chart clearer
EMPTY = "—"
DASH = "\N{EN DASH}"  # for ranges such as a think time of 1 to 3 s


# --- loading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    """One row of requests.csv: one attempt (a 429 that was retried, or a request's final outcome)."""

    elapsed_s: float
    response_time_ms: float
    ttft_ms: float | None
    tokens: int
    success: bool
    failure_reason: str
    status_code: int
    is_retry_record: bool
    endpoint: str
    test_type: str
    persona: str
    active_users: int | None

    @property
    def end_s(self) -> float:
        return self.elapsed_s + self.response_time_ms / 1000


def _bool(raw: str) -> bool:
    return raw.strip().lower() in ("true", "1", "yes")


def _number(raw: str, where: str) -> float | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{where}: {raw!r} is not a number") from None
    return value if math.isfinite(value) else None


def records_load(csv_path: Path) -> list[RequestRecord]:
    """Every row of one requests.csv. Empty cells read as missing; a malformed number raises ValueError."""
    with csv_path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if reader.fieldnames is None:  # a zero-byte file: the run died before writing its header
            return []
        missing = [column for column in REQUIRED_COLUMNS if column not in reader.fieldnames]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {', '.join(missing)}")
        return [_record_parse(row, f"{csv_path}:{reader.line_num}") for row in reader]


def _record_parse(row: dict[str, str | None], where: str) -> RequestRecord:
    def text(column: str) -> str:
        return (row.get(column) or "").strip()

    def number(column: str) -> float | None:
        return _number(text(column), f"{where} column {column}")

    active = number("active_users")
    return RequestRecord(
        elapsed_s=number("elapsed_s") or 0.0,
        response_time_ms=number("response_time") or 0.0,
        ttft_ms=number("ttft"),
        tokens=int(number("tokens") or 0),
        success=_bool(text("success")),
        failure_reason=text("failure_reason"),
        status_code=int(number("status_code") or 0),
        is_retry_record=_bool(text("is_retry_record")),
        endpoint=text("endpoint") or "?",
        test_type=text("test_type") or "?",
        persona=text("persona"),
        active_users=None if active is None else int(active),
    )


def settings_load(run_dir: Path) -> dict[str, Any]:
    """The run's settings.json, or {} when an old run has none."""
    path = run_dir / "settings.json"
    if not path.exists():
        return {}
    settings = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return settings


def run_dirs(runs_dir: Path) -> list[Path]:
    """Run folders that have a requests.csv, oldest first (run ids sort chronologically)."""
    if not runs_dir.is_dir():
        return []
    return sorted(path for path in runs_dir.iterdir() if (path / "requests.csv").is_file())


# --- summary math -------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest rank: the sorted values at index round(q * (n - 1)); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[round(q * (len(ordered) - 1))]


@dataclass(frozen=True)
class Stats:
    """The summary numbers, for a whole run or one slice of it (an endpoint, a persona)."""

    requests: int
    successes: int
    success_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    ttft_p50_ms: float | None
    tokens: int
    tokens_per_s: float | None
    count_429: int
    retries: int


@dataclass(frozen=True)
class GroupRow(Stats):
    """One row of a breakdown table: `name` is the endpoint (or persona), `test_type` its test type(s)."""

    name: str
    test_type: str


@dataclass(frozen=True)
class RunSummary(Stats):
    """Everything the page shows about one run, and what the tests check without parsing HTML."""

    run_id: str
    settings: dict[str, Any]
    rows: int  # every row in requests.csv, retry records included
    span_s: float | None  # first request start to last reply end, over final records
    endpoints: tuple[GroupRow, ...]
    personas: tuple[GroupRow, ...]
    outcomes: tuple[tuple[str, int], ...]  # ("ok", n) first, then failure reasons, most frequent first


def run_span(records: Sequence[RequestRecord]) -> float | None:
    finals = [record for record in records if not record.is_retry_record]
    if not finals:
        return None
    return max(record.end_s for record in finals) - min(record.elapsed_s for record in finals)


def stats_compute(records: Sequence[RequestRecord], span_s: float | None) -> Stats:
    """The numbers for `records`; tokens/s divides by `span_s`, the whole run's span, for every slice."""
    finals = [record for record in records if not record.is_retry_record]
    ok = [record for record in finals if record.success]
    times = [record.response_time_ms for record in ok]
    tokens = sum(record.tokens for record in ok)
    return Stats(
        requests=len(finals),
        successes=len(ok),
        success_rate=len(ok) / len(finals) if finals else None,
        p50_ms=percentile(times, 0.5),
        p95_ms=percentile(times, 0.95),
        ttft_p50_ms=percentile((record.ttft_ms for record in ok if record.ttft_ms is not None), 0.5),
        tokens=tokens,
        tokens_per_s=tokens / span_s if span_s else None,
        count_429=sum(1 for record in records if record.status_code == 429),
        retries=sum(1 for record in records if record.is_retry_record),
    )


def _groups(
    records: Sequence[RequestRecord], *, key: Callable[[RequestRecord], str], span_s: float | None
) -> tuple[GroupRow, ...]:
    grouped: dict[str, list[RequestRecord]] = defaultdict(list)
    for record in records:
        grouped[key(record)].append(record)
    rows = [
        GroupRow(
            name=name,
            test_type=", ".join(sorted({record.test_type for record in members})),
            **dataclasses.asdict(stats_compute(members, span_s)),
        )
        for name, members in grouped.items()
    ]
    return tuple(sorted(rows, key=lambda row: (-row.requests, row.name)))


def outcomes_count(records: Sequence[RequestRecord]) -> tuple[tuple[str, int], ...]:
    """Final records by outcome: "ok" for successes, else the failure reason ("unknown" if blank)."""
    finals = [record for record in records if not record.is_retry_record]
    ok = sum(1 for record in finals if record.success)
    failures = Counter(record.failure_reason or "unknown" for record in finals if not record.success)
    ranked = sorted(failures.items(), key=lambda item: (-item[1], item[0]))
    return (("ok", ok), *ranked) if ok else tuple(ranked)


def summary_compute(run_id: str, *, settings: dict[str, Any], records: Sequence[RequestRecord]) -> RunSummary:
    span = run_span(records)
    return RunSummary(
        run_id=run_id,
        settings=settings,
        rows=len(records),
        span_s=span,
        endpoints=_groups(records, key=lambda record: record.endpoint, span_s=span),
        personas=_groups(records, key=lambda record: record.persona or "(none)", span_s=span),
        outcomes=outcomes_count(records),
        **dataclasses.asdict(stats_compute(records, span)),
    )


def run_summary(run_dir: Path) -> RunSummary:
    """The summary of one run folder; the run id is the folder's name."""
    records = records_load(run_dir / "requests.csv")
    return summary_compute(run_dir.name, settings=settings_load(run_dir), records=records)


# --- time series --------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeline:
    """Fixed-width time buckets from t=0 (the run's start) to the last reply's end."""

    bucket_s: float
    end_s: float

    @property
    def count(self) -> int:
        return max(1, math.ceil(self.end_s / self.bucket_s))

    def index(self, t: float) -> int:
        return min(self.count - 1, max(0, int(t // self.bucket_s)))

    def start(self, i: int) -> float:
        return i * self.bucket_s

    def width(self, i: int) -> float:
        """The last bucket ends with the run, so it may be narrower than the others."""
        return max(1e-9, min(self.end_s, (i + 1) * self.bucket_s) - i * self.bucket_s)


def timeline_for(finals: Sequence[RequestRecord]) -> Timeline:
    end = max(max(record.end_s for record in finals), 1e-3)
    return Timeline(bucket_s=max(1.0, float(round(end / TIME_BUCKETS))), end_s=end)  # whole seconds read better


def tokens_per_bucket(finals: Sequence[RequestRecord], timeline: Timeline) -> list[float]:
    """Tokens/s per bucket. A reply's tokens are spread evenly from its first token (or its start,
    with no TTFT) to its end, so a long reply counts where it streamed, not all at its last second."""
    tokens = [0.0] * timeline.count
    for record in finals:
        if not record.success or not record.tokens:
            continue
        lo = record.elapsed_s + (record.ttft_ms or 0.0) / 1000
        hi = max(lo, record.end_s)
        if hi - lo < 1e-9:
            tokens[timeline.index(hi)] += record.tokens
            continue
        for i in range(timeline.index(lo), timeline.index(hi) + 1):
            overlap = min(hi, timeline.start(i) + timeline.bucket_s) - max(lo, timeline.start(i))
            if overlap > 0:
                tokens[i] += record.tokens * overlap / (hi - lo)
    return [total / timeline.width(i) for i, total in enumerate(tokens)]


def users_per_bucket(records: Sequence[RequestRecord], timeline: Timeline) -> list[int | None]:
    """Most users running at any request start in the bucket; a bucket with no start keeps the last value."""
    peaks: list[int | None] = [None] * timeline.count
    for record in records:
        if record.active_users is None:
            continue
        i = timeline.index(record.elapsed_s)
        peaks[i] = max(peaks[i] or 0, record.active_users)
    last: int | None = None
    for i, peak in enumerate(peaks):
        last = peak if peak is not None else last
        peaks[i] = last
    return peaks


def medians_per_bucket(points: Sequence[tuple[float, float]], timeline: Timeline) -> list[tuple[float, float] | None]:
    """(bucket centre, median y) per bucket, None where the bucket has no point."""
    grouped: dict[int, list[float]] = defaultdict(list)
    for x, y in points:
        grouped[timeline.index(x)].append(y)
    return [
        (timeline.start(i) + timeline.width(i) / 2, statistics.median(grouped[i])) if i in grouped else None
        for i in range(timeline.count)
    ]


def _thin(points: Sequence[tuple[float, float]], limit: int = MAX_POINTS) -> Sequence[tuple[float, float]]:
    """Every k-th point, so a long run's page stays small; deterministic, so reruns draw the same chart."""
    step = math.ceil(len(points) / limit) if len(points) > limit else 1
    return points[::step]


# --- formatting ---------------------------------------------------------------------------


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def fmt_ms(value: float | None) -> str:
    return EMPTY if value is None else f"{value:.0f}"


def fmt_rate(value: float | None) -> str:
    return EMPTY if value is None else f"{value * 100:.1f}%"


def fmt_tps(value: float | None) -> str:
    return EMPTY if value is None else f"{value:.1f}"


def fmt_tick(value: float, scale_max: float | None = None) -> str:
    """A tick label; on an axis that reaches 10000 (`scale_max`), every label is in thousands: 2.5k, 5k, 10k."""
    if abs(scale_max if scale_max is not None else value) >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"


def _mapping(value: object, unit: str = "") -> str:
    if isinstance(value, dict) and value:
        return " · ".join(f"{key}: {item}{unit}" for key, item in value.items())
    return EMPTY if value in (None, {}, "") else f"{value}{unit}"


def _think_time(value: object) -> str:
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"{value[0]}{DASH}{value[1]} s"
    return EMPTY if value in (None, "") else str(value)


def _plain(value: object, unit: str = "") -> str:
    return EMPTY if value in (None, "") else f"{value}{unit}"


# --- svg helpers --------------------------------------------------------------------------

COLOR_RT = "#5aa9ff"
COLOR_TTFT = "#f5a97f"
COLOR_FAIL = "#ff6b6b"
COLOR_OK = "#7bd88f"
COLOR_TOKENS = "#5aa9ff"
COLOR_USERS = "#c39bff"
COLOR_AXIS = "#8a96a6"
COLOR_GRID = "#2a3340"


def nice_ticks(hi: float, count: int = 5) -> list[float]:
    """0, step, 2*step, ... up to the first tick >= hi, with a step of 1, 2, 2.5 or 5 times a power of ten."""
    hi = hi if hi > 0 else 1.0
    raw = hi / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(hi / step - 1e-9) + 1)]


@dataclass(frozen=True)
class Frame:
    """A plot area inside an SVG viewBox, and the linear maps from data to it."""

    width: int
    height: int
    x_lo: float
    x_hi: float
    y_hi: float
    left: int = 64
    right: int = 24
    top: int = 36
    bottom: int = 48

    @property
    def plot_bottom(self) -> float:
        return self.height - self.bottom

    @property
    def plot_right(self) -> float:
        return self.width - self.right

    def x(self, value: float) -> float:
        span = (self.x_hi - self.x_lo) or 1.0
        return self.left + (value - self.x_lo) / span * (self.plot_right - self.left)

    def y(self, value: float, y_hi: float | None = None) -> float:
        top = (y_hi if y_hi is not None else self.y_hi) or 1.0
        return self.plot_bottom - value / top * (self.plot_bottom - self.top)


def svg_doc(frame: Frame, title: str, body: Iterable[str]) -> str:
    return (
        f'<svg viewBox="0 0 {frame.width} {frame.height}" width="100%" role="img" aria-label="{esc(title)}">'
        f"<title>{esc(title)}</title>{''.join(body)}</svg>"
    )


def svg_axes(frame: Frame, *, x_ticks: Sequence[float], y_ticks: Sequence[float], x_label: str, y_label: str) -> str:
    """Grid lines, tick labels and axis titles for the left y axis and the x axis."""
    parts = []
    for tick in y_ticks:
        y = frame.y(tick)
        label = fmt_tick(tick, y_ticks[-1])
        parts.append(
            f'<line x1="{frame.left}" y1="{y:.1f}" x2="{frame.plot_right}" y2="{y:.1f}" stroke="{COLOR_GRID}"/>'
            f'<text x="{frame.left - 8}" y="{y + 4:.1f}" text-anchor="end" class="tick">{label}</text>'
        )
    for tick in x_ticks:
        x = frame.x(tick)
        label = fmt_tick(tick, x_ticks[-1])
        parts.append(
            f'<line x1="{x:.1f}" y1="{frame.plot_bottom}" x2="{x:.1f}" y2="{frame.plot_bottom + 5}" '
            f'stroke="{COLOR_AXIS}"/>'
            f'<text x="{x:.1f}" y="{frame.plot_bottom + 19}" text-anchor="middle" class="tick">{label}</text>'
        )
    middle = (frame.top + frame.plot_bottom) / 2
    parts.append(
        f'<line x1="{frame.left}" y1="{frame.plot_bottom}" x2="{frame.plot_right}" y2="{frame.plot_bottom}" '
        f'stroke="{COLOR_AXIS}"/>'
        f'<text x="{(frame.left + frame.plot_right) / 2:.1f}" y="{frame.height - 8}" text-anchor="middle" '
        f'class="label">{esc(x_label)}</text>'
        f'<text x="14" y="{middle:.1f}" text-anchor="middle" class="label" '
        f'transform="rotate(-90 14 {middle:.1f})">{esc(y_label)}</text>'
    )
    return "".join(parts)


def svg_right_axis(frame: Frame, *, ticks: Sequence[float], label: str, color: str) -> str:
    parts = [
        f'<text x="{frame.plot_right + 8}" y="{frame.y(tick, ticks[-1]) + 4:.1f}" class="tick" '
        f'fill="{color}">{fmt_tick(tick, ticks[-1])}</text>'
        for tick in ticks
    ]
    middle = (frame.top + frame.plot_bottom) / 2
    x = frame.width - 12
    parts.append(
        f'<text x="{x}" y="{middle:.1f}" text-anchor="middle" class="label" fill="{color}" '
        f'transform="rotate(90 {x} {middle:.1f})">{esc(label)}</text>'
    )
    return "".join(parts)


def svg_legend(frame: Frame, items: Sequence[tuple[str, str, str]]) -> str:
    """Items are (label, color, shape) with shape "dot", "cross", "line" or "bar", left to right above the plot."""
    parts, x = [], float(frame.left)
    for label, color, shape in items:
        if shape == "line":
            parts.append(f'<line x1="{x:.0f}" y1="16" x2="{x + 18:.0f}" y2="16" stroke="{color}" stroke-width="2.5"/>')
        elif shape == "bar":
            parts.append(f'<rect x="{x + 3:.0f}" y="10" width="12" height="12" fill="{color}"/>')
        elif shape == "cross":
            parts.append(svg_cross(x + 9, 16, color=color))
        else:
            parts.append(f'<circle cx="{x + 9:.0f}" cy="16" r="4" fill="{color}"/>')
        parts.append(f'<text x="{x + 24:.0f}" y="20" class="legend">{esc(label)}</text>')
        x += 24 + 7.5 * len(label) + 22
    return "".join(parts)


def svg_cross(cx: float, cy: float, *, color: str, tooltip: str = "") -> str:
    title = f"<title>{esc(tooltip)}</title>" if tooltip else ""
    down = f"M{cx - 4:.1f},{cy - 4:.1f}L{cx + 4:.1f},{cy + 4:.1f}"
    up = f"M{cx - 4:.1f},{cy + 4:.1f}L{cx + 4:.1f},{cy - 4:.1f}"
    return f'<path d="{down}{up}" stroke="{color}" stroke-width="2">{title}</path>'


def svg_bar(frame: Frame, *, x_range: tuple[float, float], height: float, color: str, tooltip: str) -> str:
    """A vertical bar from the x axis, one pixel of gap on each side, with a hover tooltip."""
    x0, x1 = frame.x(x_range[0]), frame.x(x_range[1])
    y = frame.y(height)
    return (
        f'<rect x="{x0 + 1:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 2, 1):.1f}" height="{frame.plot_bottom - y:.1f}" '
        f'fill="{color}" fill-opacity="0.85"><title>{esc(tooltip)}</title></rect>'
    )


def svg_path(points: Sequence[tuple[float, float] | None], frame: Frame, *, y_hi: float | None = None) -> str:
    """A polyline's path data; a None breaks the line."""
    commands, pen_down = [], False
    for point in points:
        if point is None:
            pen_down = False
            continue
        commands.append(f"{'L' if pen_down else 'M'}{frame.x(point[0]):.1f},{frame.y(point[1], y_hi):.1f}")
        pen_down = True
    return " ".join(commands)


# --- charts -------------------------------------------------------------------------------


def chart_histogram(summary: RunSummary, finals: Sequence[RequestRecord]) -> str:
    """Response times of successful requests in ~20 equal bins, with the p50 and p95 marked."""
    times = [record.response_time_ms for record in finals if record.success]
    if not times:
        return '<p class="muted">No successful requests to draw.</p>'
    lo, hi = min(times), max(times)
    bin_ms = nice_ticks(max(hi - lo, 1.0), HISTOGRAM_BINS)[1]
    start = math.floor(lo / bin_ms) * bin_ms
    counts = Counter(min(int((value - start) // bin_ms), HISTOGRAM_BINS * 3) for value in times)
    bins = max(counts) + 1
    y_ticks = nice_ticks(max(counts.values()), 4)
    frame = Frame(width=560, height=300, x_lo=start, x_hi=start + bins * bin_ms, y_hi=y_ticks[-1], left=52)
    step = nice_ticks(bins * bin_ms, 5)[1]
    x_ticks = [i * step for i in range(math.ceil(start / step), math.floor(frame.x_hi / step + 1e-9) + 1)]
    body = [svg_axes(frame, x_ticks=x_ticks, y_ticks=y_ticks, x_label="response time (ms)", y_label="requests")]
    for i in range(bins):
        count = counts.get(i, 0)
        if not count:
            continue
        lo_ms, hi_ms = start + i * bin_ms, start + (i + 1) * bin_ms
        tooltip = f"{fmt_tick(lo_ms)}{DASH}{fmt_tick(hi_ms)} ms: {count} requests"
        body.append(svg_bar(frame, x_range=(lo_ms, hi_ms), height=count, color=COLOR_RT, tooltip=tooltip))
    for name, value in (("p50", summary.p50_ms), ("p95", summary.p95_ms)):
        if value is None:
            continue
        x = frame.x(value)
        # Labels sit above the plot, p50 left of its line and p95 right of it, unless that runs off the edge.
        anchor, dx = ("end", -4) if name == "p50" or x > frame.plot_right - 110 else ("start", 4)
        if name == "p50" and x < frame.left + 110:
            anchor, dx = "start", 4
        body.append(
            f'<line x1="{x:.1f}" y1="{frame.top - 14}" x2="{x:.1f}" y2="{frame.plot_bottom}" stroke="{COLOR_TTFT}" '
            f'stroke-dasharray="4 3"/><text x="{x + dx:.1f}" y="{frame.top - (16 if name == "p50" else 4)}" '
            f'text-anchor="{anchor}" class="legend" fill="{COLOR_TTFT}">{name} {fmt_ms(value)} ms</text>'
        )
    return svg_doc(frame, "Response time histogram", body)


def chart_latency_over_time(finals: Sequence[RequestRecord], timeline: Timeline) -> str:
    """Each request at its start time: response time and TTFT of successes as points with bucket medians as
    lines, failures as red crosses. The y scale fits the successes; a slower failure (a timeout) sits on
    the top edge so it does not flatten everything else."""
    ok = [record for record in finals if record.success]
    rt = [(record.elapsed_s, record.response_time_ms) for record in ok]
    ttft = [(record.elapsed_s, record.ttft_ms) for record in ok if record.ttft_ms is not None]
    failed = [record for record in finals if not record.success]
    highest = max([y for _, y in rt + ttft] or [record.response_time_ms for record in failed] or [1.0])
    y_ticks = nice_ticks(highest, 5)
    frame = Frame(width=1100, height=360, x_lo=0, x_hi=timeline.end_s, y_hi=y_ticks[-1])
    x_ticks = [tick for tick in nice_ticks(timeline.end_s, 10) if tick <= timeline.end_s + 1e-9]
    body = [svg_axes(frame, x_ticks=x_ticks, y_ticks=y_ticks, x_label="time since start (s)", y_label="ms")]
    for points, color in ((rt, COLOR_RT), (ttft, COLOR_TTFT)):
        body.extend(
            f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2.6" fill="{color}" fill-opacity="0.45"/>'
            for x, y in _thin(points)
        )
        median_line = svg_path(medians_per_bucket(points, timeline), frame)
        if median_line:
            body.append(f'<path d="{median_line}" fill="none" stroke="{color}" stroke-width="2.5"/>')
    for record in failed[:: math.ceil(len(failed) / MAX_POINTS) if len(failed) > MAX_POINTS else 1]:
        y = frame.y(min(record.response_time_ms, frame.y_hi))
        tooltip = f"{record.failure_reason or 'unknown'} after {fmt_ms(record.response_time_ms)} ms"
        body.append(svg_cross(frame.x(record.elapsed_s), y, color=COLOR_FAIL, tooltip=tooltip))
    legend = [("response time", COLOR_RT, "dot"), ("TTFT", COLOR_TTFT, "dot")]
    legend += [(f"median per {timeline.bucket_s:g} s", "#d7dde5", "line")]
    if failed:
        clamped = sum(1 for record in failed if record.response_time_ms > frame.y_hi)
        legend += [
            (f"failed ({clamped} above the scale, on the top edge)" if clamped else "failed", COLOR_FAIL, "cross")
        ]
    body.append(svg_legend(frame, legend))
    return svg_doc(frame, "Response time and TTFT over time", body)


def chart_throughput(records: Sequence[RequestRecord], *, finals: Sequence[RequestRecord], timeline: Timeline) -> str:
    """Tokens/s per time bucket as bars (left axis) against active users as a step line (right axis)."""
    rates = tokens_per_bucket(finals, timeline)
    users = users_per_bucket(records, timeline)
    y_ticks = nice_ticks(max(rates) or 1.0, 5)
    user_ticks = nice_ticks(max((count for count in users if count is not None), default=0) or 1, 4)
    frame = Frame(width=1100, height=340, x_lo=0, x_hi=timeline.end_s, y_hi=y_ticks[-1], right=64)
    x_ticks = [tick for tick in nice_ticks(timeline.end_s, 10) if tick <= timeline.end_s + 1e-9]
    body = [svg_axes(frame, x_ticks=x_ticks, y_ticks=y_ticks, x_label="time since start (s)", y_label="tokens/s")]
    for i, rate in enumerate(rates):
        if rate <= 0:
            continue
        lo_s, hi_s = timeline.start(i), timeline.start(i) + timeline.width(i)
        tooltip = f"{lo_s:g}{DASH}{hi_s:g} s: {rate:.1f} tokens/s, {_plain(users[i])} users"
        body.append(svg_bar(frame, x_range=(lo_s, hi_s), height=rate, color=COLOR_TOKENS, tooltip=tooltip))
    steps: list[tuple[float, float] | None] = []
    for i, count in enumerate(users):
        if count is None:
            steps.append(None)
            continue
        steps += [(timeline.start(i), count), (timeline.start(i) + timeline.width(i), count)]
    if any(point is not None for point in steps):
        path = svg_path(steps, frame, y_hi=user_ticks[-1])
        body.append(f'<path d="{path}" fill="none" stroke="{COLOR_USERS}" stroke-width="2.5"/>')
        body.append(svg_right_axis(frame, ticks=user_ticks, label="active users", color=COLOR_USERS))
    legend = [(f"tokens/s per {timeline.bucket_s:g} s", COLOR_TOKENS, "bar"), ("active users", COLOR_USERS, "line")]
    body.append(svg_legend(frame, legend))
    return svg_doc(frame, "Throughput and active users over time", body)


def chart_outcomes(summary: RunSummary) -> str:
    """Final records by outcome as horizontal bars with counts and shares."""
    row_h, label_w = 30, 190
    frame = Frame(width=560, height=24 + row_h * len(summary.outcomes) + 16, x_lo=0, x_hi=1, y_hi=1)
    top = max(count for _, count in summary.outcomes)
    bar_space = frame.width - label_w - 110
    body = []
    for i, (reason, count) in enumerate(summary.outcomes):
        y = 20 + i * row_h
        width = max(2.0, count / top * bar_space)
        label = reason if len(reason) <= 24 else reason[:23] + "…"
        share = count / summary.requests * 100
        color = COLOR_OK if reason == "ok" else COLOR_FAIL
        body.append(
            f'<text x="{label_w - 10}" y="{y + 15}" text-anchor="end" class="legend">{esc(label)}'
            f"<title>{esc(reason)}</title></text>"
            f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="{row_h - 10}" rx="2" fill="{color}" '
            f'fill-opacity="0.85"><title>{esc(reason)}: {count}</title></rect>'
            f'<text x="{label_w + width + 8:.1f}" y="{y + 15}" class="legend">{count} '
            f'<tspan class="muted-svg">({share:.1f}%)</tspan></text>'
        )
    return svg_doc(frame, "Outcomes of final requests", body)


# --- html sections ------------------------------------------------------------------------


def section_header(summary: RunSummary) -> str:
    settings = summary.settings
    items = [
        ("users", _plain(settings.get("users"))),
        ("spawn rate", _plain(settings.get("spawn_rate"), "/s")),
        ("duration", _plain(settings.get("duration_s"), " s")),
        ("host", _plain(settings.get("host"))),
        ("weights", _mapping(settings.get("weights"))),
        ("think time", _think_time(settings.get("think_time_s"))),
        ("models", _mapping(settings.get("model"))),
        ("slots", _mapping(settings.get("slots"))),
        ("commit", _plain(settings.get("commit"))),
        ("locust", _plain(settings.get("locust_version"))),
        ("started", _plain(settings.get("started_at"))),
        ("ended", _plain(settings.get("ended_at"))),
    ]
    rows = "".join(
        f'<div class="setting"><dt>{esc(name)}</dt><dd data-setting="{esc(name)}">{esc(value)}</dd></div>'
        for name, value in items
    )
    return (
        f"<header><h1>Load test — {esc(summary.run_id)}</h1>"
        f'<p class="muted">{summary.rows} rows in requests.csv · measured span '
        f"{EMPTY if summary.span_s is None else f'{summary.span_s:.1f} s'}</p>"
        f'<dl class="settings">{rows}</dl></header>'
    )


def _card(label: str, *, metric: str, value: str, unit: str = "", note: str = "") -> str:
    unit_html = f' <span class="unit">{esc(unit)}</span>' if unit and value != EMPTY else ""
    note_html = f'<div class="note">{note}</div>' if note else ""
    return (
        f'<div class="card"><div class="card-label">{esc(label)}</div>'
        f'<div class="card-value"><span data-metric="{metric}">{esc(value)}</span>{unit_html}</div>{note_html}</div>'
    )


def section_cards(summary: RunSummary) -> str:
    failed = summary.requests - summary.successes
    cards = [
        _card("requests", metric="requests", value=str(summary.requests), note=f"{failed} failed"),
        _card("success rate", metric="success_rate", value=fmt_rate(summary.success_rate)),
        _card("median response", metric="p50_ms", value=fmt_ms(summary.p50_ms), unit="ms"),
        _card("p95 response", metric="p95_ms", value=fmt_ms(summary.p95_ms), unit="ms"),
        _card("median TTFT", metric="ttft_p50_ms", value=fmt_ms(summary.ttft_p50_ms), unit="ms"),
        _card("throughput", metric="tokens_per_s", value=fmt_tps(summary.tokens_per_s), unit="tokens/s"),
        _card(
            "429 responses",
            metric="count_429",
            value=str(summary.count_429),
            note=f'<span data-metric="retries">{summary.retries}</span> retried',
        ),
    ]
    return f'<section class="cards">{"".join(cards)}</section>'


def _figure(title: str, chart: str, *, note: str = "", wide: bool = False) -> str:
    note_html = f'<figcaption class="muted">{esc(note)}</figcaption>' if note else ""
    classes = "panel wide" if wide else "panel"
    return f'<figure class="{classes}"><h2>{esc(title)}</h2><div class="scroll">{chart}</div>{note_html}</figure>'


def section_charts(summary: RunSummary, records: Sequence[RequestRecord]) -> str:
    finals = [record for record in records if not record.is_retry_record]
    timeline = timeline_for(finals)
    return (
        '<section class="grid">'
        + _figure(
            "Response time over time",
            chart_latency_over_time(finals, timeline),
            note="Each request at its start time; lines are medians per bucket; red crosses are failures.",
            wide=True,
        )
        + _figure(
            "Throughput against users",
            chart_throughput(records, finals=finals, timeline=timeline),
            note="Tokens of successful replies, spread over the time each reply streamed; users as Locust ran them.",
            wide=True,
        )
        + _figure("Response time distribution", chart_histogram(summary, finals), note="Successful requests.")
        + _figure(
            "Outcomes",
            chart_outcomes(summary),
            note=f"Final requests by failure reason; {summary.retries} intermediate 429 attempts were retried "
            "and are not counted here.",
        )
        + "</section>"
    )


def _table(title: str, *, head: Sequence[str], rows: Iterable[str], note: str = "") -> str:
    header = "".join(f"<th>{esc(cell)}</th>" for cell in head)
    note_html = f'<p class="muted">{esc(note)}</p>' if note else ""
    return (
        f'<section class="panel"><h2>{esc(title)}</h2><div class="scroll"><table><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>{note_html}</section>"
    )


def _stat_cells(row: Stats) -> str:
    cells = [
        str(row.requests),
        fmt_rate(row.success_rate),
        fmt_ms(row.p50_ms),
        fmt_ms(row.p95_ms),
        fmt_ms(row.ttft_p50_ms),
        fmt_tps(row.tokens_per_s),
        str(row.count_429),
    ]
    return "".join(f'<td class="num">{esc(cell)}</td>' for cell in cells)


STAT_HEAD = ("requests", "success", "p50 ms", "p95 ms", "TTFT p50 ms", "tokens/s", "429s")


def section_breakdowns(summary: RunSummary) -> str:
    endpoints = _table(
        "Per endpoint",
        head=("endpoint", "test type", *STAT_HEAD),
        rows=(
            f'<tr data-endpoint="{esc(row.name)}"><td><code>{esc(row.name)}</code></td><td>{esc(row.test_type)}</td>'
            f"{_stat_cells(row)}</tr>"
            for row in summary.endpoints
        ),
        note="tokens/s: tokens of the endpoint's successful replies over the whole run's span.",
    )
    personas = _table(
        "Per persona",
        head=("persona", "test types", *STAT_HEAD),
        rows=(
            f"<tr><td>{esc(row.name)}</td><td>{esc(row.test_type)}</td>{_stat_cells(row)}</tr>"
            for row in summary.personas
        ),
    )
    return endpoints + personas


@dataclass(frozen=True)
class ComparedRun:
    run_id: str
    summary: RunSummary | None  # None when the run could not be read
    error: str = ""
    regressions: tuple[str, ...] = ()


def regressions_find(current: RunSummary, previous: RunSummary | None) -> tuple[str, ...]:
    """What got more than 20% worse than the previous run: p95 up, or aggregate tokens/s down."""
    if previous is None:
        return ()
    found = []
    if current.p95_ms is not None and previous.p95_ms:
        change = current.p95_ms / previous.p95_ms - 1
        if change > REGRESSION_THRESHOLD:
            found.append(f"p95 +{change * 100:.0f}%")
    if current.tokens_per_s is not None and previous.tokens_per_s:
        change = current.tokens_per_s / previous.tokens_per_s - 1
        if change < -REGRESSION_THRESHOLD:
            found.append(f"tokens/s {change * 100:.0f}%")
    return tuple(found)


def runs_compare(runs_dir: Path, *, current: RunSummary, count: int) -> list[ComparedRun]:
    """The last `count` runs up to and including the current one, oldest first, each checked against
    the run before it. A run that cannot be read gets a row that says why instead of stopping the page."""
    ids = [path.name for path in run_dirs(runs_dir)]
    if current.run_id not in ids:
        ids.append(current.run_id)
        ids.sort()
    end = ids.index(current.run_id) + 1
    window = ids[max(0, end - max(count, 1) - 1) : end]  # one extra at the front: the first row's baseline
    compared: list[ComparedRun] = []
    previous: RunSummary | None = None
    for run_id in window:
        if run_id == current.run_id:
            summary, error = current, ""
        else:
            try:
                summary, error = run_summary(runs_dir / run_id), ""
            except (OSError, ValueError) as exc:
                summary, error = None, str(exc)
        regressions = regressions_find(summary, previous) if summary else ()
        compared.append(ComparedRun(run_id=run_id, summary=summary, error=error, regressions=regressions))
        previous = summary if summary and summary.requests else previous
    return compared[-max(count, 1) :]


def section_comparison(compared: Sequence[ComparedRun], current_id: str) -> str:
    head = ("run", "users", "duration", "requests", "success", "p50 ms", "p95 ms", "TTFT p50 ms", "tokens/s")
    head += ("429s", "commit", "vs previous")
    rows = []
    for run in compared:
        current = run.run_id == current_id
        attrs = f' data-run="{esc(run.run_id)}"' + (' class="current"' if current else "")
        marker = " ◀ this run" if current else ""
        if run.summary is None:
            rows.append(
                f"<tr{attrs}><td><code>{esc(run.run_id)}</code>{marker}</td>"
                f'<td colspan="{len(head) - 1}" class="muted">unreadable: {esc(run.error)}</td></tr>'
            )
            continue
        summary, settings = run.summary, run.summary.settings
        if run.regressions:
            attrs += ' data-regression="true"'
            verdict = (
                '<span class="regression" title="more than 20% worse than the previous run">'
                f"▲ regression: {esc(', '.join(run.regressions))}</span>"
            )
        else:
            verdict = '<span class="muted">—</span>'
        cells = [
            _plain(settings.get("users")),
            _plain(settings.get("duration_s"), " s"),
            str(summary.requests),
            fmt_rate(summary.success_rate),
            fmt_ms(summary.p50_ms),
            fmt_ms(summary.p95_ms),
            fmt_ms(summary.ttft_p50_ms),
            fmt_tps(summary.tokens_per_s),
            str(summary.count_429),
        ]
        rows.append(
            f'<tr{attrs}><td><code>{esc(run.run_id)}</code><span class="this">{marker}</span></td>'
            + "".join(f'<td class="num">{esc(cell)}</td>' for cell in cells)
            + f'<td><code>{esc(_plain(settings.get("commit")))}</code></td><td class="verdict">{verdict}</td></tr>'
        )
    return _table(
        f"Last {len(compared)} run{'s' if len(compared) != 1 else ''}",
        head=head,
        rows=rows,
        note="A regression: p95 response time up more than 20%, or tokens/s down more than 20%, against the run above.",
    )


def section_empty(summary: RunSummary) -> str:
    return (
        '<section class="panel empty" data-empty="true"><h2>No data</h2>'
        f"<p>This run has no completed requests ({summary.rows} rows in requests.csv, none of them a final "
        "record), so there is nothing to chart.</p></section>"
    )


STYLE = """
:root { color-scheme: dark; }
* { box-sizing: border-box; }
body { margin: 0; background: #0f1419; color: #d7dde5; font: 14px/1.5 system-ui, -apple-system, "Segoe UI",
  "Noto Sans", "Noto Sans CJK KR", sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; font-weight: 600; }
h2 { font-size: 15px; margin: 0 0 12px; font-weight: 600; color: #e9eef4; }
code { font: 13px ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; color: #c3e88d; }
.muted, figcaption { color: #8a96a6; font-size: 12.5px; }
.settings { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 6px 18px;
  margin: 14px 0 0; }
.setting { background: #161c24; border: 1px solid #232b36; border-radius: 6px; padding: 6px 10px; min-width: 0; }
.setting dt { color: #8a96a6; font-size: 11.5px; text-transform: uppercase; letter-spacing: .04em; }
.setting dd { margin: 0; overflow-wrap: anywhere; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 12px; margin: 22px 0; }
.card { background: #171e28; border: 1px solid #263040; border-radius: 8px; padding: 12px 14px; }
.card-label { color: #8a96a6; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card-value { font-size: 26px; font-weight: 600; color: #f2f5f8; font-variant-numeric: tabular-nums; }
.card-value .unit { font-size: 13px; font-weight: 400; color: #8a96a6; }
.note { color: #8a96a6; font-size: 12.5px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(440px, 100%), 1fr)); gap: 16px; }
.panel { background: #151b23; border: 1px solid #232b36; border-radius: 8px; padding: 14px 16px; margin: 0 0 16px; }
.grid .panel { margin: 0; }
.wide { grid-column: 1 / -1; }
.wide svg { min-width: 720px; }  /* on a phone, scroll the time charts rather than shrink their text */
figure { margin: 0; }
svg { display: block; font-family: inherit; }
svg .tick { fill: #8a96a6; font-size: 11px; }
svg .label { fill: #aab4c2; font-size: 12px; }
svg .legend { fill: #d7dde5; font-size: 12.5px; }
svg .muted-svg { fill: #8a96a6; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid #232b36; text-align: left; white-space: nowrap; }
th { color: #8a96a6; font-weight: 500; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td.num { text-align: right; }
td.verdict { white-space: normal; min-width: 150px; }
tr.current td { background: #1b2636; }
tr.current td:first-child { box-shadow: inset 3px 0 #5aa9ff; }
.this { color: #5aa9ff; font-size: 12px; }
.regression { color: #ff6b6b; font-weight: 600; }
.empty { border-color: #5a4a2a; }
footer { color: #5f6b7a; font-size: 12px; margin-top: 24px; }
"""


def page_render(summary: RunSummary, *, records: Sequence[RequestRecord], compared: Sequence[ComparedRun]) -> str:
    """The whole page: no external resources, every data string escaped."""
    body = section_header(summary) + section_cards(summary)
    if summary.requests:
        body += section_charts(summary, records) + section_breakdowns(summary)
    else:
        body += section_empty(summary)
    body += section_comparison(compared, summary.run_id)
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Load test — {esc(summary.run_id)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n<footer>Generated {esc(generated)} by perf/dashboard.py</footer>\n"
        "</main>\n</body>\n</html>\n"
    )


# --- entry points -------------------------------------------------------------------------


def build(runs_dir: Path, out_file: Path, *, run_id: str | None = None, compare: int = 6) -> Path:
    """Write the dashboard for `run_id` (default: the latest run with a requests.csv) to `out_file`."""
    if run_id is None:
        runs = run_dirs(runs_dir)
        if not runs:
            raise FileNotFoundError(f"no run with a requests.csv under {runs_dir}")
        run_dir = runs[-1]
    else:
        run_dir = runs_dir / run_id
    records = records_load(run_dir / "requests.csv")
    summary = summary_compute(run_dir.name, settings=settings_load(run_dir), records=records)
    compared = runs_compare(runs_dir, current=summary, count=compare)
    page = page_render(summary, records=records, compared=compared)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(page, encoding="utf-8")
    return out_file


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=Path, default=REPO_ROOT / "var" / "perf" / "runs", help="runs folder")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "var" / "perf" / "dashboard" / "index.html")
    parser.add_argument("--run", dest="run_id", help="run id (default: the latest)")
    parser.add_argument("--compare", type=int, default=6, help="how many runs the comparison table shows")
    args = parser.parse_args(argv)
    try:
        out = build(args.runs, args.out, run_id=args.run_id, compare=args.compare)
    except (OSError, ValueError) as exc:
        sys.exit(f"perf.dashboard: {exc}")
    print(out)


if __name__ == "__main__":
    main()
