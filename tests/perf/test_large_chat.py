"""perf.large_chat: the data it seeds is what its table says, and the table's ratios."""

from __future__ import annotations

from pathlib import Path

from perf.large_chat import COMMON, NEEDLE, PAGE, report, seed
from webapp.store.chat_store import ChatStore
from webapp.store.client import StoreConfig, database_get, message_log_get


def test_seed_writes_the_long_chats_the_others_and_the_peers(tmp_path: Path) -> None:
    big_ids, small_ids = seed(tmp_path, owner="a7", big=120, opens=2, others=1000)

    config = StoreConfig(app="office", mongo_url=None, embedded_dir=tmp_path / "mongo")
    store = ChatStore(database_get(config), app="office", embedded=True, messages=message_log_get(config))
    try:
        listed = store.conversations_for_user("a7", limit=500)
        counts = {c.db_id: c.message_count for c in listed}
        assert [counts[i] for i in big_ids] == [120, 120]
        assert [counts[i] for i in small_ids] == [10, 10]
        others = sum(n for db_id, n in counts.items() if db_id not in {*big_ids, *small_ids})
        assert others + 120 >= 1000, "each long chat has at least `others` messages beside it"
        newest = store.messages_page(big_ids[0], before=None, limit=PAGE)
        assert [m.seq for m in newest] == list(range(70, 120))
    finally:
        message_log_get.cache_clear()
        database_get.cache_clear()


def test_seed_indexes_every_message_for_search_and_one_holds_the_needle(tmp_path: Path) -> None:
    seed(tmp_path, owner="a7", big=30, opens=1, others=40, terms_of=lambda text: text.lower().replace("?", "").split())

    config = StoreConfig(app="office", mongo_url=None, embedded_dir=tmp_path / "mongo")
    store = ChatStore(database_get(config), app="office", embedded=True, messages=message_log_get(config))
    try:
        assert store.terms_pending_count() == 0
        mine = store.conversations_all("a7")
        assert [m.content for _, m in store.messages_search(mine, [NEEDLE], limit=5)] == ["Where is Zanzibar?"]
        assert len(store.messages_search(mine, [COMMON], limit=1000)) == 30 + 500 + 10
    finally:
        message_log_get.cache_clear()
        database_get.cache_clear()


def test_report_divides_by_each_tables_peer() -> None:
    served = {
        "open a 5000-message chat: first screen (50), cold": [30.0, 40.0, 50.0],
        "then a page further back (50)": [20.0],
        "open a 10-message chat: first screen, cold (the peer)": [20.0, 20.0],
    }
    layouts = {
        "montydb collection (before): newest 50": [900.0],
        "SQLite message log (now): newest 50": [3.0, 1.0, 2.0],
    }

    table = report(served, layouts, big=5000, others=50000, opens=3).splitlines()

    assert "| open a 5000-message chat: first screen (50), cold | 3 | 40.0 | 50.0 | 50.0 | 2.00 |" in table
    assert "| then a page further back (50) | 1 | 20.0 | 20.0 | 20.0 | 1.00 |" in table
    assert "| montydb collection (before): newest 50 | 1 | 900.0 | 900.0 | 450 |" in table
    assert "| SQLite message log (now): newest 50 | 3 | 2.0 | 3.0 | 1 |" in table
