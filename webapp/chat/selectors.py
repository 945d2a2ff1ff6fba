"""Reads: conversations and messages as their owner sees them."""

from __future__ import annotations

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


def messages_list(*, store: ChatStore, db_id: str, user_id: str) -> list[Message]:
    conversation_owned(store=store, db_id=db_id, user_id=user_id)
    return store.messages_all(db_id)
