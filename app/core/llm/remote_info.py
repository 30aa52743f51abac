"""What a remote engine reports: the model a server answers with, and reply statistics that say which engine
and model answered (kept with each reply in the history). Free of the OpenAI client, which is slow to import,
so the window can tell a server's model from a local one at startup."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.llm.engine import ModelInfo, ReplyStats


@dataclass(frozen=True)
class RemoteModelInfo(ModelInfo):
    """The model a server answers with. ``path`` holds the model's name, as the server spells it."""

    base_url: str = ""
    context_source: str = "setting"  # "server": the server said its context length; "setting": the person's

    @property
    def display_name(self) -> str:
        return f"{self.name} (server)"

    @property
    def identity(self) -> str:
        """What the history records as the model: its name and the server that ran it."""
        return f"{self.name} @ {self.base_url}"


@dataclass
class RemoteReplyStats(ReplyStats):
    """A reply's statistics, with which engine and model answered (kept with the reply in the history)."""

    engine: str = "server"
    server: str = ""
    model: str = ""
