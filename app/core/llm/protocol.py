"""What every engine offers its callers: ``ChatEngine``, implemented by this computer's ``Engine`` (llama.cpp) and
by a server's ``RemoteEngine`` (``app.core.llm.remote``), so the engine service, its jobs and the summarizer take
either.

It holds exactly what those callers use. ``load`` is here because the service asks for it; a server's engine
answers it with a sentence. What only a model on this computer has (llama.cpp itself, saved states, the options
it was loaded with, for benchmarks) is reached through ``local_engine``, which answers a server's engine with a
sentence too. Threading: as ``Engine``, every member but ``cancel()`` and ``load_fraction`` belongs to the engine
thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from app.core.errors import UserError
from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine, ModelInfo, Reply
from app.core.llm.load_options import LoadOptions
from app.core.llm.sampling import ReplyOptions
from app.core.modes import SamplingOptions

LOCAL_ONLY = (
    "This needs a model on this computer, and a server answers now. Switch Settings → Engine to This computer "
    "and load a model."
)


class ChatEngine(Protocol):
    """An engine the service runs on its thread. See the module docstring."""

    load_fraction: float  # progress of the load under way (0..1), written by the engine thread, read anywhere

    @property
    def model(self) -> ModelInfo | None:
        """What answers now (None: nothing loaded or connected); replaced whole, so readable from any thread."""
        ...

    def load(
        self,
        path: str | os.PathLike[str],
        options: LoadOptions | None = None,
        progress: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> ModelInfo: ...

    def unload(self) -> None: ...

    def cancel(self) -> None:
        """Stop the load or reply under way as soon as possible. Safe from any thread."""
        ...

    def idle(self) -> None:
        """Nothing is queued: a moment for the engine's own upkeep (a local one saves a conversation's state)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def tokenize_messages(self, messages: Sequence[ChatMessage]) -> tuple[list[int], list[str]]:
        """Tokens the model sees for ``messages`` (or as many, for counting) and the template's stop strings."""
        ...

    def chat(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingOptions | None = None,
        cancel: threading.Event | None = None,
        state_key: str | None = None,
        prompt_progress: Callable[[int, int], None] | None = None,
        options: ReplyOptions | None = None,
    ) -> Reply: ...


def local_engine(engine: ChatEngine) -> Engine:
    """``engine`` as this computer's own, for what only llama.cpp here has; a server's answers with a sentence."""
    if isinstance(engine, Engine):
        return engine
    raise UserError(LOCAL_ONLY)


if TYPE_CHECKING:
    from app.core.llm.remote import RemoteEngine

    def _both_engines_are_chat_engines(local: Engine, remote: RemoteEngine) -> list[ChatEngine]:
        # mypy proves here that each class offers everything the protocol asks for.
        return [local, remote]
