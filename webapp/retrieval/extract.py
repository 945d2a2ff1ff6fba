"""Uploaded file bytes → plain text in heading-delimited sections, ready for chunking.

One entry point, `document_extract`, for the types the office app indexes: plain text,
Markdown, HTML, PDF and Word (.docx). The type comes from the file name's extension, never
from sniffing the bytes, so a mislabelled file fails loudly as `invalid_file` instead of
being indexed as something else.

Every failure a user can cause is an `ExtractionError` with a stable `code` for clients and
a message a person can act on. Nothing here knows about Django, storage or embeddings.
"""

from __future__ import annotations

import codecs
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

import docx
from docx.table import Table
from pypdf import PasswordType, PdfReader
from selectolax.lexbor import LexborHTMLParser, LexborNode

from webapp.core.errors import ApplicationError

SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}

PDF_MAX_PAGES = 2000
# A .docx is a zip: a few kilobytes can inflate to gigabytes inside python-docx's XML parser.
DOCX_MAX_UNZIPPED_BYTES = 256 * 1024 * 1024


class ExtractionError(ApplicationError):
    """A file that cannot be indexed; `code` is stable for clients, str(exc) is a clear human message.

    Codes: "unsupported_type" (415), "empty_file", "invalid_file", "encrypted_pdf", "no_text" (422).
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code, status=415 if code == "unsupported_type" else 422, field="file")


@dataclass(frozen=True)
class Section:
    heading: str  # "" before the first heading
    text: str  # plain text, paragraphs separated by "\n\n"


@dataclass(frozen=True)
class ExtractedDocument:
    title: str
    kind: str  # "txt" | "md" | "html" | "pdf" | "docx"
    sections: tuple[Section, ...]

    @property
    def text(self) -> str:
        """Every heading and section body in order, paragraphs separated by blank lines."""
        return "\n\n".join(part for section in self.sections for part in (section.heading, section.text) if part)


def document_extract(*, filename: str, data: bytes) -> ExtractedDocument:
    """Extract the text of one uploaded file, or raise `ExtractionError`.

    `filename` may carry a client-side path ("C:\\fakepath\\a.pdf"); only its last part is
    used. Title: the first top-level heading (Markdown `#`, HTML <h1>, Word "Title" or
    "Heading 1"), else the metadata title (PDF /Title, Word core properties, HTML <title>),
    else the file name without its extension.
    """
    name = PurePosixPath(filename.replace("\\", "/")).name
    path = PurePosixPath(name)
    extension = path.suffix.lower()
    kind = SUPPORTED_EXTENSIONS.get(extension)
    if kind is None:
        supported = ", ".join(SUPPORTED_EXTENSIONS)
        what = f"files of type {extension}" if extension else "files without an extension"
        raise ExtractionError(f"{what} cannot be indexed; supported types: {supported}", code="unsupported_type")
    if not data:
        raise ExtractionError("the file is empty", code="empty_file")

    extractors: dict[str, Callable[[bytes], tuple[str, tuple[Section, ...]]]] = {
        "txt": _txt_extract,
        "md": _md_extract,
        "html": _html_extract,
        "pdf": _pdf_extract,
        "docx": _docx_extract,
    }
    title, sections = extractors[kind](data)
    if not sections:
        if kind == "pdf":
            raise ExtractionError(
                "the PDF has no extractable text; it may be scanned images — OCR is not supported", code="no_text"
            )
        raise ExtractionError("the file contains no text", code="empty_file")
    return ExtractedDocument(title=title or _line_clean(path.stem) or name, kind=kind, sections=sections)


# --- normalisation ------------------------------------------------------------------------

# Vertical tab is Word's manual line break; form feed is a PDF/text page break.
_LINE_BREAKS = str.maketrans({"\x0b": "\n", "\x0c": "\n", "\u2028": "\n", "\u2029": "\n\n"})
# Other C0 controls are never text. pypdf emits NULs for some CID fonts (fpdf2's CJK subsets
# among them), and a stray one would otherwise end up in the index and the prompt.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufeff]")
_TRAILING_SPACE = re.compile(r"[^\S\n]+$", re.MULTILINE)
_MANY_NEWLINES = re.compile(r"\n{3,}")
_ANY_SPACE = re.compile(r"\s+")


def _normalise(text: str) -> str:
    """NFC, \\n line ends, no control characters or trailing spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_LINE_BREAKS)
    text = _CONTROL_CHARS.sub("", text)
    text = _TRAILING_SPACE.sub("", text)
    return _MANY_NEWLINES.sub("\n\n", text).strip("\n")


def _line_clean(text: str) -> str:
    """A heading or title: one line, single spaces."""
    return _ANY_SPACE.sub(" ", _normalise(text)).strip()


