"""Turns in which the office model may call a tool before it answers.

Round 1 is generated under a grammar (webapp.engine.grammar) that admits one tool call,
{"name": ..., "arguments": {...}} valid for that tool's schema, or, in "auto" mode, a plain
answer instead. A call goes through the runner, which is the office's one way of calling
tools (schema, permission, rate limit, approval, audit). The next round has the call and
its result in the prompt and answers the question; in "auto" it may call once more, up to
MAX_TOOL_ROUNDS calls, and the last round is always free text. A call that needs the
user's approval pauses the turn until the user decides.

Blocking (the tools, the store, tokenizing): call from a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from webapp.chat.services import PendingTurn, ToolMode, engine_submit
from webapp.engine.engine import Completion, Engine, GenerationRequest
from webapp.engine.grammar import tool_call_grammar, tools_instruction
from webapp.engine.prompt import ChatMessage

MAX_TOOL_ROUNDS = 2
RESULT_PROMPT_CHARS = 2000
RESULT_STORED_CHARS = 2000

StepStatus = Literal["ok", "error", "approval_required", "denied"]


@dataclass(frozen=True)
class ToolStep:
    name: str
    arguments: dict[str, Any]
    status: StepStatus
    result: Any = None
    approval_id: str | None = None
    error: str | None = None

    def call_text(self) -> str:
        return json.dumps({"name": self.name, "arguments": self.arguments}, ensure_ascii=False)

    def result_text(self) -> str:
        """How the model hears the outcome."""
        if self.status == "ok":
            return f"Result of {self.name}: {json.dumps(self.result, ensure_ascii=False)[:RESULT_PROMPT_CHARS]}"
        if self.status == "denied":
            return f"The user did not allow {self.name} to run."
        return f"{self.name} failed: {self.error}"

    def public(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"tool": self.name, "arguments": self.arguments, "status": self.status}
        if self.approval_id:
            shown["approval_id"] = self.approval_id
        if self.error:
            shown["error"] = self.error
        if self.result is not None:
            text = json.dumps(self.result, ensure_ascii=False)
            shown["result"] = self.result if len(text) <= RESULT_STORED_CHARS else text[:RESULT_STORED_CHARS] + "…"
        return shown


class ToolRunner(Protocol):
    """The office's tool service as the chat sees it (webapp.office.tool_calls.ChatToolRunner)."""

    def offered(self, names: Sequence[str] | None) -> list[tuple[str, str, dict[str, Any]]]: ...

    def call(self, *, user_id: str, name: str, arguments: dict[str, Any]) -> ToolStep: ...

    def decide(self, *, user_id: str, step: ToolStep, approve: bool) -> ToolStep: ...


def tools_for_round(offered: Sequence[tuple[str, str, dict[str, Any]]], mode: ToolMode) -> tuple[ChatMessage, str]:
    """The instruction and the grammar of a round in which the model may (or must) call a tool."""
    instruction = ChatMessage("system", tools_instruction(offered, required=mode == "required"))
    grammar = tool_call_grammar([(name, parameters) for name, _, parameters in offered], allow_text=mode == "auto")
    return instruction, grammar


def tool_call_read(turn: PendingTurn, completion: Completion) -> tuple[str, dict[str, Any]] | None:
    """The call the model made in this round, or None when it answered."""
    if turn.tool_mode is None or not completion.text.lstrip().startswith("{"):
        return None
    try:
        call = json.loads(completion.text)
    except json.JSONDecodeError:
        return None  # cut off by max_tokens: it is stored as the (odd) answer it is
    offered = {name for name, _, _ in turn.tools_offered}
    if not isinstance(call, dict) or call.get("name") not in offered or not isinstance(call.get("arguments"), dict):
        return None
    return call["name"], call["arguments"]


def chat_turn_tool(
    *, engine: Engine, runner: ToolRunner, turn: PendingTurn, call: tuple[str, dict[str, Any]]
) -> tuple[ToolStep, PendingTurn | None]:
    """Run the model's call; return the step and the next round (None while approval is pending)."""
    step = runner.call(user_id=turn.conversation.user_id, name=call[0], arguments=call[1])
    if step.status == "approval_required":
        return step, None
    return step, _next_round(engine=engine, turn=turn, step=step)


def chat_turn_tool_decided(
    *, engine: Engine, runner: ToolRunner, turn: PendingTurn, step: ToolStep, approve: bool
) -> tuple[ToolStep, PendingTurn]:
    """The user approved (run it) or denied (drop it) a paused call; the turn goes on either way."""
    decided = runner.decide(user_id=turn.conversation.user_id, step=step, approve=approve)
    return decided, _next_round(engine=engine, turn=turn, step=decided)


def _next_round(*, engine: Engine, turn: PendingTurn, step: ToolStep) -> PendingTurn:
    steps = (*turn.tool_steps, step)
    # "required" forces exactly one call; "auto" may call again, within the bound.
    mode: ToolMode | None = "auto" if turn.tool_mode == "auto" and len(steps) < MAX_TOOL_ROUNDS else None
    exchange: list[ChatMessage] = [turn.prompt_user]
    for earlier in steps[:-1]:
        exchange += [ChatMessage("assistant", earlier.call_text()), ChatMessage("user", earlier.result_text())]
    exchange.append(ChatMessage("assistant", step.call_text()))
    pinned = list(turn.persona.pinned_messages())
    grammar = None
    if mode is not None:
        instruction, grammar = tools_for_round(turn.tools_offered, mode)
        pinned.append(instruction)
    request = GenerationRequest(
        pinned=pinned,
        history=[*(ChatMessage(m.role, m.content) for m in turn.history), *exchange],  # type: ignore[arg-type]
        user=ChatMessage("user", f"{step.result_text()}\nNow answer my question."),
        sampling=turn.sampling or turn.handle.request.sampling,
        grammar=grammar,
    )
    handle = engine_submit(engine, request, field="input_data", what="the conversation and the tool results")
    return replace(turn, handle=handle, tool_steps=steps, tool_mode=mode)


def approval_pending_text(step: ToolStep) -> str:
    """The reply of a turn that can't wait for an approval (REST): what to do next."""
    return (
        f"The assistant wants to run {step.name} with {json.dumps(step.arguments, ensure_ascii=False)}, "
        f"which needs your approval. Approve or deny it with POST /office/approvals/{step.approval_id} "
        '{"user_id": ..., "decision": "approve" | "deny"}.'
    )
