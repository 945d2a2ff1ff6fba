"""LlamaEngine with the real default model: streaming, stopping, cancelling, prompt building.

Greedy decoding (temperature 0, top_k 1) makes runs comparable with each other; nothing
here asserts on what the model says, only on how the engine behaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence

import pytest

from webapp.config.env import REPO_ROOT
from webapp.engine.engine import (
    Completion,
    DoneEvent,
    Event,
    GenerationHandle,
    GenerationRequest,
    SamplingParams,
    TokenEvent,
)
from webapp.engine.llama import LlamaEngine
from webapp.engine.prompt import ChatMessage, PromptTooLongError
from webapp.engine.registry import registry_load

pytestmark = pytest.mark.slow

SYSTEM = ChatMessage("system", "You are a helpful assistant.")
CAPITAL = "What is the capital of France?"
STORY = "Write a long story about a dragon who lives in a castle."


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    running = LlamaEngine(registry_load(REPO_ROOT / "models" / "registry.toml")["office"])
    yield running
    running.close()


def greedy(max_tokens: int = 32, *, stop: tuple[str, ...] = ()) -> SamplingParams:
    return SamplingParams(
        temperature=0.0,
        top_p=1.0,
        top_k=1,
        min_p=0.0,
        repeat_penalty=1.0,
        max_tokens=max_tokens,
        stop=stop,
        ignore_eos=True,  # every reply is max_tokens long, whatever this CPU's greedy choice
    )


def request_make(
    text: str,
    sampling: SamplingParams,
    *,
    history: Sequence[ChatMessage] = (),
    pinned: Sequence[ChatMessage] = (SYSTEM,),
) -> GenerationRequest:
    return GenerationRequest(pinned=pinned, history=history, user=ChatMessage("user", text), sampling=sampling)


def events_collect(handle: GenerationHandle) -> tuple[list[str], Completion]:
    """Read a handle to the end; return the streamed texts and the completion."""
    events = list(handle.events())
    assert all(isinstance(e, TokenEvent) for e in events[:-1])
    done = events[-1]
    assert isinstance(done, DoneEvent), done
    return [e.text for e in events[:-1] if isinstance(e, TokenEvent)], done.completion


def engine_idle_wait(engine: LlamaEngine, timeout: float = 2.0) -> None:
    """The scheduler clears its busy flag just after emitting DoneEvent; give it a moment."""
    deadline = time.monotonic() + timeout
    while engine.active_requests() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert engine.active_requests() == 0
    assert engine.queue_depth() == 0


def test_streamed_tokens_add_up_to_the_completion(engine: LlamaEngine) -> None:
    handle = engine.submit(request_make(CAPITAL, greedy(32)))

    texts, completion = events_collect(handle)

    assert texts, "no tokens streamed"
    assert all(texts)  # no empty token events
    assert "".join(texts) == completion.text
    assert completion.finish_reason in ("stop", "length")
    assert 0 < completion.usage.completion_tokens <= 32
    assert completion.model == engine.model_alias
    assert completion.timings.total_ms >= completion.timings.ttft_ms >= completion.timings.queued_ms >= 0


def test_prompt_tokens_match_the_rendered_prompt(engine: LlamaEngine) -> None:
    handle = engine.submit(request_make(CAPITAL, greedy(4)))

    completion = handle.result()

    assert completion.usage.prompt_tokens == engine.count_tokens(handle.plan.text) == handle.plan.n_tokens


def test_greedy_decoding_is_repeatable(engine: LlamaEngine) -> None:
    first = engine.submit(request_make(CAPITAL, greedy(32))).result()
    engine.submit(request_make(STORY, greedy(8))).result()  # something else in between
    second = engine.submit(request_make(CAPITAL, greedy(32))).result()

    assert first.text
    assert second.text == first.text
    assert second.finish_reason == first.finish_reason
    assert second.usage == first.usage


def test_max_tokens_ends_with_length(engine: LlamaEngine) -> None:
    completion = engine.submit(request_make(STORY, greedy(8))).result()

    assert completion.finish_reason == "length"
    assert completion.usage.completion_tokens == 8


def test_stop_string_ends_the_reply_before_it(engine: LlamaEngine) -> None:
    free = engine.submit(request_make(STORY, greedy(48))).result()
    words = [w.strip(".,!?;:\"'") for w in free.text.split()]
    # A word the model writes somewhere after its first few words.
    stop = next(w for w in words[3:] if len(w) >= 3)
    expected = free.text[: free.text.index(stop)]

    handle = engine.submit(request_make(STORY, greedy(48, stop=(stop,))))
    texts, completion = events_collect(handle)

    assert completion.finish_reason == "stop"
    assert stop not in completion.text
    assert completion.text == expected
    assert "".join(texts) == completion.text
    assert completion.usage.completion_tokens < free.usage.completion_tokens


def test_cancel_after_first_token_ends_quickly_and_engine_recovers(engine: LlamaEngine) -> None:
    handle = engine.submit(request_make(STORY, greedy(400)))
    events = handle.events()
    first = next(events)
    assert isinstance(first, TokenEvent)

    cancelled_at = time.perf_counter()
    handle.cancel()
    rest = list(events)
    elapsed = time.perf_counter() - cancelled_at

    done = rest[-1]
    assert isinstance(done, DoneEvent)
    assert done.completion.finish_reason == "cancelled"
    assert done.completion.usage.completion_tokens < 20
    assert elapsed < 2.0
    engine_idle_wait(engine)

    after = engine.submit(request_make(CAPITAL, greedy(16))).result()
    assert after.finish_reason in ("stop", "length")
    assert after.text
    engine_idle_wait(engine)


def test_cancel_before_start_skips_generation(engine: LlamaEngine) -> None:
    blocker = engine.submit(request_make(STORY, greedy(24)))
    queued = engine.submit(request_make(CAPITAL, greedy(24)))
    queued.cancel()

    queued_result = queued.result()
    blocker_result = blocker.result()

    assert queued_result.finish_reason == "cancelled"
    assert queued_result.usage.completion_tokens == 0
    assert queued_result.text == ""
    assert blocker_result.finish_reason in ("stop", "length")
    engine_idle_wait(engine)


def test_aevents_from_an_event_loop(engine: LlamaEngine) -> None:
    async def chat() -> list[Event]:
        handle = engine.submit(request_make(CAPITAL, greedy(32)))
        return [event async for event in handle.aevents()]

    events = asyncio.run(chat())

    assert isinstance(events[-1], DoneEvent)
    texts = [e.text for e in events if isinstance(e, TokenEvent)]
    assert "".join(texts) == events[-1].completion.text
    blocking = engine.submit(request_make(CAPITAL, greedy(32))).result()
    assert events[-1].completion.text == blocking.text


def test_handle_submitted_from_a_worker_thread_is_read_from_the_loop(engine: LlamaEngine) -> None:
    """The web layer submits on a worker thread (the store is blocking) and streams on the loop."""

    async def chat() -> list[list[Event]]:
        handle = await asyncio.to_thread(engine.submit, request_make(CAPITAL, greedy(32)))

        def two_waiting() -> bool:
            # Let events pile up before anyone reads: wait for them, not for a time (on a
            # busy CPU 0.2 s was not always two tokens).
            with handle._arrived:
                return handle._arrived.wait_for(lambda: len(handle._pending) >= 2, timeout=120)

        assert await asyncio.to_thread(two_waiting)
        return [batch async for batch in handle.aevent_batches()]

    batches = asyncio.run(chat())
    events = [event for batch in batches for event in batch]

    assert isinstance(events[-1], DoneEvent)
    assert all(isinstance(e, TokenEvent) for e in events[:-1])
    assert "".join(e.text for e in events[:-1]) == events[-1].completion.text
    assert len(batches) < len(events), "events that arrived before the read should come as one batch"


def test_breaking_out_of_aevents_cancels_generation(engine: LlamaEngine) -> None:
    async def read_one_token() -> GenerationHandle:
        handle = engine.submit(request_make(STORY, greedy(400)))
        async for event in handle.aevents():
            assert isinstance(event, TokenEvent)
            break
        return handle

    handle = asyncio.run(read_one_token())

    assert handle.cancelled
    engine_idle_wait(engine)
    completion = handle.result()
    assert completion.finish_reason == "cancelled"
    assert completion.usage.completion_tokens < 400


def test_cancelling_the_awaiting_task_cancels_generation(engine: LlamaEngine) -> None:
    async def chat_then_leave() -> float:
        handle = engine.submit(request_make(STORY, greedy(400)))
        first_token = asyncio.Event()

        async def read() -> None:
            async for event in handle.aevents():
                if isinstance(event, TokenEvent):
                    first_token.set()

        task = asyncio.create_task(read())
        await asyncio.wait_for(first_token.wait(), timeout=30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert handle.cancelled
        return time.perf_counter()

    left_at = asyncio.run(chat_then_leave())
    engine_idle_wait(engine)

    # 400 tokens would take seconds; a cancelled request frees the engine at once.
    assert time.perf_counter() - left_at < 2.0


def test_history_reaches_the_prompt_in_order(engine: LlamaEngine) -> None:
    history = [
        ChatMessage("user", "My favourite colour is teal."),
        ChatMessage("assistant", "Noted, your favourite colour is teal."),
    ]
    handle = engine.submit(request_make("What is my favourite colour?", greedy(8), history=history))
    handle.result()

    text = handle.plan.text
    positions = [
        text.index(SYSTEM.content),
        text.index(history[0].content),
        text.index(history[1].content),
        text.index("What is my favourite colour?"),
    ]
    assert positions == sorted(positions)
    assert handle.plan.history_kept == 2
    assert handle.plan.history_dropped == 0


def test_history_that_does_not_fit_is_trimmed_oldest_first(engine: LlamaEngine) -> None:
    filler = "The quick brown fox jumps over the lazy dog near the river bank today. " * 4
    history: list[ChatMessage] = []
    for i in range(40):
        history.append(ChatMessage("user", f"Question number {i}. {filler}"))
        history.append(ChatMessage("assistant", f"Answer number {i}. {filler}"))
    max_tokens = engine.n_ctx // 2  # the prompt budget is what is left after the reply's room
    budget = engine.n_ctx - max_tokens
    assert engine.count_tokens(engine.template.render([SYSTEM, *history])) > budget  # really too long

    handle = engine.submit(request_make("Summarise.", greedy(max_tokens), history=history))
    handle.cancel()  # only the plan matters here
    handle.result()

    plan = handle.plan
    assert plan.history_dropped > 0
    assert plan.history_kept > 0
    assert plan.history_dropped + plan.history_kept == len(history)
    assert plan.n_tokens <= budget
    assert history[plan.history_dropped].role == "user"
    assert "Answer number 39." in plan.text
    assert "Question number 0." not in plan.text
    assert plan.text.index(SYSTEM.content) < plan.text.index("Answer number 39.") < plan.text.index("Summarise.")
    engine_idle_wait(engine)


def test_prompt_too_long_is_refused_at_submit(engine: LlamaEngine) -> None:
    huge = "word " * (engine.n_ctx * 2)

    with pytest.raises(PromptTooLongError) as excinfo:
        engine.submit(request_make(huge, greedy(16)))

    assert excinfo.value.needed > excinfo.value.budget
    assert engine.queue_depth() == 0
