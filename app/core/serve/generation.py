"""One reply for the API, pulled piece by piece on a worker thread (the engine's pieces arrive on a blocking
queue): statistics kept, log-probabilities handed out as their text goes, and a cancel safe from any thread.

Stops are the engine's (``ReplyOptions.stops``): it ends the reply at the first one, so what it counts is what
the client is sent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from app.core.errors import UserError
from app.core.llm.engine import ModelInfo, ReplyStats
from app.core.llm.sampling import TokenLogprob
from app.core.llm.service import EngineClient, StreamedReply
from app.core.serve.requests import GenerationRequest


class Generation:
    """Submitted to the engine queue when made (so requests run in arrival order), bound to the model it was
    admitted for: if another one answers when its turn comes, it is refused, never run there."""

    def __init__(self, client: EngineClient, request: GenerationRequest, model: ModelInfo) -> None:
        self.request = request
        self.model = model
        if request.prompt is not None:
            self._reply: StreamedReply = client.stream_completion(
                request.prompt,
                request.sampling,
                request.options,
                echo=request.echo,
                suffix=request.suffix,
                expected_model=model,
            )
        else:
            self._reply = client.stream_chat(
                request.messages, request.sampling, options=request.options, expected_model=model
            )
        self._pieces: Iterator[str] = iter(self._reply)
        # One reader at a time; a worker thread abandoned on a disconnect may linger.
        self._lock = threading.Lock()
        self.ended = False
        self.text_sent = ""  # what the client has been given so far
        self._logprobs_sent = 0
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

    def wait_started(self) -> None:
        """Block until the engine took the prompt; raises its UserError if it refused it (too long for the
        context, another model loaded meanwhile...). Call it on a worker thread."""
        try:
            self._reply.wait_started()
        except UserError:
            if self.stop_reason:
                raise UserError(self.stop_reason) from None
            raise

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
            if self.ended:
                return None
            piece = next(self._pieces, None)
            if piece is None:
                self.ended = True
            return piece

    def collect(self) -> str:
        """The whole reply (blocking)."""
        texts = []
        while (text := self.next_text()) is not None:
            texts.append(text)
        return "".join(texts)

    def new_logprobs(self) -> list[TokenLogprob]:
        """The tokens' log-probabilities not handed out yet (those of the text sent so far, and maybe of a few
        tokens whose text is still held back)."""
        entries = self._reply.logprobs
        fresh = entries[self._logprobs_sent :]
        self._logprobs_sent += len(fresh)
        return fresh

    @property
    def stats(self) -> ReplyStats:
        return self._reply.stats or ReplyStats(finish_reason="cancelled")

    @property
    def finish_reason(self) -> str:
        """OpenAI's reason: "length" when max_tokens ended it, else "stop" (a stop sequence or the model's end)."""
        return "length" if self.stats.finish_reason == "length" else "stop"

    def usage(self) -> dict[str, int]:
        stats = self.stats
        return {
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.generated_tokens,
            "total_tokens": stats.prompt_tokens + stats.generated_tokens,
        }
