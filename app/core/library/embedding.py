"""Passages as vectors: a GGUF embedding model (BERT, nomic-bert, ...) run by llama.cpp in embedding mode.

An ``Embedder`` has its own llama.cpp model and context, apart from the chat engine's, and belongs to the thread
that made it (the indexing thread, or a search's): llama.cpp contexts are not thread-safe, and a separate
context lets an index run while the engine answers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from app.core.errors import ModelFileError, UserError
from app.core.llm.gguf_check import GGUFInfo, read_gguf

log = logging.getLogger(__name__)

# Longest input embedded whole, in tokens; longer ones are cut (passages are about 160).
MAX_INPUT_TOKENS = 512

# Models trained with a task written before each text, by architecture: (before a question, before a passage).
# nomic-embed-text was trained with these, and without them its search quality drops (its model card says so).
TASK_PREFIXES: dict[str, tuple[str, str]] = {"nomic-bert": ("search_query: ", "search_document: ")}


class EmbeddingModelError(UserError):
    """The embedding model cannot be used; the sentence says why and what to do."""


def checked_embedding_model(path: Path) -> GGUFInfo:
    """The header of ``path`` when it is a GGUF embedding model, read without loading it; else a sentence."""
    try:
        info = read_gguf(path)
    except ModelFileError as error:
        raise EmbeddingModelError(str(error)) from None
    if f"{info.architecture}.pooling_type" not in info.metadata:
        raise EmbeddingModelError(
            f"{path.name} is not an embedding model (its file names no way to pool token vectors into one). "
            "Choose an embedding model, such as the one the model menu recommends."
        )
    return info


class Embedder:
    """``embed`` turns texts into unit-length float32 vectors of ``dimensions`` numbers."""

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        from llama_cpp import Llama

        self.path = path
        info = checked_embedding_model(path)
        architecture = info.architecture
        trained = info.context_length or MAX_INPUT_TOKENS
        context = min(trained, MAX_INPUT_TOKENS)
        try:
            self._llama = Llama(
                str(path),
                embedding=True,
                n_ctx=context,
                n_batch=context,
                n_ubatch=context,  # an encoder sees its whole input in one micro-batch
                # One thread unless told otherwise: the chat engine keeps the other cores, and llama.cpp's
                # threads wait for each other at every step, so on a busy machine a second thread that loses its
                # core turns a 5 ms query into seconds.
                n_threads=threads or 1,
                n_threads_batch=threads or 1,
                # An encoder attends over its whole input at once: flash attention never builds the n x n
                # score matrices, 2.6x the tokens/s here (llama.cpp's own tools turn it on by default).
                flash_attn=True,
                verbose=False,
            )
        except (ValueError, RuntimeError) as error:
            log.warning("loading the embedding model %s failed: %s", path, error)
            raise EmbeddingModelError(
                f"llama.cpp could not load {path.name} as an embedding model. The file may be damaged or made "
                "for a newer llama.cpp; download it again or choose another."
            ) from None
        self.dimensions = int(self._llama.n_embd())
        self.context = context
        self._query_prefix, self._passage_prefix = TASK_PREFIXES.get(architecture, ("", ""))

    def embed(self, texts: list[str]) -> np.ndarray:
        """One row per text as given (the API's /v1/embeddings: the client writes any task prefix itself), unit
        length; texts longer than the model's input are cut at its end."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self._llama.embed(texts, normalize=True, truncate=True)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dimensions)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """Passages of a library, with the model's passage prefix when it was trained with one."""
        return self.embed([self._passage_prefix + text for text in texts])

    def embed_query(self, query: str) -> np.ndarray:
        """A question to search with, with the model's query prefix when it was trained with one."""
        return np.asarray(self.embed([self._query_prefix + query])[0], dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode(), add_bos=False, special=False))

    def close(self) -> None:
        self._llama.close()
