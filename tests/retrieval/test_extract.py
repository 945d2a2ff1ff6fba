"""document_extract: real files of every supported type in, sections and titles out; bad files rejected by code."""

from __future__ import annotations

import io
import unicodedata
import zipfile

import docx
import pytest
from pypdf import PdfWriter

from tests.retrieval import files
from webapp.retrieval import extract
from webapp.retrieval.extract import SUPPORTED_EXTENSIONS, ExtractedDocument, ExtractionError, Section, document_extract


def headings_and_texts(document: ExtractedDocument) -> list[tuple[str, str]]:
    return [(section.heading, section.text) for section in document.sections]


# --- plain text ---------------------------------------------------------------------------


def test_utf8_text_is_one_untitled_section_titled_by_the_filename() -> None:
    data = b"First paragraph line one.\nline two.\n\nSecond paragraph.\n"

    document = document_extract(filename="meeting-notes.txt", data=data)

    assert document.kind == "txt"
    assert document.title == "meeting-notes"
    assert document.sections == (Section(heading="", text="First paragraph line one.\nline two.\n\nSecond paragraph."),)


def test_utf8_bom_is_not_part_of_the_text() -> None:
    document = document_extract(filename="a.txt", data=b"\xef\xbb\xbfHello there.")

    assert document.text == "Hello there."


def test_korean_utf8_text_round_trips() -> None:
    text = "안녕하세요. 회의는 내일 오전 10시입니다."

    document = document_extract(filename="회의.txt", data=text.encode())

    assert document.text == text
    assert document.title == "회의"


def test_korean_cp949_text_from_windows_is_decoded() -> None:
    text = "연차 신청은 일주일 전에 해주세요.\r\n팀장 승인이 필요합니다."

    document = document_extract(filename="notice.txt", data=text.encode("cp949"))

    assert document.text == "연차 신청은 일주일 전에 해주세요.\n팀장 승인이 필요합니다."


def test_utf16_text_with_bom_is_decoded_despite_its_nul_bytes() -> None:
    data = "메모: 우유 사기".encode("utf-16")  # Notepad's "Unicode": BOM + UTF-16-LE
    assert b"\x00" in data

    assert document_extract(filename="memo.txt", data=data).text == "메모: 우유 사기"


def test_text_is_normalised_nfc_with_unix_newlines_no_trailing_spaces_and_single_blank_lines() -> None:
    decomposed = unicodedata.normalize("NFD", "한글")
    assert len(decomposed) > 2  # macOS writes Hangul as separate jamo
    data = f"{decomposed} title   \r\n\r\n\r\n\r\nnext\tline \x0cpage two".encode()

    document = document_extract(filename="a.txt", data=data)

    assert document.text == "한글 title\n\nnext\tline\npage two"


# --- Markdown -----------------------------------------------------------------------------

MARKDOWN = """Preface before any heading.

# Project Atlas #

Atlas indexes documents.

## Setup

Install it:

```sh
# not a heading: a shell comment
pip install atlas
```

### 설치 확인

설치가 끝나면 `atlas --version`을 실행하세요.
#hashtag is not a heading
"""


def test_markdown_atx_headings_start_sections_and_the_first_h1_is_the_title() -> None:
    document = document_extract(filename="README.md", data=MARKDOWN.encode())

    assert document.kind == "md"
    assert document.title == "Project Atlas"
    assert headings_and_texts(document) == [
        ("", "Preface before any heading."),
        ("Project Atlas", "Atlas indexes documents."),
        ("Setup", "Install it:\n\n```sh\n# not a heading: a shell comment\npip install atlas\n```"),
        ("설치 확인", "설치가 끝나면 `atlas --version`을 실행하세요.\n#hashtag is not a heading"),
    ]


def test_markdown_without_an_h1_is_titled_by_the_filename() -> None:
    document = document_extract(filename="notes.markdown", data=b"## Only a second-level heading\n\nBody text.")

    assert document.title == "notes"
    assert headings_and_texts(document) == [("Only a second-level heading", "Body text.")]


# --- HTML ---------------------------------------------------------------------------------


def test_html_drops_script_style_and_noscript_and_splits_sections_at_headings() -> None:
    document = document_extract(filename="guide.html", data=files.HTML_PAGE.encode())

    assert document.kind == "html"
    assert headings_and_texts(document) == [
        ("", "Home About us\n\nIntro paragraph before any heading & with an entity."),
        ("Travel Guide", "Seoul is the capital.\nBusan is by the sea.\n\nFirst item\nSecond item"),
        ("Food", "Kimchi\nBibimbap\n\nDish | Price\nBulgogi | 12000"),
        ("한국 음식", "김치는 맛있어요.\n\nline one\n    indented line"),
    ]
    for hidden in ("trackingSecret", "inline-script-text", "color: red", "Enable JavaScript", "Site page title"):
        assert hidden not in document.text


