"""Documents through nginx with the real embedding model: upload → list → search → delete,
isolation between users, and the table of bad uploads and searches."""

from __future__ import annotations

import time

import pytest
import requests
from fpdf import FPDF

from tests.retrieval import files

POLICY_MD = b"""# Travel policy

## Booking flights
Employees book flights through the travel desk at least fourteen days before departure.
Economy class is the default for trips shorter than six hours.

## Expense claims
Receipts for hotels and taxis are submitted within thirty days of returning.
Claims without receipts are reimbursed only up to twenty euros.
"""

KOREAN_TXT = (
    "연차 휴가 규정\n\n"
    "연차 휴가는 입사 1년 후부터 15일이 주어집니다. 휴가를 쓰려면 팀장에게 3일 전까지 신청해야 합니다.\n\n"
    "병가는 의사의 진단서가 있으면 유급으로 처리됩니다."
).encode()


def pdf_with(text: str) -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def upload(http: requests.Session, gateway: str, user_id: str, name: str, data: bytes, **form: str):
    return http.post(
        f"{gateway}/office/documents",
        data={"user_id": user_id, **form},
        files={"file": (name, data)},
        timeout=120,
    )


def search(http: requests.Session, gateway: str, user_id: str, query: str, **extra: object):
    return http.post(
        f"{gateway}/office/documents/search", json={"user_id": user_id, "query": query, **extra}, timeout=60
    )


