"""Extracted documents → overlapping, sentence-aligned chunks for embedding and search.

Sentence splitting is rule-based (regular expressions and a few loops, no model) and
handles Korean and English together: it must keep up with multi-megabyte uploads.

Every chunk is a verbatim slice of one section's text, so a chunk never mixes two
headings and a search hit can be shown exactly as it appears in the document.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from webapp.retrieval.extract import ExtractedDocument


@dataclass(frozen=True)
class Chunk:
    position: int  # 0-based order within the document
    heading: str  # the section heading it came from ("" if none)
    text: str


_CLOSERS = "\"'”’)\\]}」』》〉"  # closing quotes and brackets that belong to the sentence before them
_OPENERS = "(\\[{\"'“‘"
# Where a sentence may end. Chinese and Japanese put no space after 。！？, so those always
# end one; . ! ? … only where whitespace or the end follows, which skips the periods inside
# numbers, URLs and "U.S."; and between two Hangul syllables, because Korean is often typed
# with no space after the period ("했다.그리고") and that is never a decimal or a URL.
_SENTENCE_END = re.compile(
    rf"[。！？]+[{_CLOSERS}]*"
    rf"|[.!?…]+[{_CLOSERS}]*(?=\s|\Z)"
    rf"|(?<=[가-힣])[.!?…]+[{_CLOSERS}]*(?=[가-힣])"
)
# English exceptions to the above, matched so that they end where the candidate would. An
# abbreviation or initial ("e.g. ", "Mr. ", "U.S. ", "J. K. Rowling"), and a number
# abbreviation before a number ("No. 5", "p. 12"; "I said no." still ends). Each pattern
# starts with the character before the word: a leading character class lets the regex
# engine skip ahead quickly, where a leading lookbehind made this the slowest step.
_ABBREVIATIONS = (
    "mr|mrs|ms|dr|prof|sr|jr|st|vs|etc|e\\.g|i\\.e|u\\.s|u\\.k|u\\.n|cf|al|approx|dept|fig|inc|ltd|corp"
    "|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_NUMBER_ABBREVIATIONS = "no|nos|vol|p|pp|ch|sec|art"
_ABBREVIATION_WORD = rf"(?i:{_ABBREVIATIONS}|[a-z])\.(?=\s)|(?i:{_NUMBER_ABBREVIATIONS})\.(?=\s+\d)"
_ABBREVIATION_END = re.compile(rf"[\s{_OPENERS}](?:{_ABBREVIATION_WORD})")
_ABBREVIATION_AT_START = re.compile(_ABBREVIATION_WORD)
# Punctuation before a lowercase word does not end an English sentence ("etc. and",
# '"Stop!" he said'); the caller ignores this after Hangul, where case means nothing.
_BEFORE_LOWERCASE = re.compile(rf"[.!?…]+[{_CLOSERS}]*(?=\s+[a-z])")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
# A line that is a list item or a table row ("a | b" is how extraction writes tables) is a
# unit of its own even without final punctuation.
_LIST_LINE = re.compile(
    r"^[^\S\n]*(?:[-*+•·▪◦‣–—]|\d{1,3}[.)]|[A-Za-z가-힣][.)]|[①-⑳])[^\S\n]+[^\n]*$"
    r"|^[^\n]*\S \| \S[^\n]*$",
    re.MULTILINE,
)


def _is_hangul(char: str) -> bool:
    return "가" <= char <= "힣"


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence in `text`, whitespace trimmed, empty ones dropped."""
    cuts: set[int] = {0, len(text)}
    cuts.update(match.start() for match in _PARAGRAPH_BREAK.finditer(text))
    for match in _LIST_LINE.finditer(text):
        cuts.add(match.start())
        cuts.add(match.end())
    not_ends = {match.end() for match in _ABBREVIATION_END.finditer(text)}
    if start_match := _ABBREVIATION_AT_START.match(text):
        not_ends.add(start_match.end())
    not_ends.update(
        match.end()
        for match in _BEFORE_LOWERCASE.finditer(text)
        if match.start() == 0 or not _is_hangul(text[match.start() - 1])
    )
    cuts.update(end for match in _SENTENCE_END.finditer(text) if (end := match.end()) not in not_ends)
    ordered = sorted(cuts)
    spans: list[tuple[int, int]] = []
    for start, end in itertools.pairwise(ordered):
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            spans.append((start, end))
    return spans


