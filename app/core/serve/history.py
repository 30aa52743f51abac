"""Keeping served chat replies in the history, when the person asked for it (``llamadesk serve --save-history``,
or the checkbox beside the window's switch): each request becomes a conversation of its own, titled from its first
user message and marked as served through the API (``SERVED_MARK`` in the conversation's settings).

Replies end on the server's threads; one writer thread owns the history connection (a store belongs to the thread
that opened it), so saving never holds up a reply and writes never interleave.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import UserError
from app.core.history.store import HistoryStore
from app.core.llm.context import ChatMessage
from app.core.llm.engine import ReplyStats

log = logging.getLogger(__name__)

SERVED_MARK = {"served_through": "api"}


@dataclass(frozen=True)
class ServedReply:
    """One chat request the API answered: what it was asked, what it answered, and how that ended."""

    messages: list[ChatMessage]
    reply: str
    model: str  # the model file's path
    complete: bool  # False: the client went away or the reply was stopped part-way
    stats: ReplyStats


class ServedHistory:
    """Saves served replies as conversations, on a writer thread of its own. ``saved(conversation_id)`` is
    called on that thread after each one; ``failed(sentence)`` when the history cannot be written."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        saved: Callable[[int], None] | None = None,
        failed: Callable[[str], None] | None = None,
    ) -> None:
        self._path = path
        self._saved = saved
        self._failed = failed
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="served-history")
        self._store: HistoryStore | None = None

    def record(self, served: ServedReply) -> None:
        """Queue ``served`` to be saved; returns at once."""
        self._writer.submit(self._save, served)

    def flush(self) -> None:
        """Wait until every save queued so far is done."""
        self._writer.submit(lambda: None).result()

    def _save(self, served: ServedReply) -> int | None:
        try:
            if self._store is None:
                self._store = HistoryStore(self._path)
            conversation_id = save_served(self._store, served)
        except UserError as exc:  # read-only, disk full: the client was answered; say it was not kept
            log.warning("a served reply was not saved: %s", exc)
            if self._failed is not None:
                self._failed(str(exc))
            return None
        except Exception:  # a bug: the future is never read, so it is logged here or nowhere
            log.exception("saving a served reply failed")
            if self._failed is not None:
                self._failed("A reply to another app was not kept in the history (see the log for why).")
            return None
        if self._saved is not None:
            self._saved(conversation_id)
        return conversation_id

    def close(self) -> None:
        """Finish the saves queued, then close the history."""
        self._writer.submit(self._close_store)
        self._writer.shutdown(wait=True)

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def save_served(store: HistoryStore, served: ServedReply) -> int:
    """Store one served request and its reply as a new conversation; returns its id."""
    return store.add_conversation(
        [
            (message.get("role", "user"), message.get("content", ""))
            for message in served.messages
            if message.get("content")
        ],
        served.reply,
        reply_state="complete" if served.complete else "stopped",
        reply_stats=dataclasses.asdict(served.stats),
        model=served.model,
        settings=SERVED_MARK,
    )