def documents_of(http: requests.Session, gateway: str, user_id: str) -> list[dict]:
    response = http.get(f"{gateway}/office/documents", params={"user_id": user_id}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["documents"]


def test_upload_search_and_delete_a_markdown_document(http, gateway, user_id):
    response = upload(http, gateway, user_id, "travel.md", POLICY_MD)
    assert response.status_code == 201, response.text
    document = response.json()
    assert document["status"] == "ready"
    assert document["title"] == "Travel policy"
    assert document["kind"] == "md" and document["size"] == len(POLICY_MD)
    assert document["chunks"] >= 2  # two headings, two chunks at least

    assert [d["id"] for d in documents_of(http, gateway, user_id)] == [document["id"]]
    detail = http.get(f"{gateway}/office/documents/{document['id']}", params={"user_id": user_id}, timeout=30)
    assert detail.status_code == 200 and detail.json()["chunks"] == document["chunks"]

    # Worded differently from the text: "receipt deadline" vs "submitted within thirty days".
    found = search(http, gateway, user_id, "How long do I have to hand in my hotel receipts?", k=3)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["mode"] == "hybrid"
    best = body["results"][0]
    assert best["document_id"] == document["id"]
    assert "thirty days" in best["text"]
    assert best["heading"] == "Expense claims"
    assert [r["score"] for r in body["results"]] == sorted((r["score"] for r in body["results"]), reverse=True)

    deleted = http.delete(f"{gateway}/office/documents/{document['id']}", params={"user_id": user_id}, timeout=30)
    assert deleted.status_code == 204
    assert documents_of(http, gateway, user_id) == []
    assert search(http, gateway, user_id, "hotel receipts thirty days").json()["results"] == []
    again = http.get(f"{gateway}/office/documents/{document['id']}", params={"user_id": user_id}, timeout=30)
    assert again.status_code == 404


def test_another_user_cannot_see_search_or_delete_a_document(http, gateway, user_id):
    document = upload(http, gateway, user_id, "travel.md", POLICY_MD).json()
    other = f"{user_id}-other"
    assert documents_of(http, gateway, other) == []
    assert search(http, gateway, other, "flights travel desk economy class").json()["results"] == []
    for method in ("get", "delete"):
        response = getattr(http, method)(
            f"{gateway}/office/documents/{document['id']}", params={"user_id": other}, timeout=30
        )
        assert response.status_code == 404, method
        assert response.json()["error"]["field"] == "document_id"
    assert search(http, gateway, user_id, "flights travel desk").json()["results"][0]["document_id"] == document["id"]


def test_korean_text_is_found_by_a_korean_question(http, gateway, user_id):
    document = upload(http, gateway, user_id, "휴가.txt", KOREAN_TXT).json()
    assert document["status"] == "ready"
    body = search(http, gateway, user_id, "휴가 신청은 언제까지 해야 하나요?").json()
    # The default embedding model is English-only, so a Korean query is ranked by BM25 (Kiwi).
    assert body["mode"] == "lexical"
    assert body["results"][0]["document_id"] == document["id"]
    assert "신청" in body["results"][0]["text"]


def test_a_pdf_is_extracted_and_searchable(http, gateway, user_id):
    text = "The warehouse in Busan closes at 6 pm on Fridays. Deliveries after that wait until Monday."
    response = upload(http, gateway, user_id, "hours.pdf", pdf_with(text), title="Warehouse hours")
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "Warehouse hours"
    best = search(http, gateway, user_id, "When does the Busan warehouse shut on Friday?").json()["results"][0]
    assert best["document_id"] == response.json()["id"]
    assert "6 pm" in best["text"]


def test_a_large_document_is_indexed_in_the_background(http, gateway, user_id):
    sections = "\n\n".join(
        f"## Section {i}\n" + " ".join(f"Paragraph {i} sentence {j} about topic{i} and widget{j}." for j in range(12))
        for i in range(60)
    )
    response = upload(http, gateway, user_id, "big.md", f"# Big manual\n\n{sections}".encode())
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "indexing"
    document_id = response.json()["id"]
    deadline = time.monotonic() + 240
    while True:
        document = http.get(f"{gateway}/office/documents/{document_id}", params={"user_id": user_id}, timeout=30).json()
        if document["status"] != "indexing" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert document["status"] == "ready", document
    assert document["chunks"] > 48
    best = search(http, gateway, user_id, "topic37 widget5", mode="lexical").json()["results"][0]
    assert best["heading"] == "Section 37"


BAD_UPLOADS = [
    ("empty.txt", b"", 422, "empty_file"),
    ("blank.md", b"  \n\n \t ", 422, "empty_file"),
    ("garbage.pdf", b"\x00\x01garbage that is not a pdf" * 40, 422, "invalid_file"),
    ("truncated.pdf", files.pdf_english()[:300], 422, "invalid_file"),
    ("locked.pdf", files.pdf_encrypted(user_password="s3cret"), 422, "encrypted_pdf"),
    ("scan.pdf", files.pdf_image_only(), 422, "no_text"),
    ("report.docx", b"PK\x03\x04 not really a zip", 422, "invalid_file"),
    ("setup.exe", b"MZ\x90\x00", 415, "unsupported_type"),
    ("noextension", b"hello", 415, "unsupported_type"),
    ("big.txt", b"a" * (10 * 1024 * 1024 + 1), 413, "file_too_large"),
]


@pytest.mark.parametrize(("name", "data", "status", "code"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_a_bad_upload_is_refused_clearly_and_leaves_nothing(http, gateway, user_id, name, data, status, code):
    response = upload(http, gateway, user_id, name, data)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["field"] == "file"
    assert len(error["message"]) >= 15  # a sentence, not a bare code
    assert documents_of(http, gateway, user_id) == []
    assert search(http, gateway, user_id, "garbage pdf hello report", mode="lexical").json()["results"] == []


def test_an_upload_without_a_file_or_with_a_bad_user_id_is_a_400_naming_the_field(http, gateway, user_id):
    no_file = http.post(f"{gateway}/office/documents", data={"user_id": user_id}, timeout=30)
    assert no_file.status_code == 400 and no_file.json()["error"]["field"] == "file"
    long_user = http.post(
        f"{gateway}/office/documents",
        files={"file": ("a.txt", b"hello there")},
        data={"user_id": "u" * 129},
        timeout=30,
    )
    assert long_user.status_code == 400 and long_user.json()["error"]["field"] == "user_id"


BAD_SEARCHES = [
    ({"query": ""}, "query"),
    ({"query": "x" * 2000}, "query"),
    ({"query": 42}, "query"),
    ({"query": "ok", "k": 0}, "k"),
    ({"query": "ok", "k": 21}, "k"),
    ({"query": "ok", "k": "many"}, "k"),
    ({"query": "ok", "mode": "psychic"}, "mode"),
    ({}, "query"),
]


@pytest.mark.parametrize(("body", "field"), BAD_SEARCHES)
def test_a_bad_search_is_a_400_naming_the_field(http, gateway, user_id, body, field):
    response = http.post(f"{gateway}/office/documents/search", json={"user_id": user_id, **body}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


def test_documents_do_not_exist_on_the_character_app(http, gateway, user_id):
    response = http.get(f"{gateway}/character/documents", params={"user_id": user_id}, timeout=30)
    assert response.status_code == 404
