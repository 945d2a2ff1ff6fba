"""Prompt fitting (which history makes it into the context) and the GGUF chat template."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence

import pytest
from jinja2 import TemplateError
from llama_cpp import Llama

from webapp.config.env import REPO_ROOT
from webapp.engine.prompt import ChatMessage, ChatTemplate, PromptPlan, PromptTooLongError, prompt_fit

MODEL_PATH = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

PINNED = [
    ChatMessage("system", "You are a test persona."),
    ChatMessage("user", "example question"),
    ChatMessage("assistant", "example answer"),
    ChatMessage("assistant", "Hello, I am the greeting."),
]
USER = ChatMessage("user", "the new message")


def render_simple(messages: Sequence[ChatMessage]) -> str:
    return "\n".join(f"{m.role}:{m.content}" for m in messages)


def count_chars(text: str) -> int:
    return len(text)


def count_words(text: str) -> int:
    return len(text.split())


def history_make(n_pairs: int) -> list[ChatMessage]:
    history: list[ChatMessage] = []
    for i in range(n_pairs):
        history.append(ChatMessage("user", f"question {i}"))
        history.append(ChatMessage("assistant", f"answer {i}"))
    return history


def fit(
    history: Sequence[ChatMessage],
    budget: int,
    *,
    count_tokens: Callable[[str], int] = count_chars,
    pinned: Sequence[ChatMessage] = PINNED,
    user: ChatMessage = USER,
) -> PromptPlan:
    return prompt_fit(
        pinned=pinned, history=history, user=user, render=render_simple, count_tokens=count_tokens, budget=budget
    )


def size_with(history: Sequence[ChatMessage], *, count_tokens: Callable[[str], int] = count_chars) -> int:
    return count_tokens(render_simple([*PINNED, *history, USER]))


# --- prompt_fit ------------------------------------------------------------------------


def test_everything_kept_when_it_fits() -> None:
    history = history_make(3)

    plan = fit(history, budget=10_000)

    assert plan.history_kept == len(history)
    assert plan.history_dropped == 0
    assert plan.text == render_simple([*PINNED, *history, USER])
    assert plan.n_tokens == len(plan.text)


def test_pinned_and_user_kept_even_when_no_history_fits() -> None:
    history = history_make(3)
    budget = size_with([])  # exactly pinned + user

    plan = fit(history, budget=budget)

    assert plan.history_kept == 0
    assert plan.history_dropped == len(history)
    assert plan.text == render_simple([*PINNED, USER])
    assert plan.n_tokens == budget


def test_oldest_history_dropped_first() -> None:
    history = history_make(5)
    budget = size_with(history[4:])  # room for the last three pairs exactly

    plan = fit(history, budget=budget)

    assert plan.history_dropped == 4
    assert plan.text == render_simple([*PINNED, *history[4:], USER])
    assert "question 1" not in plan.text
    assert "question 2" in plan.text
    assert "answer 4" in plan.text
    assert plan.text.startswith(render_simple(PINNED))
    assert plan.text.endswith(render_simple([USER]))


def test_kept_history_starts_at_a_user_turn() -> None:
    history = history_make(4)
    # One character short of fitting from "question 1": the cut cannot land on "answer 1".
    budget = size_with(history[2:]) - 1

    plan = fit(history, budget=budget)

    assert plan.history_dropped == 4
    assert history[plan.history_dropped].role == "user"


def test_leading_assistant_turn_is_never_kept_alone() -> None:
    history = [ChatMessage("assistant", "dangling"), *history_make(2)]

    plan = fit(history, budget=10_000)

    assert plan.history_dropped == 1
    assert "dangling" not in plan.text


def test_history_without_user_turns_is_dropped() -> None:
    history = [ChatMessage("assistant", "a"), ChatMessage("assistant", "b")]

    plan = fit(history, budget=10_000)

    assert plan.history_kept == 0
    assert plan.text == render_simple([*PINNED, USER])


def test_too_long_without_history_raises_with_needed_and_budget() -> None:
    needed = size_with([])

    with pytest.raises(PromptTooLongError) as excinfo:
        fit(history_make(2), budget=needed - 1)

    assert excinfo.value.needed == needed
    assert excinfo.value.budget == needed - 1
    assert str(needed) in str(excinfo.value)


def test_too_long_user_message_alone_raises() -> None:
    huge = ChatMessage("user", "word " * 500)

    with pytest.raises(PromptTooLongError) as excinfo:
        fit([], budget=100, count_tokens=count_words, user=huge)

    assert excinfo.value.needed > 500
    assert excinfo.value.budget == 100


def random_history(rng: random.Random) -> list[ChatMessage]:
    n = rng.randint(0, 24)
    history: list[ChatMessage] = []
    for _ in range(n):
        role = rng.choice(["user", "assistant", "assistant"] if history and history[-1].role == "user" else ["user"])
        if rng.random() < 0.15:  # irregular chats: two replies in a row, or a leading reply
            role = "assistant"
        words = " ".join(f"w{rng.randint(0, 99)}" for _ in range(rng.randint(1, 12)))
        history.append(ChatMessage(role, words))
    return history


def brute_force_start(history: Sequence[ChatMessage], budget: int, count_tokens: Callable[[str], int]) -> int:
    """The earliest user-turn cut (or 'no history') whose prompt fits, trying every one."""
    cuts = [i for i, m in enumerate(history) if m.role == "user"] + [len(history)]
    fitting = [c for c in cuts if count_tokens(render_simple([*PINNED, *history[c:], USER])) <= budget]
    return min(fitting)


def random_cases() -> Iterator[tuple[int, Callable[[str], int]]]:
    for seed in range(150):
        yield seed, count_chars if seed % 2 else count_words


@pytest.mark.parametrize(("seed", "count_tokens"), list(random_cases()))
def test_result_is_the_maximal_history_that_fits(seed: int, count_tokens: Callable[[str], int]) -> None:
    rng = random.Random(seed)
    history = random_history(rng)
    low = size_with([], count_tokens=count_tokens)
    high = size_with(history, count_tokens=count_tokens)
    budget = rng.randint(low, high + 5)

    plan = fit(history, budget=budget, count_tokens=count_tokens)

    expected = brute_force_start(history, budget, count_tokens)
    assert plan.history_dropped == expected
    assert plan.history_kept == len(history) - expected
    assert plan.text == render_simple([*PINNED, *history[expected:], USER])
    assert plan.n_tokens == count_tokens(plan.text) <= budget


def test_renders_logarithmically_many_times() -> None:
    history = history_make(200)
    renders = 0

    def counting_render(messages: Sequence[ChatMessage]) -> str:
        nonlocal renders
        renders += 1
        return render_simple(messages)

    budget = size_with(history[150:])
    plan = prompt_fit(
        pinned=PINNED, history=history, user=USER, render=counting_render, count_tokens=count_chars, budget=budget
    )

    assert plan.history_dropped == 150
    assert renders <= 2 + math.ceil(math.log2(201))


# --- ChatTemplate ----------------------------------------------------------------------


def test_template_can_raise_exception() -> None:
    template = ChatTemplate("{{ raise_exception('roles must alternate') }}", bos_token="", eos_token="")

    with pytest.raises(TemplateError, match="roles must alternate"):
        template.render([USER])


def test_template_sees_bos_eos_and_generation_flag() -> None:
    source = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}"
    source += "{% if add_generation_prompt %}[assistant]{% endif %}"
    template = ChatTemplate(source, bos_token="<s>", eos_token="</s>")

    assert template.render([USER]) == "<s>[user]the new message</s>[assistant]"
    assert template.render([USER], add_generation_prompt=False) == "<s>[user]the new message</s>"


@pytest.fixture(scope="module")
def vocab() -> Iterator[Llama]:
    llm = Llama(model_path=str(MODEL_PATH), n_ctx=512, verbose=False, vocab_only=True)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def gguf_template(vocab: Llama) -> ChatTemplate:
    source = vocab.metadata["tokenizer.chat_template"]
    bos = vocab.detokenize([vocab.token_bos()], special=True).decode()
    eos = vocab.detokenize([vocab.token_eos()], special=True).decode()
    return ChatTemplate(source, bos_token=bos, eos_token=eos)


def special_tokens_in(vocab: Llama, text: str) -> list[str]:
    """The model's control tokens that `text` contains, as the tokenizer reads it."""
    tokens = vocab.tokenize(text.encode(), add_bos=False, special=True)
    return [
        vocab.detokenize([t], special=True).decode()
        for t in tokens
        if vocab.detokenize([t], special=False) == b"" and vocab.detokenize([t], special=True) != b""
    ]


