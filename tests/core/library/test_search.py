"""Searching a library by words and by meaning, with a real embedding model run by llama.cpp."""

from __future__ import annotations

from pathlib import Path

from app.core.library.database import LibraryDatabase
from app.core.library.embedding import Embedder, EmbeddingModelError
from app.core.library.indexing import define_library, index_library
from app.core.library.search import VectorCache, search_library

NOTES = {
    "pets.md": "# Pets\n\nOur feline dozes on the rug by the window most afternoons.\n",
    "money.md": "# Money\n\nThe deadline for filing the annual tax return is the first of May.\n",
    "parts.md": "# Parts\n\nReplacement filter part number XR-2207 fits the 2019 model.\n",
    "trips.md": "# Trips\n\nThe train to the coast leaves at seven and takes two hours.\n",
}


def build(tmp_path: Path, model: Path | None) -> LibraryDatabase:
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in NOTES.items():
        (folder / name).write_text(text)
    db = LibraryDatabase(tmp_path / "library.sqlite3")
    define_library(db, "notes", [folder], model)
    report = index_library(db, "notes")
    assert report.added == len(NOTES) and not report.problems
    return db


def test_meaning_finds_what_words_cannot_and_words_keep_exact_names(
    tmp_path: Path, embedding_model_path: Path
) -> None:
    db = build(tmp_path, embedding_model_path)
    embedder = Embedder(embedding_model_path)
    try:
        stored = db.connection.execute("SELECT count(*) FROM passages WHERE vector IS NOT NULL").fetchone()[0]
        assert stored == len(NOTES)
        paraphrase = "where does the cat sleep"  # shares no word with the note about the feline
        assert search_library(db, "notes", paraphrase) == []
        hybrid = search_library(db, "notes", paraphrase, embedder=embedder)
        assert Path(hybrid[0].path).name == "pets.md"
        exact = search_library(db, "notes", "XR-2207", embedder=embedder)
        assert Path(exact[0].path).name == "parts.md"  # the part number itself, which meaning alone blurs
        assert [hit.score for hit in hybrid] == sorted((hit.score for hit in hybrid), reverse=True)
    finally:
        embedder.close()


def test_the_vector_matrix_is_read_again_only_after_a_change(
    tmp_path: Path, embedding_model_path: Path
) -> None:
    db = build(tmp_path, embedding_model_path)
    cache = VectorCache()
    ident = db.connection.execute("SELECT id FROM libraries").fetchone()[0]
    _ids, first = cache.matrix(db, ident)
    assert first.shape == (len(NOTES), 384)
    assert cache.matrix(db, ident)[1] is first
    (tmp_path / "notes" / "new.md").write_text("# New\n\nA fresh note.\n")
    index_library(db, "notes")
    assert cache.matrix(db, ident)[1].shape == (len(NOTES) + 1, 384)


def test_a_chat_model_is_refused_as_an_embedding_model_with_a_sentence(model_path: Path) -> None:
    try:
        Embedder(model_path).close()
    except EmbeddingModelError as error:
        assert "not an embedding model" in str(error)
    else:
        raise AssertionError("a chat model was taken as an embedding model")
