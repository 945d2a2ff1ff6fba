"""The engine's sampler chain against llama.cpp's documented order (penalties over the whole
vocabulary, then top-k ...): the same token every time, on this model's real vocabulary.
Plus the GPU check: a registry that asks for GPU layers where no GPU is visible is refused."""

from __future__ import annotations

import ctypes
import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest

from tests.engine.test_batching import spec_make
from webapp.engine.engine import SamplingParams
from webapp.engine.llama import PENALTY_LAST_N, LlamaEngine
from webapp.engine.registry import RegistryError

pytestmark = pytest.mark.slow

PARAMS = SamplingParams(temperature=0.8, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.3, max_tokens=1)


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    running = LlamaEngine(spec_make(slots=1))
    yield running
    running.close()


def reference_chain(engine: LlamaEngine, params: SamplingParams) -> int:
    """llama.cpp's order: penalties over every token, then top-k, top-p, min-p, temperature, dist."""
    c = engine._c
    chain = c.llama_sampler_chain_init(c.llama_sampler_chain_default_params())
    n_vocab = c.llama_vocab_n_tokens(engine._vocab)
    c.llama_sampler_chain_add(
        chain, c.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, params.repeat_penalty, 0.0, 0.0)
    )
    if params.temperature <= 0:
        c.llama_sampler_chain_add(chain, c.llama_sampler_init_greedy())
        return chain
    c.llama_sampler_chain_add(chain, c.llama_sampler_init_top_k(params.top_k))
    c.llama_sampler_chain_add(chain, c.llama_sampler_init_top_p(params.top_p, 1))
    c.llama_sampler_chain_add(chain, c.llama_sampler_init_min_p(params.min_p, 1))
    c.llama_sampler_chain_add(chain, c.llama_sampler_init_temp(params.temperature))
    c.llama_sampler_chain_add(chain, c.llama_sampler_init_dist(params.seed or 0))
    return chain


def pick(engine: LlamaEngine, chain: int, logits: np.ndarray, seen: list[int]) -> int:
    c = engine._c
    for token in seen:
        c.llama_sampler_accept(chain, token)
    rows = np.zeros(len(logits), dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])  # llama_token_data
    rows["id"], rows["logit"] = np.arange(len(logits)), logits
    data = (c.llama_token_data * len(logits)).from_buffer_copy(rows.tobytes())
    candidates = c.llama_token_data_array(data=data, size=len(logits), selected=-1, sorted=False)
    c.llama_sampler_apply(chain, ctypes.byref(candidates))
    return int(data[candidates.selected].id)


@pytest.mark.parametrize(("temperature", "penalty"), [(0.8, 1.3), (0.0, 1.3), (0.8, 0.7)])
def test_the_chain_picks_what_penalties_over_the_whole_vocabulary_pick(
    engine: LlamaEngine, temperature: float, penalty: float
) -> None:
    """A penalty under 1 raises the tokens seen last: then nothing may be cut before it."""
    n_vocab = engine._c.llama_vocab_n_tokens(engine._vocab)
    assert ctypes.sizeof(engine._c.llama_token_data) == 12
    rng = np.random.default_rng(11)
    differ_without_penalty = 0
    for trial in range(40):
        params = dataclasses.replace(PARAMS, temperature=temperature, seed=trial, repeat_penalty=penalty)
        logits = rng.normal(0.0, 3.0, n_vocab).astype(np.float32)
        # The tokens seen last are the likeliest ones, or under a penalty below 1 ones just
        # below the top k + 64, so that the penalty really reorders the top.
        skip = 0 if penalty > 1 else PARAMS.top_k + PENALTY_LAST_N + 10
        top = np.argsort(-logits)[skip : skip + PENALTY_LAST_N]
        seen = [int(t) for t in rng.choice(top, size=int(rng.integers(1, PENALTY_LAST_N + 1)), replace=False)]
        ours, reference = engine._sampler_new(params), reference_chain(engine, params)
        plain = engine._sampler_new(dataclasses.replace(params, repeat_penalty=1.0))
        try:
            expected = pick(engine, reference, logits, seen)
            assert pick(engine, ours, logits, seen) == expected, f"trial {trial}"
            differ_without_penalty += pick(engine, plain, logits, seen) != expected
        finally:
            for chain in (ours, reference, plain):
                engine._c.llama_sampler_free(chain)
    assert differ_without_penalty > 10, "the penalties changed the choice often: the comparison means something"


def test_gpu_layers_without_a_visible_gpu_are_refused() -> None:
    # This machine's llama-cpp-python is built for the CPU: no GPU is ever visible to it.
    with pytest.raises(RegistryError, match="n_gpu_layers = -1, but this process sees no GPU"):
        LlamaEngine(spec_make(n_gpu_layers=-1))
