"""Benchmark: document retrieval. Answer quality, indexing speed, search latency, and the
time grounding adds to the office reply's first token.

1. Quality on the labelled set in perf/retrieval_set/ (20 office documents, half English
   and half Korean, and questions worded unlike the text, each labelled with the document
   and section that answers it): document-level recall@5 and MRR@10 of lexical-only,
   dense-only and hybrid search, by language. Hybrid is shown as served (a Korean query
   falls back to BM25 because the default embedder is English-only) and with fusion
   forced. Both indexes: the embedded default (SQLite FTS5 + exact cosine) and Qdrant
   (qdrant-client's in-process mode) fed the same records.
2. Indexing throughput (chunk_records_build: embed + terms; then chunks_add) and search
   latency p50/p95 at 1,000 and 10,000 chunks of one user, in-process against Qdrant's
   in-process mode on the same vectors (calls alternate between the two), and over HTTP
   through nginx and direct to daphne on the real stack. The filler chunks are real text:
   documents recombined from the labelled set's sentences (numbers changed), chunked and
   embedded for real. The 10,000 records are embedded once and cached under
   var/perf/retrieval/, keyed by the embedding alias, the set's text and the generator,
   because embedding them takes 20-30 minutes on two cores; the indexes are built from
   them on every run, and the stack's index file is written before it starts. Last, the
   labelled set's user is searched alone in an index and beside another user's 10,000
   chunks: FTS5 keeps one inverted index for all users.
3. Time to first token of office replies over WebSocket through nginx: the same questions
   asked by a user with the labelled documents uploaded (grounded) and by a user without
   documents, alternating. The engine's own TTFT (from submission, i.e. queue + prefill of
   the longer prompt) comes from the `done` frame; the search endpoint is timed for the
   same queries, so the difference splits into search and prefill.

Prints the tables and writes them to var/perf/retrieval.md (var/perf/retrieval-quick.md
with --quick).

    .venv/bin/python -m perf.retrieval [--quick] [--skip-10k] [--skip-ttft] [--queries 200] [--ttft-questions 40]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import hashlib
import itertools
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
import tomllib
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import requests
import websockets

from perf.latency import _percentile
from webapp.config.env import REPO_ROOT
from webapp.engine.registry import embedding_spec_load
from webapp.launcher.ports import free_port
from webapp.launcher.stack import BENCH_ENV, Stack, StackConfig, registry_derive
from webapp.retrieval.chunking import Chunk, chunks_split, sentences_split
from webapp.retrieval.embedding import Embedder, embedder_load
from webapp.retrieval.extract import ExtractedDocument, document_extract
from webapp.retrieval.index import ChunkIndex, ChunkRecord, QdrantChunkIndex, SqliteChunkIndex
from webapp.retrieval.lexical import TermExtractor
from webapp.retrieval.pipeline import chunk_records_build
from webapp.retrieval.search import Retriever, SearchMode, text_language

SET_DIR = Path(__file__).resolve().parent / "retrieval_set"
CACHE_DIR = REPO_ROOT / "var" / "perf" / "retrieval"
LANGUAGES = ("en", "ko")
RECALL_K = 5
MRR_K = 10
SEARCH_K = 5  # the search endpoint's default
CANDIDATES = 40  # what hybrid search asks of each index (Retriever's default)
ADD_BATCH = 500  # records per chunks_add call when filling an index (one large upload's worth)
FILLER_VERSION = 1  # bump when the filler generator changes: it is part of the cache key
FILLER_SEED = 20240611
SMALL_CHUNKS, LARGE_CHUNKS = 1_000, 10_000
TTFT_MAX_TOKENS = 16  # replies capped and greedy: the first token is what is measured
LABELLED_USER, BENCH_USER = "labelled", "bench"
GROUNDED_USER, PLAIN_USER = "ttft-with-documents", "ttft-without-documents"
TARGET_RECALL = 0.9
TARGET_P95_MS = 50.0

Item = tuple[str, str, Chunk]  # (document_id, title, chunk): what records are built from


def _log(message: str) -> None:
    print(f"  {message}", flush=True)


# --- the labelled set -------------------------------------------------------------------


class LabelledSetError(ValueError):
    """The labelled set's files are malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Question:
    id: str
    lang: str
    text: str
    document: str  # document_id: the file stem
    heading: str


@dataclass(frozen=True)
class SetDocument:
    document_id: str  # the file stem
    lang: str
    path: Path
    extracted: ExtractedDocument
    chunks: tuple[Chunk, ...]


@dataclass(frozen=True)
class LabelledSet:
    documents: tuple[SetDocument, ...]
    questions: tuple[Question, ...]

    def items(self) -> list[Item]:
        return [(d.document_id, d.extracted.title, c) for d in self.documents for c in d.chunks]


_QUESTION_KEYS = frozenset({"id", "lang", "text", "document", "heading"})


