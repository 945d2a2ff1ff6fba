"""Continuous batching over one llama.cpp context: N slots, one scheduler thread.

Every slot is a llama.cpp sequence with its own stretch of KV cache. The scheduler
thread owns the context and is the only thread that decodes or samples. Each step it
builds one `llama_batch` with the next token of every generating sequence plus, within
a token budget, a chunk of the prompt of each newly admitted one (chunked prefill: a
long prompt cannot freeze the streams already running), calls `llama_decode` once, and
samples every sequence that produced logits with its own sampler chain.

Prefix reuse, two ways:
- A slot keeps the tokens of its last request in the KV cache after the request ends. A
  new request goes to the free slot holding the longest common prefix with its prompt
  (the conversation's previous turn), and only the rest of the prompt is evaluated.
- A persona's shared prefix (`GenerationRequest.shared`) is evaluated once: when a slot's
  prefill reaches the end of it, the scheduler copies that sequence's KV state into a
  bounded host-memory LRU (webapp.engine.prefix_cache), and a later request with the same
  prefix tokens starts from a copy of it in whatever slot is free. Admission knows about
  it: a request whose prefix another slot is evaluating right now waits for that copy
  (other requests go ahead) instead of evaluating the same tokens beside it.

Callers (any thread) render and tokenize prompts (read-only use of the vocabulary, safe
alongside decoding), queue requests and read events from their handles.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace

from jinja2 import TemplateError

from webapp.engine.cpu_share import CpuShare
from webapp.engine.engine import (
    Completion,
    DoneEvent,
    EngineBusyError,
    ErrorEvent,
    FinishReason,
    GenerationHandle,
    GenerationRequest,
    GrammarError,
    QueuedEvent,
    SamplingError,
    SamplingParams,
    Timings,
    TokenEvent,
    TokenLogprob,
    Usage,
)
from webapp.engine.grammar import GrammarBoundsError, grammar_check
from webapp.engine.prefix_cache import Key, PrefixCache, PrefixCacheStats, PrefixEntry
from webapp.engine.prompt import ChatTemplate, prompt_budget, prompt_fit
from webapp.engine.registry import ModelSpec, RegistryError
from webapp.engine.text import TextStream

log = logging.getLogger(__name__)

PENALTY_LAST_N = 64
# Until the engine has measured itself, assume this decode rate and reply length.
RATE_GUESS_TOKENS_S = 50.0
REPLY_GUESS_TOKENS = 64.0
TTFT_WINDOW = 1000
# A shared prefix shorter than this is not worth a copy in the prefix cache.
MIN_SHARED_TOKENS = 32


@dataclass(frozen=True)
class EngineStats:
    """Counters since start; read from any thread."""

    slots: int
    busy_slots: int
    queue_depth: int
    prompt_tokens: int  # prompt tokens of admitted requests
    prompt_tokens_reused: int  # of those, found in a slot's KV cache and not evaluated
    prompt_tokens_evaluated: int
    completion_tokens: int
    requests_finished: int
    requests_refused: int
    decode_steps: int
    tokens_per_s: float  # decode rate of the whole batch, moving average over pure decode steps
    estimated_wait_s: float
    ttft_p50_ms: float  # over the last TTFT_WINDOW answered requests
    ttft_p95_ms: float
    threads: int = 0  # CPU threads of the last decode step
    # decode steps by the threads they ran with (more than one count: the CPU was shared)
    steps_by_threads: tuple[tuple[int, int], ...] = ()
    prefix_cache: PrefixCacheStats | None = None  # None when the registry turns it off
    prefix_tokens_restored: int = 0  # prompt tokens copied from the prefix cache (part of prompt_tokens_reused)
    prefix_restore_ms: float = 0.0  # total time spent copying prefixes into slots
    prefix_save_ms: float = 0.0  # total time spent copying prefixes out of slots


@dataclass(frozen=True)
class _Queued:
    handle: GenerationHandle
    prompt: list[int]
    shared: Key  # the prompt's shared prefix (empty: none worth caching)


@dataclass
class _Job:
    """An admitted request. Touched only by the scheduler thread."""

    handle: GenerationHandle
    prompt: list[int]
    sampler: int  # llama_sampler pointer
    stream: TextStream
    admitted_at: float
    pending: int | None = None  # sampled, not yet decoded into the KV cache
    logits_at: int = -1  # row of this job's logits in the current batch, or -1
    generated: int = 0
    pieces: list[str] = field(default_factory=list)
    first_token_at: float | None = None
    save_prefix: Key = ()  # copy the slot's KV state out once its prefill reaches the end of this
    logprobs: list[TokenLogprob] | None = None  # when the request asked for them


@dataclass
class _Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # exactly what this sequence's KV cache holds
    job: _Job | None = None
    freed_at: float = 0.0


def _logprobs_of(tokens: list[TokenLogprob], text: str) -> tuple[TokenLogprob, ...]:
    """The tokens that wrote `text`: those past a stop string (held back, never shown) are
    left out, as the reply's text leaves them out."""
    size = len(text.encode("utf-8"))
    kept: list[TokenLogprob] = []
    for token in tokens:
        if size <= 0:
            break
        kept.append(token)
        size -= len(token.token)
    return tuple(kept)


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class LlamaEngine:
    """Continuous-batching engine for one GGUF model. Implements `engine.Engine`."""

    def __init__(self, spec: ModelSpec, *, cpu_share: CpuShare | None = None) -> None:
        """`cpu_share`: the CPU budget this app shares with the other apps on the host (both
        models on the CPU); each step then takes the threads it grants."""
        spec.check_file()
        import llama_cpp  # imported here so that the rest of the package loads without it
        from llama_cpp import _internals, _logger

        _logger.set_verbose(False)  # llama.cpp's load and graph chatter; errors still print

        self._c = llama_cpp
        self.model_alias = spec.alias
        self.n_ctx = spec.n_ctx  # per slot: the most one conversation's prompt + reply may use
        self.n_slots = spec.slots
        self._n_batch = max(spec.batch_tokens, spec.slots)
        self._prefill_chunk = spec.prefill_chunk
        self._max_wait_s = spec.max_wait_s
        self._deadline_s = spec.max_generation_s
        self._rate = 0.0  # tokens/s of the whole batch, moving average; 0 until measured
        self._reply_tokens = REPLY_GUESS_TOKENS  # moving average of finished replies
        self._ttfts: deque[float] = deque(maxlen=TTFT_WINDOW)
        threads = spec.cpu_threads
        self._cpu_share = cpu_share
        self._threads = threads
        self._steps_by_threads: dict[int, int] = {}

        if spec.n_gpu_layers != 0 and not llama_cpp.llama_supports_gpu_offload():
            # llama.cpp would load on the CPU without a word, many times slower (seen with
            # CUDA_VISIBLE_DEVICES naming a GPU the host does not have).
            raise RegistryError(
                f"[{spec.app}] n_gpu_layers = {spec.n_gpu_layers}, but this process sees no GPU "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}, from the app's `gpu`): "
                "check `gpu` in the registry, and that llama-cpp-python is built with CUDA "
                "(the Dockerfile's is); n_gpu_layers = 0 runs the model on the CPU"
            )
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = spec.n_gpu_layers
        try:
            self._model = _internals.LlamaModel(path_model=str(spec.path), params=model_params, verbose=False)
        except ValueError as exc:  # llama-cpp-python reports unloadable files as ValueError
            raise RegistryError(f"cannot load model {spec.path}: {exc}") from exc
        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = spec.n_ctx * spec.slots
        ctx_params.n_seq_max = spec.slots
        ctx_params.n_batch = self._n_batch
        ctx_params.n_ubatch = self._n_batch
        ctx_params.n_threads = threads
        ctx_params.n_threads_batch = threads
        # One KV stream per slot: attention then spans only the slot's own tokens, not
        # every slot's (measured faster here; see the README's engine notes).
        ctx_params.kv_unified = False
        ctx_params.no_perf = True
        try:
            self._context = _internals.LlamaContext(model=self._model, params=ctx_params, verbose=False)
        except ValueError as exc:
            self._model.close()
            raise RegistryError(f"cannot create a context for {spec.path}: {exc}") from exc
        self._ctx = self._context.ctx
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._vocab = self._model.vocab
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._piece_buffer = ctypes.create_string_buffer(256)
        self._eog_tokens: list[int] | None = None  # built on first use by _eog_ban

        self.template = ChatTemplate(
            spec.chat_template or self._metadata_template(spec),
            bos_token=self._token_text(self._model.token_bos()),
            eos_token=self._token_text(self._model.token_eos()),
        )

        self._slots = [_Slot(seq=i) for i in range(spec.slots)]
        self._queue: deque[_Queued] = deque()
        self._prefix_cache = PrefixCache(spec.prefix_cache_mib << 20) if spec.prefix_cache_mib else None
        self._prefix_ms = {"restore": 0.0, "save": 0.0}
        self._prefix_bytes_per_token = 0.0  # measured at the first copy
        self._wakeup = threading.Condition()
        self._closing = False
        self._busy = 0
        self._counters = dict.fromkeys(
            (
                "prompt_tokens",
                "prompt_tokens_reused",
                "prompt_tokens_evaluated",
                "completion_tokens",
                "requests_finished",
                "requests_refused",
                "decode_steps",
                "prefix_tokens_restored",
            ),
            0,
        )
        self._thread = threading.Thread(target=self._run, name=f"engine-{spec.app}", daemon=True)
        self._thread.start()

    # --- called from any thread -------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def submit(self, request: GenerationRequest) -> GenerationHandle:
        """Fit the prompt to a slot's context and queue it.

        Raises PromptTooLongError, GrammarError, or EngineBusyError when the estimated
        wait for a slot is over the registry's `max_wait_s` (bounded admission: refuse
        early, with a useful Retry-After, rather than let requests time out in the queue).
        """
        n_vocab = self._c.llama_vocab_n_tokens(self._vocab)
        for token, _ in request.sampling.logit_bias:
            if not 0 <= token < n_vocab:
                raise SamplingError(
                    f"token {token} is not in the model's vocabulary (0-{n_vocab - 1})", field="logit_bias"
                )
        if request.grammar is not None:
            try:
                grammar_check(request.grammar)  # bounded before llama.cpp's recursive parser sees it
            except GrammarBoundsError as exc:
                raise GrammarError(str(exc)) from exc
            self._c.llama_sampler_free(self._grammar_sampler(request.grammar))  # parse it here, not on the scheduler
        budget = prompt_budget(n_ctx=self.n_ctx, max_tokens=request.sampling.max_tokens)
        tokenized: dict[str, list[int]] = {}  # prompt_fit counts the chosen prompt: keep its tokens

        def count_tokens(text: str) -> int:
            tokenized[text] = self._tokenize(text)
            return len(tokenized[text])

        plan = prompt_fit(
            pinned=request.pinned,
            history=request.history,
            user=request.user,
            after=request.after,
            render=self.template.render,
            count_tokens=count_tokens,
            budget=budget,
            reply_start=request.reply_start,
        )
        handle = GenerationHandle(plan=plan, request=request)
        tokens = tokenized.get(plan.text) or self._tokenize(plan.text)
        queued = _Queued(handle=handle, prompt=tokens, shared=self._shared_prefix(request, tokens))
        with self._wakeup:
            if self._closing:
                raise RuntimeError("the engine is closed")
            wait = self._estimated_wait_s()
            if wait > self._max_wait_s:
                self._counters["requests_refused"] += 1
                raise EngineBusyError(
                    estimated_wait_s=wait,
                    retry_after_s=max(1, math.ceil(wait - self._max_wait_s)),
                    queue_depth=len(self._queue),
                )
            self._queue.append(queued)
            position = len(self._queue) - (self.n_slots - self._busy)
            self._wakeup.notify()
        if position > 0:
            handle._emit(QueuedEvent(position))
        return handle

    def queue_depth(self) -> int:
        return len(self._queue)

    def active_requests(self) -> int:
        return self._busy

    def stats(self) -> EngineStats:
        with self._wakeup:
            wait = self._estimated_wait_s()
        ttfts = sorted(self._ttfts)
        return EngineStats(
            slots=self.n_slots,
            busy_slots=self._busy,
            queue_depth=len(self._queue),
            tokens_per_s=round(self._rate, 1),
            estimated_wait_s=round(wait, 2),
            ttft_p50_ms=round(_percentile(ttfts, 0.5), 1),
            ttft_p95_ms=round(_percentile(ttfts, 0.95), 1),
            threads=self._threads,
            steps_by_threads=tuple(sorted(self._steps_by_threads.items())),
            prefix_cache=self._prefix_cache.stats() if self._prefix_cache is not None else None,
            prefix_restore_ms=round(self._prefix_ms["restore"], 1),
            prefix_save_ms=round(self._prefix_ms["save"], 1),
            **self._counters,
        )

    def _estimated_wait_s(self) -> float:
        """Seconds a new request would wait for a slot: queued work / measured rate.

        An estimate: queued requests count as an average reply each, running ones as half
        of one. Call with `_wakeup` held.
        """
        if len(self._queue) < self.n_slots - self._busy:
            return 0.0
        work = (len(self._queue) + 1) * self._reply_tokens + self._busy * self._reply_tokens / 2
        return work / (self._rate or RATE_GUESS_TOKENS_S)

    def close(self) -> None:
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        self._thread.join(timeout=30)
        if self._cpu_share is not None:
            self._cpu_share.close()
        self._c.llama_batch_free(self._batch)
        self._context.close()
        self._model.close()

    # --- helpers ----------------------------------------------------------------------

    def _metadata_template(self, spec: ModelSpec) -> str:
        template = self._model.metadata().get("tokenizer.chat_template")
        if not template:
            raise RegistryError(
                f"model {spec.path} has no chat template in its GGUF metadata; "
                f"set chat_template for [{spec.app}] in the registry"
            )
        return template

    def _token_text(self, token: int) -> str:
        return self._model.token_get_text(token) if token >= 0 else ""

    def _tokenize(self, text: str) -> list[int]:
        # The template already writes the BOS token where the model wants one.
        return self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def _shared_prefix(self, request: GenerationRequest, prompt: list[int]) -> Key:
        """The tokens of `prompt` that its shared pinned messages account for, or () when
        there are none worth caching. Rendered alone, the shared messages are a prefix of the
        whole prompt up to the template's markers around the next message; the tokens the
        two have in common are the key."""
        if self._prefix_cache is None:
            return ()
        k = len(request.pinned) if request.shared is None else min(request.shared, len(request.pinned))
        if k <= 0:
            return ()
        try:
            head = self._tokenize(self.template.render(request.pinned[:k], add_generation_prompt=False))
        except TemplateError:  # a template that refuses a partial conversation: no sharing
            return ()
        # At least the last prompt token stays to evaluate: its logits give the first token.
        n = min(common_prefix_length(head, prompt), len(prompt) - 1)
        return tuple(prompt[:n]) if n >= MIN_SHARED_TOKENS else ()

    # --- scheduler thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._admit():
                self._step()
        except Exception:  # the engine must not die silently: fail everyone, loudly
            log.exception("the scheduler crashed")
            if self._cpu_share is not None:
                self._cpu_share.threads(busy=False)  # the other app may take every core
            with self._wakeup:
                self._closing = True  # later submits are refused instead of hanging
                queued, self._queue = list(self._queue), deque()
            for slot in self._slots:
                if slot.job is not None:
                    slot.job.handle._emit(ErrorEvent("the engine failed; see the server log"))
            for waiting in queued:
                waiting.handle._emit(ErrorEvent("the engine failed; see the server log"))

    def _admit(self) -> bool:
        """Finish cancelled work, move queued requests into free slots; wait while idle.

        Returns False when the engine is closing.
        """
        now = time.perf_counter()
        for slot in self._slots:
            if slot.job is not None and slot.job.handle.cancelled:
                self._finish(slot, "cancelled")
            elif slot.job is not None and self._past_deadline(slot.job.handle, now):
                self._finish(slot, "deadline")
        while True:
            with self._wakeup:
                if self._closing:
                    return False
                self._drop_cancelled_queued()
                free = [s for s in self._slots if s.job is None]
                queued = self._next_queued(free) if free else None
                if queued is not None:
                    self._queue.remove(queued)
                    self._busy += 1  # taken under the lock, so submit() never sees a free slot that isn't
                    # Once the last free slot is taken, everyone left moved up one place.
                    waiting = list(self._queue) if len(free) == 1 else []
                elif self._busy:
                    return True
                else:
                    if self._cpu_share is not None:
                        self._cpu_share.threads(busy=False)  # idle: the other app may take every core
                    self._wakeup.wait()
                    continue
            try:
                self._start(queued, free)
            except Exception:  # this request can't start; the others go on
                self._busy -= 1
                log.exception("could not start request %d", queued.handle.id)
                queued.handle._emit(ErrorEvent("generation failed to start; see the server log"))
            for position, behind in enumerate(waiting, start=1):
                behind.handle._emit(QueuedEvent(position))  # everyone behind moved up

    def _next_queued(self, free: list[_Slot]) -> _Queued | None:
        """The first queued request that is not waiting for a prefix: one whose shared prefix
        a running request is evaluating right now, and that no free slot holds, waits for
        that copy rather than evaluate the same tokens beside it. Call with `_wakeup` held,
        on the scheduler thread."""
        if not self._queue:
            return None
        saving = {slot.job.save_prefix for slot in self._slots if slot.job is not None and slot.job.save_prefix}
        for queued in self._queue:
            shared = queued.shared
            if not shared or shared not in saving:
                return queued
            if any(common_prefix_length(slot.tokens, queued.prompt) >= len(shared) for slot in free):
                return queued  # a free slot already holds it (say, this conversation's last turn)
        return None

    def _past_deadline(self, handle: GenerationHandle, now: float) -> bool:
        limit = handle.request.deadline_s if handle.request.deadline_s is not None else self._deadline_s
        return now - handle.submitted_at >= limit

    def _drop_cancelled_queued(self) -> None:
        """Answer requests cancelled (or past their deadline) while queued at once. Call with `_wakeup` held."""
        now = time.perf_counter()
        ended = {
            queued.handle.id: "cancelled" if queued.handle.cancelled else "deadline"
            for queued in self._queue
            if queued.handle.cancelled or self._past_deadline(queued.handle, now)
        }
        if not ended:
            return
        kept: deque[_Queued] = deque()
        for queued in self._queue:
            handle = queued.handle
            if handle.id in ended:
                reason: FinishReason = ended[handle.id]  # type: ignore[assignment]
                handle._emit(DoneEvent(self._completion(handle, "", reason, len(queued.prompt), 0, now, now, now)))
            else:
                kept.append(queued)
        self._queue = kept

    def _start(self, queued: _Queued, free: list[_Slot]) -> None:
        """Put a request into the free slot whose KV cache shares the longest prefix with it,
        or, when the prefix cache holds more of its shared prefix than any slot, into the
        free slot unused longest, starting from a copy of that prefix."""
        handle, prompt, shared = queued.handle, queued.prompt, queued.shared
        slot = max(free, key=lambda s: (common_prefix_length(s.tokens, prompt), -s.freed_at))
        save: Key = ()
        if self._prefix_cache is not None and len(shared) > common_prefix_length(slot.tokens, prompt):
            entry = self._prefix_cache.lookup(shared)
            if entry is None and self._prefix_cache.fits(math.ceil(len(shared) * self._prefix_bytes_per_token) or 1):
                save = shared  # evaluate it here, and keep a copy for the next request
            elif entry is not None:
                target = min(free, key=lambda s: s.freed_at)
                if self._prefix_restore(target, entry):
                    slot = target
        # Keep at least the last prompt token to evaluate: its logits give the first token.
        keep = min(common_prefix_length(slot.tokens, prompt), len(prompt) - 1)
        if not self._c.llama_memory_seq_rm(self._memory, slot.seq, keep, -1):
            keep = 0  # this model's cache can't drop a tail: start the sequence afresh
            self._c.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
        del slot.tokens[keep:]
        slot.job = _Job(
            handle=handle,
            prompt=prompt,
            sampler=self._sampler_new(handle.request.sampling, handle.request.grammar),
            stream=TextStream(handle.request.sampling.stop),
            admitted_at=time.perf_counter(),
            save_prefix=save if keep < len(save) else (),
            logprobs=[] if handle.request.sampling.top_logprobs is not None else None,
        )
        self._counters["prompt_tokens"] += len(prompt)
        self._counters["prompt_tokens_reused"] += keep

    def _prefix_restore(self, slot: _Slot, entry: PrefixEntry) -> bool:
        """Replace what `slot` holds with a copy of a cached prefix; False if llama.cpp refused
        (the slot is then empty)."""
        started = time.perf_counter()
        restored = self._c.llama_state_seq_set_data(self._ctx, entry.state, entry.size, slot.seq)
        self._prefix_ms["restore"] += (time.perf_counter() - started) * 1000
        if not restored:
            log.warning("could not restore a cached prefix of %d tokens into slot %d", entry.n_tokens, slot.seq)
            if self._prefix_cache is not None:
                self._prefix_cache.discard(entry.tokens)  # don't fail the same way again
            self._c.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
            slot.tokens.clear()
            return False
        slot.tokens[:] = entry.tokens
        self._counters["prefix_tokens_restored"] += entry.n_tokens
        return True

    def _prefix_save(self, slot: _Slot) -> None:
        """Copy the KV state of `slot`, which holds exactly its job's shared prefix, into the cache."""
        job, cache = slot.job, self._prefix_cache
        assert job is not None and cache is not None
        key, job.save_prefix = job.save_prefix, ()
        started = time.perf_counter()
        try:
            size = self._c.llama_state_seq_get_size(self._ctx, slot.seq)
            self._prefix_bytes_per_token = size / len(key)
            if cache.fits(size):
                state = (ctypes.c_uint8 * size)()
                written = self._c.llama_state_seq_get_data(self._ctx, state, size, slot.seq)
                if written:
                    cache.store(PrefixEntry(tokens=key, state=state, size=written))
        except (MemoryError, OSError, ValueError):  # no copy this time; the requests go on
            log.exception("could not copy a prefix of %d tokens out of slot %d", len(key), slot.seq)
        self._prefix_ms["save"] += (time.perf_counter() - started) * 1000

    def _grammar_sampler(self, grammar: str) -> int:
        sampler = self._c.llama_sampler_init_grammar(self._vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            raise GrammarError("the grammar does not parse (llama.cpp GBNF with a 'root' rule)")
        return sampler

    def _eog_ban(self) -> int:
        """A sampler that gives every end-of-generation token a logit of -inf."""
        c = self._c
        if self._eog_tokens is None:
            n_vocab = c.llama_vocab_n_tokens(self._vocab)
            self._eog_tokens = [t for t in range(n_vocab) if c.llama_vocab_is_eog(self._vocab, t)]
        biases = (c.llama_logit_bias * len(self._eog_tokens))(
            *(c.llama_logit_bias(token=t, bias=float("-inf")) for t in self._eog_tokens)
        )
        return c.llama_sampler_init_logit_bias(c.llama_vocab_n_tokens(self._vocab), len(biases), biases)

    def _sampler_new(self, params: SamplingParams, grammar: str | None = None) -> int:
        c = self._c
        chain = c.llama_sampler_chain_init(c.llama_sampler_chain_default_params())
        if grammar is not None:
            # First in the chain: it masks every token that would leave the grammar, so the
            # samplers after it only ever choose among valid continuations.
            c.llama_sampler_chain_add(chain, self._grammar_sampler(grammar))
        if params.ignore_eos and grammar is None:
            c.llama_sampler_chain_add(chain, self._eog_ban())
        if params.logit_bias:
            n_vocab = c.llama_vocab_n_tokens(self._vocab)
            biases = (c.llama_logit_bias * len(params.logit_bias))(
                *(c.llama_logit_bias(token=t, bias=b) for t, b in params.logit_bias)
            )
            c.llama_sampler_chain_add(chain, c.llama_sampler_init_logit_bias(n_vocab, len(biases), biases))
        if params.repeat_penalty != 1.0 or params.frequency_penalty or params.presence_penalty:
            # The penalty sampler looks up every candidate it is given: on a 49,152-token
            # vocabulary that was ~0.4 ms a token, half of all sampling time on a GPU. A
            # penalty only lowers the at most PENALTY_LAST_N tokens seen last, so what comes
            # out on top afterwards was among the top (k + PENALTY_LAST_N) before: keeping
            # only those first gives exactly the same top k (greedy: the same best token).
            keep = params.top_k if params.temperature > 0 else 1
            only_lowers = (
                params.repeat_penalty >= 1.0 and params.frequency_penalty >= 0 and params.presence_penalty >= 0
            )  # a negative "penalty" raises seen tokens
            if keep > 0 and only_lowers:
                c.llama_sampler_chain_add(chain, c.llama_sampler_init_top_k(keep + PENALTY_LAST_N))
            n_vocab = c.llama_vocab_n_tokens(self._vocab)
            penalties = c.llama_sampler_init_penalties(
                n_vocab, PENALTY_LAST_N, params.repeat_penalty, params.frequency_penalty, params.presence_penalty
            )
            c.llama_sampler_chain_add(chain, penalties)
        if params.temperature <= 0:
            c.llama_sampler_chain_add(chain, c.llama_sampler_init_greedy())
            return chain
        if params.top_k > 0:
            c.llama_sampler_chain_add(chain, c.llama_sampler_init_top_k(params.top_k))
        c.llama_sampler_chain_add(chain, c.llama_sampler_init_top_p(params.top_p, 1))
        c.llama_sampler_chain_add(chain, c.llama_sampler_init_min_p(params.min_p, 1))
        c.llama_sampler_chain_add(chain, c.llama_sampler_init_temp(params.temperature))
        seed = params.seed if params.seed is not None else c.LLAMA_DEFAULT_SEED
        c.llama_sampler_chain_add(chain, c.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _step(self) -> None:
        """One llama_decode over every active slot: next tokens first, then prompt chunks."""
        batch = self._batch
        n = 0
        placed: list[tuple[_Slot, list[int]]] = []

        def add(slot: _Slot, tokens: list[int], logits_last: bool) -> None:
            nonlocal n
            start = len(slot.tokens)
            for i, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = start + i
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = slot.seq
                batch.logits[n] = 0
                n += 1
            if logits_last:
                batch.logits[n - 1] = 1
                assert slot.job is not None
                slot.job.logits_at = n - 1
            placed.append((slot, tokens))

        active = [s for s in self._slots if s.job is not None]
        for slot in active:
            assert slot.job is not None
            slot.job.logits_at = -1
            if slot.job.pending is not None:
                add(slot, [slot.job.pending], True)
        budget = self._n_batch - n
        for slot in sorted(active, key=lambda s: s.job.admitted_at if s.job else 0.0):
            job = slot.job
            assert job is not None
            if job.pending is not None or budget <= 0:
                continue
            done = len(slot.tokens)
            limit = min(budget, self._prefill_chunk)
            if job.save_prefix:  # stop at the end of the shared prefix, to copy it out exactly
                limit = min(limit, len(job.save_prefix) - done)
            chunk = job.prompt[done : done + limit]
            add(slot, chunk, done + len(chunk) == len(job.prompt))
            budget -= len(chunk)
            self._counters["prompt_tokens_evaluated"] += len(chunk)

        batch.n_tokens = n
        if self._cpu_share is not None:
            threads = self._cpu_share.threads(busy=True)
            if threads != self._threads:  # takes effect at this decode
                self._c.llama_set_n_threads(self._ctx, threads, threads)
                self._threads = threads
        started = time.perf_counter()
        status = self._c.llama_decode(self._ctx, batch)
        if status != 0:
            # 1: no room in the KV cache (can't happen while every slot stays within its
            # own n_ctx); anything else is llama.cpp failing. Either way these requests end.
            log.error("llama_decode failed with status %d for %d tokens", status, n)
            for slot, _ in placed:
                self._finish(slot, "error", error=f"llama_decode failed (status {status})")
            return
        self._counters["decode_steps"] += 1
        self._steps_by_threads[self._threads] = self._steps_by_threads.get(self._threads, 0) + 1
        for slot, tokens in placed:
            slot.tokens.extend(tokens)
            if slot.job is not None:
                slot.job.pending = None
        for slot, _ in placed:
            if slot.job is not None and slot.job.save_prefix and len(slot.tokens) == len(slot.job.save_prefix):
                self._prefix_save(slot)
        sampled = [s for s in active if s.job is not None and s.job.logits_at >= 0]
        for slot in sampled:
            self._sample(slot)
        if n == len(sampled):  # a pure decode step: it measures the decode rate
            rate = n / max(time.perf_counter() - started, 1e-6)
            self._rate = rate if not self._rate else 0.9 * self._rate + 0.1 * rate

    def _sample(self, slot: _Slot) -> None:
        job = slot.job
        assert job is not None
        token = self._c.llama_sampler_sample(job.sampler, self._ctx, job.logits_at)
        if job.first_token_at is None:
            job.first_token_at = time.perf_counter()
        if self._c.llama_vocab_is_eog(self._vocab, token):
            self._finish(slot, "stop")
            return
        job.generated += 1
        if job.logprobs is not None:
            job.logprobs.append(self._logprob(job, token))
        text = job.stream.push(self._piece(token))
        if text:
            job.pieces.append(text)
            job.handle._emit(TokenEvent(text))
        if job.stream.stopped:
            self._finish(slot, "stop")
        elif job.generated >= job.handle.request.sampling.max_tokens or len(slot.tokens) + 1 >= self.n_ctx:
            self._finish(slot, "length")  # max_tokens, or the slot's context is full
        else:
            job.pending = token

    def _logprob(self, job: _Job, token: int) -> TokenLogprob:
        """`token`'s log-probability under the logits of this step (log-softmax over the
        vocabulary, ~0.3 ms on 49,152 tokens), and the request's top alternatives."""
        import numpy as np

        n_vocab = self._c.llama_vocab_n_tokens(self._vocab)
        row = np.ctypeslib.as_array(self._c.llama_get_logits_ith(self._ctx, job.logits_at), shape=(n_vocab,))
        logits = row.astype(np.float64)
        peak = logits.max()
        logprobs = logits - (peak + np.log(np.exp(logits - peak).sum()))
        k = job.handle.request.sampling.top_logprobs or 0
        top: tuple[tuple[bytes, float], ...] = ()
        if k:
            best = np.argpartition(-logprobs, k)[:k]
            best = best[np.argsort(-logprobs[best])]
            top = tuple((self._piece(int(t)), float(logprobs[t])) for t in best)
        return TokenLogprob(self._piece(token), float(logprobs[token]), top, id=token)

    def _piece(self, token: int) -> bytes:
        buffer = self._piece_buffer
        n = self._c.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[: max(n, 0)]

    def _finish(self, slot: _Slot, reason: FinishReason, *, error: str | None = None) -> None:
        """End the slot's request, report it, and free the slot (its KV stays for reuse)."""
        job = slot.job
        assert job is not None
        slot.job = None
        slot.freed_at = time.perf_counter()
        self._busy -= 1
        self._c.llama_sampler_free(job.sampler)
        if error is not None:
            # What the cache holds for this sequence is unknown after a failed decode.
            self._c.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
            slot.tokens.clear()
            job.handle._emit(ErrorEvent(error))
            return
        tail = job.stream.flush()
        if tail:
            job.pieces.append(tail)
            job.handle._emit(TokenEvent(tail))
        self._counters["completion_tokens"] += job.generated
        self._counters["requests_finished"] += 1
        if reason != "cancelled":
            self._reply_tokens = 0.9 * self._reply_tokens + 0.1 * job.generated
        if job.first_token_at is not None:
            self._ttfts.append((job.first_token_at - job.handle.submitted_at) * 1000)
        ended = time.perf_counter()
        completion = self._completion(
            job.handle,
            "".join(job.pieces),
            reason,
            len(job.prompt),
            job.generated,
            job.admitted_at,
            job.first_token_at or ended,
            ended,
        )
        if job.logprobs is not None:
            completion = replace(completion, logprobs=_logprobs_of(job.logprobs, completion.text))
        if job.stream.stopped_by is not None:
            completion = replace(completion, stop_sequence=job.stream.stopped_by)
        job.handle._emit(DoneEvent(completion))

    def _completion(
        self,
        handle: GenerationHandle,
        text: str,
        reason: FinishReason,
        prompt_tokens: int,
        generated: int,
        admitted_at: float,
        first_at: float,
        ended: float,
    ) -> Completion:
        decode_s = ended - first_at
        return Completion(
            text=text,
            finish_reason=reason,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=generated),
            timings=Timings(
                queued_ms=(admitted_at - handle.submitted_at) * 1000,
                ttft_ms=(first_at - handle.submitted_at) * 1000,
                total_ms=(ended - handle.submitted_at) * 1000,
                tokens_per_s=(generated - 1) / decode_s if generated > 1 and decode_s > 0 else 0.0,
            ),
            model=self.model_alias,
        )
