"""One reply for the API, pulled piece by piece on a worker thread (the engine's pieces arrive on a blocking
queue): stop sequences applied, statistics kept, and a cancel that is safe from any thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from app.core.errors import UserError
from app.core.llm.engine import ReplyStats
from app.core.llm.service import EngineClient, StreamedReply
from app.core.serve.requests import GenerationRequest
from app.core.serve.stops import StopScanner


class Generation:
    """Submitted to the engine queue when made (so requests run in arrival order); read with ``next_text``."""

    def __init__(self, client: EngineClient, request: GenerationRequest) -> None:
        self.request = request
        self._reply: StreamedReply = client.stream_chat(request.messages, request.sampling)
        self._pieces: Iterator[str] = iter(self._reply)
        self._scanner = StopScanner(request.stops)
        self._lock = (
            threading.Lock()
        )  # one reader at a time; a worker thread abandoned on a disconnect may linger
        self.ended = False
        self.text_sent = ""  # what the client has been given so far
        self.recorded = False  # handed to the history already (see ServeState.served)
        self.stop_reason = ""  # a sentence, when the server ended the reply (see ``stop``)

    @property
    def finished(self) -> bool:
        """The engine is done with it (answered, failed, or dropped): it no longer waits nor runs."""
        return self._reply.ticket.done.is_set()

    @property
    def cancelled(self) -> bool:
        """Stopped (its client went away): it no longer counts as waiting, even before the engine drops it."""
        return self._reply.ticket.cancelled.is_set()

    def cancel(self) -> None:
        self._reply.cancel()

    def stop(self, reason: str) -> None:
        """End it for a reason of the server's (the model is being switched): the client is told ``reason``."""
        self.stop_reason = reason
        self.cancel()

    def next_text(self) -> str | None:
        """The next text to send, or None at the end. Blocking: call it on a worker thread. Raises UserError
        with the engine's sentence if the reply failed."""
        try:
            text = self._next_text()
        except UserError:
            if self.stop_reason:
                raise UserError(self.stop_reason) from None
            raise
        if text is None and self.stop_reason:  # a stopped reply ends like a short one: say it was cut
            raise UserError(self.stop_reason)
        if text:
            self.text_sent += text
        return text

    def _next_text(self) -> str | None:
        with self._lock:
            while not self.ended:
                piece = next(self._pieces, None)
                if piece is None:
                    self.ended = True
                    return self._scanner.flush() or None
                text = self._scanner.feed(piece)
                if self._scanner.stopped:
                    self.ended = True
                    self._stop_at_sequence()
                    return text or None
                if text:
                    return text
            return None

    def collect(self) -> str:
        """The whole reply (blocking)."""
        texts = []
        while (text := self.next_text()) is not None:
            texts.append(text)
        return "".join(texts)

    def _stop_at_sequence(self) -> None:
        """A stop sequence was reached: stop the engine and let the reply end, so its statistics are set."""
        self._reply.cancel()
        try:
            for _ in self._pieces:
                pass
        except UserError:  # the stop itself reads as "stopped"; the statistics tell the rest
            pass

    @property
    def stats(self) -> ReplyStats:
        return self._reply.stats or ReplyStats(finish_reason="cancelled")

    @property
    def finish_reason(self) -> str:
        """OpenAI's reason: "length" when max_tokens ended it, else "stop" (a stop sequence or the model's end)."""
        if self._scanner.stopped:
            return "stop"
        return "length" if self.stats.finish_reason == "length" else "stop"

    def usage(self) -> dict[str, int]:
        stats = self.stats
        return {
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.generated_tokens,
            "total_tokens": stats.prompt_tokens + stats.generated_tokens,
        }