def labelled_set_load(root: Path = SET_DIR) -> LabelledSet:
    """Read docs/ (en_*.md|txt, ko_*.md|txt) and questions.toml, checking every label.

    Each question needs a unique id, a language that matches its text, a document that
    exists and a heading that is one of that document's sections.
    """
    documents: list[SetDocument] = []
    for path in sorted((root / "docs").iterdir()):
        if path.name.startswith(".") or path.suffix not in (".md", ".txt"):
            continue
        lang = path.stem.split("_", 1)[0]
        if lang not in LANGUAGES:
            raise LabelledSetError(f"{path.name}: a document's name starts with its language: en_ or ko_")
        extracted = document_extract(filename=path.name, data=path.read_bytes())
        documents.append(SetDocument(path.stem, lang, path, extracted, tuple(chunks_split(extracted))))
    if not documents:
        raise LabelledSetError(f"{root / 'docs'}: no documents")
    by_id = {d.document_id: d for d in documents}

    source = root / "questions.toml"
    try:
        entries = tomllib.loads(source.read_text(encoding="utf-8")).get("question", [])
    except tomllib.TOMLDecodeError as exc:
        raise LabelledSetError(f"{source.name}: {exc}") from exc
    questions: list[Question] = []
    for number, entry in enumerate(entries, start=1):
        where = f"{source.name}, question {number} ({entry.get('id', 'no id')})"
        if set(entry) != _QUESTION_KEYS:
            raise LabelledSetError(f"{where}: needs exactly the keys {sorted(_QUESTION_KEYS)}, has {sorted(entry)}")
        question = Question(**{key: str(entry[key]) for key in _QUESTION_KEYS})
        if any(q.id == question.id for q in questions):
            raise LabelledSetError(f"{where}: duplicate id")
        if question.lang not in LANGUAGES or text_language(question.text) != question.lang:
            raise LabelledSetError(f"{where}: lang {question.lang!r} does not match the text's language")
        document = by_id.get(question.document)
        if document is None:
            raise LabelledSetError(f"{where}: no document {question.document!r} in docs/")
        if question.heading not in {s.heading for s in document.extracted.sections}:
            raise LabelledSetError(f"{where}: {question.document} has no section {question.heading!r}")
        questions.append(question)
    if not questions:
        raise LabelledSetError(f"{source.name}: no [[question]] entries")
    return LabelledSet(tuple(documents), tuple(questions))


def records_build(
    items: Sequence[Item], *, user_id: str, embedder: Embedder, terms: TermExtractor
) -> list[ChunkRecord]:
    """Index records for `items`, each document's consecutive chunks through chunk_records_build."""
    records: list[ChunkRecord] = []
    for (document_id, title), group in itertools.groupby(items, key=lambda item: (item[0], item[1])):
        records += chunk_records_build(
            document_id=document_id,
            user_id=user_id,
            title=title,
            chunks=[chunk for _, _, chunk in group],
            embedder=embedder,
            terms=terms,
        )
    return records


# --- quality ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityMode:
    label: str
    mode: SearchMode
    forced: bool  # fuse the dense ranking whatever the query's language


QUALITY_MODES = (
    QualityMode("lexical (BM25)", "lexical", False),
    QualityMode("dense (cosine)", "dense", False),
    QualityMode("hybrid, as served", "hybrid", False),
    QualityMode("hybrid, fusion forced", "hybrid", True),
)


@dataclass(frozen=True)
class Ranked:
    """One question's top MRR_K hits, as (document_id, heading) pairs, best first."""

    question: Question
    hits: tuple[tuple[str, str], ...]
    mode_used: str

    @property
    def rank(self) -> int | None:
        """1-based rank of the first hit from the right document, or None."""
        return next((i for i, (doc, _) in enumerate(self.hits, start=1) if doc == self.question.document), None)

    def found(self, k: int = RECALL_K) -> bool:
        return self.rank is not None and self.rank <= k

    def section_found(self, k: int = RECALL_K) -> bool:
        return (self.question.document, self.question.heading) in self.hits[:k]


@dataclass(frozen=True)
class Score:
    n: int
    recall: float  # document-level recall@RECALL_K
    mrr: float  # document-level MRR@MRR_K
    section_recall: float  # recall@RECALL_K of the labelled section


def score(ranked: Sequence[Ranked]) -> Score:
    if not ranked:
        return Score(0, float("nan"), float("nan"), float("nan"))
    n = len(ranked)
    return Score(
        n=n,
        recall=sum(r.found() for r in ranked) / n,
        mrr=sum(1 / r.rank for r in ranked if r.rank is not None and r.rank <= MRR_K) / n,
        section_recall=sum(r.section_found() for r in ranked) / n,
    )


def questions_rank(
    retriever: Retriever, questions: Sequence[Question], *, user_id: str, mode: SearchMode
) -> list[Ranked]:
    ranked = []
    for question in questions:
        outcome = retriever.search(user_id=user_id, query=question.text, k=MRR_K, mode=mode)
        hits = tuple((hit.document_id, hit.heading) for hit in outcome.hits)
        ranked.append(Ranked(question, hits, outcome.mode))
    return ranked


def quality_evaluate(
    indexes: dict[str, ChunkIndex],
    questions: Sequence[Question],
    *,
    embedder: Embedder,
    terms: TermExtractor,
    languages: tuple[str, ...],
    user_id: str = LABELLED_USER,
) -> dict[tuple[str, str], list[Ranked]]:
    """(index name, QualityMode.label) → each question's ranking, for every index and mode."""
    results: dict[tuple[str, str], list[Ranked]] = {}
    for name, index in indexes.items():
        for quality_mode in QUALITY_MODES:
            retriever = Retriever(
                index=index, embedder=embedder, terms=terms, languages=("*",) if quality_mode.forced else languages
            )
            results[(name, quality_mode.label)] = questions_rank(
                retriever, questions, user_id=user_id, mode=quality_mode.mode
            )
    return results


