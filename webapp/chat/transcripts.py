"""A stored conversation as a file (SillyTavern's chat JSONL, our own JSON, or Markdown),
and a chat file as messages to store (SillyTavern JSONL or our JSON).

Pure functions of (conversation, messages, names) and of (bytes); the API views only pick
one and name the file. Written by hand because the formats are the product's own contract with other
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

Reading a file (`chat_file_parse`) checks everything before anything is stored and names
what is wrong with it, by line for JSONL: a file of at most MAX_FILE_BYTES, at most
MAX_MESSAGES messages of at most MAX_TEXT characters, MAX_SWIPES alternatives each, every
line bounded JSON (webapp.core.json_input). SillyTavern's system lines (`is_system`) are
left out and counted. Dates may be ISO 8601, epoch milliseconds, or SillyTavern's own
"November 30, 2026 11:12pm"; one that is none of these is left unset (the import's time).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webapp.core.errors import ApplicationError, PayloadTooLargeError
from webapp.core.json_input import JsonInputError, json_loads_bounded
from webapp.store.chat_store import Conversation, Message, MessageDraft

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


def _name_of(message: Message, *, user_name: str, character_name: str, speakers: Mapping[str, str]) -> str:
    """Who wrote `message`: the user, a group chat's member (by its `speaker`), or the character."""
    if message.role == "user":
        return user_name
    speaker = str(message.meta.get("speaker") or "")
    return speakers.get(speaker, speaker) if speaker else character_name


def transcript_jsonl(
    *,
    conversation: Conversation,
    messages: Sequence[Message],
    user_name: str,
    character_name: str,
    speaker_names: Mapping[str, str] | None = None,
) -> str:
    """SillyTavern's chat file for `messages` (oldest first; see the module docstring). A
    group chat's replies are named by their speaker (`speaker_names`: persona id → name)."""
    header = {
        "user_name": user_name,
        "character_name": character_name,
        "create_date": conversation.created_at.isoformat(),
        "chat_metadata": {"personachat": {"db_id": conversation.db_id, "persona": conversation.persona}},
    }
    speakers = speaker_names or {}
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
            "name": _name_of(message, user_name=user_name, character_name=character_name, speakers=speakers),
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
            **(
                {
                    "members": list(conversation.members),
                    "muted": list(conversation.muted),
                    "activation": conversation.activation,
                }
                if conversation.is_group
                else {}
            ),
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
    *,
    conversation: Conversation,
    messages: Sequence[Message],
    user_name: str,
    character_name: str,
    speaker_names: Mapping[str, str] | None = None,
) -> str:
    """A readable transcript: the title, then each visible message under its speaker and time."""
    replaced = {m.meta["regenerates"] for m in messages if m.meta.get("regenerates")}
    parts = [f"# {conversation.title or character_name}", ""]
    for message in messages:
        if message.role not in ("user", "assistant") or message.id in replaced:
            continue
        speaker = _name_of(message, user_name=user_name, character_name=character_name, speakers=speaker_names or {})
        parts += [f"## {speaker} · {message.created_at.strftime('%Y-%m-%d %H:%M')}", "", message.content, ""]
    return "\n".join(parts)


# --- reading a chat file ----------------------------------------------------------------

MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_MESSAGES = 100_000
MAX_TEXT = 100_000
MAX_SWIPES = 100
MAX_NAME = 200
KEPT_META = ("tokens", "model", "finish_reason", "timings", "edits", "edited_at", "speaker")


@dataclass(frozen=True)
class ParsedChat:
    """What a chat file holds, checked: ready to store as one batch."""

    messages: list[MessageDraft]
    character_name: str
    title: str
    persona: str  # our JSON's persona id ("" in SillyTavern's files)
    skipped: int  # system lines left out


class ChatFileError(ApplicationError):
    """A chat file this service can't read; the message says where and why."""

    status = 400
    code = "invalid_chat_file"

    def __init__(self, message: str) -> None:
        super().__init__(f"file: {message}", field="file")


