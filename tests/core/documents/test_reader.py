"""Reading dropped files: real PDFs and Word files built here, real encodings, and every kind of bad input."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from app.core.documents.reader import (
    MAX_DOCUMENT_BYTES,
    Document,
    DocumentError,
    decode_text,
    read_document,
)
from tests.fixtures.documents import (
    FACT_PAGE,
    FACT_SENTENCE,
    build_docx,
    build_encrypted_pdf,
    build_pdf,
    build_scanned_pdf,
    corrupt_pdf_bytes,
    travelogue_pages,
)


@pytest.fixture(scope="module")
def pdf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pdf(tmp_path_factory.mktemp("pdf") / "travelogue.pdf", travelogue_pages(10))


def test_pdf_keeps_pages_and_their_numbers(pdf_path: Path) -> None:
    document = read_document(pdf_path)
    assert document.kind == "pdf"
    assert document.page_count == 10
    assert [s.label for s in document.sections] == [f"page {n}" for n in range(1, 11)]
    fact_page = document.sections[FACT_PAGE - 1]
    assert fact_page.page == FACT_PAGE
    assert "Oswin Tarrant" in fact_page.text
    assert all("Oswin" not in s.text for s in document.sections if s.page != FACT_PAGE)
    assert document.content_hash == hashlib.sha256(document.text.encode()).hexdigest()
    assert document.size == pdf_path.stat().st_size


def test_document_survives_a_round_trip_through_plain_data(pdf_path: Path) -> None:
    import json

    document = read_document(pdf_path)
    restored = Document.from_dict(json.loads(json.dumps(document.to_dict())))
    assert restored == document


def test_docx_sections_follow_its_headings(tmp_path: Path) -> None:
    import docx

    path = build_docx(tmp_path / "travelogue.docx", travelogue_pages(9))
    word = docx.Document(str(path))
    table = word.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Harbour dues"
    table.rows[0].cells[1].text = "four shillings"
    word.save(str(path))

    document = read_document(path)
    assert document.kind == "docx"
    assert len(document.sections) == 9
    assert document.sections[FACT_PAGE - 1].label == 'section "Chapter 7: Greystone"'
    assert FACT_SENTENCE in document.sections[FACT_PAGE - 1].text
    assert "Harbour dues | four shillings" in document.sections[-1].text


def test_markdown_sections_ignore_hashes_inside_code(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text(
        "Preface.\n\n# Setup\n\nInstall it.\n\n```sh\n# not a heading\n```\n\nUsage\n-----\n\nRun it.\n"
    )
    document = read_document(path)
    assert [s.label for s in document.sections] == ["start", 'section "Setup"', 'section "Usage"']
    assert "# not a heading" in document.sections[1].text


def test_restructuredtext_titles_become_sections(tmp_path: Path) -> None:
    path = tmp_path / "guide.rst"
    path.write_text("=====\nGuide\n=====\n\nIntro.\n\nInstalling\n----------\n\nSteps.\n")
    document = read_document(path)
    assert [s.label for s in document.sections] == ['section "Guide"', 'section "Installing"']


def test_html_gives_text_not_markup(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>T</title><style>p { color: red }</style></head><body>"
        "<h1>Harbour</h1><p>The <b>boats</b> leave at dawn &amp; return at dusk.</p>"
        "<script>var secret = 'never shown';</script><h2>Market</h2><p>Fish is sold on Fridays.</p></body></html>"
    )
    document = read_document(path)
    assert [s.label for s in document.sections] == ['section "Harbour"', 'section "Market"']
    assert "The boats leave at dawn & return at dusk." in document.text
    assert "secret" not in document.text and "color" not in document.text and "<" not in document.text


def test_source_code_is_read_in_labelled_runs_of_lines(tmp_path: Path) -> None:
    path = tmp_path / "tool.py"
    path.write_text("\n".join(f"value_{n} = {n}" for n in range(300)) + "\n")
    document = read_document(path)
    assert document.kind == "code"
    assert document.sections[0].label.startswith("lines 1-")
    assert "value_299 = 299" in document.sections[-1].text


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("cp1252", "Le café était délicieux, et la crème brûlée aussi. Ça coûte très cher à Noël. " * 4),
        ("cp1251", "Привет, как дела? Это проверка кодировки текста для чтения. " * 4),
        ("utf-16", "Größe und Übermaß: schön, naïve façade. " * 4),  # with a byte-order mark
        ("utf-8-sig", "Zürich, São Paulo, Kraków. " * 4),
        ("shift_jis", "これは日本語の文章です。文字コードを正しく判定できるか確かめます。" * 4),
    ],
)
def test_encoding_is_detected_not_assumed(tmp_path: Path, encoding: str, text: str) -> None:
    path = tmp_path / "letter.txt"
    path.write_bytes(text.encode(encoding))
    assert read_document(path).text == text.strip()


def test_aes_encrypted_pdf_without_an_open_password_is_read(tmp_path: Path, pdf_path: Path) -> None:
    path = build_encrypted_pdf(tmp_path / "restricted.pdf", pdf_path, user_password="")
    assert read_document(path).page_count == 10


def _bad_inputs(tmp_path: Path, pdf_path: Path) -> dict[str, tuple[Path, str]]:
    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(corrupt_pdf_bytes(pdf_path.read_bytes()))
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(pdf_path.read_bytes()[:700])
    binary = tmp_path / "photo.txt"
    binary.write_bytes(bytes(range(256)) * 64)
    empty = tmp_path / "empty.md"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.txt"
    blank.write_text("   \n\n  \n")
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as handle:  # sparse: the size check must not read it
        handle.truncate(MAX_DOCUMENT_BYTES + 1)
    unknown = tmp_path / "drawing.xyz"
    unknown.write_text("whatever")
    old_word = tmp_path / "letter.doc"
    old_word.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    fake_docx = tmp_path / "report.docx"
    fake_docx.write_text("not a zip at all")
    return {
        "encrypted": (
            build_encrypted_pdf(tmp_path / "locked.pdf", pdf_path, user_password="secret"),
            "is protected with a password",
        ),
        "rc4 encrypted": (
            build_encrypted_pdf(
                tmp_path / "locked-rc4.pdf", pdf_path, user_password="secret", algorithm="RC4-128"
            ),
            "is protected with a password",
        ),
        "corrupt": (corrupt, "could not be read as a PDF; it may be damaged"),
        "truncated": (truncated, "could not be read as a PDF; it may be damaged"),
        "scanned": (
            build_scanned_pdf(tmp_path / "scan.pdf"),
            "this PDF has no text to read; it is probably scanned images",
        ),
        "binary": (binary, "looks like a binary file, not text"),
        "empty": (empty, "is empty (0 bytes)"),
        "blank": (blank, "has no text in it"),
        "too large": (huge, "over the limit of 100.0 MB for one document"),
        "unknown type": (unknown, "LlamaDesk can't read .xyz files"),
        "old word": (old_word, "the old Word format (.doc)"),
        "fake docx": (fake_docx, "could not be read as a Word document"),
        "missing": (tmp_path / "gone.pdf", "was not found"),
        "folder": (tmp_path, "is a folder"),
    }


BAD_INPUTS = [
    "encrypted",
    "rc4 encrypted",
    "corrupt",
    "truncated",
    "scanned",
    "binary",
    "empty",
    "blank",
    "too large",
    "unknown type",
    "old word",
    "fake docx",
    "missing",
    "folder",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_its_sentence_quickly(tmp_path: Path, pdf_path: Path, case: str) -> None:
    path, sentence = _bad_inputs(tmp_path, pdf_path)[case]
    started = time.perf_counter()
    with pytest.raises(DocumentError) as caught:
        read_document(path)
    assert time.perf_counter() - started < 2.0
    assert sentence in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_page_limit_is_named(pdf_path: Path) -> None:
    with pytest.raises(DocumentError, match="has 10 pages; LlamaDesk reads documents of up to 4 pages"):
        read_document(pdf_path, max_pages=4)


def test_slow_extraction_is_given_up_without_waiting_for_it(tmp_path: Path) -> None:
    path = build_pdf(tmp_path / "long.pdf", travelogue_pages(60))
    started = time.perf_counter()
    with pytest.raises(DocumentError, match=r"took longer than 0 s, so it was stopped"):
        read_document(path, timeout=0.02)
    assert time.perf_counter() - started < 0.5


def test_decoding_respects_byte_order_marks() -> None:
    assert decode_text("a.txt", "\ufeffhello".encode("utf-16-be")) == "hello"
    assert decode_text("a.txt", b"\xef\xbb\xbfhello") == "hello"
    with pytest.raises(DocumentError, match="binary"):
        decode_text("a.txt", os.urandom(4096) + b"\x00")