def test_gguf_template_wraps_each_message_in_the_models_role_markers(vocab: Llama, gguf_template: ChatTemplate) -> None:
    messages = [
        ChatMessage("system", "You are Captain Rhea of the airship Kestrel."),
        ChatMessage("user", "Where are we headed?"),
        ChatMessage("assistant", "East, to the Lantern Isles."),
        ChatMessage("user", "오늘 날씨 어때요?"),
    ]

    text = gguf_template.render(messages)

    position = 0
    for message in messages:
        start = text.find(message.content, position)
        assert start >= 0, f"{message.content!r} missing or out of order"
        opening = text[position:start]
        assert special_tokens_in(vocab, opening), f"no control token before {message.role} content"
        assert message.role in opening
        position = start + len(message.content)
        # The content itself is plain text to the tokenizer, not markup.
        assert special_tokens_in(vocab, message.content) == []
    closing = text[position:]
    assert special_tokens_in(vocab, closing), "no control token after the last message"


def test_gguf_template_closes_each_message_with_a_control_token(vocab: Llama, gguf_template: ChatTemplate) -> None:
    messages = [ChatMessage("system", "sys text"), ChatMessage("user", "user text")]

    text = gguf_template.render(messages, add_generation_prompt=False)

    for message in messages:
        after = text[text.index(message.content) + len(message.content) :]
        first = vocab.tokenize(after.encode(), add_bos=False, special=True)[0]
        assert vocab.detokenize([first], special=False) == b"", f"{message.role} content is not closed by a marker"


def test_gguf_template_ends_with_the_generation_prompt(vocab: Llama, gguf_template: ChatTemplate) -> None:
    messages = [ChatMessage("system", "sys"), ChatMessage("user", "What is the capital of France?")]

    without = gguf_template.render(messages, add_generation_prompt=False)
    with_prompt = gguf_template.render(messages)

    assert with_prompt.startswith(without)
    generation_prompt = with_prompt[len(without) :]
    assert "assistant" in generation_prompt
    assert special_tokens_in(vocab, generation_prompt)
    # Nothing after the generation prompt: the model continues from here.
    assert with_prompt.endswith(generation_prompt)
    assert messages[-1].content not in generation_prompt