class _SectionsBuilder:
    """Collects paragraphs under the current heading; a heading closes the section before it."""

    def __init__(self) -> None:
        self._sections: list[Section] = []
        self._heading = ""
        self._parts: list[str] = []

    def heading(self, text: str) -> None:
        heading = _line_clean(text)
        if not heading:  # an empty <h2></h2> or styled blank paragraph separates nothing
            return
        self._flush()
        self._heading = heading

    def paragraph(self, text: str) -> None:
        self._parts.append(text)

    def build(self) -> tuple[Section, ...]:
        self._flush()
        return tuple(self._sections)

    def _flush(self) -> None:
        body = _normalise("\n\n".join(self._parts)).strip()
        self._parts = []
        # A heading with no body before the next heading adds nothing to retrieve.
        if body:
            self._sections.append(Section(heading=self._heading, text=body))


# --- plain text and Markdown --------------------------------------------------------------


def _text_decode(data: bytes) -> str:
    # Notepad's "Unicode" is UTF-16 with a BOM; it is full of NULs, so check before the binary test.
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    elif b"\x00" in data:
        raise ExtractionError("the file contains NUL bytes; it looks like a binary file, not text", code="invalid_file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        # Korean Windows still saves "ANSI" text as CP949 (a superset of EUC-KR).
        return data.decode("cp949")
    except UnicodeDecodeError:
        raise ExtractionError("the file is not UTF-8 or CP949 text", code="invalid_file") from None


def _txt_extract(data: bytes) -> tuple[str, tuple[Section, ...]]:
    builder = _SectionsBuilder()
    builder.paragraph(_normalise(_text_decode(data)))
    return "", builder.build()


_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_MD_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _md_extract(data: bytes) -> tuple[str, tuple[Section, ...]]:
    builder = _SectionsBuilder()
    title = ""
    lines: list[str] = []
    fence = ""  # the opening fence while inside a code block, where "#" lines are code
    for line in _normalise(_text_decode(data)).split("\n"):
        fence_match = _MD_FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            if not fence:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = ""
        heading_match = None if fence or fence_match else _MD_HEADING.match(line)
        if heading_match is None:
            lines.append(line)
            continue
        builder.paragraph("\n".join(lines))
        lines = []
        heading = heading_match.group(2) or ""
        builder.heading(heading)
        if not title and len(heading_match.group(1)) == 1:
            title = _line_clean(heading)
    builder.paragraph("\n".join(lines))
    return title, builder.build()


# --- HTML ---------------------------------------------------------------------------------

_HTML_DROP = ["script", "style", "noscript", "template", "svg"]
_HTML_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_HTML_PARAGRAPH_BLOCKS = {
    "address", "article", "aside", "blockquote", "caption", "details", "dl", "fieldset", "figcaption", "figure",
    "footer", "form", "header", "hr", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "ul",
}  # fmt: skip
_HTML_LINE_BLOCKS = {"dd", "div", "dt", "legend", "li", "option", "tbody", "tfoot", "thead", "tr"}
_HTML_CELLS = {"td", "th"}


class _HtmlText:
    """Text and line breaks in document order, with HTML's whitespace collapsing."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self._newlines = 2  # how many line breaks end the text so far; the start counts as a paragraph break

    def text(self, text: str, *, pre: bool) -> None:
        if not pre:
            text = _ANY_SPACE.sub(" ", text)
            if self._newlines or (self.pieces and self.pieces[-1].endswith(" ")):
                text = text.lstrip(" ")
        if text:
            self.pieces.append(text)
            self._newlines = len(text) - len(text.rstrip("\n"))

    def newline(self, count: int) -> None:
        """End the line (1) or paragraph (2); nested blocks ending together do not stack blank lines."""
        if count > self._newlines:
            self.pieces.append("\n" * (count - self._newlines))
            self._newlines = count

    def line_break(self) -> None:
        """A <br>: unlike a block's end, two in a row do make a blank line."""
        self.pieces.append("\n")
        self._newlines += 1

    def take(self) -> str:
        text = "".join(self.pieces)
        self.pieces = []
        self._newlines = 2
        return text


def _html_extract(data: bytes) -> tuple[str, tuple[Section, ...]]:
    # Decoded by the same rules as .txt (UTF-8, then CP949) so Korean pages saved by old
    # Windows tools work; selectolax 1.0 removed the Modest `HTMLParser`, hence lexbor.
    tree = LexborHTMLParser(_text_decode(data))
    tree.strip_tags(_HTML_DROP)
    builder = _SectionsBuilder()
    out = _HtmlText()
    first_h1 = ""
    pre_depth = 0
    stack = [(tree.root, False)] if tree.root is not None else []
    # Explicit stack rather than recursion: hostile pages nest tens of thousands of elements.
    while stack:
        node, leaving = stack.pop()
        tag = node.tag or ""
        if leaving:
            if tag == "pre":
                pre_depth -= 1
            if tag in _HTML_PARAGRAPH_BLOCKS:
                out.newline(2)
            elif tag in _HTML_LINE_BLOCKS:
                out.newline(1)
            continue
        if node.is_text_node:
            out.text(node.text_content or "", pre=pre_depth > 0)
            continue
        if not node.is_element_node or tag == "head":
            continue
        if tag in _HTML_HEADINGS:
            heading = node.text(deep=True, separator="")
            builder.paragraph(out.take())
            builder.heading(heading)
            if tag == "h1" and not first_h1:
                first_h1 = _line_clean(heading)
            continue
        if tag == "br":
            out.line_break()
        elif tag in _HTML_PARAGRAPH_BLOCKS:
            out.newline(2)
        elif tag in _HTML_LINE_BLOCKS:
            out.newline(1)
        elif tag in _HTML_CELLS and _html_previous_cell(node):
            out.text(" | ", pre=True)
        if tag == "pre":
            pre_depth += 1
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(list(node.iter(include_text=True))))
    builder.paragraph(out.take())
    title_node = tree.css_first("title")
    title = first_h1 or (_line_clean(title_node.text()) if title_node is not None else "")
    return title, builder.build()


