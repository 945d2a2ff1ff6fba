"""Log-probabilities and logit bias in LlamaEngine, with the real default model.

Nothing here asserts what the model says: logprobs are checked against each other (under
greedy decoding without penalties the chosen token is the most likely one), and logit
bias forces the token it names.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

import pytest

from webapp.config.env import REPO_ROOT
from webapp.engine.engine import Completion, GenerationRequest, SamplingError, SamplingParams
from webapp.engine.llama import LlamaEngine
from webapp.engine.prompt import ChatMessage
from webapp.engine.registry import registry_load

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(temperature=0, top_p=1, top_k=1, min_p=0, repeat_penalty=1.0, max_tokens=12)


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    running = LlamaEngine(registry_load(REPO_ROOT / "models" / "registry.toml")["office"])
    yield running
    running.close()


def run(engine: LlamaEngine, sampling: SamplingParams, text: str = "Name three colors.") -> Completion:
    request = GenerationRequest(pinned=[], history=[], user=ChatMessage("user", text), sampling=sampling)
    return engine.submit(request).result()


def test_logprobs_cover_the_reply_and_the_greedy_choice_is_the_most_likely(engine):
    completion = run(engine, replace(GREEDY, top_logprobs=3))
    tokens = completion.logprobs
    assert tokens is not None and len(tokens) == completion.usage.completion_tokens
    # A reply cut by max_tokens may end inside a character: the text has U+FFFD for it, as here.
    assert b"".join(t.token for t in tokens).decode("utf-8", errors="replace") == completion.text
    for token in tokens:
        assert len(token.top) == 3
        ranked = [lp for _, lp in token.top]
        assert ranked == sorted(ranked, reverse=True) and all(lp <= 0 for lp in ranked)
        assert sum(math.exp(lp) for lp in ranked) <= 1.0 + 1e-6
        assert token.top[0] == (token.token, pytest.approx(token.logprob))


def test_no_logprobs_unless_asked_and_zero_alternatives_is_allowed(engine):
    assert run(engine, GREEDY).logprobs is None
    completion = run(engine, replace(GREEDY, top_logprobs=0))
    assert completion.logprobs and all(t.top == () for t in completion.logprobs)


def test_logprobs_stop_where_a_stop_string_cuts_the_text(engine):
    free = run(engine, replace(GREEDY, max_tokens=24, top_logprobs=0))
    word = next(w for w in free.text.split()[2:] if len(w) > 2)
    stopped = run(engine, replace(GREEDY, max_tokens=24, top_logprobs=0, stop=(word,)))
    assert stopped.text == free.text[: free.text.index(word)]
    kept = b"".join(t.token for t in stopped.logprobs or ())
    assert kept.startswith(stopped.text.encode()) and len(stopped.logprobs or ()) < len(free.logprobs or ())


def test_logit_bias_forces_and_bans_a_token(engine):
    free = run(engine, replace(GREEDY, top_logprobs=0))
    assert free.logprobs
    first = free.logprobs[0]
    forced_id = engine._tokenize(" zebra")[0]
    forced = run(engine, replace(GREEDY, top_logprobs=0, logit_bias=((forced_id, 100.0),)))
    assert forced.logprobs and forced.logprobs[0].token == engine._piece(forced_id)
    assert forced.logprobs[0].id == forced_id
    banned = run(engine, replace(GREEDY, top_logprobs=0, logit_bias=((first.id, -100.0),)))
    assert banned.logprobs and banned.logprobs[0].id != first.id


def test_a_token_outside_the_vocabulary_is_refused(engine):
    with pytest.raises(SamplingError) as refused:
        run(engine, replace(GREEDY, logit_bias=((10**9, 1.0),)))
    assert refused.value.field == "logit_bias"
