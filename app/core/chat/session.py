"""A conversation session: the history -> the messages the engine sees -> the reply, streamed and recorded.

Every front end goes through here (the window, the terminal, and any other), so none of them writes prompt
logic of its own. A session lives on the thread that owns its history store, and is told about the reply's
pieces on that thread: the window hands them over with queued Qt signals, the terminal iterates a
``StreamedReply``. Without a store (``llamadesk chat --no-save``) the turns are kept in memory only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from app.core.chat.repetition import RepetitionGuard, requested_copies
from app.core.documents.retrieval import PassageSource, excerpts_for_question, question_with_excerpts
from app.core.errors import UserError
from app.core.history.recorder import ReplyRecorder
from app.core.history.records import BranchPosition, FinalState, Message
from app.core.history.sources import ReplySource
from app.core.history.store import HistoryStore
from app.core.llm.context import ChatMessage
from app.core.llm.engine import ReplyStats
from app.core.llm.saved_state_store import saved_state_key
from app.core.llm.service import EngineClient, StreamedReply
from app.core.modes import ModePreset


class ChatSession:
    """One conversation. ``conversation_id`` is None until its first message is stored.

    With a read-only history (a file that cannot be written), stored turns are read as context and the new ones
    are kept in memory, as without a store: chatting works, and nothing new is saved.
    """

    def __init__(
        self, store: HistoryStore | None, conversation_id: int | None = None, *, mode: str = "chat"
    ) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self.mode = mode
        # The attached documents or the libraries used, for excerpts with each question.
        self.documents: PassageSource | None = None
        self.sources: list[ReplySource] = []  # the passages the last ``engine_messages`` gave the model
        self.reply_sources: list[ReplySource] = []  # those of the reply under way (or just finished)
        self._repetition: RepetitionGuard | None = None
        self._saving = store is not None and not store.read_only
        self._memory: list[ChatMessage] = []  # the turns not saved: without a store, or with a read-only one
        self._recorder: ReplyRecorder | None = None
        self._unsaved_reply = ""
        self._branch_end_before_reply: int | None = None  # restored if a new version of a reply says nothing
        self._state_key: tuple[int, str] | None = None  # (conversation id, its state key), read once

    # -- the conversation --------------------------------------------------------------------------------

    def ensure_conversation(self, *, model: str, settings: dict[str, Any] | None = None) -> int | None:
        """The stored conversation, created on first use (a conversation never said anything leaves nothing)."""
        if self.store is not None and self._saving and self.conversation_id is None:
            conversation = self.store.create_conversation(
                mode=self.mode, model=model, settings=settings or {}
            )
            self.conversation_id = conversation.id
        return self.conversation_id

    def add_user_message(
        self, text: str, *, model: str, preset: ModePreset, context_size: int
    ) -> Message | None:
        """Commit the person's message before the model is asked: whatever happens next, it is kept. Returns
        it as stored (None when it is kept in memory only)."""
        if self.store is None or not self._saving:
            self._memory.append({"role": "user", "content": text})
            return None
        settings = {
            "system_prompt": preset.system_prompt,
            "context_size": context_size,
            **dataclasses.asdict(preset.sampling),
        }
        conversation_id = self.ensure_conversation(model=model, settings=settings)
        assert conversation_id is not None
        return self.store.add_message(conversation_id, "user", text)

    def turns(self) -> list[ChatMessage]:
        stored = (
            self.store.chat_messages(self.conversation_id)
            if self.store is not None and self.conversation_id is not None
            else []
        )
        return [*stored, *self._memory]

    def engine_messages(self, preset: ModePreset, context_size: int) -> list[ChatMessage]:
        """The system prompt and the conversation; with documents attached, the passages most relevant to the
        latest question go into that question's turn, each under its document's name, and are kept as ``sources``.

        The excerpts ride with the newest question rather than being placed before the history: they change
        with every question, and placed early they would invalidate the cached evaluation of the whole
        conversation each turn.
        """
        messages: list[ChatMessage] = [{"role": "system", "content": preset.system_prompt}, *self.turns()]
        self.sources = []
        if self.documents is not None and messages[-1]["role"] == "user":
            question = messages[-1]["content"]
            context = excerpts_for_question(
                self.documents, question, context_size, preset.sampling.max_tokens
            )
            self.sources = [
                ReplySource(
                    hit.passage.document_name,
                    hit.passage.label,
                    hit.passage.page,
                    hit.passage.text,
                    question=question,
                    path=hit.passage.path,
                )
                for hit in context.hits
            ]
            messages[-1] = {"role": "user", "content": question_with_excerpts(context, question)}
        return messages

    # -- the reply ---------------------------------------------------------------------------------------

    def begin_reply(self) -> None:
        # Code repeats itself on purpose (the same line in several branches), as the Code preset's lack of a
        # repeat penalty says too; other replies that loop are cut (see ``repetition``), past the copies the
        # question asked for.
        self._repetition = None
        if self.mode != "code":
            turns = self.turns()
            question = turns[-1]["content"] if turns and turns[-1]["role"] == "user" else ""
            self._repetition = RepetitionGuard(requested=requested_copies(question))
        if self.store is not None and self._saving and self.conversation_id is not None:
            self._recorder = self.store.begin_reply(self.conversation_id)
        self._unsaved_reply = ""
        self.reply_sources = list(self.sources)

    @property
    def replying(self) -> bool:
        return self._recorder is not None or bool(self._unsaved_reply)

    @property
    def repeating(self) -> bool:
        """The reply under way has started repeating itself: the front end stops it, and what it wrote after
        its first full telling is left out when it is stored."""
        return self._repetition is not None and self._repetition.repeating

    def kept_text(self, text: str) -> str:
        """``text``, the reply as it streamed, as it is kept: without the copies of a passage it repeated."""
        return self._repetition.kept(text) if self._repetition is not None else text

    def record(self, piece: str) -> None:
        """A piece of the reply arrived; raises UserError if the history cannot be written (the reply goes on)."""
        if self._repetition is not None:
            self._repetition.feed(piece)
        if self._recorder is not None:
            self._recorder.append(piece)
        else:
            self._unsaved_reply += piece

    def finish_reply(self, state: FinalState, stats: ReplyStats | None = None) -> Message | None:
        """Store the reply with its state; None when nothing was said (stopped before its first word)."""
        recorder, self._recorder = self._recorder, None
        text, self._unsaved_reply = self.kept_text(self._unsaved_reply), ""
        if self.repeating:
            state = "complete"  # stopped by us after its first full telling, not by the person
        if recorder is not None:
            recorder.text = self.kept_text(recorder.text)
            message = recorder.finish(state, dataclasses.asdict(stats) if stats else None)
            restore, self._branch_end_before_reply = self._branch_end_before_reply, None
            if message is None and restore is not None and self.store is not None:
                # A new version of a reply stopped before its first word: the one it would have joined is shown.
                assert self.conversation_id is not None
                self.store.set_branch_end(self.conversation_id, restore)
            if message is not None and self.reply_sources and self.store is not None:
                self.store.set_reply_sources(message.id, self.reply_sources)
            return message
        if not self._saving and text:
            self._memory.append({"role": "assistant", "content": text})
        return None

    def forget_last_question(self) -> None:
        """The last question could not be answered at all (too long for the context, say): it is taken back, so
        the conversation goes on without it instead of every later prompt having to make room for it."""
        if self._memory:
            if self._memory[-1]["role"] == "user":
                self._memory.pop()
            return
        if self.store is not None and self._saving and self.conversation_id is not None:
            messages = self.store.messages(self.conversation_id)
            if messages and messages[-1].role == "user":
                self.store.delete_message(messages[-1].id)

    def ask(self, client: EngineClient, preset: ModePreset) -> StreamedReply:
        """Ask the engine for the reply to the conversation as it stands, to stream on this thread."""
        context_size = client.model.context_size if client.model else 0
        return client.stream_chat(
            self.engine_messages(preset, context_size), preset.sampling, state_key=self.state_key
        )

    @property
    def state_key(self) -> str | None:
        """The key the engine saves this conversation's llama.cpp state under; None before it is stored."""
        if self.conversation_id is None or self.store is None:
            return None
        if self._state_key is None or self._state_key[0] != self.conversation_id:
            try:
                uuid = self.store.get_conversation(self.conversation_id).uuid
            except UserError:  # unreadable just now: this reply is evaluated without a saved state
                return None
            self._state_key = (self.conversation_id, saved_state_key(uuid))
        return self._state_key[1]

    def record_stream(self, reply: StreamedReply, on_piece: Callable[[str], None]) -> ReplyStats:
        """Stream ``reply`` on this thread, recording it as it comes (the terminal's way).

        Raises UserError with the engine's sentence when the reply fails; what arrived before is kept.
        """
        self.begin_reply()
        try:
            for piece in reply:
                if self.repeating:
                    continue  # stopped below; the last pieces still arrive
                on_piece(piece)
                self.record(piece)
                if self.repeating:
                    reply.cancel()
        except UserError:
            self.finish_reply("stopped")
            raise
        assert reply.stats is not None
        self.finish_reply("stopped" if reply.stats.finish_reason == "cancelled" else "complete", reply.stats)
        return reply.stats

    # -- branches: versions of a question or a reply, none lost ------------------------------------------

    def _tree(self) -> tuple[HistoryStore, int]:
        if self.store is None or self.conversation_id is None:
            raise UserError("This conversation is not saved, so it has no earlier versions to keep.")
        return self.store, self.conversation_id

    def edit_question(self, message_id: int, text: str) -> Message:
        """Store ``text`` as a new version of question ``message_id`` (a sibling: same parent) and show its
        branch; the old question and what followed it stay, one click away. Ask for the reply as after any
        question."""
        store, conversation_id = self._tree()
        original = store.get_message(message_id)
        if original.conversation_id != conversation_id or original.role != "user":
            raise ValueError(f"message {message_id} is not a question of conversation {conversation_id}")
        return store.add_message(conversation_id, "user", text, parent_id=original.parent_id)

    def prepare_new_version(self, reply_id: int | None = None) -> bool:
        """Make the next reply a new version of reply ``reply_id`` (default: the branch's last message, if it is
        a reply): the branch on screen ends at its question, so the reply becomes the old one's sibling. False
        when there is nothing to answer. If the new reply says nothing, the old one is shown again."""
        if self.store is None or not self._saving or self.conversation_id is None:
            if self._memory and self._memory[-1]["role"] == "assistant":
                self._memory.pop()  # not saved: no versions to keep, as before branches
            return bool(self.turns())
        store, conversation_id = self.store, self.conversation_id
        end = store.branch_end(conversation_id)
        if end is None:
            return False
        reply = store.get_message(reply_id if reply_id is not None else end)
        if reply.role != "assistant":
            return reply_id is None  # the branch ends with a question (its reply failed): answer it
        if reply.parent_id is None:
            return False
        store.set_branch_end(conversation_id, reply.parent_id)
        self._branch_end_before_reply = end
        return True

    def cancel_new_version(self) -> None:
        """The new version prepared by ``prepare_new_version`` could not start: the branch ends where it did."""
        restore, self._branch_end_before_reply = self._branch_end_before_reply, None
        if restore is not None and self.store is not None and self.conversation_id is not None:
            self.store.set_branch_end(self.conversation_id, restore)

    def switch_branch(self, message_id: int) -> None:
        """Show the version ``message_id`` and the latest path below it; the engine is sent that branch."""
        store, conversation_id = self._tree()
        store.switch_branch(conversation_id, message_id)

    def branch_positions(self, messages: list[Message]) -> dict[int, BranchPosition]:
        if self.store is None or self.conversation_id is None:
            return {}
        return self.store.branch_positions(self.conversation_id, messages)
