"""The OpenAPI description is true: schemathesis runs both apps against their own schema.

Through nginx, on the session stack (the real model, replies capped at 48 tokens), loading
each app's schema from {gateway}/{app}/schema. Every check is on (status codes, content
types, headers, bodies, schema-valid requests accepted, schema-violating ones refused,
methods a path does not list answered 405 with Allow), over schemathesis's examples,
coverage, fuzzing and stateful phases, with a fixed seed, derandomized, and a bounded
number of examples per operation (fewer where an accepted request generates a reply). Every
documented operation must be tested, and the run must end with no response >= 500 (a
healthy idle stack never answers 503) and no failure.

It drives schemathesis's engine, the one behind `st run`: its pytest plugin (lazy schemas
from a fixture, which the session's stack port needs) reads `node._nodeid`, which pytest 9
no longer has, and runs every operation as one test under hypothesis's shrinking.

Two things are narrowed, each for a reason no schema change can remove:

- TRACE is left out of the methods a path does not list: nginx refuses TRACE itself (405,
  HTML, no Allow) before it picks a location, so the request never reaches an app. The
  apps' own answer to TRACE is checked directly (test_trace_reaches_the_app_as_405_with_allow).
- SEMANTIC_REFUSALS: a schema-valid request may still be refused where the rule is not one
  a JSON Schema can state (an expression the calculator can't evaluate, a time zone that
  does not exist, a file whose bytes are not a readable document, a prompt longer than the
  model's context in tokens, an approved call whose document is gone by then). Only those
  error codes, on those operations, pass positive_data_acceptance; any other refusal of
  schema-valid data still fails.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
import schemathesis.engine
from schemathesis.core.failures import Failure
from schemathesis.engine import events
from schemathesis.engine.run import PhaseName
from schemathesis.specs.openapi.checks import positive_data_acceptance

from webapp.launcher.stack import Stack

pytestmark = pytest.mark.slow

SEED = 20261130
MAX_EXAMPLES = 50
REPLY_EXAMPLES = 12  # POST Llama: each accepted example generates a real reply
STATEFUL_EXAMPLES = 20  # sequences of calls linked by the ids one returns and the next takes

# (operation, HTTP status) -> error codes a schema-valid request may still get.
SEMANTIC_REFUSALS: dict[tuple[str, int], set[str]] = {
    # The expression's grammar and the time zone database are not JSON Schema.
    ("POST /office/tools/calculator/call", 400): {"invalid_arguments"},
    ("POST /office/tools/current_time/call", 400): {"invalid_arguments"},
    # Whether a file is a readable document is in its bytes, not in the form's schema.
    ("POST /office/documents", 413): {"file_too_large"},
    ("POST /office/documents", 415): {"unsupported_type"},
    ("POST /office/documents", 422): {"empty_file", "invalid_file", "encrypted_pdf", "no_text"},
    # Approving runs the call then, against what is there then (its document may be gone).
    ("POST /office/approvals/{approval_id}", 400): {"invalid_arguments"},
    # The model's context is counted in tokens; a schema can only count characters.
    ("POST /office/Llama", 400): {"context_length_exceeded"},
    ("POST /character/Llama", 400): {"context_length_exceeded"},
    # The embedding model's input limit is in tokens too; its vector size is known once it is loaded.
    ("POST /office/v1/embeddings", 400): {"context_length_exceeded", "unsupported_parameter"},
    # A card's rules that JSON Schema does not say: a lorebook's entries, text without NUL,
    # a definition that fits the model's context; and whether a file is a card at all.
    ("POST /character/characters", 400): {"invalid_card", "card_too_long"},
    ("PATCH /character/characters/{character_id}", 400): {"invalid_card", "card_too_long"},
    # A card's JSON may take 4 MiB (the gateway lets 5 MiB through); the schema's sizes per
    # field allow more in all.
    ("POST /character/characters", 413): {"card_too_large", "body_too_large"},
    ("PATCH /character/characters/{character_id}", 413): {"card_too_large", "body_too_large"},
    ("POST /character/characters/import", 400): {"invalid_card", "card_too_long"},
    ("POST /character/characters/import", 413): {"card_too_large"},
    ("PUT /character/characters/{character_id}/avatar", 400): {"invalid_card"},
    ("POST /character/lorebooks", 400): {"invalid_lorebook"},
    ("POST /character/lorebooks", 413): {"card_too_large"},
}


@schemathesis.check
def positive_data_accepted_but_semantic_refusals(ctx: Any, response: Any, case: Any) -> bool | None:
    """positive_data_acceptance, less SEMANTIC_REFUSALS (matched by the error's code)."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except Failure:
        allowed = SEMANTIC_REFUSALS.get((case.operation.label, response.status_code), set())
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if code in allowed:
            return None
        raise


def config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "cache": {"enabled": False},  # reproducible: nothing learnt by an earlier run, nothing left behind
            "request-timeout": 120,
            "workers": 1,
            "checks": {
                "enabled": True,
                "positive_data_acceptance": {"enabled": False},  # replaced by the check above
            },
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "no-shrink": True},
            "phases": {
                "coverage": {
                    # nginx answers TRACE before any location (see the module docstring).
                    "unexpected-methods": ["get", "put", "post", "delete", "options", "patch", "query"],
                },
                "stateful": {"generation": {"max-examples": STATEFUL_EXAMPLES}},
            },
            "operations": [
                {
                    # Each accepted request generates a reply (seconds; tens with tools): the
                    # coverage phase sends only what must be refused there, fuzzing a few of each.
                    "include-path-regex": "/Llama$",
                    "generation": {"max-examples": REPLY_EXAMPLES},
                    "phases": {"coverage": {"generation": {"mode": "negative"}}},
                }
            ],
        }
    )


