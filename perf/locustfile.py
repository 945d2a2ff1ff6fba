"""Locust load test: people chatting with the service over REST, WebSocket and the OpenAI API.

Every user holds a multi-turn conversation (its own db_id, several turns, a persona,
Korean or English questions), waits a think time between turns, and starts a new
conversation after the last turn. Every attempt is written to a per-request CSV
(`requests.csv` in LOAD_RUN_DIR) that the dashboard (perf/dashboard.py) reads, and is
also reported to Locust, so its own statistics and web UI work as usual.

A 429 is handled as a real client would: wait Retry-After, try again (at most
MAX_RETRIES times). The refused attempt is a row with is_retry_record=true; the final
outcome is one more row with retry_count and is_final_failure.

Rows of turns that store a reply carry the server's ids, so that a run can be reconciled
against the store (perf/soak.py): `db_id` and `message_id` come from REST's
X-Conversation-Id and X-Message-Id headers (a 200), and from the WebSocket's `start`
frame (`message_id`, `db_id`; `done` repeats the `message_id`). A WebSocket turn that
fails after `start` keeps them: the server stores that reply (stopped or finished) all the
same. The OpenAI endpoint is stateless: both stay empty. A turn cut off because Locust
stopped its user (past --stop-timeout) is a final row with failure_reason
"client_stopped", so that every turn that reached the server has a row.

Normally run by `python -m perf.load` (headless, bounded). For the web UI:
    .venv/bin/locust -f perf/locustfile.py --host http://127.0.0.1:8080   # then open :8089

Environment: LOAD_RUN_DIR (default var/perf/runs/<time>), LOAD_WEIGHTS (e.g.
"rest_office=1,ws_office=3"), LOAD_THINK ("1,3": think time range in seconds),
LOAD_MAX_SECONDS (a run stops itself after this many seconds; default 1800).
Load only ever goes to loopback: any other host stops the run at once.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import gevent
import websocket
from gevent import GreenletExit
from locust import HttpUser, between, events, task
from locust.env import Environment

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_USERS = 200  # also in the web UI: a bigger swarm stops the run
MAX_RETRIES = 3
RETRY_WAIT_CAP_S = 30.0
# The service key every user acts through (perf.load makes one with Stack.service_key); each
# user's `user_id` is one of its end users, so their conversations stay apart.
API_KEY = os.environ.get("LOAD_API_KEY", "")
AUTH = {"Authorization": f"Bearer {API_KEY}"} if API_KEY else {}
FIELDS = [
    "timestamp", "elapsed_s", "run_id", "user_id", "test_type", "endpoint", "persona", "status_code",
    "response_time", "ttft", "tokens", "tokens_per_s", "success", "failure_reason", "retry_count",
    "retry_after_seconds", "is_retry_record", "is_final_failure", "response_size", "active_users", "db_id",
    "message_id",
]  # fmt: skip

QUESTIONS = {
    "office": [
        "Can you help me plan a team meeting for next week?",
        "Write a short, polite reminder email about the deadline.",
        "Summarise in two sentences why regular backups matter.",
        "회의록을 짧게 요약하는 방법을 알려 주세요.",
        "다음 주 업무 일정을 정리하는 팁을 알려 주세요.",
        "What should a project status update include?",
    ],
    "character": [
        "Hello! Who are you?",
        "Tell me about the last storm you flew through.",
        "What should I do first on my first day?",
        "안녕하세요, 오늘 기분이 어때요?",
        "좋아하는 음식이 뭐예요?",
        "Do you have any advice for a newcomer?",
    ],
}
PERSONAS = {"office": ["assistant", "writer"], "character": ["captain-rhea", "seoyeon"]}

log = logging.getLogger("perf.load")


def _pairs(text: str) -> dict[str, float]:
    pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
    return {key.strip(): float(value) for key, value in pairs}


WEIGHTS = {"rest_office": 1, "rest_character": 1, "ws_office": 2, "ws_character": 2, "openai_office": 1}
WEIGHTS.update({k: int(v) for k, v in _pairs(os.environ.get("LOAD_WEIGHTS", "")).items() if k in WEIGHTS})
THINK = tuple(float(x) for x in os.environ.get("LOAD_THINK", "1,3").split(","))[:2]


# --- the CSV ------------------------------------------------------------------------


class Recorder:
    """Appends one row per attempt. Locust users are greenlets in one thread: no locking."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_dir.name
        self.started = time.time()
        self._file = (run_dir / "requests.csv").open("w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=FIELDS)
        self._writer.writeheader()
        self._file.flush()

    def write(self, row: dict[str, Any]) -> None:
        if self._file.closed:  # a user stopped after the test ended: nothing left to write to
            return
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


recorder: Recorder | None = None


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    global recorder
    host = urlparse(environment.host or "").hostname
    if host not in LOOPBACK:
        log.error("refusing to load %r: load tests only ever target loopback addresses", environment.host)
        if environment.runner is not None:
            environment.runner.quit()
        return
    default_dir = REPO_ROOT / "var" / "perf" / "runs" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    recorder = Recorder(Path(os.environ.get("LOAD_RUN_DIR") or default_dir))
    limit = float(os.environ.get("LOAD_MAX_SECONDS", "1800"))
    if environment.runner is not None:
        gevent.spawn_later(limit, environment.runner.quit)


@events.spawning_complete.add_listener
def _on_spawning_complete(user_count: int, **_: Any) -> None:
    runner = _environment.runner if _environment is not None else None
    if user_count > MAX_USERS and runner is not None:
        log.error("refusing %d users: load tests are capped at %d", user_count, MAX_USERS)
        runner.quit()


_environment: Environment | None = None


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    global _environment
    _environment = environment


@events.test_stop.add_listener
def _on_test_stop(**_: Any) -> None:
    if recorder is not None:
        recorder.close()


# --- one attempt --------------------------------------------------------------------


@dataclass
class Outcome:
    status_code: int
    response_time_ms: float
    started_at: float  # time.time()
    ttft_ms: float | None = None
    tokens: int = 0
    size: int = 0
    failure_reason: str = ""
    retry_after_s: float | None = None
    db_id: str = ""  # the conversation and the reply's id, as the server announced them
    message_id: str = ""

    @property
    def success(self) -> bool:
        return not self.failure_reason


class ChatUser(HttpUser):
    """A person in a conversation. Subclasses say how one turn is sent."""

    abstract = True
    wait_time = between(THINK[0], THINK[-1])
    app = "office"
    test_type = ""
    endpoint = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.test_type in WEIGHTS:  # a concrete kind of user: weighted, and left out at weight 0
            cls.weight = WEIGHTS[cls.test_type]
            cls.abstract = cls.weight == 0

    def on_start(self) -> None:
        self.user_id = f"load-{uuid.uuid4().hex[:8]}"
        self.client.headers.update(AUTH)
        self.rng = random.Random()  # noqa: S311 - load-test scenarios, not secrets
        self._retry = 0  # the attempt in progress: its retry count, start, and what it heard so far
        self._attempt_started = (time.time(), time.perf_counter())
        self._in_flight: Outcome | None = None
        self._conversation_new()

    def _conversation_new(self) -> None:
        self.db_id = str(uuid.uuid4())
        self.persona = self.rng.choice(PERSONAS[self.app])
        self.turns_left = self.rng.randint(2, 4)
        self.history: list[dict[str, str]] = []

    @task
    def turn(self) -> None:
        question = self.rng.choice(QUESTIONS[self.app])
        try:
            reply = self._with_retries(lambda: self.send(question))
        except GreenletExit:  # Locust stopped this user mid-turn: the turn's final row says so
            self._record_stopped()
            raise
        if reply is not None:
            self.history += [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
        self.turns_left -= 1
        if self.turns_left <= 0:
            self._conversation_new()

    def send(self, question: str) -> tuple[Outcome, str | None]:
        raise NotImplementedError

    def _with_retries(self, attempt: Callable[[], tuple[Outcome, str | None]]) -> str | None:
        for retry in range(MAX_RETRIES + 1):
            self._retry, self._in_flight = retry, None
            self._attempt_started = (time.time(), time.perf_counter())
            outcome, reply = attempt()
            again = outcome.status_code == 429 and retry < MAX_RETRIES
            self._record(outcome, retry_count=retry, is_retry_record=again)
            if not again:
                return reply
            gevent.sleep(min(outcome.retry_after_s or 1.0, RETRY_WAIT_CAP_S))
        return None

    def _record_stopped(self) -> None:
        """The final row of a turn whose user was stopped mid-attempt (or mid-wait for a retry)."""
        started, clock = self._attempt_started
        partial = self._in_flight
        outcome = Outcome(
            status_code=0,
            response_time_ms=(time.perf_counter() - clock) * 1000,
            started_at=started,
            failure_reason="client_stopped",
            db_id=partial.db_id if partial else "",
            message_id=partial.message_id if partial else "",
        )
        self._record(outcome, retry_count=self._retry, is_retry_record=False)

    def _record(self, outcome: Outcome, *, retry_count: int, is_retry_record: bool) -> None:
        if recorder is None:
            return
        seconds = outcome.response_time_ms / 1000
        runner = self.environment.runner
        recorder.write(
            {
                "timestamp": datetime.fromtimestamp(outcome.started_at, UTC).isoformat(timespec="milliseconds")[:-6]
                + "Z",
                "elapsed_s": round(outcome.started_at - recorder.started, 3),
                "run_id": recorder.run_id,
                "user_id": self.user_id,
                "test_type": self.test_type,
                "endpoint": self.endpoint,
                "persona": self.persona,
                "status_code": outcome.status_code,
                "response_time": round(outcome.response_time_ms, 1),
                "ttft": "" if outcome.ttft_ms is None else round(outcome.ttft_ms, 1),
                "tokens": outcome.tokens,
                "tokens_per_s": round(outcome.tokens / seconds, 2) if outcome.tokens and seconds > 0 else 0,
                "success": str(outcome.success).lower(),
                "failure_reason": outcome.failure_reason,
                "retry_count": retry_count,
                "retry_after_seconds": "" if outcome.retry_after_s is None else outcome.retry_after_s,
                "is_retry_record": str(is_retry_record).lower(),
                "is_final_failure": str(not is_retry_record and not outcome.success).lower(),
                "response_size": outcome.size,
                "active_users": runner.user_count if runner is not None else 0,
                "db_id": outcome.db_id,
                "message_id": outcome.message_id,
            }
        )

    def _report(self, name: str, outcome: Outcome, response_time_ms: float | None = None) -> None:
        """Tell Locust's own statistics (used by its web UI and summary)."""
        self.environment.events.request.fire(
            request_type=self.endpoint.split(" ", 1)[0],
            name=name,
            response_time=outcome.response_time_ms if response_time_ms is None else response_time_ms,
            response_length=outcome.size,
            exception=None if outcome.success else RuntimeError(outcome.failure_reason),
            context={},
        )


def _retry_after(headers: Any, body: dict[str, Any] | None = None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None and body:
        value = body.get("retry_after")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _failure(status: int) -> str:
    return (
        ""
        if status == 200
        else ("server_busy" if status == 429 else f"http_{status}" if status else "connection_error")
    )


# --- REST ---------------------------------------------------------------------------


class RestUser(ChatUser):
    abstract = True

    def send(self, question: str) -> tuple[Outcome, str | None]:
        body = {"input_data": question, "db_id": self.db_id, "user_id": self.user_id, "persona": self.persona}
        started, clock = time.time(), time.perf_counter()
        with self.client.post(
            f"/{self.app}/Llama", json=body, name=self.endpoint, catch_response=True, timeout=300
        ) as response:
            outcome = Outcome(
                status_code=response.status_code,
                response_time_ms=(time.perf_counter() - clock) * 1000,
                started_at=started,
                size=len(response.content or b""),
                failure_reason=_failure(response.status_code),
            )
            reply = None
            if response.status_code == 200:
                try:
                    reply = response.json()
                    outcome.db_id = response.headers.get("X-Conversation-Id", "")
                    outcome.message_id = response.headers.get("X-Message-Id", "")
                    outcome.tokens = int(response.headers.get("X-Completion-Tokens", 0))
                    outcome.ttft_ms = float(response.headers.get("X-TTFT-Ms", 0)) or None  # measured by the server
                    response.success()
                except ValueError:
                    outcome.failure_reason = "invalid_response"
                    response.failure("invalid_response")
            else:
                outcome.retry_after_s = _retry_after(response.headers)
                response.failure(outcome.failure_reason)
        return outcome, reply if isinstance(reply, str) else None


class RestOfficeUser(RestUser):
    app, test_type, endpoint = "office", "rest_office", "POST /office/Llama"


class RestCharacterUser(RestUser):
    app, test_type, endpoint = "character", "rest_character", "POST /character/Llama"


# --- WebSocket ----------------------------------------------------------------------


class WsUser(ChatUser):
    """Streams over the chat WebSocket; records time to first token as its own metric."""

    abstract = True

    def on_start(self) -> None:
        super().on_start()
        self.socket: websocket.WebSocket | None = None

    def on_stop(self) -> None:
        self._hang_up()

    def _hang_up(self) -> None:
        """Close the socket (code 1000: the server stops and stores a reply in progress)."""
        if self.socket is not None:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self.socket.close()
        self.socket = None

    def _connect(self) -> websocket.WebSocket:
        if self.socket is None or not self.socket.connected:
            url = (self.host or "").replace("http://", "ws://").replace("https://", "wss://") + f"/{self.app}/ws/chat/"
            self.socket = websocket.create_connection(url, timeout=300, header=[f"{k}: {v}" for k, v in AUTH.items()])
            self.socket.recv()  # the status frame
        return self.socket

    def send(self, question: str) -> tuple[Outcome, str | None]:
        frame = {"type": "message", "db_id": self.db_id, "user_id": self.user_id, "input_data": question}
        frame["persona"] = self.persona
        started, clock = time.time(), time.perf_counter()
        outcome = Outcome(status_code=101, response_time_ms=0.0, started_at=started)
        self._in_flight = outcome  # its ids, should this user be stopped mid-turn
        pieces: list[str] = []
        try:
            ws = self._connect()
            ws.send(json.dumps(frame))
            while True:
                message = json.loads(ws.recv())
                outcome.size += len(json.dumps(message))
                if message["type"] == "token":
                    if outcome.ttft_ms is None:
                        outcome.ttft_ms = (time.perf_counter() - clock) * 1000
                    pieces.append(message["text"])
                elif message["type"] == "start":
                    outcome.db_id = str(message.get("db_id") or "")
                    outcome.message_id = str(message.get("message_id") or "")
                elif message["type"] == "done":
                    outcome.tokens = message["usage"]["completion_tokens"]
                    outcome.message_id = str(message.get("message_id") or outcome.message_id)
                    break
                elif message["type"] == "error":
                    busy = message["code"] == "server_busy"
                    outcome.status_code = 429 if busy else 400 if message.get("field") else 500
                    outcome.failure_reason = "server_busy" if busy else message["code"]
                    outcome.retry_after_s = _retry_after(None, message)
                    break
        except (OSError, websocket.WebSocketException) as exc:
            outcome.status_code, outcome.failure_reason = 0, "connection_error"
            log.info("websocket failed: %s", exc)
            self._hang_up()  # a client that gives up hangs up (a reply already started is still stored)
        outcome.response_time_ms = (time.perf_counter() - clock) * 1000
        self._report(f"{self.endpoint} turn", outcome)
        if outcome.ttft_ms is not None:
            self._report(f"{self.endpoint} time to first token", outcome, outcome.ttft_ms)
        return outcome, "".join(pieces) if outcome.success else None


class WsOfficeUser(WsUser):
    app, test_type, endpoint = "office", "ws_office", "WS /office/ws/chat/"


class WsCharacterUser(WsUser):
    app, test_type, endpoint = "character", "ws_character", "WS /character/ws/chat/"


# --- OpenAI-compatible ----------------------------------------------------------------


class OpenAIOfficeUser(ChatUser):
    """A stateless OpenAI client: sends the whole history, streams the reply."""

    app, test_type, endpoint = "office", "openai_office", "POST /office/v1/chat/completions"

    def send(self, question: str) -> tuple[Outcome, str | None]:
        body = {
            "model": self.persona,
            "messages": [*self.history, {"role": "user", "content": question}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started, clock = time.time(), time.perf_counter()
        pieces: list[str] = []
        with self.client.post(
            "/office/v1/chat/completions", json=body, name=self.endpoint, stream=True, catch_response=True, timeout=300
        ) as response:
            outcome = Outcome(
                status_code=response.status_code,
                response_time_ms=0.0,
                started_at=started,
                failure_reason=_failure(response.status_code),
            )
            if response.status_code == 200:
                for line in response.iter_lines():
                    outcome.size += len(line) + 1
                    if not line.startswith(b"data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            outcome.ttft_ms = outcome.ttft_ms or (time.perf_counter() - clock) * 1000
                            pieces.append(text)
                    if chunk.get("usage"):
                        outcome.tokens = chunk["usage"]["completion_tokens"]
                response.success()
            else:
                outcome.retry_after_s = _retry_after(response.headers)
                response.failure(outcome.failure_reason)
            outcome.response_time_ms = (time.perf_counter() - clock) * 1000
        if outcome.ttft_ms is not None:
            self._report(f"{self.endpoint} time to first token", outcome, outcome.ttft_ms)
        return outcome, "".join(pieces) if outcome.success else None
