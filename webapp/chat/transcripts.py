"""A stored conversation as a file: SillyTavern's chat JSONL, our own JSON, or Markdown.

Pure functions of (conversation, messages, names); the API view only picks one and names
the file. Written by hand because the formats are the product's own contract with other
tools (SillyTavern reads the JSONL back), not a general serialisation problem.

- **JSONL** (SillyTavern's chat file): a header line `{user_name, character_name,
  create_date, chat_metadata}`, then a line per message `{name, is_user, is_system,
  send_date, mes, swipes, swipe_id, swipe_info, extra}`. Dates are ISO 8601 (SillyTavern
  reads those). A reply's alternatives are its swipes. One regenerated before swipes
  were stored inside the reply is stored as its own
  message naming the one it replaced (`regenerates`); here the two become one message
  with both texts as swipes, the later one chosen, as SillyTavern would have kept them.
- **JSON** (`personachat.conversation`, version 1): the conversation and every stored
  message with its metadata, for reading back into this service.
- **Markdown**: a readable transcript, one section per message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from webapp.store.chat_store import Conversation, Message

EXPORT_FORMATS = ("jsonl", "json", "md")
JSON_FORMAT = "personachat.conversation"


def _swipe_info(message: Message) -> dict[str, Any]:
    return {"send_date": message.created_at.isoformat(), "extra": _extra(message)}


def _extra(message: Message) -> dict[str, Any]:
    return _extra_of(message.meta)


def _extra_of(meta: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if meta.get("model"):
        extra["model"] = meta["model"]
    if isinstance(meta.get("tokens"), int):
        extra["token_count"] = meta["tokens"]
    if meta.get("finish_reason"):
        extra["finish_reason"] = meta["finish_reason"]
    return extra


def _swipes_of(message: Message) -> tuple[list[str], int, list[dict[str, Any]]]:
    """(swipes, swipe_id, swipe_info) of a message: its stored alternatives, or itself alone."""
    stored = message.meta.get("swipes") or []
    if not stored:
        return [message.content], 0, [_swipe_info(message)]
    return (
        [str(s.get("content", "")) for s in stored],
        int(message.meta.get("swipe_id", 0)),
        [{"send_date": str(s.get("created_at", "")), "extra": _extra_of(s.get("meta") or {})} for s in stored],
    )


def transcript_jsonl(
    *, conversation: Conversation, messages: Sequence[Message], user_name: str, character_name: str
) -> str:
    """SillyTavern's chat file for `messages` (oldest first; see the module docstring)."""
    header = {
        "user_name": user_name,
        "character_name": character_name,
        "create_date": conversation.created_at.isoformat(),
        "chat_metadata": {"personachat": {"db_id": conversation.db_id, "persona": conversation.persona}},
    }
    lines: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    for message in messages:
        if message.role not in ("user", "assistant"):
            continue
        replaced = by_id.get(str(message.meta.get("regenerates") or ""))
        if replaced is not None and message.role == "assistant":
            replaced["swipes"].append(message.content)
            replaced["swipe_info"].append(_swipe_info(message))
            replaced["swipe_id"] = len(replaced["swipes"]) - 1
            replaced["mes"] = message.content
            replaced["send_date"] = message.created_at.isoformat()
            replaced["extra"] = _extra(message)
            by_id[message.id] = replaced
            continue
        is_user = message.role == "user"
        swipes, swipe_id, swipe_info = _swipes_of(message)
        line = {
            "name": user_name if is_user else character_name,
            "is_user": is_user,
            "is_system": False,
            "send_date": message.created_at.isoformat(),
            "mes": message.content,
            "swipes": swipes,
            "swipe_id": swipe_id,
            "swipe_info": swipe_info,
            "extra": _extra(message),
        }
        lines.append(line)
        by_id[message.id] = line
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in (header, *lines))


def transcript_json(*, conversation: Conversation, messages: Sequence[Message]) -> dict[str, Any]:
    """Everything stored of the conversation, in this service's own format."""
    return {
        "format": JSON_FORMAT,
        "version": 1,
        "conversation": {
            "db_id": conversation.db_id,
            "persona": conversation.persona,
            "title": conversation.title,
            "greeting": conversation.greeting,
            "created_at": conversation.created_at.isoformat(),
            "updated_at": conversation.updated_at.isoformat(),
        },
        "messages": [
            {
                "id": m.id,
                "seq": m.seq,
                "role": m.role,
                "content": m.content,
                "created_at": m.created_at.isoformat(),
                "meta": m.meta,
            }
            for m in messages
        ],
    }


def transcript_markdown(
    *, conversation: Conversation, messages: Sequence[Message], user_name: str, character_name: str
) -> str:
    """A readable transcript: the title, then each visible message under its speaker and time."""
    replaced = {m.meta["regenerates"] for m in messages if m.meta.get("regenerates")}
    parts = [f"# {conversation.title or character_name}", ""]
    for message in messages:
        if message.role not in ("user", "assistant") or message.id in replaced:
            continue
        speaker = user_name if message.role == "user" else character_name
        parts += [f"## {speaker} · {message.created_at.strftime('%Y-%m-%d %H:%M')}", "", message.content, ""]
    return "\n".join(parts)
