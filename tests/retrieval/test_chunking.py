"""sentences_split and chunks_split: Korean and English sentences, section-bound chunks, sizes and overlap."""

from __future__ import annotations

import itertools

import pytest

from webapp.retrieval.chunking import Chunk, chunks_split, sentences_split
from webapp.retrieval.extract import ExtractedDocument, Section, document_extract


def document_of(*sections: tuple[str, str]) -> ExtractedDocument:
    return ExtractedDocument(
        title="t", kind="txt", sections=tuple(Section(heading=heading, text=text) for heading, text in sections)
    )


def numbered_sentences(count: int, *, start: int = 0) -> list[str]:
    """Distinct sentences of 40-odd characters, so any chunk can be located in its section."""
    return [f"Sentence number {index:05d} is about topic {index % 7}." for index in range(start, start + count)]


def without_whitespace(text: str) -> str:
    return "".join(text.split())


def overlap_between(previous: str, following: str, *, longest: int) -> str:
    """The longest end of `previous`, up to `longest` characters, that `following` starts with."""
    for size in range(min(len(previous), len(following), longest), 0, -1):
        if previous.endswith(following[:size]):
            return following[:size]
    return ""


# --- sentences ----------------------------------------------------------------------------


def test_english_abbreviations_decimals_and_urls_do_not_end_sentences() -> None:
    text = (
        "Dr. Smith paid $3.14 for coffee, e.g. a latte. She moved to the U.S. with Mr. Kim in 2020. "
        "Docs are at https://example.com/guide.html?page=2. Is that clear? Yes! "
        "Apples, pears, etc. are fruit. I said no. No. 5 is next."
    )

    assert sentences_split(text) == [
        "Dr. Smith paid $3.14 for coffee, e.g. a latte.",
        "She moved to the U.S. with Mr. Kim in 2020.",
        "Docs are at https://example.com/guide.html?page=2.",
        "Is that clear?",
        "Yes!",
        "Apples, pears, etc. are fruit.",
        "I said no.",
        "No. 5 is next.",
    ]


def test_korean_sentences_split_with_and_without_a_space_after_the_period() -> None:
    text = "오늘 회의는 3.5시간 걸렸습니다. 다음 회의는 언제인가요? 금요일이에요.그때 뵙겠습니다."

    assert sentences_split(text) == [
        "오늘 회의는 3.5시간 걸렸습니다.",
        "다음 회의는 언제인가요?",
        "금요일이에요.",
        "그때 뵙겠습니다.",
    ]


def test_mixed_korean_and_english_and_cjk_full_stops() -> None:
    text = '서울은 크다. The meeting ended at 5 p.m. Then we left! "정말요?" 그렇다니까요… 中文句子。第二句。'

    assert sentences_split(text) == [
        "서울은 크다.",
        "The meeting ended at 5 p.m.",
        "Then we left!",
        '"정말요?"',
        "그렇다니까요…",
        "中文句子。",
        "第二句。",
    ]


def test_paragraph_breaks_and_list_items_end_sentences_but_wrapped_lines_do_not() -> None:
    text = (
        "Shopping list\n- apples\n- 배 두 개\n1) bread\n"
        "This sentence wraps\nonto a second line. Then ends.\n\n"
        "A paragraph without a full stop\n\nGrade | Days\nSenior | 25"
    )

    assert sentences_split(text) == [
        "Shopping list",
        "- apples",
        "- 배 두 개",
        "1) bread",
        "This sentence wraps\nonto a second line.",
        "Then ends.",
        "A paragraph without a full stop",
        "Grade | Days",
        "Senior | 25",
    ]


def test_initials_and_quotes_before_lowercase_stay_in_one_sentence() -> None:
    assert sentences_split('J. K. Rowling wrote it. "Stop!" he said. Fine.') == [
        "J. K. Rowling wrote it.",
        '"Stop!" he said.',
        "Fine.",
    ]


