"""A llama-cpp-python engine that serves one request at a time on a thread of its own.

The scheduler thread owns the `Llama` object: it is the only thread that evaluates or
samples. Callers only render and tokenize prompts (read-only use of the vocabulary,
safe alongside decoding) and read events from their handle. Consecutive turns of one
conversation reuse the KV cache for their common prefix (llama-cpp-python's
`generate(reset=True)` keeps the longest matching prefix).
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from webapp.engine.engine import (
    Completion,
    DoneEvent,
    ErrorEvent,
    FinishReason,
    GenerationHandle,
    GenerationRequest,
    Timings,
    TokenEvent,
    Usage,
)
from webapp.engine.prompt import ChatTemplate, prompt_fit
from webapp.engine.registry import ModelSpec, RegistryError
from webapp.engine.text import TextStream

log = logging.getLogger(__name__)

_SHUTDOWN = object()


class LlamaEngine:
    """Serial scheduler over one llama.cpp context. Implements `engine.Engine`."""

    def __init__(self, spec: ModelSpec) -> None:
        spec.check_file()
        import llama_cpp  # imported here so that the rest of the package loads without it

        self._llama_cpp = llama_cpp
        self.model_alias = spec.alias
        self.n_ctx = spec.n_ctx
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(spec.path),
                n_ctx=spec.n_ctx,
                n_gpu_layers=spec.n_gpu_layers,
                n_threads=spec.n_threads,
                verbose=False,
            )
        except ValueError as exc:  # llama-cpp-python reports unloadable files as ValueError
            raise RegistryError(f"cannot load model {spec.path}: {exc}") from exc

        self.template = ChatTemplate(
            spec.chat_template or self._metadata_template(spec),
            bos_token=self._token_text(self._llm.token_bos()),
            eos_token=self._token_text(self._llm.token_eos()),
        )
        self._queue: queue.Queue[object] = queue.Queue()
        self._busy = 0
        self._thread = threading.Thread(target=self._run, name=f"engine-{spec.app}", daemon=True)
        self._thread.start()

    # --- called from any thread -------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def submit(self, request: GenerationRequest) -> GenerationHandle:
        """Fit the prompt to the context and queue it. Raises PromptTooLongError."""
        budget = self.n_ctx - min(request.sampling.max_tokens, self.n_ctx // 2)
        plan = prompt_fit(
            pinned=request.pinned,
            history=request.history,
            user=request.user,
            render=self.template.render,
            count_tokens=self.count_tokens,
            budget=budget,
        )
        handle = GenerationHandle(plan=plan, request=request)
        self._queue.put(handle)
        return handle

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def active_requests(self) -> int:
        return self._busy

    def close(self) -> None:
        self._queue.put(_SHUTDOWN)
        self._thread.join(timeout=30)
        self._llm.close()

    # --- helpers ----------------------------------------------------------------------

    def _metadata_template(self, spec: ModelSpec) -> str:
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise RegistryError(
                f"model {spec.path} has no chat template in its GGUF metadata; "
                f"set chat_template for [{spec.app}] in the registry"
            )
        return template

    def _token_text(self, token: int) -> str:
        return self._llm._model.token_get_text(token) if token >= 0 else ""

    def _tokenize(self, text: str) -> list[int]:
        # The template already writes the BOS token where the model wants one.
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    # --- scheduler thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _SHUTDOWN:
                return
            assert isinstance(item, GenerationHandle)
            self._busy = 1
            try:
                self._generate(item)
            except Exception as exc:  # one broken request must not kill the engine
                log.exception("generation failed")
                item._emit(ErrorEvent(f"generation failed: {exc}"))
            finally:
                self._busy = 0

    def _generate(self, handle: GenerationHandle) -> None:
        """Run one request to completion. Call only from the scheduler thread."""
        started = time.perf_counter()
        params = handle.request.sampling
        prompt_tokens = self._tokenize(handle.plan.text)
        stream = TextStream(params.stop)
        vocab = self._llm._model.vocab
        is_eog = self._llama_cpp.llama_vocab_is_eog
        pieces: list[str] = []
        n_generated = 0
        first_token_at: float | None = None
        finish: FinishReason = "length"

        if params.seed is not None:
            self._llm.set_seed(params.seed)
        if not handle.cancelled:
            tokens = self._llm.generate(
                prompt_tokens,
                top_k=params.top_k,
                top_p=params.top_p,
                min_p=params.min_p,
                temp=params.temperature,
                repeat_penalty=params.repeat_penalty,
            )
            for token in tokens:
                if handle.cancelled:
                    finish = "cancelled"
                    break
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                if is_eog(vocab, token):
                    finish = "stop"
                    break
                n_generated += 1
                text = stream.push(self._llm.detokenize([token], special=False))
                if text:
                    pieces.append(text)
                    handle._emit(TokenEvent(text))
                if stream.stopped:
                    finish = "stop"
                    break
                if n_generated >= params.max_tokens:
                    break
                if len(prompt_tokens) + n_generated >= self.n_ctx:
                    break  # context full: finish reason stays "length"
            tokens.close()
        else:
            finish = "cancelled"

        tail = stream.flush()
        if tail:
            pieces.append(tail)
            handle._emit(TokenEvent(tail))
        ended = time.perf_counter()
        first = first_token_at or ended
        decode_s = ended - first
        handle._emit(
            DoneEvent(
                Completion(
                    text="".join(pieces),
                    finish_reason=finish,
                    usage=Usage(prompt_tokens=len(prompt_tokens), completion_tokens=n_generated),
                    timings=Timings(
                        queued_ms=(started - handle.submitted_at) * 1000,
                        ttft_ms=(first - handle.submitted_at) * 1000,
                        total_ms=(ended - handle.submitted_at) * 1000,
                        tokens_per_s=(n_generated - 1) / decode_s if n_generated > 1 and decode_s > 0 else 0.0,
                    ),
                    model=self.model_alias,
                )
            )
        )
