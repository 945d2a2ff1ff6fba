"""Writes and small pure helpers of the chat app; a chat turn itself is webapp.chat.turns.

`messages_visible` and `prompt_history` decide what of a stored conversation its user sees
and a prompt includes; `sampling_params` turns the registry's defaults into a request's
sampling; `conversation_delete` removes a conversation of its owner and
`conversation_branch` forks one at a message; `message_edit`,
`message_swipe_choose` and `message_delete` change one stored message of its owner.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from webapp.chat.selectors import conversation_owned
from webapp.core.errors import ApplicationError, NotFoundError
from webapp.engine.engine import SamplingParams
from webapp.engine.registry import SamplingDefaults
from webapp.store.chat_store import ChatStore, Conversation, Message


def sampling_params(defaults: SamplingDefaults, *, seed: int | None = None) -> SamplingParams:
    return SamplingParams(
        temperature=defaults.temperature,
        top_p=defaults.top_p,
        top_k=defaults.top_k,
        min_p=defaults.min_p,
        repeat_penalty=defaults.repeat_penalty,
        max_tokens=defaults.max_tokens,
        seed=seed,
        ignore_eos=defaults.ignore_eos,
    )


def messages_visible(messages: Sequence[Message]) -> list[Message]:
    """The conversation as its user sees it: replies that were regenerated away left out."""
    replaced = {m.meta["regenerates"] for m in messages if m.meta.get("regenerates")}
    return [m for m in messages if m.id not in replaced]


def prompt_history(messages: Sequence[Message]) -> list[Message]:
    """The messages a prompt should see: visible ones, without replies stopped before any text."""
    return [m for m in messages_visible(messages) if m.role != "assistant" or m.content]


def conversation_delete(*, store: ChatStore, db_id: str, user_id: str) -> None:
    conversation_owned(store=store, db_id=db_id, user_id=user_id)
    store.conversation_delete(db_id)


def _message_missing(message_id: str) -> NotFoundError:
    return NotFoundError(f"no message {message_id} in this conversation", field="message_id")


def message_edit(*, store: ChatStore, db_id: str, user_id: str, message_id: str, content: str) -> Message:
    """Change a message's text (the user's or a reply's); its earlier text stays in `edits`."""
    conversation_owned(store=store, db_id=db_id, user_id=user_id)
    message = store.message_edit(db_id, message_id, content)
    if message is None:
        raise _message_missing(message_id)
    return message


def message_swipe_choose(*, store: ChatStore, db_id: str, user_id: str, message_id: str, swipe_id: int) -> Message:
    """Show a reply's alternative `swipe_id`: the one later prompts see."""
    conversation_owned(store=store, db_id=db_id, user_id=user_id)
    try:
        message = store.message_swipe_choose(db_id, message_id, swipe_id)
    except IndexError as exc:
        raise ApplicationError(f"swipe_id: {exc}", field="swipe_id", code="no_such_swipe") from None
    if message is None:
        raise _message_missing(message_id)
    return message


def message_delete(*, store: ChatStore, db_id: str, user_id: str, message_id: str) -> None:
    conversation_owned(store=store, db_id=db_id, user_id=user_id)
    if not store.message_delete(db_id, message_id):
        raise _message_missing(message_id)


def conversation_branch(
    *, store: ChatStore, db_id: str, user_id: str, from_message_id: str, content: str | None = None
) -> Conversation:
    """A new conversation of the same user sharing `db_id`'s history up to `from_message_id`;
    with `content`, that message (the user's) edited in the branch: edit and send again."""
    conversation_owned(store=store, db_id=db_id, user_id=user_id)
    if content is not None:
        fork = store.message_get(db_id, from_message_id)
        if fork is not None and fork.role != "user":
            raise ApplicationError(
                "content: only your own message is edited and sent again in a branch (edit a reply with PATCH)",
                field="content",
            )
    branch = store.conversation_branch(db_id, message_id=from_message_id, new_db_id=str(uuid.uuid4()), content=content)
    if branch is None:
        raise NotFoundError(f"no message {from_message_id} in this conversation", field="from_message_id")
    return branch
