"""Fixtures shared by the document tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.documents import build_pdf, travelogue_pages


@pytest.fixture(scope="module")
def pdf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pdf(tmp_path_factory.mktemp("pdf") / "travelogue.pdf", travelogue_pages(10))
