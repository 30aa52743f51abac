"""Each file format read into labelled sections: real Word files built here, Markdown, reST, HTML, code, and
text in real encodings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.core.documents.document import DocumentError
from app.core.documents.formats import decode_text
from app.core.documents.reader import read_document
from tests.fixtures.documents import (
    FACT_PAGE,
    FACT_SENTENCE,
    build_docx,
    build_encrypted_pdf,
    travelogue_pages,
)


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


def test_decoding_respects_byte_order_marks() -> None:
    assert decode_text("a.txt", "\ufeffhello".encode("utf-16-be")) == "hello"
    assert decode_text("a.txt", b"\xef\xbb\xbfhello") == "hello"
    with pytest.raises(DocumentError, match="binary"):
        decode_text("a.txt", os.urandom(4096) + b"\x00")
