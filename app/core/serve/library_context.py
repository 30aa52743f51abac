"""Chat requests that name libraries (the extension field ``libraries``): the passages that answer the latest
question go into its turn, as they do in the window, and the response carries them as ``sources``.

The libraries have one owner here: a ``LibraryWorker`` thread opens the library database and the libraries'
embedding models, and searches for every request in turn; request handlers wait for it on a worker thread.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from concurrent.futures import Future
from pathlib import Path

from app.core.documents.retrieval import excerpts_for_question, question_with_excerpts
from app.core.library.database import LibraryDatabase
from app.core.library.indexing import LibraryNotFound
from app.core.library.search import LibraryPassages
from app.core.llm.context import ChatMessage
from app.core.serve.errors import ApiError
from app.core.serve.requests import GenerationRequest

Search = tuple[tuple[str, ...], str, int, int]  # libraries, question, context size, reply tokens


class LibraryWorker:
    """The thread that owns the library database and its embedding models for the server's requests."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._requests: queue.Queue[tuple[Search, Future[GenerationContext]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="library-search", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db: LibraryDatabase | None = None  # opened at the first request that names a library
        sources: dict[tuple[str, ...], LibraryPassages] = {}
        try:
            while (item := self._requests.get()) is not None:
                (names, question, context_size, reply_tokens), answer = item
                if not answer.set_running_or_notify_cancel():
                    continue
                try:
                    db = db or LibraryDatabase(self.database)
                    if names not in sources:
                        sources[names] = LibraryPassages(db, list(names))
                    context = excerpts_for_question(sources[names], question, context_size, reply_tokens)
                    answer.set_result(
                        GenerationContext(
                            question_with_excerpts(context, question),
                            [
                                {
                                    "path": hit.passage.path,
                                    "label": hit.passage.label,
                                    "page": hit.passage.page,
                                    "score": hit.score,
                                    "text": hit.passage.text,
                                }
                                for hit in context.hits
                            ],
                        )
                    )
                except LibraryNotFound as error:
                    answer.set_exception(ApiError(404, str(error), "library_not_found", "libraries"))
                except BaseException as error:
                    answer.set_exception(error)
        finally:
            for source in sources.values():
                source.close()
            if db is not None:
                db.close()

    def context(
        self, names: tuple[str, ...], question: str, context_size: int, reply_tokens: int
    ) -> GenerationContext:
        answer: Future[GenerationContext] = Future()
        self._requests.put(((names, question, context_size, reply_tokens), answer))
        return answer.result()

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join(10)


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
