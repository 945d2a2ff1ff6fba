"""Benchmark: a long chat opens as fast as a short one, on the embedded default store.

Two tables, both written to var/perf/large_chat.md:

1. **Through nginx, on the stack as `make run` serves it.** The office app's store holds
   `--opens` conversations of `--big` messages each and enough 500-message ones to make
   `--others` messages beside each big one, plus a 10-message chat as the peer. They are
   written with the store's own import (`ChatStore.conversation_import`), then the stack
   is started afresh, so every first read below is cold: no process has read the chat
   before. Each big chat is opened once (the first screen: the newest 50 messages, as the
   browser asks) and then read back `--pages` pages of 50; a short chat is opened cold
   between every two big ones. The target: a first screen in at most 300 ms.
   Every message is indexed for search before the stack starts (the time it took is
   printed), and two searches run `--opens` times each over all of them: a word that is
   in one message, and a word that is in every message (the newest 20 are answered).
2. **The store alone, old layout against new.** The same messages in montydb's one
   `messages` collection (how they were kept until this benchmark's change) and in the
   indexed SQLite message log (webapp.store.message_log), each read cold: a new client,
   the newest 50 of the big chat, then the 50 before its middle.

    .venv/bin/python -m perf.large_chat [--big 5000] [--others 50000] [--opens 5] [--pages 10]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from perf import table_publish
from perf.latency import _percentile, _timed
from webapp.config.env import REPO_ROOT
from webapp.launcher.ports import free_port
from webapp.launcher.stack import BENCH_ENV, Stack, StackConfig, registry_derive
from webapp.retrieval.lexical import TermExtractor
from webapp.store.chat_store import ChatStore, MessageDraft
from webapp.store.client import StoreConfig, database_get, database_lock, message_log_get
from webapp.store.message_log import SqliteMessageLog

PAGE = 50
OTHER_SIZE = 500
NEEDLE = "zanzibar"  # in one message of the store: the rare word searched for
COMMON = "ordinary"  # in every message (TEXT)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TEXT = (
    "A message of ordinary length, about as long as a chat turn usually is: a sentence or "
    "two, with 한국어 too, so that pages weigh what real ones do. "
)


def drafts(n: int) -> list[MessageDraft]:
    return [
        MessageDraft(
            role="user" if i % 2 == 0 else "assistant",
            content=f"{i}: {TEXT}",
            created_at=T0 + timedelta(seconds=i),
            meta={} if i % 2 == 0 else {"tokens": 40, "finish_reason": "stop", "timings": {"ttft_ms": 90.0}},
        )
        for i in range(n)
    ]


def seed(
    var_dir: Path, *, owner: str, big: int, opens: int, others: int, terms_of: Callable[[str], list[str]] | None = None
) -> tuple[list[str], list[str]]:
    """Write the conversations into the office app's embedded store, and with `terms_of`
    index them all for search; (big ids, small ids). One more chat holds NEEDLE."""
    config = StoreConfig(app="office", mongo_url=None, embedded_dir=var_dir / "mongo")
    store = ChatStore(
        database_get(config), app="office", embedded=True, messages=message_log_get(config), lock=database_lock(config)
    )
    store.indexes_ensure()
    big_ids = [str(uuid.uuid4()) for _ in range(opens)]
    for db_id in big_ids:
        store.conversation_import(db_id=db_id, user_id=owner, persona="assistant", title="long", messages=drafts(big))
    rest = max(0, others - big * (opens - 1))
    for _ in range((rest + OTHER_SIZE - 1) // OTHER_SIZE):
        store.conversation_import(
            db_id=str(uuid.uuid4()), user_id=owner, persona="assistant", title="other", messages=drafts(OTHER_SIZE)
        )
    small_ids = [str(uuid.uuid4()) for _ in range(opens)]
    for db_id in small_ids:
        store.conversation_import(db_id=db_id, user_id=owner, persona="assistant", title="short", messages=drafts(10))
    needle = [MessageDraft(role="user", content=f"Where is {NEEDLE.title()}?", created_at=T0)]
    store.conversation_import(db_id=str(uuid.uuid4()), user_id=owner, persona="assistant", title="x", messages=needle)
    if terms_of is not None:
        started, indexed = time.perf_counter(), 0
        while read := store.terms_index(terms_of, limit=1000):
            indexed += read
        print(f"indexed {indexed} messages for search in {time.perf_counter() - started:.1f}s")
    message_log_get.cache_clear()
    database_get.cache_clear()
    return big_ids, small_ids


def through_nginx(args: argparse.Namespace, tmp: Path) -> dict[str, list[float]]:
    registry = registry_derive(REPO_ROOT / "models" / "registry.toml", tmp / "registry.toml", max_tokens=16)
    var_dir = tmp / "var"

    def stack_new() -> Stack:
        return Stack(
            StackConfig(
                gateway_port=free_port(),
                office_port=free_port(),
                character_port=free_port(),
                var_dir=var_dir,
                registry=registry,
                extra_env=BENCH_ENV,
            )
        )

    username = f"bench-{secrets.token_hex(4)}"
    first = stack_new()
    first.start()
    try:
        first.manage("account_create", username, "--password-stdin", stdin=secrets.token_urlsafe(18) + "\n")
        key = first.manage("key_create", username, "--name", "bench").strip()
        pk = first.manage(
            "shell",
            "-v",
            "0",
            "-c",
            f"from webapp.accounts.models import Account; print(Account.objects.get(username={username!r}).pk)",
        ).strip()
    finally:
        first.stop()

    started = time.perf_counter()
    terms_of = TermExtractor().terms
    big_ids, small_ids = seed(
        var_dir, owner=f"a{pk}", big=args.big, opens=args.opens, others=args.others, terms_of=terms_of
    )
    print(f"seeded in {time.perf_counter() - started:.1f}s")

    total = args.big * args.opens + max(0, args.others - args.big * (args.opens - 1)) + 10 * args.opens
    rows: dict[str, list[float]] = {
        f"open a {args.big}-message chat: first screen ({PAGE}), cold": [],
        f"then a page further back ({PAGE})": [],
        "open a 10-message chat: first screen, cold (the peer)": [],
        f"search: a word in 1 of ~{total:,} messages": [],
        f"search: a word in all ~{total:,} messages (newest 20)": [],
    }
    second = stack_new()
    second.start()
    try:
        base = f"http://127.0.0.1:{second.config.gateway_port}/office"
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {key}"
        _timed(http, "GET", f"{base}/conversations", params={"limit": 1})  # the key and the app, not a chat
        opened, back, peer, rare, common = rows.values()
        for big_id, small_id in zip(big_ids, small_ids, strict=True):
            peer.append(_timed(http, "GET", f"{base}/conversations/{small_id}/messages", params={"limit": PAGE}))
            opened.append(_timed(http, "GET", f"{base}/conversations/{big_id}/messages", params={"limit": PAGE}))
            before = http.get(f"{base}/conversations/{big_id}/messages", params={"limit": PAGE}, timeout=60).json()[
                "before"
            ]
            for _ in range(args.pages):
                if before is None:
                    break
                started = time.perf_counter()
                response = http.get(
                    f"{base}/conversations/{big_id}/messages", params={"limit": PAGE, "before": before}, timeout=60
                )
                back.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                before = response.json()["before"]
        # After the opens, which must be cold.
        for _ in range(args.opens):
            rare.append(_timed(http, "GET", f"{base}/search", params={"q": NEEDLE}))
            common.append(_timed(http, "GET", f"{base}/search", params={"q": COMMON}))
        assert len(http.get(f"{base}/search", params={"q": NEEDLE}, timeout=60).json()["results"]) == 1
        assert len(http.get(f"{base}/search", params={"q": COMMON}, timeout=60).json()["results"]) == 20
    finally:
        second.stop()
    return rows


def store_layouts(args: argparse.Namespace, tmp: Path) -> dict[str, list[float]]:
    """Newest page and a middle page of the big chat, cold, in montydb's collection and the SQLite log."""
    from montydb import MontyClient, set_storage
    from montydb.types.objectid import ObjectId

    def docs_of(conversation: str, n: int) -> list[dict[str, Any]]:
        return [
            {
                "_id": str(ObjectId()),
                "app": "office",
                "conversation_id": conversation,
                "seq": i,
                "role": d.role,
                "content": d.content,
                "created_at": d.created_at,
                **d.meta,
            }
            for i, d in enumerate(drafts(n))
        ]

    everything = docs_of("big", args.big)
    for k in range((args.others + OTHER_SIZE - 1) // OTHER_SIZE):
        everything += docs_of(f"other-{k}", OTHER_SIZE)

    folder = tmp / "layouts" / "monty"
    folder.mkdir(parents=True)
    set_storage(str(folder), storage="sqlite")
    collection = MontyClient(str(folder))["bench"]["messages"]
    for i in range(0, len(everything), 5000):
        collection.insert_many([{**d, "_id": ObjectId(d["_id"])} for d in everything[i : i + 5000]])
    sqlite_path = tmp / "layouts" / "messages.sqlite3"
    SqliteMessageLog(sqlite_path, app="office").insert(everything)

    def monty(before: int | None) -> Callable[[], object]:
        def read() -> object:
            cold = MontyClient(str(folder))["bench"]["messages"]
            query: dict[str, Any] = {"app": "office", "conversation_id": "big"}
            if before is not None:
                query["seq"] = {"$lt": before}
            return list(cold.find(query).sort("seq", -1).limit(PAGE))

        return read

    def sqlite(before: int | None) -> Callable[[], object]:
        def read() -> object:
            cold = SqliteMessageLog(sqlite_path, app="office")
            try:
                return cold.page("big", before=before, limit=PAGE)
            finally:
                cold.close()

        return read

    rows: dict[str, list[float]] = {}
    middle = args.big // 2
    for name, make in (("montydb collection (before)", monty), ("SQLite message log (now)", sqlite)):
        for where, before in (("newest 50", None), (f"50 before seq {middle}", middle)):
            read = make(before)
            samples = []
            for _ in range(args.store_reps):
                started = time.perf_counter()
                assert len(read()) == PAGE  # type: ignore[arg-type]
                samples.append((time.perf_counter() - started) * 1000)
            rows[f"{name}: {where}"] = samples
    return rows


def report(
    served: dict[str, list[float]], layouts: dict[str, list[float]], *, big: int, others: int, opens: int
) -> str:
    """The two tables: each row's p50 over its peer (the short chat; SQLite's newest page)."""
    peer = statistics.median(next(v for k, v in served.items() if "(the peer)" in k))
    lines = [
        f"Office app, embedded store: {opens} chats of {big} messages, {others:,} other messages "
        "beside each; a fresh stack, so each first open is cold. Target: first screen ≤ 300 ms.",
        "",
        "| through nginx | n | p50 ms | p95 ms | max ms | p50 / peer |",
        "|---|---|---|---|---|---|",
    ]
    for name, values in served.items():
        lines.append(
            f"| {name} | {len(values)} | {statistics.median(values):.1f} | {_percentile(values, 0.95):.1f} | "
            f"{max(values):.1f} | {statistics.median(values) / peer:.2f} |"
        )
    sqlite_newest = statistics.median(layouts["SQLite message log (now): newest 50"])
    lines += [
        "",
        f"The store alone: {big} + {others:,} messages, each read from a new client",
        "",
        "| layout: read | n | p50 ms | max ms | p50 / SQLite newest 50 |",
        "|---|---|---|---|---|",
    ]
    for name, values in layouts.items():
        lines.append(
            f"| {name} | {len(values)} | {statistics.median(values):.1f} | {max(values):.1f} | "
            f"{statistics.median(values) / sqlite_newest:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big", type=int, default=5000, help="messages in each long chat")
    parser.add_argument("--others", type=int, default=50000, help="other messages in the store beside each long chat")
    parser.add_argument("--opens", type=int, default=5, help="long chats, each opened once, cold")
    parser.add_argument("--pages", type=int, default=10, help="pages read back in each long chat")
    parser.add_argument("--store-reps", type=int, default=3, help="cold reads per row of the store table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        served = through_nginx(args, Path(tmp))
        layouts = store_layouts(args, Path(tmp))

    table_publish("large_chat", report(served, layouts, big=args.big, others=args.others, opens=args.opens))


if __name__ == "__main__":
    main()
