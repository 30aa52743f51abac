"""A conversation that has documents attached and uses a library answers from both: one passage source."""

from __future__ import annotations

from pathlib import Path

from app.core.documents.retrieval import DocumentIndex, approximate_tokens, build_context
from app.core.library.database import LibraryDatabase
from app.core.library.indexing import define_library, index_library
from app.core.library.search import CombinedPassages, LibraryPassages
from tests.helpers.history import text_document


def test_attached_documents_and_a_library_are_searched_together_best_of_each_first(tmp_path: Path) -> None:
    folder = tmp_path / "manuals"
    folder.mkdir()
    (folder / "boiler.md").write_text("# Boiler\n\nThe boiler pressure should stay near 1.5 bar when cold.\n")
    (folder / "garden.md").write_text("# Garden\n\nWater the tomatoes every morning in July.\n")
    db = LibraryDatabase(tmp_path / "library.sqlite3")
    define_library(db, "manuals", [folder], None)
    index_library(db, "manuals")
    attached = DocumentIndex()
    attached.add(text_document("invoice.txt", "The boiler service invoice came to 120 euros in March."))
    library = LibraryPassages(db, ["manuals"])
    try:
        combined = CombinedPassages([attached, library])
        hits = combined.search("boiler pressure and service invoice")
        names = [hit.passage.document_name for hit in hits]
        # The best of each source first, whatever their scores' scales (BM25 against fused ranks).
        assert names[:2] == ["invoice.txt", "boiler.md"]
        assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
        context = build_context(combined, "boiler pressure and service invoice", approximate_tokens, 2000)
        assert {hit.passage.document_name for hit in context.hits} == {"invoice.txt", "boiler.md"}
        assert Path(context.hits[1].passage.path) == (folder / "boiler.md").resolve()  # opens at its file
        assert combined.search("zebra") == []
        # "Summarize this" reads the attached documents' openings; a library has none.
        assert [hit.passage.document_name for hit in combined.opening_passages()] == ["invoice.txt"]
    finally:
        library.close()
        attached.close()
        db.close()
