"""Saving a reply while it streams (``ReplyRecorder``), so a killed process loses at most the last second of it.

The reply's row is created at its first piece of text and rewritten at most once a second while it streams;
a row a dead process left ``streaming`` is marked ``interrupted`` when the history is next opened.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Protocol

from app.core.history.records import FinalState, Message


class StreamingMessages(Protocol):
    """What a recorder needs of the store (``HistoryStore`` is one)."""

    def start_streaming_message(self, conversation_id: int, role: str, content: str) -> int: ...

    def save_streaming_message(self, message_id: int, content: str) -> None: ...

    def finish_streaming_message(
        self, message_id: int, content: str, state: FinalState, stats: Mapping[str, Any] | None
    ) -> None: ...

    def get_message(self, message_id: int) -> Message: ...


class ReplyRecorder:
    """Records a reply as it streams, so a crash loses at most the last second of it.

    The row is created by the first non-empty ``append`` (so an empty start leaves no empty message), rewritten
    when ``flush_interval`` seconds have passed since the last write, and finalized by ``finish``. Used as a
    context manager, an exception marks the reply interrupted; leaving the block without ``finish`` completes it.
    Like its store, a recorder is used on the thread that opened the store.
    """

    def __init__(
        self,
        store: StreamingMessages,
        conversation_id: int,
        *,
        role: str = "assistant",
        flush_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self.role = role
        self.flush_interval = flush_interval
        self._clock = clock
        self.text = ""
        self.saved_text = ""  # what is on disk now
        self.message_id: int | None = None
        self.writes = 0
        self.finished = False
        self._last_write = 0.0

    def append(self, piece: str) -> None:
        if self.finished:
            raise RuntimeError("append() after finish()")
        if not piece:
            return
        self.text += piece
        now = self._clock()
        if self.message_id is None:
            self.message_id = self.store.start_streaming_message(self.conversation_id, self.role, self.text)
            self._written(now)
        elif now - self._last_write >= self.flush_interval:
            self.store.save_streaming_message(self.message_id, self.text)
            self._written(now)

    def flush(self) -> None:
        """Write what has arrived now, whatever the time since the last write."""
        if self.finished or self.text == self.saved_text:
            return
        if self.message_id is None:
            self.message_id = self.store.start_streaming_message(self.conversation_id, self.role, self.text)
        else:
            self.store.save_streaming_message(self.message_id, self.text)
        self._written(self._clock())

    def _written(self, now: float) -> None:
        self._last_write = now
        self.saved_text = self.text
        self.writes += 1

    def finish(
        self, state: FinalState = "complete", stats: Mapping[str, Any] | None = None
    ) -> Message | None:
        """Store the whole reply with its final state and stats. None when nothing was ever said and no row
        was made (a reply stopped before its first word)."""
        if self.finished:
            raise RuntimeError("finish() called twice")
        self.finished = True
        if self.message_id is None:
            if not self.text and state != "complete":
                return None
            self.message_id = self.store.start_streaming_message(self.conversation_id, self.role, self.text)
        self.store.finish_streaming_message(self.message_id, self.text, state, stats)
        self.saved_text = self.text
        self.writes += 1
        return self.store.get_message(self.message_id)

    def __enter__(self) -> ReplyRecorder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if not self.finished:
            self.finish("interrupted" if error is not None else "complete")
