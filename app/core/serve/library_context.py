"""Chat requests that name libraries (the extension field ``libraries``): the passages that answer the latest
question go into its turn, as they do in the window, and the response carries them as ``sources``.

The libraries have one owner here: a ``LibraryWorker`` thread (``owner_thread``) opens the library database and
the libraries' embedding models, and searches for every request in turn; request handlers wait for it on a
worker thread.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from app.core.documents.retrieval import excerpts_for_question, question_with_excerpts
from app.core.library.database import LibraryDatabase
from app.core.library.indexing import LibraryNotFound
from app.core.library.search import LibraryPassages
from app.core.llm.context import ChatMessage
from app.core.serve.errors import ApiError
from app.core.serve.owner_thread import OwnerThread
from app.core.serve.requests import GenerationRequest


class _Libraries:
    """What the library thread owns: the database, and each set of libraries' passages (with their embedding
    models), opened at the first request that names them."""

    def __init__(self, database: Path) -> None:
        self.db = LibraryDatabase(database)
        self.sources: dict[tuple[str, ...], LibraryPassages] = {}

    def passages(self, names: tuple[str, ...]) -> LibraryPassages:
        if names not in self.sources:
            self.sources[names] = LibraryPassages(self.db, list(names))
        return self.sources[names]

    def close(self) -> None:
        for source in self.sources.values():
            source.close()
        self.db.close()


class LibraryWorker:
    """The library database and its embedding models, on a thread of their own (``OwnerThread``) that searches
    for the server's requests in turn; the database opens at the first request that names a library."""

    def __init__(self, database: Path) -> None:
        self._owner: OwnerThread[_Libraries] = OwnerThread(
            "library-search", lambda: _Libraries(database), _Libraries.close
        )

    def context(
        self, names: tuple[str, ...], question: str, context_size: int, reply_tokens: int
    ) -> GenerationContext:
        def search(libraries: _Libraries) -> GenerationContext:
            context = excerpts_for_question(libraries.passages(names), question, context_size, reply_tokens)
            sources: list[dict[str, object]] = [
                {
                    "path": hit.passage.path,
                    "label": hit.passage.label,
                    "page": hit.passage.page,
                    "score": hit.score,
                    "text": hit.passage.text,
                }
                for hit in context.hits
            ]
            return GenerationContext(question_with_excerpts(context, question), sources)

        try:
            return self._owner.run(search)
        except LibraryNotFound as error:
            raise ApiError(404, str(error), "library_not_found", "libraries") from None

    def close(self) -> None:
        self._owner.close()


@dataclasses.dataclass(frozen=True)
class GenerationContext:
    question: str  # the latest question's turn, with the excerpts
    sources: list[dict[str, object]]


def with_library_passages(
    request: GenerationRequest, worker: LibraryWorker, context_size: int
) -> GenerationRequest:
    """``request`` with its latest question's turn carrying the libraries' excerpts, and their sources; as it
    was when the conversation does not end with a question."""
    messages = request.messages
    if not messages or messages[-1]["role"] != "user" or not isinstance(messages[-1]["content"], str):
        return request
    question = messages[-1]["content"]
    found = worker.context(request.libraries, question, context_size, request.sampling.max_tokens)
    turn: ChatMessage = {"role": "user", "content": found.question}
    return dataclasses.replace(request, messages=[*messages[:-1], turn], sources=found.sources)
