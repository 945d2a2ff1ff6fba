"""Chat prompts: render messages with the model's own chat template and fit them to the context.

The template is the Jinja2 program stored in the GGUF metadata (`tokenizer.chat_template`),
rendered the way Hugging Face tokenizers render it, so special tokens come from the model,
never from string concatenation in our code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


class PromptTooLongError(Exception):
    """The pinned messages (persona) plus the new user message do not fit the context."""

    def __init__(self, *, needed: int, budget: int) -> None:
        super().__init__(f"prompt needs {needed} tokens but only {budget} fit in the context")
        self.needed = needed
        self.budget = budget


class ChatTemplate:
    """A compiled chat template. Rendering is pure and thread-safe."""

    def __init__(self, source: str, *, bos_token: str, eos_token: str) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_template_error
        self._template = env.from_string(source)
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
        return self._template.render(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            add_generation_prompt=add_generation_prompt,
        )


def _raise_template_error(message: str) -> None:
    raise TemplateError(message)


def prompt_budget(*, n_ctx: int, max_tokens: int) -> int:
    """Tokens a prompt may take in a context of `n_ctx`: what the reply may need is kept free,
    but never more than half the context (a long reply limit must not leave no room to ask)."""
    return n_ctx - min(max_tokens, n_ctx // 2)


@dataclass(frozen=True)
class PromptPlan:
    """What goes to the model: the rendered text, its size, and how much history made it in."""

    text: str
    n_tokens: int
    history_kept: int
    history_dropped: int


def prompt_fit(
    *,
    pinned: Sequence[ChatMessage],
    history: Sequence[ChatMessage],
    user: ChatMessage,
    render: Callable[[Sequence[ChatMessage]], str],
    count_tokens: Callable[[str], int],
    budget: int,
    after: Sequence[ChatMessage] = (),
    reply_start: str = "",
) -> PromptPlan:
    """Keep as much recent history as fits in `budget` tokens, dropping oldest turns first.

    `pinned` (the persona: system prompt, examples, greeting), `user` and `after` (what
    follows the new message: a character's post-history instructions) are never dropped;
    `reply_start` (a reply being continued) ends the text, after the reply's opening.
    History is cut only at user turns, so the kept part never opens with a dangling reply.
    Token counts grow as more history is kept, so a binary search over the cut point needs
    O(log n) renders instead of n.
    """
    cuts = [i for i, m in enumerate(history) if m.role == "user"] + [len(history)]

    def plan_for(start: int) -> PromptPlan:
        text = render([*pinned, *history[start:], user, *after]) + reply_start
        return PromptPlan(
            text=text,
            n_tokens=count_tokens(text),
            history_kept=len(history) - start,
            history_dropped=start,
        )

    shortest = plan_for(len(history))
    if shortest.n_tokens > budget:
        raise PromptTooLongError(needed=shortest.n_tokens, budget=budget)

    # Invariant: cuts[hi] fits. Find the smallest index into cuts whose plan fits.
    lo, hi = 0, len(cuts) - 1
    best = shortest
    while lo < hi:
        mid = (lo + hi) // 2
        candidate = plan_for(cuts[mid])
        if candidate.n_tokens <= budget:
            hi, best = mid, candidate
        else:
            lo = mid + 1
    return best
