"""Search terms for BM25: Korean morphemes from Kiwi, English words, numbers.

Korean glues particles and endings to words (회의록에서, 찾아주세요), so splitting on spaces
would make every inflected form a different term. Kiwi splits them into morphemes; we keep
the content-bearing ones (nouns, verb and adjective stems, roots, foreign words, numbers)
and drop particles and endings. English words (Kiwi tags them SL) are lower-cased, split
on punctuation, stripped of a plural "s" and filtered against a short stop-word list.
"""

from __future__ import annotations

import re
import threading

from kiwipiepy import Kiwi

# Nouns, proper nouns, verb/adjective stems, roots, foreign text, numbers, Hanja.
_CONTENT_TAGS = ("NNG", "NNP", "NR", "VV", "VA", "XR", "SL", "SN", "SH", "NNB")
# Bound nouns and light verbs so frequent that they only add noise to scores.
_KOREAN_STOP = frozenset({"것", "수", "등", "때", "중", "데", "바", "하", "되", "있", "없", "이", "않"})
_WORD = re.compile(r"[a-z0-9]+")
_STOP_TEXT = (
    "a an and are as at be but by can could did do does for from had has have how i if in into is it its "
    "me my no not of on or our s so than that the their them then there these they this to us was we were "
    "what when where which who why will with would you your"
)
_STOP_WORDS = frozenset(_STOP_TEXT.split())


class TermExtractor:
    """Text → list of terms. Kiwi's first call builds its model (about a second); thread-safe."""

    def __init__(self) -> None:
        self._kiwi = Kiwi()
        self._lock = threading.Lock()  # Kiwi objects are not documented as thread-safe

    def terms(self, text: str) -> list[str]:
        with self._lock:
            tokens = self._kiwi.tokenize(text)
        out: list[str] = []
        for token in tokens:
            tag = token.tag.split("-")[0]  # Kiwi marks irregular stems as VV-R / VA-I
            if tag not in _CONTENT_TAGS:
                continue
            if tag in ("SL", "SN"):
                out.extend(_english_terms(token.form))
            elif token.form not in _KOREAN_STOP:
                out.append(token.form.lower())
        return out


def _english_terms(form: str) -> list[str]:
    words = []
    for word in _WORD.findall(form.lower()):
        if word in _STOP_WORDS or (len(word) == 1 and not word.isdigit()):
            continue
        words.append(_singular(word))
    return words


def _singular(word: str) -> str:
    """A light plural strip (reports → report, policies → policy); good enough for BM25 recall."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word