def quality_report(labelled: LabelledSet, results: dict[tuple[str, str], list[Ranked]]) -> list[str]:
    n_chunks = sum(len(d.chunks) for d in labelled.documents)
    by_lang = {lang: sum(q.lang == lang for q in labelled.questions) for lang in LANGUAGES}
    lines = [
        f"## 1. Quality on the labelled set ({len(labelled.documents)} documents, {n_chunks} chunks; "
        f"{len(labelled.questions)} questions: {by_lang['en']} English, {by_lang['ko']} Korean)",
        "",
        f"Document-level: a question is found when a chunk of its labelled document is in the top {RECALL_K} "
        f"(recall@{RECALL_K}); MRR@{MRR_K} is the mean of 1/rank of the first such chunk. The section column "
        f"counts the labelled section itself in the top {RECALL_K}.",
        "",
        f"| index | mode | en recall@{RECALL_K} | en MRR@{MRR_K} | ko recall@{RECALL_K} | ko MRR@{MRR_K} "
        f"| all recall@{RECALL_K} | all MRR@{MRR_K} | all section recall@{RECALL_K} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (index_name, label), ranked in results.items():
        en = score([r for r in ranked if r.question.lang == "en"])
        ko = score([r for r in ranked if r.question.lang == "ko"])
        overall = score(ranked)
        lines.append(
            f"| {index_name} | {label} | {en.recall:.3f} | {en.mrr:.3f} | {ko.recall:.3f} | {ko.mrr:.3f} "
            f"| {overall.recall:.3f} | {overall.mrr:.3f} | {overall.section_recall:.3f} |"
        )
    served = next(ranked for (_, label), ranked in results.items() if label == "hybrid, as served")
    overall = score(served)
    verdict = "met" if overall.recall >= TARGET_RECALL else "MISSED"
    lines += [
        "",
        f"Target: hybrid recall@{RECALL_K} ≥ {TARGET_RECALL} overall (embedded index, as served): "
        f"{overall.recall:.3f}, {verdict}.",
        "",
        f"Questions not found in the top {RECALL_K} by hybrid as served (embedded index), with the mode it ran in:",
        "",
        "| question | mode | labelled document | its rank | top 3 documents |",
        "|---|---|---|---|---|",
    ]
    for r in served:
        if not r.found():
            top = ", ".join(doc for doc, _ in r.hits[:3]) or "(no hits)"
            lines.append(
                f"| {r.question.id}: {r.question.text} | {r.mode_used} | {r.question.document} "
                f"| {r.rank or '-'} | {top} |"
            )
    return lines


# --- filler documents and the cached records --------------------------------------------

_FILLER_WORDS = {"en": "archive", "ko": "보관 문서"}


def _renumbered(sentence: str, rng: random.Random) -> str:
    return re.sub(r"\d+", lambda m: str(rng.randint(1, 10 ** len(m.group()) - 1)), sentence)


def filler_items(labelled: LabelledSet, n: int, *, seed: int = FILLER_SEED) -> list[Item]:
    """The first `n` chunks of a deterministic stream of filler documents, half English, half Korean.

    Each document is Markdown: a title and 2-4 sections whose headings and sentences are
    drawn from the labelled set's documents of that language (numbers changed), then
    extracted and chunked like an upload. The same seed gives the same chunks.
    """
    sentences: dict[str, list[str]] = {lang: [] for lang in LANGUAGES}
    headings: dict[str, list[str]] = {lang: [] for lang in LANGUAGES}
    titles: dict[str, list[str]] = {lang: [] for lang in LANGUAGES}
    for document in labelled.documents:
        titles[document.lang].append(document.extracted.title)
        for section in document.extracted.sections:
            sentences[document.lang] += sentences_split(section.text)
            if section.heading != document.extracted.title:
                headings[document.lang].append(section.heading)
    rng = random.Random(seed)  # noqa: S311 (reproducible filler, not secrets)
    items: list[Item] = []
    for number in itertools.count():
        if len(items) >= n:
            break
        lang = LANGUAGES[number % len(LANGUAGES)]
        lines = [f"# {rng.choice(titles[lang])} ({_FILLER_WORDS[lang]} {number:05d})", ""]
        for _ in range(rng.randint(2, 4)):
            lines += [f"## {rng.choice(headings[lang])}", ""]
            for _ in range(rng.randint(1, 3)):
                paragraph = " ".join(_renumbered(rng.choice(sentences[lang]), rng) for _ in range(rng.randint(2, 5)))
                lines += [paragraph, ""]
        document_id = f"filler-{number:05d}"
        extracted = document_extract(filename=f"{document_id}.md", data="\n".join(lines).encode())
        items += [(document_id, extracted.title, chunk) for chunk in chunks_split(extracted)]
    return items[:n]


def document_id_lang(document_id: str) -> str:
    """The language of a filler document (they alternate en, ko by number)."""
    return LANGUAGES[int(document_id.rsplit("-", 1)[1]) % len(LANGUAGES)]


def records_cache_path(labelled: LabelledSet, *, alias: str, n: int) -> Path:
    digest = hashlib.sha256(f"{FILLER_VERSION}:{FILLER_SEED}:{n}:{alias}".encode())
    for document in labelled.documents:
        digest.update(document.path.name.encode() + b"\0" + document.path.read_bytes())
    return CACHE_DIR / f"records-{alias}-{n}-{digest.hexdigest()[:12]}.npz"


def records_save(path: Path, records: Sequence[ChunkRecord]) -> None:
    """Vectors and everything else of `records` but the user, in one .npz (written whole, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = [[r.chunk_id, r.document_id, r.title, r.heading, r.position, r.text, list(r.terms)] for r in records]
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez(
        partial,
        vectors=np.stack([np.asarray(r.vector, dtype=np.float32) for r in records]),
        meta=np.frombuffer(json.dumps(meta, ensure_ascii=False).encode(), dtype=np.uint8),
    )
    os.replace(partial, path)
    for stale in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.npz"):
        if stale != path:
            stale.unlink()


def records_load(path: Path, *, user_id: str) -> list[ChunkRecord]:
    with np.load(path) as data:
        vectors = data["vectors"]
        meta = json.loads(data["meta"].tobytes())
    return [
        ChunkRecord(
            chunk_id=chunk_id,
            user_id=user_id,
            document_id=document_id,
            title=title,
            heading=heading,
            position=position,
            text=text,
            terms=tuple(terms),
            vector=vector,
        )
        for (chunk_id, document_id, title, heading, position, text, terms), vector in zip(meta, vectors, strict=True)
    ]


# --- indexes and in-process latency -----------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    what: str
    chunks: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.chunks / self.seconds


def index_fill(index: ChunkIndex, records: Sequence[ChunkRecord]) -> float:
    """Add `records` in ADD_BATCH calls; seconds taken."""
    started = time.perf_counter()
    for start in range(0, len(records), ADD_BATCH):
        index.chunks_add(list(records[start : start + ADD_BATCH]))
    return time.perf_counter() - started


@contextmanager
def qdrant_local(dim: int) -> Iterator[QdrantChunkIndex]:
    from qdrant_client import QdrantClient

    client = QdrantClient(location=":memory:")
    try:
        with warnings.catch_warnings():  # "payload indexes have no effect in the local Qdrant": known
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            index = QdrantChunkIndex(client, collection="bench_chunks", dim=dim)
        yield index
    finally:
        client.close()


@dataclass(frozen=True)
class LatencyRow:
    what: str
    chunks: int
    samples: dict[str, list[float]]  # system → milliseconds per call


def calls_alternating(calls: dict[str, Callable[[int], object]], n: int, *, warmup: int = 3) -> dict[str, list[float]]:
    """Time call(i) for i < n on every system, alternating which goes first so noise hits all alike."""
    for i in range(warmup):
        for call in calls.values():
            call(i)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for i in range(n):
        for name in names if i % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            calls[name](i)
            samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def inprocess_latency(
    retrievers: dict[str, Retriever],
    queries: Sequence[str],
    *,
    chunks: int,
    user_id: str = BENCH_USER,
    kinds: Sequence[str] = ("hybrid", "lexical", "dense"),
    where: str = "",
) -> list[LatencyRow]:
    """Hybrid search end to end (terms + query embedding + both indexes + fusion, as the search
    endpoint runs it), then each index alone on precomputed query terms and vectors; `kinds`
    picks among the three, `where` is appended to the rows' names."""
    any_retriever = next(iter(retrievers.values()))
    query_terms = [any_retriever.terms.terms(q) for q in queries]
    query_vectors = any_retriever.embedder.embed(list(queries))
    n = len(queries)

    def end_to_end(r: Retriever) -> Callable[[int], object]:
        return lambda i: r.search(user_id=user_id, query=queries[i], k=SEARCH_K)

    def lexical(r: Retriever) -> Callable[[int], object]:
        return lambda i: r.index.lexical_search(user_id=user_id, terms=query_terms[i], k=CANDIDATES)

    def dense(r: Retriever) -> Callable[[int], object]:
        return lambda i: r.index.dense_search(user_id=user_id, vector=query_vectors[i], k=CANDIDATES)

    calls = {
        "hybrid": (f"hybrid as served, end to end (k={SEARCH_K})", end_to_end),
        "lexical": (f"lexical, index only (k={CANDIDATES})", lexical),
        "dense": (f"dense, index only (k={CANDIDATES})", dense),
    }
    rows = []
    for kind in kinds:
        what, make = calls[kind]
        samples = calls_alternating({name: make(r) for name, r in retrievers.items()}, n)
        rows.append(LatencyRow(what + where, chunks, samples))
    return rows


def first_dense_ms(index: ChunkIndex, vector: np.ndarray, *, user_id: str = BENCH_USER) -> float:
    """The first dense search after a fill: for the embedded index, this loads the user's matrix."""
    started = time.perf_counter()
    index.dense_search(user_id=user_id, vector=vector, k=SEARCH_K)
    return (time.perf_counter() - started) * 1000


# --- the stack --------------------------------------------------------------------------


# The benchmark's account in a stack's fresh accounts database is its first (number 1): the
# records put in the stack's index beforehand are stored under that account's end users, as
# the service key then names them (webapp.accounts.identity.Principal.owner_for).
STACK_ACCOUNT_ID = 1


def stack_owner(user_id: str) -> str:
    return f"a{STACK_ACCOUNT_ID}/{user_id}"


@contextmanager
def stack_running(
    workdir: Path, name: str, records: Sequence[ChunkRecord], dim: int
) -> Iterator[tuple[StackConfig, dict[str, str]]]:
    """The real stack (nginx, both apps, greedy replies of TTFT_MAX_TOKENS) on free ports, with
    `records` already in the office app's index file; yields it with the Authorization header
    of the benchmark account's service key."""
    var_dir = workdir / f"var-{name}"
    index = SqliteChunkIndex(var_dir / "retrieval" / "office.sqlite3", dim=dim)
    index_fill(index, [dataclasses.replace(r, user_id=stack_owner(r.user_id)) for r in records])
    index.close()
    registry = registry_derive(
        REPO_ROOT / "models" / "registry.toml",
        workdir / "registry.toml",
        max_tokens=TTFT_MAX_TOKENS,
        temperature=0.0,
    )
    config = StackConfig(
        gateway_port=free_port(),
        office_port=free_port(),
        character_port=free_port(),
        var_dir=var_dir,
        registry=registry,
        extra_env=BENCH_ENV,
    )
    stack = Stack(config)
    started = time.perf_counter()
    stack.start()
    _log(f"stack '{name}' up in {time.perf_counter() - started:.1f} s ({len(records)} chunks in its index)")
    try:
        auth = {"Authorization": f"Bearer {stack.service_key('bench')}"}
        ids = stack.manage(
            "shell",
            "-v",
            "0",
            "-c",
            "from webapp.accounts.models import Account; print(*Account.objects.values_list('pk', flat=True))",
        ).split()
        if ids != [str(STACK_ACCOUNT_ID)]:
            raise RuntimeError(f"the benchmark stack's accounts are {ids}, not [{STACK_ACCOUNT_ID}]")
        yield config, auth
    finally:
        stack.stop()


def _search(session: requests.Session, base: str, *, user_id: str, query: str, k: int = SEARCH_K) -> dict:
    response = session.post(
        f"{base}/office/documents/search", json={"user_id": user_id, "query": query, "k": k}, timeout=60
    )
    response.raise_for_status()
    return response.json()


def http_latency(config: StackConfig, auth: dict[str, str], queries: Sequence[str], *, chunks: int) -> LatencyRow:
    bases = {
        "direct": f"http://127.0.0.1:{config.office_port}",
        "nginx": f"http://127.0.0.1:{config.gateway_port}",
    }
    with requests.Session() as session:
        session.headers.update(auth)
        calls = {
            name: (lambda i, base=base: _search(session, base, user_id=BENCH_USER, query=queries[i]))
            for name, base in bases.items()
        }
        if not calls["nginx"](0)["results"]:
            raise RuntimeError("the stack's index returned nothing for the benchmark user")
        samples = calls_alternating(calls, len(queries), warmup=5)
    return LatencyRow(f"POST /office/documents/search, hybrid (k={SEARCH_K})", chunks, samples)


def labelled_upload(
    config: StackConfig, auth: dict[str, str], labelled: LabelledSet, *, user_id: str
) -> tuple[Throughput, dict[str, str]]:
    """Upload every labelled document through nginx; (throughput, the app's document id → file stem)."""
    base = f"http://127.0.0.1:{config.gateway_port}"
    ids: dict[str, str] = {}
    chunks = 0
    started = time.perf_counter()
    with requests.Session() as session:
        session.headers.update(auth)
        for document in labelled.documents:
            response = session.post(
                f"{base}/office/documents",
                files={"file": (document.path.name, document.path.read_bytes(), "text/markdown")},
                data={"user_id": user_id},
                timeout=120,
            )
            if response.status_code != 201:
                raise RuntimeError(f"upload of {document.path.name}: {response.status_code} {response.text[:300]}")
            body = response.json()
            ids[body["id"]] = document.document_id
            chunks += body["chunks"]
    seconds = time.perf_counter() - started
    what = f"upload through nginx ({len(labelled.documents)} documents: extract, chunk, embed, store, index)"
    return Throughput(what, chunks, seconds), ids


# --- time to first token ----------------------------------------------------------------


@dataclass(frozen=True)
class TurnResult:
    client_ms: float  # message sent → first token frame received
    engine_ms: float  # the engine's TTFT: request submitted → first token (queue + prefill)
    prompt_tokens: int
    source_documents: tuple[str, ...]  # the app's document ids the reply was grounded on


@dataclass
class TtftResult:
    turns: dict[str, list[TurnResult]] = field(default_factory=lambda: {GROUNDED_USER: [], PLAIN_USER: []})
    search_ms: list[float] = field(default_factory=list)  # the search endpoint, same query, grounded user
    right_document: int = 0  # grounded turns whose sources include the labelled document
    questions: int = 0


async def _ws_turn(ws: websockets.ClientConnection, *, user_id: str, text: str) -> TurnResult:
    message = {"type": "message", "db_id": str(uuid.uuid4()), "user_id": user_id, "input_data": text}
    await ws.send(json.dumps(message))
    sent = time.perf_counter()
    first: float | None = None
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=180))
        if frame["type"] == "token" and first is None:
            first = time.perf_counter()
        elif frame["type"] == "done":
            break
        elif frame["type"] == "error":
            raise RuntimeError(f"benchmark turn failed: {frame}")
    if first is None:
        raise RuntimeError(f"no token before done for {text!r}")
    return TurnResult(
        client_ms=(first - sent) * 1000,
        engine_ms=float(frame["timings"]["ttft_ms"]),
        prompt_tokens=int(frame["usage"]["prompt_tokens"]),
        source_documents=tuple(s["document_id"] for s in frame.get("sources", [])),
    )


