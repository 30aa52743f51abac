"""Task prefixes: a model trained with one before questions and another before passages (nomic-embed-text) gets
them from the embedder, and the API's /v1/embeddings gets texts exactly as sent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.library import embedding
from app.core.library.embedding import Embedder


def test_the_recommended_model_s_architecture_has_its_prefixes() -> None:
    assert embedding.TASK_PREFIXES["nomic-bert"] == ("search_query: ", "search_document: ")


def test_questions_and_passages_get_their_model_s_prefixes(
    embedding_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test model is a BERT; give BERT prefixes, as nomic-bert has, to see them applied.
    monkeypatch.setitem(embedding.TASK_PREFIXES, "bert", ("query: ", "passage: "))
    embedder = Embedder(embedding_model_path)
    try:
        text = "The boiler pressure should read 1.5 bar when cold."
        query = embedder.embed_query(text)
        passage = embedder.embed_passages([text])[0]
        plain = embedder.embed([text])[0]
        assert np.allclose(query, embedder.embed(["query: " + text])[0], atol=1e-5)
        assert np.allclose(passage, embedder.embed(["passage: " + text])[0], atol=1e-5)
        assert not np.allclose(query, plain, atol=1e-3) and not np.allclose(passage, plain, atol=1e-3)
    finally:
        embedder.close()


def test_a_model_without_prefixes_embeds_texts_as_given(embedding_model_path: Path) -> None:
    embedder = Embedder(embedding_model_path)
    try:
        text = "Prune the quince tree in late winter."
        assert np.allclose(embedder.embed_query(text), embedder.embed([text])[0], atol=1e-5)
        assert np.allclose(embedder.embed_passages([text])[0], embedder.embed([text])[0], atol=1e-5)
    finally:
        embedder.close()
