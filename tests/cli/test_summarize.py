"""``llamadesk summarize`` as a person runs it: a real process, real files, the real model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.core.documents.document import approximate_tokens
from app.core.documents.reader import read_document
from app.core.units import counted
from tests.fixtures.documents import build_pdf, build_scanned_pdf, travelogue_pages
from tests.helpers.cli import run


@pytest.mark.parametrize(
    ("name", "content", "sentence"),
    [
        ("empty.txt", b"", "is empty (0 bytes)"),
        ("table.xlsx", b"PK\x03\x04 spreadsheet", "is a spreadsheet; save the sheet as CSV"),
        ("photo.md", bytes(range(256)) * 8, "looks like a binary file"),
        ("missing.pdf", None, "was not found"),
    ],
)
def test_bad_input_exits_1_with_its_sentence_before_any_model_loads(
    tmp_path: Path, name: str, content: bytes | None, sentence: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    # A model path that does not exist: the file must be refused before the model is even looked at.
    result = run("summarize", str(path), "--model", str(tmp_path / "no-model.gguf"), timeout=60)
    assert result.returncode == 1
    assert sentence in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_scanned_pdf_gets_the_scanned_sentence(tmp_path: Path) -> None:
    path = build_scanned_pdf(tmp_path / "scan.pdf")
    result = run("summarize", str(path), "--model", str(tmp_path / "no-model.gguf"), timeout=60)
    assert result.returncode == 1
    assert "this PDF has no text to read; it is probably scanned images" in result.stderr


def test_key_points_on_stdout_progress_on_stderr(model_path: Path, tmp_path: Path) -> None:
    notes = tmp_path / "harbour.md"
    notes.write_text(
        "# Boats\n\nThe fishing boats of Saltcombe leave the harbour at dawn and return at dusk.\n\n"
        "# Market\n\nFish is sold in the square every Friday, and the best crab goes to the inn.\n\n"
        "# Weather\n\nWinter storms close the harbour for a week or two each year.\n"
    )
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = run(
        "summarize",
        str(notes),
        str(empty),
        "--model",
        str(model_path),
        "--ctx",
        "1024",
        "--style",
        "points",
        timeout=600,
    )
    # The good file is summarized; the bad one still makes the exit status 1.
    assert result.returncode == 1, result.stderr
    assert "empty.txt is empty" in result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines and all(line.startswith('- [section "') for line in lines), result.stdout
    assert "(100%)" in result.stderr
    assert "Traceback" not in result.stderr
    # The same estimate, in the same words, as the window's document card (which documents.py gives
    # approximate_tokens(document.text)), not the tokenizer's count: one number for one file.
    estimate = "about " + counted(approximate_tokens(read_document(str(notes)).text), "token")
    print(result.stderr.splitlines()[0], "| card:", estimate)
    assert f"harbour.md, 3 sections, {estimate}" in result.stderr


def test_bench_prints_pipeline_and_raw_figures(model_path: Path, tmp_path: Path) -> None:
    path = build_pdf(tmp_path / "two-pages.pdf", travelogue_pages(2))
    result = run(
        "summarize",
        "--bench",
        str(path),
        "--model",
        str(model_path),
        "--ctx",
        "512",
        "--bench-tokens",
        "0",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "Extraction:" in result.stdout
    ratio = re.search(r"pipeline / raw = ([0-9.]+)", result.stdout)
    raw = re.search(r"Raw prompt evaluation: ([0-9.]+) tokens/s", result.stdout)
    assert ratio and raw, result.stdout
    assert float(raw.group(1)) > 0
    assert 0 < float(ratio.group(1)) <= 1.5