async def ttft_measure(
    config: StackConfig, auth: dict[str, str], questions: Sequence[Question], document_ids: dict[str, str]
) -> TtftResult:
    url = f"ws://127.0.0.1:{config.gateway_port}/office/ws/chat/"
    base = f"http://127.0.0.1:{config.gateway_port}"
    result = TtftResult(questions=len(questions))
    with requests.Session() as session:
        session.headers.update(auth)
        async with (
            websockets.connect(url, additional_headers=auth) as grounded,
            websockets.connect(url, additional_headers=auth) as plain,
        ):
            sockets = {GROUNDED_USER: grounded, PLAIN_USER: plain}
            for ws in sockets.values():
                await ws.recv()  # the status frame
            for user_id, ws in sockets.items():  # warm-up: the persona prefix into the KV cache
                await _ws_turn(ws, user_id=user_id, text="Hello, what can you help me with?")
            for i, question in enumerate(questions):
                order = list(sockets.items()) if i % 2 == 0 else list(sockets.items())[::-1]
                for user_id, ws in order:
                    turn = await _ws_turn(ws, user_id=user_id, text=question.text)
                    result.turns[user_id].append(turn)
                    if user_id == GROUNDED_USER:
                        found = {document_ids.get(d) for d in turn.source_documents}
                        result.right_document += question.document in found

                def search(text: str = question.text) -> float:
                    started = time.perf_counter()
                    _search(session, base, user_id=GROUNDED_USER, query=text, k=4)
                    return (time.perf_counter() - started) * 1000

                result.search_ms.append(await asyncio.to_thread(search))
    return result