def sentences_split(text: str) -> list[str]:
    """Split Korean and/or English text into sentences, each stripped; blank input gives [].

    Boundaries: after . ! ? … (and 。！？) followed by whitespace or the end of the text,
    after a period between two Hangul syllables, at blank lines, and around list-item and
    table-row lines. Not after decimals (3.14), common abbreviations (e.g., Mr., U.S.),
    initials, or punctuation inside URLs, nor before a lowercase English word.
    """
    return [text[start:end] for start, end in _sentence_spans(text)]


def _span_hard_split(text: str, span: tuple[int, int], *, max_chars: int) -> list[tuple[int, int]]:
    """Cut one over-long sentence into pieces of at most max_chars, at the last whitespace that fits."""
    start, end = span
    pieces: list[tuple[int, int]] = []
    while end - start > max_chars:
        window = text[start : start + max_chars + 1]
        cut = max(window.rfind(" "), window.rfind("\n"), window.rfind("\t"))
        if cut <= 0:
            # No whitespace to cut at (a URL, or a long run of Korean with no spaces).
            cut = max_chars
        piece_end = start + cut
        while text[piece_end - 1].isspace():
            piece_end -= 1
        pieces.append((start, piece_end))
        start += cut
        while start < end and text[start].isspace():
            start += 1
    if start < end:
        pieces.append((start, end))
    return pieces


def _section_chunk_spans(text: str, *, target_chars: int, overlap_chars: int, max_chars: int) -> list[tuple[int, int]]:
    units: list[tuple[int, int]] = []
    for span in _sentence_spans(text):
        units.extend(_span_hard_split(text, span, max_chars=max_chars))

    chunks: list[tuple[int, int]] = []
    carried: list[tuple[int, int]] = []
    index = 0
    while index < len(units):
        members = list(carried)
        # The overlap gives way before a long sentence would push the chunk past max_chars.
        while members and units[index][1] - members[0][0] > max_chars:
            members.pop(0)
        # At least one new sentence per chunk, so the loop always advances.
        members.append(units[index])
        index += 1
        while index < len(units) and units[index][1] - members[0][0] <= target_chars:
            members.append(units[index])
            index += 1
        chunks.append((members[0][0], members[-1][1]))

        # Carry the trailing whole sentences that fit in overlap_chars, never the first one
        # (repeating the whole chunk would be no progress).
        keep = len(members)
        while keep > 1 and members[-1][1] - members[keep - 1][0] <= overlap_chars:
            keep -= 1
        carried = members[keep:]
    return chunks


def chunks_split(
    document: ExtractedDocument, *, target_chars: int = 700, overlap_chars: int = 150, max_chars: int = 1000
) -> list[Chunk]:
    """Pack each section's sentences into chunks of about target_chars, never across sections.

    A chunk ends before the sentence that would take it past target_chars; a sentence longer
    than max_chars is cut at whitespace into pieces of at most max_chars. Each chunk after the
    first in a section starts with the previous chunk's last whole sentences, up to
    overlap_chars of them. Every chunk is at most max_chars long. Positions run 0, 1, 2…
    across the whole document.
    """
    if not 0 < target_chars <= max_chars:
        raise ValueError(f"need 0 < target_chars <= max_chars, got {target_chars} and {max_chars}")
    if not 0 <= overlap_chars < target_chars:
        raise ValueError(f"need 0 <= overlap_chars < target_chars, got {overlap_chars} and {target_chars}")
    chunks: list[Chunk] = []
    for section in document.sections:
        spans = _section_chunk_spans(
            section.text, target_chars=target_chars, overlap_chars=overlap_chars, max_chars=max_chars
        )
        for start, end in spans:
            chunks.append(Chunk(position=len(chunks), heading=section.heading, text=section.text[start:end]))
    return chunks
