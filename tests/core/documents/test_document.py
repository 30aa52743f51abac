"""A Document kept as its text plus plain-data layout, and put back together."""

from __future__ import annotations

import json
from pathlib import Path

from app.core.documents.document import Document
from app.core.documents.reader import read_document


def test_document_survives_a_round_trip_through_plain_data(pdf_path: Path) -> None:
    document = read_document(pdf_path)
    restored = Document.from_stored(document.text, json.loads(json.dumps(document.to_dict())))
    assert restored == document
