"""Soak test: the Locust load at saturation for minutes, then a reconciliation against the store.

    .venv/bin/python -m perf.soak [--minutes 10] [--users N] [--host http://127.0.0.1:8080]
                                  [--think 0.2,1] [--weights ws_office=3,...] [--out-dir var/perf]
                                  [--slots 2] [--max-wait-s 15] [--max-tokens 64]

Runs perf/locustfile.py through perf.load's machinery (same locustfile, loopback only,
the stack started when nothing answers at --host and stopped afterwards) with enough
users that every engine's slots stay busy, its queue fills and some turns are refused
with 429 Server busy (the users wait Retry-After and retry). A stack the soak starts
itself serves the default model with few slots, short replies and a short max_wait_s
(--slots, --max-tokens, --max-wait-s), so that a dozen users saturate it on two cores.
The default --users is four per slot of the stack (16 for the soak's own stack, 64 for
the default registry's 8 slots per app and 120 s max_wait_s). A sampler reads
GET /{app}/performance every few seconds to show how busy the engines were; a run without
a single 429 says it was not saturated.

When the load ends and the engines are idle again, every turn in requests.csv is checked
against the service's own API through nginx (GET /{app}/conversations?user_id= and
GET /{app}/conversations/{db_id}/messages?user_id=):

- reconciled: a successful REST (200) or WebSocket (done) turn whose message_id is stored
  exactly once, as an assistant reply in its conversation;
- missing: a successful turn whose reply is not there (or whose user message is not);
- duplicated: a message id stored more than once, or given to two successful turns;
- stored after a client-side failure: a reply the client never saw (it timed out, lost
  the connection, or was stopped at the end of the run) but which the server stored, as
  it should: matched by the WebSocket `start` frame's message_id, or counted against the
  user's failed turns that reached the server;
- extra: stored messages that no turn explains (for instance a refused 429 that stored
  something);
- seq: every conversation's messages are numbered 0..n-1, no gaps, no repeats, n equal to
  its message_count.

It prints, and writes to <out-dir>/soak.md, requests by endpoint and status, p50/p95
response time and tokens/s per endpoint, the 5xx and 429 counts and the reconciliation,
builds the load-test dashboard (served at /perf/), and exits 1 on any 5xx response, any
missing, duplicated or extra message, or a seq error (2 when it could not run at all).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from perf import dashboard, load
from webapp.config.env import REPO_ROOT
from webapp.launcher.stack import BENCH_ENV, StackConfig, registry_derive

APPS = ("office", "character")
USERS_PER_SLOT = 4  # the default --users, per slot of the stack
STOP_TIMEOUT_S = 120  # after the load, users finish the turn they are in for this long
SAMPLE_EVERY_S = 5.0
IDLE_TIMEOUT_S = 240.0  # longer than a reply's max_generation_s (180) plus the WebSocket resume window (15)
LISTING_LIMIT = 500  # the most conversations GET /{app}/conversations returns
FETCH_THREADS = 4
SHOWN_PROBLEMS = 20


@dataclass(frozen=True)
class SoakStack:
    """How a stack the soak starts itself serves the default model."""

    slots: int = 2
    max_wait_s: float = 15.0
    max_tokens: int = 64
    max_generation_s: float = 60.0


# --- what the CSV says ------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """The final row of a REST or WebSocket turn (the ones the service stores)."""

    app: str
    user_id: str
    success: bool
    failure_reason: str
    status_code: int
    db_id: str
    message_id: str

    @property
    def may_have_stored(self) -> bool:
        """A failed turn that may have got past admission: a 4xx (a 429 included) stores nothing."""
        return not self.success and not 400 <= self.status_code < 500


def rows_read(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def turns_from_rows(rows: Iterable[Mapping[str, str]]) -> list[Turn]:
    """The final rows of stored turns; OpenAI rows (stateless) and retried 429s are left out."""
    turns = []
    for row in rows:
        kind, _, app = (row.get("test_type") or "").partition("_")
        if kind not in ("rest", "ws") or app not in APPS or row.get("is_retry_record") == "true":
            continue
        turns.append(
            Turn(
                app=app,
                user_id=row.get("user_id") or "",
                success=row.get("success") == "true",
                failure_reason=row.get("failure_reason") or "",
                status_code=int(float(row.get("status_code") or 0)),
                db_id=(row.get("db_id") or "").strip(),
                message_id=(row.get("message_id") or "").strip(),
            )
        )
    return turns


# --- what the store says ----------------------------------------------------------------


@dataclass(frozen=True)
class StoredMessage:
    id: str
    seq: int
    role: str


@dataclass(frozen=True)
class StoredConversation:
    db_id: str
    message_count: int | None  # from the listing; None when the listing did not include it
    messages: tuple[StoredMessage, ...]  # empty when the conversation is not there (404)
    found: bool = True


UserKey = tuple[str, str]  # (app, user_id)


def store_fetch(
    host: str, turns: Sequence[Turn], *, api_key: str
) -> tuple[dict[UserKey, list[StoredConversation]], list[str]]:
    """Every conversation of every (app, user) in `turns`, with its messages, through the API.

    A user's conversations are the ones the listing returns plus any db_id the CSV names.
    Returns them and warnings (a listing at its limit, a request that failed).
    """
    warnings: list[str] = []
    wanted: dict[UserKey, dict[str, int | None]] = defaultdict(dict)
    for turn in turns:
        if turn.db_id:
            wanted[(turn.app, turn.user_id)].setdefault(turn.db_id, None)
    users = sorted({(turn.app, turn.user_id) for turn in turns})
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = f"Bearer {api_key}"
        return local.session

    def listing(key: UserKey) -> list[dict[str, Any]]:
        app, user_id = key
        response = session().get(
            f"{host}/{app}/conversations", params={"user_id": user_id, "limit": LISTING_LIMIT}, timeout=60
        )
        response.raise_for_status()
        return list(response.json()["conversations"])

    def messages(key: UserKey, db_id: str) -> StoredConversation:
        app, user_id = key
        count = wanted[key][db_id]
        pages: list[list[StoredMessage]] = []
        before: int | None = None
        while True:  # every page, newest first
            params: dict[str, Any] = {"user_id": user_id, "limit": 500}
            if before is not None:
                params["before"] = before
            response = session().get(f"{host}/{app}/conversations/{db_id}/messages", params=params, timeout=60)
            if response.status_code == 404:
                return StoredConversation(db_id=db_id, message_count=count, messages=(), found=False)
            response.raise_for_status()
            body = response.json()
            pages.append(
                [StoredMessage(id=str(m["id"]), seq=int(m["seq"]), role=str(m["role"])) for m in body["messages"]]
            )
            before = body["before"]
            if before is None:
                break
        stored = tuple(m for page in reversed(pages) for m in page)
        return StoredConversation(db_id=db_id, message_count=count, messages=stored)

    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        for key, listed in zip(users, pool.map(listing, users), strict=True):
            if len(listed) >= LISTING_LIMIT:
                warnings.append(f"{key[0]} user {key[1]} has {LISTING_LIMIT}+ conversations: older ones not listed")
            for conversation in listed:
                wanted[key][str(conversation["db_id"])] = int(conversation["message_count"])
        jobs = [(key, db_id) for key in users for db_id in sorted(wanted[key])]
        fetched = list(pool.map(lambda job: messages(*job), jobs))
    stored: dict[UserKey, list[StoredConversation]] = defaultdict(list)
    for (key, _), conversation in zip(jobs, fetched, strict=True):
        stored[key].append(conversation)
    return dict(stored), warnings


# --- the reconciliation -----------------------------------------------------------------


@dataclass
class Reconciliation:
    conversations: int = 0
    turns_ok: int = 0
    turns_failed_after_admission: int = 0  # failed turns that may have stored (not a 4xx)
    reconciled: int = 0
    late: int = 0  # replies stored for turns whose client failed
    started_not_stored: int = 0  # failed WebSocket turns after `start` whose reply is not there
    stored_user: int = 0
    stored_assistant: int = 0
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    seq_errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.duplicated or self.extra or self.seq_errors)


def reconcile(turns: Sequence[Turn], stored: Mapping[UserKey, Sequence[StoredConversation]]) -> Reconciliation:
    """Check every stored turn of `turns` against what the service stored (see the module docstring)."""
    result = Reconciliation()
    by_user: dict[UserKey, list[Turn]] = defaultdict(list)
    for turn in turns:
        by_user[(turn.app, turn.user_id)].append(turn)
    ok_ids = Counter(turn.message_id for turn in turns if turn.success and turn.message_id)
    for message_id, n in sorted(ok_ids.items()):
        if n > 1:
            result.duplicated.append(f"message {message_id} was the reply of {n} successful turns")

    for key, user_turns in sorted(by_user.items()):
        app, user_id = key
        conversations = list(stored.get(key, ()))
        result.conversations += sum(1 for c in conversations if c.found)
        # Where each message id is stored (any role), and the seq of every conversation.
        places: dict[str, list[tuple[str, StoredMessage]]] = defaultdict(list)
        for conversation in conversations:
            for message in conversation.messages:
                places[message.id].append((conversation.db_id, message))
            seqs = sorted(message.seq for message in conversation.messages)
            expected = conversation.message_count if conversation.message_count is not None else len(seqs)
            if conversation.found and (seqs != list(range(len(seqs))) or expected != len(seqs)):
                result.seq_errors.append(
                    f"{app} {conversation.db_id}: seqs {seqs[:12]}{' …' if len(seqs) > 12 else ''}, "
                    f"message_count {conversation.message_count}"
                )
        for message_id, found in places.items():
            if len(found) > 1:
                result.duplicated.append(f"{app} message {message_id} is stored {len(found)} times")
        result.stored_user += sum(1 for found in places.values() for _, m in found if m.role == "user")
        result.stored_assistant += sum(1 for found in places.values() for _, m in found if m.role == "assistant")

        claimed: set[str] = set()
        ok = [turn for turn in user_turns if turn.success]
        failed = [turn for turn in user_turns if turn.may_have_stored]
        result.turns_ok += len(ok)
        result.turns_failed_after_admission += len(failed)
        for turn in ok:
            found = [(db_id, m) for db_id, m in places.get(turn.message_id, []) if m.role == "assistant"]
            in_place = [m for db_id, m in found if db_id == turn.db_id]
            if not turn.message_id or not turn.db_id:
                result.missing.append(f"{app} user {user_id}: a successful turn without db_id/message_id")
            elif not in_place:
                elsewhere = f" (it is in {found[0][0]})" if found else ""
                result.missing.append(f"{app} {turn.db_id}: reply {turn.message_id} is not stored{elsewhere}")
            elif len(found) == 1:
                result.reconciled += 1
            claimed.add(turn.message_id)
        unexplained_failures = 0
        for turn in failed:
            if turn.message_id and turn.message_id in places:
                result.late += 1  # the WebSocket `start` named it; the client never saw `done`
                claimed.add(turn.message_id)
            elif turn.message_id:
                result.started_not_stored += 1
            else:
                unexplained_failures += 1  # it may have stored a reply we cannot name
        unclaimed = sorted(
            (db_id, m.seq, m.id) for m_id, found in places.items() if m_id not in claimed for db_id, m in found
            if m.role == "assistant"
        )  # fmt: skip
        result.late += min(len(unclaimed), unexplained_failures)
        for db_id, seq, message_id in unclaimed[unexplained_failures:]:
            result.extra.append(f"{app} {db_id}: reply {message_id} (seq {seq}) answers no turn of the run")
        # Every turn that reached the server stored its user message first; refused ones stored none.
        user_messages = sum(1 for found in places.values() for _, m in found if m.role == "user")
        if user_messages < len(ok):
            result.missing.append(f"{app} user {user_id}: {user_messages} user messages for {len(ok)} successful turns")
        if user_messages > len(ok) + len(failed):
            result.extra.append(
                f"{app} user {user_id}: {user_messages} user messages for {len(ok) + len(failed)} turns that reached "
                "the server"
            )
    return result


# --- saturation and idleness --------------------------------------------------------------


def performance(host: str, app: str) -> dict[str, float]:
    numbers = requests.get(f"{host}/{app}/performance", timeout=10).json()
    return {key: float(value) for key, value in numbers.items() if isinstance(value, int | float)}


class Sampler(threading.Thread):
    """Reads each app's /performance every few seconds while the load runs."""

    def __init__(self, host: str) -> None:
        super().__init__(daemon=True)
        self.host = host
        self.samples: dict[str, list[dict[str, float]]] = {app: [] for app in APPS}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_EVERY_S):
            for app in APPS:
                with contextlib.suppress(requests.RequestException, ValueError):
                    self.samples[app].append(performance(self.host, app))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)

    def lines(self) -> list[str]:
        out = [
            "| app | samples | all slots busy | mean queue | max queue | refused (engine) |",
            "|---|---|---|---|---|---|",
        ]
        for app, samples in self.samples.items():
            if not samples:
                out.append(f"| {app} | 0 | — | — | — | — |")
                continue
            busy = sum(1 for s in samples if s.get("slots") and s.get("busy_slots", 0) >= s["slots"])
            queues = [s.get("queue_size", 0) for s in samples]
            out.append(
                f"| {app} | {len(samples)} | {busy / len(samples):.0%} | {sum(queues) / len(queues):.1f} | "
                f"{max(queues):.0f} | {samples[-1].get('requests_refused', 0):.0f} |"
            )
        return out