def test_blank_text_has_no_sentences() -> None:
    assert sentences_split("") == []
    assert sentences_split(" \n\n\t ") == []


def test_sentences_are_stripped_verbatim_slices_that_cover_the_text() -> None:
    text = "  First one.   Second one!\n\n  Third one?  "

    sentences = sentences_split(text)

    assert sentences == ["First one.", "Second one!", "Third one?"]
    assert without_whitespace("".join(sentences)) == without_whitespace(text)


# --- chunks -------------------------------------------------------------------------------


def test_chunks_never_cross_a_section_and_carry_its_heading() -> None:
    first = " ".join(numbered_sentences(30))
    second = " ".join(numbered_sentences(30, start=100))
    document = document_of(("Alpha", first), ("Beta", second))

    chunks = chunks_split(document, target_chars=300, overlap_chars=60, max_chars=400)

    assert {chunk.heading for chunk in chunks} == {"Alpha", "Beta"}
    for chunk in chunks:
        assert chunk.text in (first if chunk.heading == "Alpha" else second)
    headings = [chunk.heading for chunk in chunks]
    assert headings == sorted(headings)  # all of Alpha, then all of Beta


def test_positions_run_consecutively_across_the_whole_document() -> None:
    text = " ".join(numbered_sentences(20))
    document = document_of(("A", text), ("", "   "), ("B", text))

    chunks = chunks_split(document, target_chars=200, overlap_chars=50, max_chars=300)

    assert [chunk.position for chunk in chunks] == list(range(len(chunks)))
    assert len(chunks) > 4


def test_empty_and_whitespace_sections_produce_no_chunks() -> None:
    document = document_of(("Empty", ""), ("Blank", " \n\n\t"), ("Real", "Only sentence here."))

    assert chunks_split(document) == [Chunk(position=0, heading="Real", text="Only sentence here.")]


def test_chunks_pack_whole_sentences_up_to_the_target() -> None:
    sentences = numbered_sentences(40)
    text = " ".join(sentences)

    chunks = chunks_split(document_of(("", text)), target_chars=250, overlap_chars=0, max_chars=400)

    for index, chunk in enumerate(chunks):
        assert len(chunk.text) <= 250
        pieces = sentences_split(chunk.text)
        assert all(piece in sentences for piece in pieces)  # no sentence cut in two
        if index + 1 < len(chunks):
            next_sentence = sentences_split(chunks[index + 1].text)[0]
            assert len(chunk.text) + 1 + len(next_sentence) > 250  # the next one would not have fitted
    assert without_whitespace("".join(chunk.text for chunk in chunks)) == without_whitespace(text)


def test_each_chunk_starts_with_the_previous_chunks_last_sentences_within_the_overlap() -> None:
    sentences = numbered_sentences(40)
    text = " ".join(sentences)

    chunks = chunks_split(document_of(("", text)), target_chars=300, overlap_chars=100, max_chars=400)

    assert len(chunks) > 3
    for previous, following in itertools.pairwise(chunks):
        overlap = overlap_between(previous.text, following.text, longest=len(previous.text) - 1)
        # Sentences are 39 characters: two fit in 100 (with the space between), three do not.
        assert sentences_split(overlap) == sentences_split(previous.text)[-2:]
        assert len(overlap) <= 100
        assert len(following.text) <= 400


def test_overlap_never_repeats_a_whole_chunk() -> None:
    # Every sentence is longer than the target, so each chunk is one sentence; carrying it
    # into the next chunk would repeat the whole chunk.
    sentences = [f"Long sentence {index} " + "word " * 30 + "end." for index in range(5)]

    chunks = chunks_split(document_of(("", " ".join(sentences))), target_chars=100, overlap_chars=99, max_chars=400)

    assert [chunk.text for chunk in chunks] == sentences


