"""Continuous batching with the real model: batched equals alone, prefix reuse, chunked
prefill, context limits, and no slot or KV leak under random cancellation."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Iterator

import pytest

from webapp.config.env import REPO_ROOT
from webapp.engine.engine import (
    DoneEvent,
    EngineBusyError,
    GenerationRequest,
    QueuedEvent,
    SamplingParams,
    TokenEvent,
)
from webapp.engine.llama import LlamaEngine
from webapp.engine.prompt import ChatMessage
from webapp.engine.registry import ModelSpec, registry_load

pytestmark = pytest.mark.slow

SYSTEM = ChatMessage("system", "You are a helpful assistant.")
QUESTIONS = [
    "What is the capital of France?",
    "Name three colors.",
    "Write a haiku about rain.",
    "How do I boil an egg?",
    "What is 12 times 12?",
    "Give me a tip for a job interview.",
    "회의록을 짧게 요약하는 방법을 알려 주세요.",
    "Why is the sky blue?",
]


def spec_make(**changes: object) -> ModelSpec:
    return dataclasses.replace(registry_load(REPO_ROOT / "models" / "registry.toml")["office"], **changes)


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    running = LlamaEngine(spec_make(slots=8, max_wait_s=100_000.0))  # the storm below must not be refused
    yield running
    running.close()


def greedy(max_tokens: int) -> SamplingParams:
    # ignore_eos: every reply is max_tokens long, whatever this CPU's greedy choice.
    return SamplingParams(
        temperature=0.0, top_p=1.0, top_k=1, min_p=0.0, repeat_penalty=1.0, max_tokens=max_tokens, ignore_eos=True
    )


def request_make(text: str, max_tokens: int = 24, history: tuple[ChatMessage, ...] = ()) -> GenerationRequest:
    return GenerationRequest(
        pinned=[SYSTEM], history=history, user=ChatMessage("user", text), sampling=greedy(max_tokens)
    )


def slots_consistent(engine: LlamaEngine) -> None:
    """Every slot's bookkeeping matches what llama.cpp's KV cache really holds."""
    c = engine._c
    for slot in engine._slots:
        assert slot.job is None
        assert c.llama_memory_seq_pos_max(engine._memory, slot.seq) == len(slot.tokens) - 1


def idle_wait(engine: LlamaEngine) -> None:
    deadline = time.monotonic() + 5
    while (engine.active_requests() or engine.queue_depth()) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert (engine.active_requests(), engine.queue_depth()) == (0, 0)


def test_greedy_output_in_a_batch_of_eight_equals_output_alone() -> None:
    alone_engine = LlamaEngine(spec_make(slots=1))
    try:
        alone = [alone_engine.submit(request_make(q)).result() for q in QUESTIONS]
    finally:
        alone_engine.close()
    batched_engine = LlamaEngine(spec_make(slots=8))
    try:
        handles = [batched_engine.submit(request_make(q)) for q in QUESTIONS]
        batched = [h.result() for h in handles]
        steps = batched_engine.stats().decode_steps
    finally:
        batched_engine.close()

    assert [c.text for c in batched] == [c.text for c in alone]
    assert [c.usage for c in batched] == [c.usage for c in alone]
    # They really shared steps: far fewer decode calls than tokens generated.
    assert steps < sum(c.usage.completion_tokens for c in batched) / 2


def test_second_turn_reuses_the_first_turns_tokens(engine: LlamaEngine) -> None:
    first_request = request_make("My name is Minji. What is a good name for a cat?", 24)
    first = engine.submit(first_request).result()
    before = engine.stats()
    history = (first_request.user, ChatMessage("assistant", first.text))
    second = engine.submit(request_make("And for a dog?", 16, history=history)).result()
    after = engine.stats()

    reused = after.prompt_tokens_reused - before.prompt_tokens_reused
    evaluated = after.prompt_tokens_evaluated - before.prompt_tokens_evaluated
    assert reused + evaluated == second.usage.prompt_tokens
    # Turn 1's whole prompt was in the cache (and most of its reply, if the template
    # renders it the same way as it was generated); only the new part was evaluated.
    assert reused >= first.usage.prompt_tokens
    assert evaluated < second.usage.prompt_tokens - first.usage.prompt_tokens


def test_a_long_prompt_is_prefilled_in_chunks_while_others_stream() -> None:
    engine = LlamaEngine(spec_make(slots=2, prefill_chunk=64))
    try:
        streaming = engine.submit(request_make("Write a long story about a dragon.", 200))
        arrivals: list[float] = []

        def read() -> None:
            for event in streaming.events():
                if isinstance(event, TokenEvent):
                    arrivals.append(time.perf_counter())

        reader = threading.Thread(target=read)
        reader.start()
        while len(arrivals) < 3:
            time.sleep(0.001)
        long_text = " ".join(f"Item {i} is on the list." for i in range(150))  # ~1,000 tokens
        steps_before = engine.stats().decode_steps
        long_handle = engine.submit(request_make(f"Summarise: {long_text}", 4))
        submitted = time.perf_counter()
        long_done = long_handle.result()
        prefilled = engine.stats().decode_steps - steps_before
        streaming.cancel()
        reader.join()
    finally:
        engine.close()

    assert long_done.usage.prompt_tokens > 900
    assert prefilled >= long_done.usage.prompt_tokens // 64, "the prompt went in 64-token chunks"
    during = [t for t in arrivals if submitted < t < submitted + long_done.timings.ttft_ms / 1000]
    assert len(during) >= 5, "the running stream kept producing tokens during the long prefill"


def test_context_full_ends_with_length() -> None:
    engine = LlamaEngine(spec_make(slots=2, n_ctx=256))
    try:
        completion = engine.submit(request_make("Write a very long story about the sea.", 1000)).result()
    finally:
        engine.close()
    assert completion.finish_reason == "length"
    assert completion.usage.prompt_tokens + completion.usage.completion_tokens <= 256


def test_thousands_of_random_cancellations_leak_no_slot_or_kv(engine: LlamaEngine) -> None:
    rng = random.Random(7)
    # A third of them on two long personas, so that prefix copies are made and restored
    # while requests are cancelled around them.
    personas = [ChatMessage("system", f"You are {name}. " + "You keep the town's records. " * 30) for name in "AB"]
    handles = []
    for i in range(2000):
        request = request_make(QUESTIONS[i % len(QUESTIONS)], rng.choice([1, 4, 16]))
        if i % 3 == 0:
            request = dataclasses.replace(request, pinned=[personas[i % 2]])
        handle = engine.submit(request)
        handles.append(handle)
        if rng.random() < 0.8:
            if rng.random() < 0.5:
                time.sleep(rng.random() * 0.002)
            handle.cancel()
    finished = [h.result() for h in handles]
    idle_wait(engine)

    reasons = {c.finish_reason for c in finished}
    assert "cancelled" in reasons and reasons - {"cancelled"}, reasons
    stats = engine.stats()
    assert stats.busy_slots == 0
    slots_consistent(engine)
    assert stats.prefix_cache is not None and stats.prefix_cache.hits > 0
    assert 0 < stats.prefix_cache.bytes <= stats.prefix_cache.limit_bytes
    assert stats.prefix_cache.entries <= len(personas)
    # The engine still answers, and the same as before the storm.
    fresh = engine.submit(request_make(QUESTIONS[0])).result()
    again = engine.submit(request_make(QUESTIONS[0])).result()
    assert fresh.text and fresh.text == again.text
    idle_wait(engine)
    slots_consistent(engine)


def test_every_request_ends_with_exactly_one_done(engine: LlamaEngine) -> None:
    handles = [engine.submit(request_make(q, 8)) for q in QUESTIONS * 3]
    for handle in handles:
        events = list(handle.events())
        assert sum(isinstance(e, DoneEvent) for e in events) == 1
        assert isinstance(events[-1], DoneEvent)
    idle_wait(engine)
    slots_consistent(engine)


def test_overload_is_refused_with_retry_after_and_queued_requests_learn_their_place() -> None:
    engine = LlamaEngine(spec_make(slots=1, max_wait_s=6.0))
    try:
        handles, refusals = [], []
        for i in range(12):
            try:
                handles.append(engine.submit(request_make(QUESTIONS[i % len(QUESTIONS)], 64)))
            except EngineBusyError as exc:
                refusals.append(exc)
        first_events = [list(h.events()) for h in handles]
        stats = engine.stats()
    finally:
        engine.close()

    assert len(handles) >= 3 and refusals, "some requests fit the 6 s limit, later ones do not"
    assert all(r.retry_after_s >= 1 and r.queue_depth >= 1 for r in refusals)
    assert stats.requests_refused == len(refusals)
    positions = [[e.position for e in events if isinstance(e, QueuedEvent)] for events in first_events]
    assert positions[0] == [], "the first request found a free slot"
    assert positions[1][0] == 1 and positions[2][0] == 2
    # Every queued request was told when it moved up, and was served in the end.
    assert all(p == sorted(p, reverse=True) for p in positions)
    assert all(isinstance(events[-1], DoneEvent) for events in first_events)