def idle_wait(host: str, timeout_s: float = IDLE_TIMEOUT_S) -> bool:
    """Wait until no app has a turn running or queued, twice in a row; False on timeout."""
    deadline, quiet = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        try:
            numbers = [performance(host, app) for app in APPS]
            busy = any(n.get("busy_slots", 0) or n.get("queue_size", 0) or n.get("active_requests", 0) for n in numbers)
        except (requests.RequestException, ValueError):
            busy = True
        quiet = 0 if busy else quiet + 1
        if quiet >= 2:
            return True
        time.sleep(2)
    return False


# --- the report ---------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def report_lines(
    *,
    run_dir: Path,
    result: Reconciliation,
    header: Sequence[str] = (),
    sampler: Sampler | None = None,
    warnings: Sequence[str] = (),
) -> list[str]:
    """The soak's table (Markdown), and a verdict line last."""
    records = dashboard.records_load(run_dir / "requests.csv")
    summary = dashboard.summary_compute(run_dir.name, settings={}, records=records)
    server_errors = sum(1 for record in records if record.status_code >= 500)
    by_status: Counter[tuple[str, int, bool]] = Counter(
        (record.endpoint, record.status_code, record.is_retry_record) for record in records
    )
    lines = [f"# Soak {run_dir.name}", "", *header, ""]
    lines += [
        "## Requests by endpoint and status",
        "",
        "| endpoint | status | final | retried 429 |",
        "|---|---|---|---|",
    ]
    for endpoint, status in sorted({(e, s) for e, s, _ in by_status}):
        final, retried = by_status[(endpoint, status, False)], by_status[(endpoint, status, True)]
        lines.append(f"| {endpoint} | {status} | {final} | {retried} |")
    lines += [
        "",
        "## Per endpoint",
        "",
        "| endpoint | requests | ok | 429 | 5xx | p50 ms | p95 ms | tokens/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group in summary.endpoints:
        errors = sum(1 for record in records if record.endpoint == group.name and record.status_code >= 500)
        lines.append(
            f"| {group.name} | {group.requests} | {group.successes} | {group.count_429} | {errors} | "
            f"{_ms(group.p50_ms)} | {_ms(group.p95_ms)} | {dashboard.fmt_tps(group.tokens_per_s)} |"
        )
    lines.append(
        f"| **all** | {summary.requests} | {summary.successes} | {summary.count_429} | {server_errors} | "
        f"{_ms(summary.p50_ms)} | {_ms(summary.p95_ms)} | {dashboard.fmt_tps(summary.tokens_per_s)} |"
    )
    lines += [
        "",
        "p50/p95 over successful final requests; tokens/s = their tokens / the run's span "
        f"({summary.span_s or 0:.0f} s).",
    ]
    if sampler is not None:
        lines += ["", "## Engines during the load (GET /{app}/performance)", "", *sampler.lines()]
    lines += [
        "",
        "## Reconciliation against the store",
        "",
        "| check | count |",
        "|---|---|",
        f"| responses ≥ 500 | {server_errors} |",
        f"| responses 429 (retried or final) | {summary.count_429} |",
        f"| conversations checked | {result.conversations} |",
        f"| successful REST + WebSocket turns | {result.turns_ok} |",
        f"| turns reconciled (reply stored exactly once) | {result.reconciled} |",
        f"| missing | {len(result.missing)} |",
        f"| duplicated | {len(result.duplicated)} |",
        f"| extra | {len(result.extra)} |",
        f"| conversations with a seq gap or repeat | {len(result.seq_errors)} |",
        f"| stored after a client-side failure (of {result.turns_failed_after_admission} failed turns) | "
        f"{result.late} |",
        f"| failed after the WebSocket `start`, reply not stored | {result.started_not_stored} |",
        f"| stored messages: user / assistant | {result.stored_user} / {result.stored_assistant} |",
    ]
    problems = [
        *(f"missing: {p}" for p in result.missing),
        *(f"duplicated: {p}" for p in result.duplicated),
        *(f"extra: {p}" for p in result.extra),
        *(f"seq: {p}" for p in result.seq_errors),
    ]
    if problems:
        lines += ["", *(f"- {p}" for p in problems[:SHOWN_PROBLEMS])]
        if len(problems) > SHOWN_PROBLEMS:
            lines.append(f"- … and {len(problems) - SHOWN_PROBLEMS} more")
    notes = list(warnings)
    if not summary.count_429:
        notes.append("no 429 in this run: the engines were not saturated (raise --users)")
    if not result.turns_ok:
        notes.append("no successful REST or WebSocket turn: nothing was reconciled")
    lines += ["", *(f"warning: {note}" for note in notes)] if notes else []
    failures = [
        f"{n} {what}"
        for n, what in (
            (server_errors, "5xx"),
            (len(result.missing), "missing"),
            (len(result.duplicated), "duplicated"),
            (len(result.extra), "extra"),
            (len(result.seq_errors), "seq errors"),
        )
        if n
    ]
    if not result.turns_ok:
        failures.append("no successful turn")
    lines += ["", f"**{'FAIL: ' + ', '.join(failures) if failures else 'PASS'}**"]
    return lines


# --- the command ----------------------------------------------------------------------------


def soak_config(out_dir: Path, stack: SoakStack) -> StackConfig:
    """The default stack, serving the default model as `stack` says (a derived registry)."""
    registry = registry_derive(
        REPO_ROOT / "models" / "registry.toml",
        out_dir / "soak" / "registry.toml",
        slots=stack.slots,
        max_wait_s=stack.max_wait_s,
        max_tokens=stack.max_tokens,
        max_generation_s=stack.max_generation_s,
    )
    return StackConfig(registry=registry, extra_env=BENCH_ENV)


def _users_default(host: str) -> int:
    try:
        slots = sum(int(performance(host, app).get("slots", 0)) for app in APPS)
    except (requests.RequestException, ValueError):
        slots = 0
    return max(1, min(load.MAX_USERS, USERS_PER_SLOT * slots)) if slots else USERS_PER_SLOT * 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=None, help=f"default: {USERS_PER_SLOT} per slot of the stack")
    parser.add_argument("--spawn-rate", type=float, default=None, help="users per second (default: users / 10)")
    parser.add_argument("--host", default="http://127.0.0.1:8080")
    parser.add_argument("--weights", default="", help="e.g. rest_office=1,ws_office=3,openai_office=0")
    parser.add_argument("--think", default="0.2,1", help="think time range in seconds")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "var" / "perf")
    defaults = SoakStack()
    parser.add_argument("--slots", type=int, default=defaults.slots, help="a stack the soak starts: slots per app")
    parser.add_argument("--max-wait-s", type=float, default=defaults.max_wait_s, help="... and its max_wait_s")
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens, help="... and its replies' max_tokens")
    args = parser.parse_args(argv)
    duration_s = round(args.minutes * 60)
    if urlparse(args.host).hostname not in load.LOOPBACK:
        parser.error(f"--host must be a loopback address ({', '.join(sorted(load.LOOPBACK))}); got {args.host}")
    if not 1 <= duration_s <= load.MAX_DURATION_S:
        parser.error(f"--minutes must be 1 s to {load.MAX_DURATION_S // 60} minutes")
    if args.users is not None and not 1 <= args.users <= load.MAX_USERS:
        parser.error(f"--users must be 1-{load.MAX_USERS}")
    stack = SoakStack(slots=args.slots, max_wait_s=args.max_wait_s, max_tokens=args.max_tokens)

    started = datetime.now(UTC)
    run_id = started.strftime("%Y%m%d-%H%M%S")
    run_dir = args.out_dir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    config = None if load.stack_answers(args.host) else soak_config(args.out_dir, stack)
    with load.stack_ensured(args.host, config) as ours:
        users = args.users or _users_default(args.host)
        spawn_rate = args.spawn_rate or max(1.0, users / 10)
        served = (
            f"its own stack: slots {stack.slots} per app, max_wait_s {stack.max_wait_s:g}, "
            f"max_tokens {stack.max_tokens}, max_generation_s {stack.max_generation_s:g}"
            if ours
            else "the stack that was running"
        )
        print(f"soak {run_id}: {users} users for {duration_s} s against {args.host} ({served})", flush=True)
        api_key = load.load_key(config)
        sampler = Sampler(args.host)
        sampler.start()
        try:
            load.locust_run(
                host=args.host, users=users, spawn_rate=spawn_rate, duration_s=duration_s, run_dir=run_dir,
                weights=args.weights, think=args.think, stop_timeout_s=STOP_TIMEOUT_S, api_key=api_key,
            )  # fmt: skip
        finally:
            sampler.stop()
        ended = datetime.now(UTC)
        settings = load.run_settings(
            run_id=run_id, started=started, ended=ended, host=args.host, users=users, spawn_rate=spawn_rate,
            duration_s=duration_s, weights=args.weights, think=args.think,
        )  # fmt: skip
        settings["soak"] = {"stack": dataclasses.asdict(stack) if ours else "already running"}
        (run_dir / "settings.json").write_text(json.dumps(settings, indent=2))
        csv_path = run_dir / "requests.csv"
        if not csv_path.exists():
            print(f"error: the load test wrote no {csv_path}", file=sys.stderr)
            return 2
        warnings = [] if idle_wait(args.host) else ["the engines were still busy when the store was read"]
        turns = turns_from_rows(rows_read(csv_path))
        print(f"reconciling {len(turns)} turns against {args.host} ...", flush=True)
        stored, fetch_warnings = store_fetch(args.host, turns, api_key=api_key)
        result = reconcile(turns, stored)
    header = [
        f"{started:%Y-%m-%d %H:%M} UTC, {duration_s} s, {users} users (spawn {spawn_rate:g}/s, think "
        f"{args.think} s), {args.host}, {served}.",
    ]
    lines = report_lines(
        run_dir=run_dir, result=result, header=header, sampler=sampler, warnings=[*warnings, *fetch_warnings]
    )
    text = "\n".join(lines) + "\n"
    (args.out_dir / "soak.md").write_text(text, encoding="utf-8")
    print("\n" + text)
    dashboard.build(args.out_dir / "runs", args.out_dir / "dashboard" / "index.html", run_id=run_id)
    print(f"requests: {csv_path}\ntable: {args.out_dir / 'soak.md'}\ndashboard: {args.out_dir / 'dashboard'}")
    return 0 if lines[-1] == "**PASS**" else 1


if __name__ == "__main__":
    sys.exit(main())
