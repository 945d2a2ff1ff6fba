"""The retrieval benchmark's pieces: the labelled set loads and its labels hold, the quality
evaluation computes recall and MRR for every mode, the filler is deterministic real text,
and the cached records round-trip. Fast: a hashed bag-of-terms embedder stands in for
the model (the benchmark itself runs the real one)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from perf import retrieval
from perf.retrieval import Question, Ranked
from webapp.retrieval.index import SqliteChunkIndex
from webapp.retrieval.lexical import TermExtractor
from webapp.retrieval.search import text_language


class HashEmbedder:
    """Each term hashed into one of `dim` buckets, then L2-normalised: no model, deterministic."""

    alias = "hash-test"
    dim = 64

    def __init__(self, terms: TermExtractor) -> None:
        self._terms = terms

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for term in self._terms.terms(text):
                out[row, int.from_bytes(hashlib.blake2b(term.encode(), digest_size=2).digest(), "big") % self.dim] += 1
            out[row, 0] += 1e-3  # never the zero vector
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def labelled() -> retrieval.LabelledSet:
    return retrieval.labelled_set_load()


@pytest.fixture(scope="module")
def terms() -> TermExtractor:
    return TermExtractor()


def test_the_labelled_set_is_valid_and_balanced_between_english_and_korean(labelled):
    for lang in retrieval.LANGUAGES:
        documents = [d for d in labelled.documents if d.lang == lang]
        questions = [q for q in labelled.questions if q.lang == lang]
        assert len(documents) >= 10 and len(questions) >= 20, lang
        assert {q.document for q in questions} == {d.document_id for d in documents}, "every document is asked about"
    for document in labelled.documents:
        words = len(document.path.read_text(encoding="utf-8").split())  # as `wc -w` counts them
        assert 200 <= words <= 800, f"{document.path.name}: {words} words"
        assert document.chunks and len({s.heading for s in document.extracted.sections}) >= 4, document.path.name
        assert text_language(document.extracted.text) == document.lang, document.path.name


def _set_copy(tmp_path: Path) -> Path:
    root = tmp_path / "set"
    shutil.copytree(retrieval.SET_DIR, root)
    return root


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('heading = "Working from abroad"', 'heading = "Working from Mars"', "no section 'Working from Mars'"),
        ('document = "en_leave_policy"', 'document = "en_leave"', "no document 'en_leave'"),
        ('id = "en-remote-chair"', 'id = "en-remote-days"', "duplicate id"),
    ],
)
def test_a_wrong_label_is_refused_naming_the_question(tmp_path, old, new, message):
    root = _set_copy(tmp_path)
    questions = root / "questions.toml"
    text = questions.read_text(encoding="utf-8")
    assert old in text
    questions.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(retrieval.LabelledSetError, match=message):
        retrieval.labelled_set_load(root)


def test_a_question_labelled_with_the_wrong_language_is_refused(tmp_path):
    root = _set_copy(tmp_path)
    questions = root / "questions.toml"
    text = questions.read_text(encoding="utf-8")
    questions.write_text(text.replace('lang = "ko"', 'lang = "en"', 1), encoding="utf-8")
    with pytest.raises(retrieval.LabelledSetError, match="does not match the text's language"):
        retrieval.labelled_set_load(root)


def test_score_counts_document_recall_mrr_and_section_recall():
    def ranked(document: str, hits: list[tuple[str, str]]) -> Ranked:
        return Ranked(Question("q", "en", "?", document, "H"), tuple(hits), "hybrid")

    results = [
        ranked("a", [("a", "H"), ("b", "H")]),  # rank 1, right section
        ranked("a", [("b", "H"), ("b", "X"), ("a", "X")]),  # rank 3, wrong section
        ranked("a", [("b", "H")] * 5 + [("a", "H")]),  # rank 6: outside the top 5, inside 10
        ranked("a", []),  # not found
    ]
    score = retrieval.score(results)
    assert score.n == 4
    assert score.recall == pytest.approx(2 / 4)
    assert score.mrr == pytest.approx((1 + 1 / 3 + 1 / 6) / 4)
    assert score.section_recall == pytest.approx(1 / 4)


def test_the_quality_evaluation_ranks_every_question_in_every_mode(labelled, terms, tmp_path):
    embedder = HashEmbedder(terms)
    records = retrieval.records_build(labelled.items(), user_id=retrieval.LABELLED_USER, embedder=embedder, terms=terms)
    assert len(records) == sum(len(d.chunks) for d in labelled.documents)
    index = SqliteChunkIndex(tmp_path / "set.sqlite3", dim=embedder.dim)
    retrieval.index_fill(index, records)

    results = retrieval.quality_evaluate(
        {"ours": index}, labelled.questions, embedder=embedder, terms=terms, languages=("en",)
    )
    index.close()

    assert {label for _, label in results} == {mode.label for mode in retrieval.QUALITY_MODES}
    for ranked in results.values():
        assert [r.question for r in ranked] == list(labelled.questions)
        score = retrieval.score(ranked)
        assert 0.0 <= score.section_recall <= score.recall <= 1.0 and 0.0 <= score.mrr <= 1.0
    served = results[("ours", "hybrid, as served")]
    assert {r.mode_used for r in served if r.question.lang == "ko"} == {"lexical"}, "Korean falls back to BM25"
    assert {r.mode_used for r in served if r.question.lang == "en"} == {"hybrid"}
    forced = results[("ours", "hybrid, fusion forced")]
    assert {r.mode_used for r in forced} == {"hybrid"}
    # Not a quality bar: a sanity check that the labels point at the documents the words come from.
    assert retrieval.score(results[("ours", "lexical (BM25)")]).recall > 0.5

    report = "\n".join(retrieval.quality_report(labelled, results))
    assert "| ours | lexical (BM25) |" in report and "Target: hybrid recall@5" in report


def test_filler_is_deterministic_real_text_in_both_languages(labelled):
    items = retrieval.filler_items(labelled, 60)
    assert items == retrieval.filler_items(labelled, 60)
    assert items != retrieval.filler_items(labelled, 60, seed=1)
    assert len(items) == 60
    assert len({(document_id, chunk.position) for document_id, _, chunk in items}) == 60
    languages = {text_language(chunk.text) for _, _, chunk in items}
    assert languages == {"en", "ko"}
    for document_id, _, chunk in items:
        assert text_language(chunk.text) == retrieval.document_id_lang(document_id)
        assert 0 < len(chunk.text) <= 1000


def test_cached_records_round_trip_and_replace_a_stale_cache(labelled, terms, tmp_path):
    records = retrieval.records_build(
        retrieval.filler_items(labelled, 12), user_id="someone", embedder=HashEmbedder(terms), terms=terms
    )
    stale = tmp_path / "records-hash-test-12-000000000000.npz"
    stale.write_bytes(b"old")
    path = tmp_path / "records-hash-test-12-abcdefabcdef.npz"
    retrieval.records_save(path, records)
    assert not stale.exists() and list(tmp_path.iterdir()) == [path]

    loaded = retrieval.records_load(path, user_id="bench")
    assert len(loaded) == len(records)
    for before, after in zip(records, loaded, strict=True):
        assert after.user_id == "bench"
        assert (after.chunk_id, after.document_id, after.title, after.heading, after.position, after.text) == (
            before.chunk_id,
            before.document_id,
            before.title,
            before.heading,
            before.position,
            before.text,
        )
        assert after.terms == before.terms
        np.testing.assert_array_equal(after.vector, before.vector)


def test_the_cache_key_follows_the_model_and_the_size(labelled):
    one = retrieval.records_cache_path(labelled, alias="model-a", n=10_000)
    assert one == retrieval.records_cache_path(labelled, alias="model-a", n=10_000)
    assert one != retrieval.records_cache_path(labelled, alias="model-b", n=10_000)
    assert one != retrieval.records_cache_path(labelled, alias="model-a", n=1_000)
    assert one.parent == retrieval.CACHE_DIR and "model-a" in one.name


def test_ttft_questions_alternate_languages(labelled):
    picked = retrieval.ttft_questions(labelled, 6)
    assert [q.lang for q in picked] == ["en", "ko"] * 3
