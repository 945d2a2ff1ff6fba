"""The persona prefix cache with the real model: a restored prefix answers exactly as a cold
prompt does, it is used only for the very same tokens, it stays within its memory limit,
and new conversations on one persona evaluate the persona once."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import pytest

from tests.engine.test_batching import greedy, idle_wait, slots_consistent, spec_make
from webapp.engine.engine import GenerationRequest
from webapp.engine.llama import LlamaEngine
from webapp.engine.prefix_cache import PrefixCache, PrefixEntry
from webapp.engine.prompt import ChatMessage

MIB = 1 << 20


def persona(name: str, sentences: int = 12) -> ChatMessage:
    lines = [f"You are {name}, the archivist of a small harbour town."]
    lines += [f"Fact {i}: the {i}th shelf of {name}'s archive holds maps of the old coast." for i in range(sentences)]
    return ChatMessage("system", " ".join(lines))


def ask(who: ChatMessage, question: str, max_tokens: int = 16, *, shared: int | None = None) -> GenerationRequest:
    return GenerationRequest(
        pinned=[who], history=(), user=ChatMessage("user", question), sampling=greedy(max_tokens), shared=shared
    )


@pytest.fixture
def cached() -> Iterator[LlamaEngine]:
    engine = LlamaEngine(spec_make(slots=1, prefix_cache_mib=64))
    yield engine
    engine.close()


@pytest.mark.slow
def test_a_restored_prefix_answers_exactly_as_a_cold_prompt(cached: LlamaEngine) -> None:
    cold_engine = LlamaEngine(spec_make(slots=1, prefix_cache_mib=0))
    try:
        cold = cold_engine.submit(ask(persona("Mina"), "Where are the maps?", 32)).result()
    finally:
        cold_engine.close()

    first = cached.submit(ask(persona("Mina"), "Where are the maps?", 32)).result()
    cached.submit(ask(persona("Jun"), "Hello?", 4)).result()  # the only slot now holds another persona
    before = cached.stats()
    again = cached.submit(ask(persona("Mina"), "Where are the maps?", 32)).result()
    after = cached.stats()

    assert before.prefix_cache is not None and after.prefix_cache is not None
    assert after.prefix_cache.hits == before.prefix_cache.hits + 1
    restored = after.prefix_tokens_restored - before.prefix_tokens_restored
    assert restored > 100, "the persona came from the cache, not from the slot"
    assert after.prompt_tokens_evaluated - before.prompt_tokens_evaluated == again.usage.prompt_tokens - restored
    assert again.text == first.text == cold.text
    assert again.usage == cold.usage
    idle_wait(cached)
    slots_consistent(cached)


@pytest.mark.slow
def test_a_prefix_is_reused_only_for_the_very_same_tokens(cached: LlamaEngine) -> None:
    cached.submit(ask(persona("Mina"), "Where are the maps?", 4)).result()
    cached.submit(ask(persona("Jun"), "Hello?", 4)).result()
    before = cached.stats().prefix_cache
    # The same card with one letter changed in its first sentence, as after an edit.
    changed = cached.submit(ask(persona("Mino"), "Where are the maps?", 4)).result()
    after = cached.stats().prefix_cache
    assert before is not None and after is not None
    assert after.hits == before.hits and after.misses == before.misses + 1
    assert changed.finish_reason == "length"
    # shared=0: the caller says nothing is shared, so nothing is looked up or stored.
    cached.submit(ask(persona("Jun"), "Hello?", 4, shared=0)).result()
    assert cached.stats().prefix_cache == after


@pytest.mark.slow
def test_the_cache_stays_within_its_memory_limit() -> None:
    engine = LlamaEngine(spec_make(slots=2, prefix_cache_mib=2))  # about one 60-token prefix of this model
    try:
        names = ["Ana", "Bo", "Cy"]
        for name in names:
            engine.submit(ask(persona(name, sentences=2), "Hi.", 2)).result()
        stats = engine.stats().prefix_cache
        assert stats is not None
        assert stats.entries == 1 and stats.evictions == len(names) - 1
        assert 0 < stats.bytes <= 2 * MIB
        # A prefix larger than the whole limit is never stored, and requests on it do not wait
        # for each other's copy: both evaluate it at once.
        big = persona("Dana", sentences=40)
        handles = [engine.submit(ask(big, f"Question {i}?", 2)) for i in range(2)]
        results = [h.result() for h in handles]
        assert [r.finish_reason for r in results] == ["length", "length"]
        assert results[1].timings.queued_ms < results[0].timings.ttft_ms / 2, "the second did not wait"
        later = engine.stats().prefix_cache
        assert later is not None and (later.entries, later.bytes, later.stored) == (1, stats.bytes, stats.stored)
    finally:
        engine.close()


@pytest.mark.slow
def test_new_conversations_on_one_persona_evaluate_it_once() -> None:
    engine = LlamaEngine(spec_make(slots=4, prefix_cache_mib=64, max_wait_s=100_000.0))
    try:
        long_persona = persona("Mina", sentences=40)
        handles = [engine.submit(ask(long_persona, f"Question number {i}?", 8)) for i in range(4)]
        results = [h.result() for h in handles]
        stats = engine.stats()
    finally:
        engine.close()
    assert stats.prefix_cache is not None
    assert stats.prefix_cache.hits == 3 and stats.prefix_cache.stored == 1
    prefix = stats.prefix_tokens_restored // 3
    assert prefix > 400
    assert stats.prompt_tokens_evaluated == sum(r.usage.prompt_tokens for r in results) - 3 * prefix
    assert {r.text for r in results[1:]}, "every request was answered"
    assert all(r.finish_reason == "length" for r in results)


def entry(tokens: tuple[int, ...], size: int) -> PrefixEntry:
    return PrefixEntry(tokens=tokens, state=(ctypes.c_uint8 * 1)(), size=size)


def test_the_lru_evicts_the_least_recently_used_first() -> None:
    cache = PrefixCache(limit_bytes=100)
    assert cache.store(entry((1,), 40)) and cache.store(entry((2,), 40))
    assert cache.lookup((1,)) is not None  # (2,) is now the least recently used
    assert cache.store(entry((3,), 40))
    assert (1,) in cache and (3,) in cache and (2,) not in cache
    assert cache.lookup((2,)) is None
    assert not cache.store(entry((4,), 101)), "larger than the whole limit"
    assert cache.store(entry((3,), 60)), "the same tokens again replace the entry"
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.hits, stats.misses, stats.evictions) == (2, 100, 1, 1, 1)
    assert not PrefixCache(limit_bytes=0).store(entry((5,), 1))
    cache.discard((3,))
    cache.discard((9,))  # not there: nothing happens
    assert (3,) not in cache and cache.stats().bytes == 40