def test_a_sentence_longer_than_max_chars_is_cut_at_whitespace() -> None:
    words = [f"w{index:04d}" for index in range(600)]  # 3,599 characters, no full stop
    text = " ".join(words)

    chunks = chunks_split(document_of(("", text)), target_chars=700, overlap_chars=150, max_chars=1000)

    assert len(chunks) == 4
    assert all(len(chunk.text) <= 1000 for chunk in chunks)
    assert " ".join(chunk.text for chunk in chunks) == text  # cut between words, nothing repeated or lost


def test_a_run_without_whitespace_is_cut_at_max_chars() -> None:
    run = "가나다라마바사아자차" * 250  # 2,500 characters of Korean with no spaces

    chunks = chunks_split(document_of(("", run)), target_chars=700, overlap_chars=150, max_chars=1000)

    assert [len(chunk.text) for chunk in chunks] == [1000, 1000, 500]
    assert "".join(chunk.text for chunk in chunks) == run


def test_overlap_gives_way_before_a_long_sentence_so_no_chunk_exceeds_max_chars() -> None:
    long_sentence = "X" * 990 + " tail."  # 996 characters: with the carried sentence it would be 1,008
    text = f"First one. Second one. {long_sentence}"

    chunks = chunks_split(document_of(("", text)), target_chars=50, overlap_chars=40, max_chars=1000)

    assert [chunk.text for chunk in chunks] == ["First one. Second one.", long_sentence]


def test_overlap_is_kept_before_a_long_sentence_that_still_fits_with_it() -> None:
    long_sentence = "X" * 900 + " tail."

    chunks = chunks_split(
        document_of(("", f"First one. Second one. {long_sentence}")), target_chars=50, overlap_chars=40, max_chars=1000
    )

    assert [chunk.text for chunk in chunks] == ["First one. Second one.", f"Second one. {long_sentence}"]


def test_korean_document_is_chunked_at_sentence_ends() -> None:
    sentences = [f"{index}번째 안건은 예산 검토입니다." for index in range(60)]
    text = " ".join(sentences)

    chunks = chunks_split(document_of(("회의록", text)), target_chars=200, overlap_chars=40, max_chars=300)

    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.heading == "회의록"
        assert chunk.text.endswith("검토입니다.")
        assert all(piece in sentences for piece in sentences_split(chunk.text))


def test_chunks_of_an_extracted_markdown_file_follow_its_headings() -> None:
    body = " ".join(numbered_sentences(12))
    data = f"# Guide\n\n{body}\n\n## 설치\n\n설치는 간단합니다. 명령 하나면 됩니다.\n".encode()

    chunks = chunks_split(document_extract(filename="guide.md", data=data), target_chars=200, overlap_chars=50)

    assert chunks[0].heading == "Guide"
    assert chunks[-1] == Chunk(position=len(chunks) - 1, heading="설치", text="설치는 간단합니다. 명령 하나면 됩니다.")


def test_a_megabyte_document_is_fully_covered_by_its_chunks() -> None:
    paragraphs = []
    for index in range(0, 26400, 12):
        english = " ".join(numbered_sentences(12, start=index))
        paragraphs.append(f"{english} 이 문단은 {index}번째 문단입니다.")
    text = "\n\n".join(paragraphs)
    assert len(text) > 1_000_000

    chunks = chunks_split(document_of(("", text)))

    rebuilt = chunks[0].text
    for previous, following in itertools.pairwise(chunks):
        overlap = overlap_between(previous.text, following.text, longest=300)
        assert len(overlap) <= 150
        rebuilt += following.text[len(overlap) :]
    assert without_whitespace(rebuilt) == without_whitespace(text)
    assert all(len(chunk.text) <= 1000 for chunk in chunks)


@pytest.mark.parametrize(
    ("target", "overlap", "maximum"),
    [(0, 0, 10), (20, 5, 10), (100, 100, 200), (100, -1, 200)],
)
def test_inconsistent_sizes_are_rejected(target: int, overlap: int, maximum: int) -> None:
    with pytest.raises(ValueError, match="need 0"):
        chunks_split(document_of(("", "Text.")), target_chars=target, overlap_chars=overlap, max_chars=maximum)
