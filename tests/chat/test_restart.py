"""History lives in the store, not in the processes: it survives restarting everything."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_history_survives_restart_of_both_apps(http, gateway, stack, db_id, user_id):
    turn = http.post(
        f"{gateway}/character/Llama",
        json={
            "input_data": "Remember the word 'lantern'.",
            "persona": "captain-rhea",
            "db_id": db_id,
            "user_id": user_id,
        },
        timeout=120,
    )
    assert turn.status_code == 200, turn.text
    url = f"{gateway}/character/conversations/{db_id}/messages"
    before = http.get(url, params={"user_id": user_id}, timeout=10).json()

    for app in ("office", "character"):
        stack.app_stop(app)
    for app in ("office", "character"):
        stack.app_start(app)
    for app in ("office", "character"):
        stack.wait_app_ready(app)

    after = http.get(url, params={"user_id": user_id}, timeout=10).json()
    assert after == before
    listed = http.get(f"{gateway}/character/conversations", params={"user_id": user_id}, timeout=10).json()
    assert [c["db_id"] for c in listed["conversations"]] == [db_id]

    # The restarted app continues the same conversation, with the old turn in its prompt.
    again = http.post(
        f"{gateway}/character/Llama",
        json={"input_data": "Which word?", "persona": "captain-rhea", "db_id": db_id, "user_id": user_id},
        timeout=120,
    )
    assert again.status_code == 200, again.text
    messages = http.get(url, params={"user_id": user_id}, timeout=10).json()["messages"]
    assert [m["seq"] for m in messages] == [0, 1, 2, 3]
    assert messages[3]["meta"]["prompt"]["history_message_ids"] == [messages[0]["id"], messages[1]["id"]]