def _html_previous_cell(node: LexborNode) -> bool:
    """Whether a <td>/<th> has a cell before it in its row (so it needs a " | " separator)."""
    sibling = node.prev
    while sibling is not None and not sibling.is_element_node:
        sibling = sibling.prev
    return sibling is not None and sibling.tag in _HTML_CELLS


# --- PDF ----------------------------------------------------------------------------------


def _pdf_extract(data: bytes) -> tuple[str, tuple[Section, ...]]:
    # pypdf raises everything from PdfReadError to KeyError and RecursionError on damaged
    # files, so catch Exception; MemoryError is re-raised because it is the process's problem.
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
    except MemoryError:
        raise
    except Exception as exc:
        raise _pdf_invalid() from exc
    if encrypted:
        # Many PDFs carry only an owner password (no printing/copying) and open with "".
        try:
            decrypted = reader.decrypt("") != PasswordType.NOT_DECRYPTED
        except MemoryError:
            raise
        except Exception:
            decrypted = False
        if not decrypted:
            raise ExtractionError(
                "the PDF is password-protected; remove the password and upload again", code="encrypted_pdf"
            )
    try:
        page_count = len(reader.pages)
    except MemoryError:
        raise
    except Exception as exc:
        raise _pdf_invalid() from exc
    if page_count > PDF_MAX_PAGES:
        raise ExtractionError(f"the PDF has more than {PDF_MAX_PAGES} pages", code="invalid_file")

    builder = _SectionsBuilder()
    failed = 0
    for index in range(page_count):
        try:
            text = reader.pages[index].extract_text()
        except MemoryError:
            raise
        except Exception:
            # One broken font or content stream should not cost the user the other pages.
            failed += 1
            continue
        # Pages have no headings of their own; a page boundary is at least a paragraph break.
        builder.paragraph(text or "")
    if failed == page_count:
        raise _pdf_invalid()
    return _pdf_title(reader), builder.build()


def _pdf_invalid() -> ExtractionError:
    return ExtractionError("the file is not a readable PDF (damaged or truncated)", code="invalid_file")


def _pdf_title(reader: PdfReader) -> str:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except MemoryError:
        raise
    except Exception:
        return ""  # a broken Info dictionary is no reason to refuse the text
    return _line_clean(str(title)) if title else ""


# --- Word ---------------------------------------------------------------------------------

_DOCX_HEADING_STYLE = re.compile(r"(?i)^(?:heading [1-9]|title)$")
_DOCX_TOP_STYLE = re.compile(r"(?i)^(?:heading 1|title)$")


def _docx_invalid() -> ExtractionError:
    return ExtractionError(
        "the file is not a valid .docx document (old .doc files are not supported; save as .docx)",
        code="invalid_file",
    )


def _docx_extract(data: bytes) -> tuple[str, tuple[Section, ...]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unzipped = sum(member.file_size for member in archive.infolist())
    except MemoryError:
        raise
    except Exception as exc:  # BadZipFile, but also EOFError, struct.error… on a damaged directory
        raise _docx_invalid() from exc
    if unzipped > DOCX_MAX_UNZIPPED_BYTES:
        raise ExtractionError(
            f"the .docx expands to more than {DOCX_MAX_UNZIPPED_BYTES // (1024 * 1024)} MB", code="invalid_file"
        )
    # python-docx raises KeyError, ValueError, lxml errors… on a zip that is not a Word file.
    try:
        return _docx_read(data)
    except MemoryError:
        raise
    except Exception as exc:
        raise _docx_invalid() from exc


def _docx_read(data: bytes) -> tuple[str, tuple[Section, ...]]:
    document = docx.Document(io.BytesIO(data))
    builder = _SectionsBuilder()
    first_heading = ""
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            builder.paragraph(_docx_table_text(block))
            continue
        style = block.style.name if block.style is not None else ""
        if style and _DOCX_HEADING_STYLE.match(style):
            builder.heading(block.text)
            if not first_heading and _DOCX_TOP_STYLE.match(style):
                first_heading = _line_clean(block.text)
        else:
            builder.paragraph(block.text)
    metadata_title = _line_clean(document.core_properties.title or "")
    return first_heading or metadata_title, builder.build()


def _docx_table_text(table: Table) -> str:
    """One line per row, cells joined with " | "; a merged cell is written once."""
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            # A horizontally merged cell appears once per grid column it spans, as the same <w:tc>.
            if previous is not None and cell._tc is previous:
                continue
            previous = cell._tc
            cells.append(_ANY_SPACE.sub(" ", cell.text).strip())
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)