@dataclass
class Run:
    documented: set[str] = field(default_factory=set)
    operations: set[str] = field(default_factory=set)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    server_errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    seconds_by_operation: collections.Counter[str] = field(default_factory=collections.Counter)

    def summary(self) -> str:
        lines = [
            f"{len(self.operations)} operations, {sum(self.statuses.values())} responses in {self.seconds:.0f} s: "
            + ", ".join(f"{status}: {count}" for status, count in sorted(self.statuses.items())),
            "slowest: "
            + ", ".join(f"{label} {seconds:.0f} s" for label, seconds in self.seconds_by_operation.most_common(4)),
            *(f"SERVER ERROR {line}" for line in self.server_errors),
            *(f"FAILURE {line}" for line in self.failures),
            *(f"ERROR {line}" for line in self.errors),
        ]
        return "\n".join(lines)


def schemathesis_run(gateway: str, app: str) -> Run:
    schema = schemathesis.openapi.from_url(f"{gateway}/{app}/schema?format=json", config=config(), timeout=30)
    schema.config.update(base_url=gateway)
    run = Run(documented={result.ok().label for result in schema.get_all_operations()})
    started = time.monotonic()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            if event.phase != PhaseName.STATEFUL_TESTING:
                run.operations.add(event.recorder.label)
            # Examples skip where the schema has none; a stateful scenario may skip a step.
            if event.status == schemathesis.engine.Status.SKIP and event.phase in (
                PhaseName.COVERAGE,
                PhaseName.FUZZING,
            ):
                run.errors.append(f"{event.recorder.label} ({event.phase}): skipped: {event.skip_reason}")
            run.seconds_by_operation[event.recorder.label] += event.elapsed_time
            for interaction in event.recorder.interactions.values():
                if interaction.response is None:
                    continue
                run.statuses[interaction.response.status_code] += 1
                if interaction.response.status_code >= 500:
                    request = interaction.request
                    run.server_errors.append(f"{request.method} {request.uri} -> {interaction.response.status_code}")
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        run.failures.append(
                            f"{event.recorder.label}: {failure.title}: {failure.message}\n"
                            f"{check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            run.errors.append(f"{event.label}: {event.info}")
        elif isinstance(event, events.FatalError):
            raise event.exception
    run.seconds = time.monotonic() - started
    return run


@pytest.mark.timeout(420)
@pytest.mark.parametrize("app", ["office", "character"])
def test_api_agrees_with_its_schema(gateway: str, app: str) -> None:
    run = schemathesis_run(gateway, app)
    print(f"\n{app}: {run.summary()}")
    assert run.operations == run.documented, f"untested: {sorted(run.documented - run.operations)}"
    assert not run.server_errors, run.summary()
    assert not run.failures, run.summary()
    assert not run.errors, run.summary()


@pytest.mark.parametrize("app", ["office", "character"])
def test_trace_reaches_the_app_as_405_with_allow(stack: Stack, app: str) -> None:
    """What nginx hides: the app itself answers TRACE like any method a path does not list."""
    response = requests.request("TRACE", f"http://127.0.0.1:{stack.config.app_port(app)}/{app}/health", timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("app", "path", "allow"), [("office", "v1/models", "GET"), ("character", "v1/chat/completions", "POST")]
)
def test_openai_endpoints_answer_405_with_allow(gateway: str, app: str, path: str, allow: str) -> None:
    response = requests.put(f"{gateway}/{app}/{path}", timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    assert response.json()["error"]["code"] == "method_not_allowed"