def test_html_title_is_the_first_h1_else_the_title_element_else_the_filename() -> None:
    with_h1 = document_extract(filename="page.htm", data=files.HTML_PAGE.encode())
    title_only = document_extract(filename="page.htm", data=b"<title> Site  title </title><p>Body.</p>")
    neither = document_extract(filename="page.htm", data=b"<h2>Sub</h2><p>Body.</p>")

    assert (with_h1.title, title_only.title, neither.title) == ("Travel Guide", "Site title", "page")


def test_html_adjacent_blocks_and_breaks_keep_words_apart() -> None:
    html = b"<div>alpha<div>beta</div>gamma</div><p>one<br>two<br><br>three</p><span>x</span><b>y</b>"

    document = document_extract(filename="a.html", data=html)

    assert document.text == "alpha\nbeta\ngamma\n\none\ntwo\n\nthree\n\nxy"


def test_html_saved_as_cp949_is_decoded() -> None:
    html = "<html><body><h1>공지</h1><p>내일은 휴무입니다.</p></body></html>".encode("cp949")

    document = document_extract(filename="notice.html", data=html)

    assert headings_and_texts(document) == [("공지", "내일은 휴무입니다.")]


# --- PDF ----------------------------------------------------------------------------------


def test_pdf_pages_become_paragraphs_and_the_metadata_title_is_used() -> None:
    document = document_extract(filename="report.pdf", data=files.pdf_english())

    assert document.kind == "pdf"
    assert document.title == "Quarterly Report 2024"
    assert headings_and_texts(document) == [("", "\n\n".join(files.ENGLISH_PDF_PAGES))]


def test_korean_pdf_text_round_trips() -> None:
    document = document_extract(filename="회의록.pdf", data=files.pdf_korean())

    assert "예산을" in document.text
    assert document.text == files.KOREAN_PDF_TEXT
    assert document.title == "회의록"


def test_pdf_with_only_an_owner_password_is_read_without_asking() -> None:
    document = document_extract(filename="locked.pdf", data=files.pdf_encrypted(user_password=""))

    assert document.text == "\n\n".join(files.ENGLISH_PDF_PAGES)


# --- Word ---------------------------------------------------------------------------------


def test_docx_heading_styles_start_sections_and_tables_are_read_row_by_row() -> None:
    document = document_extract(filename="handbook.docx", data=files.docx_with_headings())

    assert document.kind == "docx"
    assert headings_and_texts(document) == [
        ("Employee Handbook", "Welcome to the company."),
        ("Leave policy", "Staff get twenty days of paid leave."),
        (
            "Sick leave",
            "Sick leave needs a doctor's note after three days.\n\nGrade | Days\nSenior | 25\nInterns get 10",
        ),
        ("한국어 안내", "연차는 매년 갱신됩니다."),
    ]


def test_docx_title_is_the_title_paragraph_before_the_metadata_title() -> None:
    data = files.docx_with_headings(core_title=files.DOCX_CORE_TITLE)

    assert document_extract(filename="handbook.docx", data=data).title == "Employee Handbook"


def test_docx_title_falls_back_to_heading_1_then_metadata_then_filename() -> None:
    no_title_paragraph = files.docx_with_headings(title_paragraph=None)
    with_core_title = files.docx_with_headings(title_paragraph=None, core_title=files.DOCX_CORE_TITLE)

    assert document_extract(filename="handbook.docx", data=no_title_paragraph).title == "Leave policy"
    # Heading 1 beats the metadata too: both files have one.
    assert document_extract(filename="handbook.docx", data=with_core_title).title == "Leave policy"


def test_docx_without_headings_uses_the_metadata_title_then_the_filename() -> None:
    plain = _docx_plain("Just a paragraph.")
    titled = _docx_plain("Just a paragraph.", core_title="Policy 2024")

    assert document_extract(filename="plain.docx", data=plain).title == "plain"
    assert document_extract(filename="plain.docx", data=titled).title == "Policy 2024"


def _docx_plain(text: str, *, core_title: str = "") -> bytes:
    document = docx.Document()
    document.core_properties.title = core_title
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


# --- names and types ----------------------------------------------------------------------


def test_extension_is_case_insensitive_and_a_client_path_is_ignored() -> None:
    document = document_extract(filename="C:\\fakepath\\Notes.TXT", data=b"Hello.")

    assert (document.kind, document.title) == ("txt", "Notes")


def test_every_supported_extension_maps_to_its_kind() -> None:
    assert SUPPORTED_EXTENSIONS == {
        ".txt": "txt",
        ".md": "md",
        ".markdown": "md",
        ".html": "html",
        ".htm": "html",
        ".pdf": "pdf",
        ".docx": "docx",
    }


