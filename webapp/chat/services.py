"""Writes and orchestration: one chat turn, and deleting a conversation."""

from __future__ import annotations

from dataclasses import dataclass

from webapp.chat.errors import GenerationFailedError, NotFoundError
from webapp.chat.personas import Persona
from webapp.chat.selectors import conversation_owned
from webapp.engine.engine import Completion, Engine, GenerationError, GenerationRequest, SamplingParams
from webapp.engine.prompt import ChatMessage, PromptTooLongError
from webapp.engine.registry import SamplingDefaults
from webapp.store.chat_store import ChatStore, Conversation, Message

TITLE_CHARS = 60


@dataclass(frozen=True)
class ChatTurn:
    conversation: Conversation
    user_message: Message
    assistant_message: Message
    completion: Completion


def sampling_params(defaults: SamplingDefaults, *, seed: int | None = None) -> SamplingParams:
    return SamplingParams(
        temperature=defaults.temperature,
        top_p=defaults.top_p,
        top_k=defaults.top_k,
        min_p=defaults.min_p,
        repeat_penalty=defaults.repeat_penalty,
        max_tokens=defaults.max_tokens,
        seed=seed,
    )


def chat_turn_run(
    *,
    store: ChatStore,
    engine: Engine,
    db_id: str,
    user_id: str,
    text: str,
    persona: Persona,
    sampling: SamplingParams,
) -> ChatTurn:
    """Answer `text` in conversation `db_id` (created on first use) as `persona`.

    The user's message is stored once the prompt is accepted; the reply is stored
    before this returns (persist, then publish). Blocks until generation ends: call it
    from a worker thread, never from an event loop.
    """
    conversation = store.conversation_get(db_id)
    if conversation is not None and conversation.user_id != user_id:
        raise NotFoundError(f"no conversation {db_id} for this user_id", field="db_id")
    history = store.messages_recent(db_id) if conversation is not None else []

    request = GenerationRequest(
        pinned=persona.pinned_messages(),
        history=[ChatMessage(m.role, m.content) for m in history],  # type: ignore[arg-type]
        user=ChatMessage("user", text),
        sampling=sampling,
    )
    try:
        handle = engine.submit(request)
    except PromptTooLongError as exc:
        raise GenerationFailedError(
            f"input_data and the persona need {exc.needed} tokens; the model's context allows {exc.budget}",
            field="input_data",
            code="too_long_for_context",
        ) from exc

    if conversation is None:
        conversation = store.conversation_create(
            db_id=db_id, user_id=user_id, persona=persona.id, title=text[:TITLE_CHARS]
        )
    user_message = store.message_append(conversation, role="user", content=text, persona=persona.id)

    try:
        completion = handle.result()
    except GenerationError as exc:
        raise GenerationFailedError(str(exc)) from exc

    kept = history[len(history) - handle.plan.history_kept :] if handle.plan.history_kept else []
    assistant_message = store.message_append(
        conversation,
        role="assistant",
        content=completion.text,
        persona=persona.id,
        meta={
            "tokens": completion.usage.completion_tokens,
            "model": completion.model,
            "finish_reason": completion.finish_reason,
            "timings": {
                "ttft_ms": round(completion.timings.ttft_ms, 1),
                "total_ms": round(completion.timings.total_ms, 1),
                "tokens_per_s": round(completion.timings.tokens_per_s, 1),
            },
            "prompt": {
                "tokens": completion.usage.prompt_tokens,
                "persona": persona.id,
                "history_message_ids": [m.id for m in kept],
                "history_dropped": handle.plan.history_dropped,
            },
        },
    )
    return ChatTurn(
        conversation=store.conversation_get(db_id) or conversation,
        user_message=user_message,
        assistant_message=assistant_message,
        completion=completion,
    )


def conversation_delete(*, store: ChatStore, db_id: str, user_id: str) -> None:
    conversation_owned(store=store, db_id=db_id, user_id=user_id)
    store.conversation_delete(db_id)
