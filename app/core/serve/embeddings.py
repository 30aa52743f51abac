"""``/v1/embeddings`` in OpenAI's shape, served by a GGUF embedding model (``app.core.library.embedding``).

The embedding model has one owner: an ``EmbeddingWorker`` thread that loads it and runs every request in turn.
Its llama.cpp context is its own, apart from the chat engine's, so embeddings never wait behind a reply (they
share only the CPU). ``input`` is a string or a list of strings; ``encoding_format`` ``float`` (lists of numbers)
or ``base64`` (little-endian float32 bytes, what the ``openai`` package asks for by default).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core.library.embedding import Embedder
from app.core.serve.errors import ApiError
from app.core.serve.owner_thread import OwnerThread

# OpenAI's own limit on inputs per request.
MAX_INPUTS = 2048
FIELDS = {"input", "model", "encoding_format", "dimensions", "user"}


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray  # one unit-length float32 row per input
    tokens: int


class EmbeddingWorker:
    """The embedding model, on a thread of its own (``OwnerThread``); ``embed`` may be called from any thread
    and waits its turn. The model loads at once: a file that is no embedding model is a sentence at startup."""

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        self.path = path
        self.name = path.stem
        self._owner: OwnerThread[Embedder] = OwnerThread(
            "embedding-model", lambda: Embedder(path, threads=threads), Embedder.close
        )
        self.dimensions = self._owner.run(lambda embedder: embedder.dimensions)

    def embed(self, texts: list[str]) -> Embedded:
        return self._owner.run(lambda embedder: self._embed(embedder, texts))

    def _embed(self, embedder: Embedder, texts: list[str]) -> Embedded:
        counts = [embedder.count_tokens(text) for text in texts]
        for number, count in enumerate(counts):
            if count + 2 > embedder.context:  # with the [CLS] and [SEP] the model adds
                raise ApiError(
                    400,
                    f"Input {number} has {count} tokens; the embedding model {self.name} takes at most "
                    f"{embedder.context - 2}. Split it into shorter passages.",
                    "context_length_exceeded",
                    "input",
                )
        return Embedded(embedder.embed(texts), sum(counts))

    def close(self) -> None:
        self._owner.close()


def embedding_inputs(body: dict[str, Any], worker: EmbeddingWorker) -> tuple[list[str], str]:
    """The texts to embed and the encoding asked for; ApiError (400) with a sentence for anything else."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise ApiError(
            400,
            f"'{unknown[0][:64]}' is not a field of an embeddings request.",
            "unsupported_parameter",
            unknown[0],
        )
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts:
        raise ApiError(
            400, "'input' must be a string or a non-empty list of strings.", "invalid_value", "input"
        )
    if not all(isinstance(text, str) for text in texts):
        raise ApiError(
            400,
            "'input' as token ids is not supported: send the text itself (with LangChain's OpenAIEmbeddings, set "
            "check_embedding_ctx_length=False).",
            "invalid_value",
            "input",
        )
    if len(texts) > MAX_INPUTS:
        raise ApiError(
            400, f"At most {MAX_INPUTS} inputs per request, not {len(texts)}.", "invalid_value", "input"
        )
    if any(not text for text in texts):
        raise ApiError(
            400, "An input is an empty string; there is nothing to embed.", "invalid_value", "input"
        )
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise ApiError(400, "'encoding_format' is float or base64.", "invalid_value", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != worker.dimensions:
        raise ApiError(
            400,
            f"The embedding model {worker.name} makes vectors of {worker.dimensions} numbers; it cannot make "
            f"{dimensions!r}.",
            "invalid_value",
            "dimensions",
        )
    return texts, str(encoding)


def embeddings_response(embedded: Embedded, encoding: str, model: str) -> dict[str, object]:
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": (
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if encoding == "base64"
                else [float(value) for value in vector]
            ),
        }
        for index, vector in enumerate(embedded.vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens},
    }
