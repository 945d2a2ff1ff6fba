"""What the store writes can always be read back (unit tests of webapp.store.safe, and the store)."""

from __future__ import annotations

import json

from webapp.store.safe import readable, records_decode, storable


def test_keys_the_store_cannot_hold_are_escaped_and_surrogates_replaced():
    value = {"$where": 1, "a.b": {"c.d": ["\ud800x", "ok"]}, "\udc00": "fine", "plain": 2}
    stored = storable(value)
    assert stored == {"＄where": 1, "a．b": {"c．d": ["\ufffdx", "ok"]}, "\ufffd": "fine", "plain": 2}
    json.dumps(stored, ensure_ascii=False).encode("utf-8")  # encodes: it can be sent and stored


def test_readable_repairs_what_older_versions_stored():
    assert readable({"text": "a\ud800b", "list": ["\udfff"]}) == {"text": "a\ufffdb", "list": ["\ufffd"]}


def test_one_bad_record_does_not_take_the_list_down(caplog):
    docs = [{"_id": 1, "n": "1"}, {"_id": 2}, {"_id": 3, "n": "3"}]
    assert records_decode(docs, lambda d: int(d["n"])) == [1, 3]
    assert "_id=2" in caplog.text
