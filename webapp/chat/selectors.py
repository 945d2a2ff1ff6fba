"""Reads: conversations and messages as their owner sees them."""

from __future__ import annotations

from dataclasses import dataclass

from webapp.core.errors import NotFoundError
from webapp.store.chat_store import ChatStore, Conversation, Message


def conversation_owned(*, store: ChatStore, db_id: str, user_id: str) -> Conversation:
    """The conversation, if it exists and belongs to `user_id`; otherwise NotFoundError.

    Another user's conversation is reported exactly like a missing one, so ids can't be probed.
    """
    conversation = store.conversation_get(db_id)
    if conversation is None or conversation.user_id != user_id:
        raise NotFoundError(f"no conversation {db_id} for this user_id", field="db_id")
    return conversation


def conversations_list(*, store: ChatStore, user_id: str, limit: int) -> list[Conversation]:
    return store.conversations_for_user(user_id, limit=limit)


@dataclass(frozen=True)
class MessagePage:
    messages: list[Message]  # oldest first
    before: int | None  # pass as `before` for the page further back; None: this page starts the chat


def messages_page(*, store: ChatStore, db_id: str, user_id: str, before: int | None, limit: int) -> MessagePage:
    """Up to `limit` of the conversation's stored messages with seq < `before` (the newest
    when None), oldest first: one indexed read, however long the conversation is."""
    conversation_owned(store=store, db_id=db_id, user_id=user_id)
    read = store.messages_page(db_id, before=before, limit=limit + 1)
    page = read[-limit:]
    return MessagePage(messages=page, before=page[0].seq if len(read) > limit else None)


def conversation_whole(*, store: ChatStore, db_id: str, user_id: str) -> tuple[Conversation, list[Message]]:
    """The conversation and every message it has, oldest first: for an export, not a page."""
    conversation = conversation_owned(store=store, db_id=db_id, user_id=user_id)
    return conversation, store.messages_all(db_id)