def ttft_questions(labelled: LabelledSet, n: int) -> list[Question]:
    """`n` questions, English and Korean taking turns."""
    by_lang = [[q for q in labelled.questions if q.lang == lang] for lang in LANGUAGES]
    mixed = [q for pair in itertools.zip_longest(*by_lang) for q in pair if q is not None]
    return mixed[:n]


# --- the report -------------------------------------------------------------------------


def _p(values: Sequence[float], q: float) -> float:
    return _percentile(list(values), q)


def throughput_report(rows: Sequence[Throughput], notes: Sequence[str]) -> list[str]:
    lines = ["## 2a. Indexing throughput", "", "| stage | chunks | seconds | chunks/s |", "|---|---|---|---|"]
    lines += [f"| {r.what} | {r.chunks:,} | {r.seconds:.2f} | {r.per_s:,.1f} |" for r in rows]
    return [*lines, "", *notes]


def inprocess_report(rows: Sequence[LatencyRow], notes: Sequence[str]) -> list[str]:
    lines = [
        "## 2b. Search latency in-process (calls alternate between the two indexes)",
        "",
        "`chunks` is the searching user's chunk count. The last rows search the labelled set's user, first "
        "alone in an index, then beside the 10,000 chunks of another user in the same index.",
        "",
        "| chunks | call | index | n | p50 ms | p95 ms | p50 ratio ours/qdrant-local | p95 ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours, peer = row.samples["ours (sqlite)"], row.samples["qdrant-local"]
        p50_ratio = statistics.median(ours) / statistics.median(peer)
        p95_ratio = _p(ours, 0.95) / _p(peer, 0.95)
        for name, values in row.samples.items():
            lines.append(
                f"| {row.chunks:,} | {row.what} | {name} | {len(values)} | {statistics.median(values):.2f} "
                f"| {_p(values, 0.95):.2f} | {p50_ratio:.2f} | {p95_ratio:.2f} |"
            )
    return [*lines, "", *notes]


def http_report(rows: Sequence[LatencyRow]) -> list[str]:
    lines = [
        "## 2c. Search latency through the stack (HTTP keep-alive, loopback; nginx and direct alternate)",
        "",
        "| chunks | request | path | n | p50 ms | p95 ms | p50 ratio nginx/direct |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = statistics.median(row.samples["nginx"]) / statistics.median(row.samples["direct"])
        for name, values in row.samples.items():
            lines.append(
                f"| {row.chunks:,} | {row.what} | {name} | {len(values)} | {statistics.median(values):.2f} "
                f"| {_p(values, 0.95):.2f} | {ratio:.3f} |"
            )
    large = [row for row in rows if row.chunks == LARGE_CHUNKS]
    if large:
        p95 = _p(large[0].samples["nginx"], 0.95)
        verdict = "met" if p95 <= TARGET_P95_MS else "MISSED"
        lines += [
            "",
            f"Target: p95 ≤ {TARGET_P95_MS:.0f} ms at {LARGE_CHUNKS:,} chunks through nginx: {p95:.1f} ms, {verdict}.",
        ]
    return lines


def ttft_report(result: TtftResult) -> list[str]:
    grounded, plain = result.turns[GROUNDED_USER], result.turns[PLAIN_USER]
    lines = [
        f"## 3. Office reply time to first token, WebSocket through nginx ({result.questions} questions, "
        f"each asked by both users, alternating; replies greedy, {TTFT_MAX_TOKENS} tokens max)",
        "",
        "| user | n | TTFT p50 ms (client) | TTFT p95 ms | engine TTFT p50 ms (queue + prefill) | engine p95 ms "
        "| outside the engine p50 ms | prompt tokens p50 | sources per reply |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, turns in (("with documents (grounded)", grounded), ("without documents", plain)):
        client = [t.client_ms for t in turns]
        engine = [t.engine_ms for t in turns]
        outside = [t.client_ms - t.engine_ms for t in turns]
        lines.append(
            f"| {label} | {len(turns)} | {statistics.median(client):.1f} | {_p(client, 0.95):.1f} "
            f"| {statistics.median(engine):.1f} | {_p(engine, 0.95):.1f} | {statistics.median(outside):.1f} "
            f"| {statistics.median(t.prompt_tokens for t in turns):.0f} "
            f"| {statistics.mean(len(t.source_documents) for t in turns):.1f} |"
        )

    def diff(values: Callable[[TurnResult], float]) -> float:
        return statistics.median(values(g) - values(p) for g, p in zip(grounded, plain, strict=True))

    client_gap = statistics.median(t.client_ms for t in grounded) - statistics.median(t.client_ms for t in plain)
    client_gap95 = _p([t.client_ms for t in grounded], 0.95) - _p([t.client_ms for t in plain], 0.95)
    lines += [
        "",
        f"Retrieval adds {client_gap:.1f} ms to the TTFT p50 and {client_gap95:.1f} ms to the p95 "
        f"(median of the per-question differences: {diff(lambda t: t.client_ms):.1f} ms). Of that, per question "
        f"(medians): the engine's part, i.e. prefill of the longer prompt "
        f"(+{diff(lambda t: t.prompt_tokens):.0f} tokens): {diff(lambda t: t.engine_ms):.1f} ms; the part outside "
        f"the engine (search, building the grounded prompt): {diff(lambda t: t.client_ms - t.engine_ms):.1f} ms. "
        f"The search endpoint alone, same queries, k=4, through nginx: p50 {statistics.median(result.search_ms):.1f} "
        f"ms, p95 {_p(result.search_ms, 0.95):.1f} ms.",
        f"Grounded replies whose sources include the labelled document: {result.right_document}/{len(grounded)}.",
    ]
    return lines


# --- the run ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, no 10k, for a smoke run (< 2 min)")
    parser.add_argument("--skip-10k", action="store_true", help=f"no {LARGE_CHUNKS:,}-chunk measurements")
    parser.add_argument("--skip-ttft", action="store_true", help="no time-to-first-token measurement")
    parser.add_argument("--queries", type=int, default=None, help="search calls per configuration (default 200)")
    parser.add_argument("--ttft-questions", type=int, default=None, help="questions for the TTFT part (default 40)")
    parser.add_argument("--out", type=Path, default=None, help="the markdown copy (default var/perf/retrieval.md)")
    args = parser.parse_args(argv)
    quick = args.quick
    n_queries = args.queries or (30 if quick else 200)
    n_ttft = args.ttft_questions or (4 if quick else 40)
    small = 100 if quick else SMALL_CHUNKS
    with_large = not (quick or args.skip_10k)
    out = args.out or REPO_ROOT / "var" / "perf" / ("retrieval-quick.md" if quick else "retrieval.md")
    run_started = time.perf_counter()

    labelled = labelled_set_load()
    spec = embedding_spec_load(REPO_ROOT / "models" / "registry.toml")
    embedder = embedder_load(spec)
    terms = TermExtractor()
    terms.terms("warm up 준비")
    dim = embedder.dim
    queries = [q.text for q in itertools.islice(itertools.cycle(labelled.questions), n_queries)]
    retriever_kwargs = {"embedder": embedder, "terms": terms, "languages": spec.languages}

    # 1. Quality.
    print("quality ...", flush=True)
    set_records = records_build(labelled.items(), user_id=LABELLED_USER, embedder=embedder, terms=terms)
    with tempfile.TemporaryDirectory() as tmp, qdrant_local(dim) as peer_set:
        ours_set = SqliteChunkIndex(Path(tmp) / "labelled.sqlite3", dim=dim)
        index_fill(ours_set, set_records)
        index_fill(peer_set, set_records)
        quality = quality_evaluate(
            {"ours (sqlite)": ours_set, "qdrant-local": peer_set},
            labelled.questions,
            embedder=embedder,
            terms=terms,
            languages=spec.languages,
        )
        # FTS5 keeps one inverted index (and one set of BM25 statistics) for all users: a
        # user's lexical search is timed alone here, and beside 10,000 chunks of another below.
        tenant_rows = inprocess_latency(
            {
                "ours (sqlite)": Retriever(index=ours_set, **retriever_kwargs),
                "qdrant-local": Retriever(index=peer_set, **retriever_kwargs),
            },
            queries,
            chunks=len(set_records),
            user_id=LABELLED_USER,
            kinds=("lexical", "dense"),
            where="; this user alone in the index",
        )
        ours_set.close()

    # 2. Indexing and in-process latency.
    print("indexing and in-process search latency ...", flush=True)
    throughput: list[Throughput] = []
    notes: list[str] = []
    latency_rows: list[LatencyRow] = []
    latency_notes: list[str] = []
    small_items = filler_items(labelled, small)
    share_ko = sum(document_id_lang(i[0]) == "ko" for i in small_items) / len(small_items)
    started = time.perf_counter()
    small_records = records_build(small_items, user_id=BENCH_USER, embedder=embedder, terms=terms)
    throughput.append(
        Throughput(
            f"embed + terms (chunk_records_build), filler chunks ({share_ko:.0%} Korean)",
            len(small_records),
            time.perf_counter() - started,
        )
    )
    _log(f"embedded {len(small_records)} chunks: {throughput[-1].per_s:.1f} chunks/s")

    large_records: list[ChunkRecord] = []
    if with_large:
        cache = records_cache_path(labelled, alias=embedder.alias, n=LARGE_CHUNKS)
        if cache.exists():
            large_records = records_load(cache, user_id=BENCH_USER)
            notes.append(f"The {LARGE_CHUNKS:,} filler records (embedded earlier) were loaded from {cache}.")
        else:
            eta_min = (LARGE_CHUNKS - small) / throughput[0].per_s / 60
            _log(f"embedding {LARGE_CHUNKS - small:,} more filler chunks for the cache (~{eta_min:.0f} min, once)")
            started = time.perf_counter()
            rest = filler_items(labelled, LARGE_CHUNKS)[small:]
            large_records = small_records + records_build(rest, user_id=BENCH_USER, embedder=embedder, terms=terms)
            built_s = time.perf_counter() - started
            records_save(cache, large_records)
            throughput.append(
                Throughput("embed + terms, the rest of the 10k cache (built this run)", len(rest), built_s)
            )
            notes.append(f"The {LARGE_CHUNKS:,} filler records were embedded this run and cached in {cache}.")

    with tempfile.TemporaryDirectory() as tmp:
        for records in (small_records, large_records):
            if not records:
                continue
            n = len(records)
            ours = SqliteChunkIndex(Path(tmp) / f"bench-{n}.sqlite3", dim=dim)
            with qdrant_local(dim) as peer:
                ours_s, peer_s = index_fill(ours, records), index_fill(peer, records)
                throughput.append(Throughput(f"chunks_add, ours (sqlite), {n:,} chunks", n, ours_s))
                throughput.append(Throughput(f"chunks_add, qdrant-local, {n:,} chunks", n, peer_s))
                vector = embedder.embed([queries[0]])[0]
                latency_notes.append(
                    f"First dense search after filling {n:,} chunks (ours loads the user's matrix from SQLite): "
                    f"ours {first_dense_ms(ours, vector):.1f} ms, qdrant-local {first_dense_ms(peer, vector):.1f} ms."
                )
                retrievers = {
                    "ours (sqlite)": Retriever(index=ours, **retriever_kwargs),
                    "qdrant-local": Retriever(index=peer, **retriever_kwargs),
                }
                rows = inprocess_latency(retrievers, queries, chunks=n)
                latency_rows += rows
                _log(
                    f"in-process at {n:,} chunks: "
                    + ", ".join(
                        f"{r.what.split(',')[0]} {statistics.median(r.samples['ours (sqlite)']):.1f}/"
                        f"{statistics.median(r.samples['qdrant-local']):.1f} ms"
                        for r in rows
                    )
                )
                if records is large_records:
                    index_fill(ours, set_records)
                    index_fill(peer, set_records)
                    tenant_rows += inprocess_latency(
                        retrievers,
                        queries,
                        chunks=len(set_records),
                        user_id=LABELLED_USER,
                        kinds=("lexical", "dense"),
                        where=f"; this user beside {n:,} chunks of another",
                    )
            ours.close()
    latency_rows += tenant_rows
    gc.collect()  # the Qdrant collections and the 10k records' copies

    # Through the stack: search latency at each size; uploads and TTFT on the small one.
    http_rows: list[LatencyRow] = []
    ttft: TtftResult | None = None
    with tempfile.TemporaryDirectory() as tmp:
        print("through the stack ...", flush=True)
        with stack_running(Path(tmp), "small", small_records, dim) as (config, auth):
            http_rows.append(http_latency(config, auth, queries, chunks=len(small_records)))
            upload, document_ids = labelled_upload(config, auth, labelled, user_id=GROUNDED_USER)
            throughput.append(upload)
            if not args.skip_ttft:
                _log(f"time to first token, {n_ttft} questions x 2 users ...")
                ttft = asyncio.run(ttft_measure(config, auth, ttft_questions(labelled, n_ttft), document_ids))
        if large_records:
            with stack_running(Path(tmp), "large", large_records, dim) as (config, auth):
                http_rows.append(http_latency(config, auth, queries, chunks=len(large_records)))

    wall_s = time.perf_counter() - run_started
    command = "python -m perf.retrieval " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Retrieval benchmark",
        "",
        f"`{command.strip()}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPU cores; embedding "
        f"model {embedder.alias} (languages: {', '.join(spec.languages)}); "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; wall time {wall_s / 60:.1f} min.",
        "",
        *quality_report(labelled, quality),
        "",
        *throughput_report(throughput, notes),
        "",
        *inprocess_report(latency_rows, latency_notes),
        "",
        *http_report(http_rows),
    ]
    if ttft is not None:
        lines += ["", *ttft_report(ttft)]
    table = "\n".join(lines)
    print()
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n", encoding="utf-8")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