def test_unsupported_type_message_names_the_extension_and_lists_the_supported_ones() -> None:
    with pytest.raises(ExtractionError) as caught:
        document_extract(filename="setup.exe", data=b"MZ\x90\x00")

    assert caught.value.code == "unsupported_type"
    assert ".exe" in str(caught.value)
    assert all(extension in str(caught.value) for extension in SUPPORTED_EXTENSIONS)


# --- the error table ----------------------------------------------------------------------


def _truncated_pdf() -> bytes:
    data = files.pdf_english()
    return data[: len(data) // 2]


def _zip_that_is_not_a_docx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a word document")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("filename", "data", "code"),
    [
        pytest.param("empty.txt", b"", "empty_file", id="empty-bytes-txt"),
        pytest.param("empty.pdf", b"", "empty_file", id="empty-bytes-pdf"),
        pytest.param("empty.docx", b"", "empty_file", id="empty-bytes-docx"),
        pytest.param("blank.txt", b"  \r\n\t\n   \n", "empty_file", id="whitespace-only-txt"),
        pytest.param("blank.md", b"\n\n   \n", "empty_file", id="whitespace-only-md"),
        pytest.param("blank.html", b"<script>var x = 1;</script><p> </p>", "empty_file", id="html-without-text"),
        pytest.param("nul.txt", b"text with a \x00 NUL", "invalid_file", id="nul-in-txt"),
        pytest.param("latin.txt", b"neither utf-8 nor cp949 \x80\x80", "invalid_file", id="undecodable-txt"),
        pytest.param("garbage.pdf", b"this is not a pdf at all" * 20, "invalid_file", id="garbage-pdf"),
        pytest.param("truncated.pdf", _truncated_pdf(), "invalid_file", id="truncated-pdf"),
        pytest.param("secret.pdf", files.pdf_encrypted(user_password="hunter2"), "encrypted_pdf", id="encrypted-pdf"),
        pytest.param("scan.pdf", files.pdf_image_only(), "no_text", id="image-only-pdf"),
        pytest.param("garbage.docx", b"PK\x03\x04 definitely not a zip", "invalid_file", id="garbage-docx"),
        pytest.param("other.docx", _zip_that_is_not_a_docx(), "invalid_file", id="zip-not-docx"),
        pytest.param("report.pdf.docx", files.pdf_english(), "invalid_file", id="pdf-named-docx"),
        pytest.param("setup.exe", b"MZ\x90\x00", "unsupported_type", id="exe"),
        pytest.param("photo.png", b"\x89PNG\r\n\x1a\n", "unsupported_type", id="png"),
        pytest.param("README", b"plain words", "unsupported_type", id="no-extension"),
        pytest.param("empty.exe", b"", "unsupported_type", id="type-checked-before-emptiness"),
    ],
)
def test_bad_file_raises_extraction_error_with_code(filename: str, data: bytes, code: str) -> None:
    with pytest.raises(ExtractionError) as caught:
        document_extract(filename=filename, data=data)

    assert caught.value.code == code
    assert str(caught.value)


def test_error_messages_tell_the_user_what_to_do() -> None:
    with pytest.raises(ExtractionError) as encrypted:
        document_extract(filename="secret.pdf", data=files.pdf_encrypted(user_password="hunter2"))
    with pytest.raises(ExtractionError) as scanned:
        document_extract(filename="scan.pdf", data=files.pdf_image_only())
    with pytest.raises(ExtractionError) as undecodable:
        document_extract(filename="latin.txt", data=b"caf\xe9\x80")

    assert "remove the password" in str(encrypted.value)
    assert "OCR is not supported" in str(scanned.value)
    assert "not UTF-8 or CP949" in str(undecodable.value)


def test_pdf_with_more_than_2000_pages_is_rejected() -> None:
    writer = PdfWriter()
    for _ in range(extract.PDF_MAX_PAGES + 1):
        writer.add_blank_page(width=100, height=100)
    buffer = io.BytesIO()
    writer.write(buffer)

    with pytest.raises(ExtractionError) as caught:
        document_extract(filename="bomb.pdf", data=buffer.getvalue())

    assert caught.value.code == "invalid_file"
    assert "2000 pages" in str(caught.value)


def test_docx_that_unzips_past_the_limit_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    data = files.docx_with_headings()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        unzipped = sum(member.file_size for member in archive.infolist())
    monkeypatch.setattr(extract, "DOCX_MAX_UNZIPPED_BYTES", unzipped - 1)

    with pytest.raises(ExtractionError) as caught:
        document_extract(filename="bomb.docx", data=data)

    assert caught.value.code == "invalid_file"
    assert "expands to more than" in str(caught.value)


def test_document_text_joins_headings_and_bodies_in_order() -> None:
    document = document_extract(filename="README.md", data=b"intro\n\n# One\n\nfirst\n\n## Two\n\nsecond")

    assert document.text == "intro\n\nOne\n\nfirst\n\nTwo\n\nsecond"