def _when(value: Any) -> datetime | None:
    """A message's date from what chat files write, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and 0 < value < 1e14:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
        for pattern in ("%B %d, %Y %I:%M%p", "%B %d, %Y %I:%M %p", "%Y-%m-%d@%Hh%Mm%Ss"):
            try:
                parsed = datetime.strptime(text, pattern)  # no zone in the file: read as UTC below
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise ChatFileError(f"{where}: {name} must be a string")
    if len(value) > MAX_TEXT:
        raise ChatFileError(f"{where}: {name} has {len(value):,} characters; at most {MAX_TEXT:,}")
    return value


def _swipes(swipes: Any, swipe_id: Any, info: Any, where: str) -> dict[str, Any]:
    """The `swipes`/`swipe_id` meta of a message with alternatives ({} with one or none)."""
    if swipes is None:
        return {}
    if not isinstance(swipes, list) or len(swipes) > MAX_SWIPES:
        raise ChatFileError(f"{where}: swipes must be a list of at most {MAX_SWIPES} strings")
    texts = [_text(t, where, f"swipes[{i}]") for i, t in enumerate(swipes)]
    if len(texts) < 2:
        return {}
    if isinstance(swipe_id, bool) or not isinstance(swipe_id, int) or not 0 <= swipe_id < len(texts):
        raise ChatFileError(f"{where}: swipe_id must be an index into swipes (0 to {len(texts) - 1})")
    infos = info if isinstance(info, list) else []
    alternatives = []
    for i, text in enumerate(texts):
        item = infos[i] if i < len(infos) and isinstance(infos[i], dict) else {}
        when = _when(item.get("send_date"))
        alternatives.append(
            {
                "id": uuid.uuid4().hex[:24],
                "content": text,
                "created_at": when.isoformat() if when else "",
                "meta": {},
            }
        )
    return {"swipes": alternatives, "swipe_id": swipe_id}


def _object(line: str, where: str) -> dict[str, Any]:
    try:
        value = json_loads_bounded(line)
    except JsonInputError as exc:
        raise ChatFileError(f"{where}: {exc.message}") from None
    if not isinstance(value, dict):
        raise ChatFileError(f"{where}: must be a JSON object")
    return value


def _sillytavern(lines: list[str]) -> ParsedChat:
    header = _object(lines[0], "line 1")
    if "user_name" not in header and "character_name" not in header:
        raise ChatFileError(
            "line 1 must be SillyTavern's chat header (user_name, character_name, create_date, chat_metadata)"
        )
    character = header.get("character_name", "")
    if not isinstance(character, str) or len(character) > MAX_NAME:
        raise ChatFileError(f"line 1: character_name must be a string of at most {MAX_NAME} characters")
    drafts: list[MessageDraft] = []
    skipped = 0
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"line {number}"
        item = _object(line, where)
        if item.get("is_system") is True:
            skipped += 1
            continue
        if not isinstance(item.get("is_user"), bool):
            raise ChatFileError(f"{where}: is_user must be true or false")
        text = _text(item.get("mes"), where, "mes")
        extra = item.get("extra") if isinstance(item.get("extra"), dict) else {}
        meta: dict[str, Any] = _swipes(item.get("swipes"), item.get("swipe_id", 0), item.get("swipe_info"), where)
        if isinstance(extra.get("model"), str) and len(extra["model"]) <= MAX_NAME:
            meta["model"] = extra["model"]
        if isinstance(extra.get("token_count"), int) and not isinstance(extra["token_count"], bool):
            meta["tokens"] = extra["token_count"]
        drafts.append(
            MessageDraft(
                role="user" if item["is_user"] else "assistant",
                content=text,
                created_at=_when(item.get("send_date")),
                meta=meta,
            )
        )
        if len(drafts) > MAX_MESSAGES:
            raise ChatFileError(f"more than {MAX_MESSAGES:,} messages")
    ours = (header.get("chat_metadata") or {}) if isinstance(header.get("chat_metadata"), dict) else {}
    persona = (ours.get("personachat") or {}).get("persona", "") if isinstance(ours.get("personachat"), dict) else ""
    return ParsedChat(
        messages=drafts,
        character_name=character,
        title=character or "Imported chat",
        persona=persona if isinstance(persona, str) and len(persona) <= MAX_NAME else "",
        skipped=skipped,
    )


def _ours(value: dict[str, Any]) -> ParsedChat:
    if value.get("version") != 1:
        raise ChatFileError(f"{JSON_FORMAT} version {value.get('version')!r} is not one this service reads (1)")
    conversation = value.get("conversation")
    items = value.get("messages")
    if not isinstance(conversation, dict) or not isinstance(items, list):
        raise ChatFileError("a conversation object and a messages list are required")
    if len(items) > MAX_MESSAGES:
        raise ChatFileError(f"{len(items):,} messages; at most {MAX_MESSAGES:,}")
    title, persona = conversation.get("title", ""), conversation.get("persona", "")
    if not isinstance(title, str) or not isinstance(persona, str) or len(title) > MAX_NAME or len(persona) > MAX_NAME:
        raise ChatFileError(f"conversation.title and conversation.persona must be strings of at most {MAX_NAME}")
    drafts = []
    for i, item in enumerate(items):
        where = f"messages[{i}]"
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
            raise ChatFileError(f"{where}: must be an object whose role is user or assistant")
        meta_in = item.get("meta") if isinstance(item.get("meta"), dict) else {}
        stored = meta_in.get("swipes")
        texts = [s.get("content") if isinstance(s, dict) else s for s in stored] if isinstance(stored, list) else None
        infos = [{"send_date": s.get("created_at")} if isinstance(s, dict) else {} for s in stored or []]
        meta = _swipes(texts, meta_in.get("swipe_id", 0), infos, where)
        meta.update({k: meta_in[k] for k in KEPT_META if k in meta_in})
        drafts.append(
            MessageDraft(
                role=item["role"],
                content=_text(item.get("content"), where, "content"),
                created_at=_when(item.get("created_at")),
                meta=meta,
            )
        )
    return ParsedChat(messages=drafts, character_name="", title=title or "Imported chat", persona=persona, skipped=0)


def chat_file_parse(data: bytes) -> ParsedChat:
    """The messages of a SillyTavern chat JSONL or of our JSON export; ChatFileError (400)
    naming the line or field at fault, PayloadTooLargeError (413) past MAX_FILE_BYTES."""
    if len(data) > MAX_FILE_BYTES:
        raise PayloadTooLargeError(
            f"file is {len(data):,} bytes; the limit is {MAX_FILE_BYTES:,} bytes (32 MiB)",
            field="file",
            code="file_too_large",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ChatFileError(f"not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ChatFileError("the file is empty")
    try:
        whole = json_loads_bounded(text)  # our JSON (or a JSONL file of one line)
    except JsonInputError:
        whole = None  # JSONL: more than one JSON value, one per line
    if isinstance(whole, dict) and whole.get("format") == JSON_FORMAT:
        return _ours(whole)
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip())
    return _sillytavern(lines[first:])
