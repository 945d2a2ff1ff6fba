"""Builders for real test documents, made in memory: PDFs (fpdf2, pypdf), .docx (python-docx), HTML.

Each builder returns the file's bytes. The text they write is what the extraction tests
assert on, so the expected strings live here next to the files that contain them.
"""

from __future__ import annotations

import io
from pathlib import Path

import docx
from fpdf import FPDF
from PIL import Image
from pypdf import PdfReader, PdfWriter

# Debian's fonts-noto-cjk ships only collections; index 1 of the Sans collection is "Noto Sans CJK KR".
CJK_FONT_PATH = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
CJK_FONT_KR_INDEX = 1

ENGLISH_PDF_PAGES = (
    "Quarterly report. Revenue grew by 3.5 percent in the third quarter.",
    "Second page. The warehouse in Busan doubled its capacity.",
)
KOREAN_PDF_TEXT = "회의록 요약입니다. 다음 주에 예산을 검토합니다."


def pdf_english(*, title: str = "Quarterly Report 2024") -> bytes:
    """Two pages of English text in a core font, with a /Title in the document info."""
    pdf = FPDF()
    pdf.set_title(title)
    pdf.set_font("helvetica", size=12)
    for page_text in ENGLISH_PDF_PAGES:
        pdf.add_page()
        pdf.multi_cell(0, 8, page_text)
    return bytes(pdf.output())


def pdf_korean() -> bytes:
    """One page of Korean text in an embedded subset of Noto Sans CJK KR; no /Title."""
    pdf = FPDF()
    pdf.add_font("noto-kr", fname=str(CJK_FONT_PATH), collection_font_number=CJK_FONT_KR_INDEX)
    pdf.set_font("noto-kr", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, KOREAN_PDF_TEXT)
    return bytes(pdf.output())


PDF_OWNER_PASSWORD = "owner-secret"


def pdf_encrypted(*, user_password: str) -> bytes:
    """`pdf_english()` encrypted with AES-256; an empty user password opens it without asking."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_english())))
    writer.encrypt(user_password=user_password, owner_password=PDF_OWNER_PASSWORD, algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def pdf_image_only() -> bytes:
    """A page holding only a raster image (what a scanner produces): no text layer at all."""
    image = Image.new("RGB", (200, 100), color=(200, 30, 30))
    pdf = FPDF()
    pdf.add_page()
    pdf.image(image, x=10, y=10, w=100)
    return bytes(pdf.output())


DOCX_CORE_TITLE = "Metadata title that loses to the Title paragraph"


def docx_with_headings(*, title_paragraph: str | None = "Employee Handbook", core_title: str = "") -> bytes:
    """Intro paragraph, Heading 1/Heading 2 sections, a table, and Korean text."""
    document = docx.Document()
    if core_title:
        document.core_properties.title = core_title
    if title_paragraph is not None:
        document.add_paragraph(title_paragraph, style="Title")
    document.add_paragraph("Welcome to the company.")
    document.add_heading("Leave policy", level=1)
    document.add_paragraph("Staff get twenty days of paid leave.")
    document.add_heading("Sick leave", level=2)
    document.add_paragraph("Sick leave needs a doctor's note after three days.")
    table = document.add_table(rows=3, cols=2)
    for row, (left, right) in zip(table.rows[:2], [("Grade", "Days"), ("Senior", "25")], strict=True):
        row.cells[0].text = left
        row.cells[1].text = right
    merged = table.cell(2, 0).merge(table.cell(2, 1))  # one cell spanning the whole row
    merged.text = "Interns get 10"
    document.add_heading("한국어 안내", level=1)
    document.add_paragraph("연차는 매년 갱신됩니다.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


HTML_PAGE = """<!DOCTYPE html>
<html>
<head>
  <title>Site page title</title>
  <style>body { color: red; } .hidden-style-rule {}</style>
  <script>var trackingSecret = "do-not-index";</script>
</head>
<body>
  <nav>
    <a href="/">Home</a>
    <a href="/about">About us</a>
  </nav>
  <p>Intro paragraph before any heading &amp; with an entity.</p>
  <h1>Travel <em>Guide</em></h1>
  <p>Seoul is the capital.<br>Busan is by the sea.</p>
  <ul><li>First item</li><li>Second item</li></ul>
  <h2>Food</h2>
  <div>Kimchi</div><div>Bibimbap</div>
  <script>console.log("inline-script-text")</script>
  <noscript>Enable JavaScript please</noscript>
  <table><tr><th>Dish</th><th>Price</th></tr><tr><td>Bulgogi</td><td>12000</td></tr></table>
  <h3>한국 음식</h3>
  <p>김치는   맛있어요.</p>
  <pre>line one
    indented line</pre>
</body>
</html>
"""
