"""The conversation shown in the window: sending, the reply streaming into the transcript, stop, regenerate,
edit, and switching conversations. The prompt and the recording are the core chat session's; this class only
moves its pieces between the session, the engine bridge and the widgets."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar

from app.core.chat.session import ChatSession
from app.core.errors import UserError
from app.core.history.records import BranchPosition, Conversation, Message
from app.core.history.sources import ReplySource
from app.core.history.store import HistoryStore
from app.core.llm.context import ChatMessage
from app.core.llm.engine import ModelInfo, ReplyStats
from app.core.llm.remote_info import RemoteModelInfo, RemoteReplyStats
from app.core.models.fit import record_measured_speed
from app.core.models.measured import CpuWindow
from app.core.modes import ModePreset
from app.core.settings import Settings
from app.core.units import counted
from app.ui.chat_input import InputBar
from app.ui.engine_bridge import EngineBridge
from app.ui.transcript.chat_view import PAGE, ChatView, HistoryEntry, MessageWidget
from app.ui.transcript.sources import show_sources

log = logging.getLogger(__name__)

# The temperature of a regenerated reply when the mode's own is 0 (every reply the same): low enough to stay on
# topic, high enough to write it differently.
REGENERATE_TEMPERATURE = 0.6

MIN_TIMED_TOKENS = 16  # replies shorter than this are too short to say how fast a model runs
STATUS_SECONDS_MS = 8000
NEW_VERSION_ID = 0  # stands for a reply's new version while it streams, before it is stored (ids start at 1)


class ConversationController(QObject):
    """Signals:
    message(str, str, object): a sentence for the banner, an action label and the action (or None).
    sent(): the person's message is stored and on its way (or, retried, on its way again).
    conversation_changed(): another conversation is shown, or the one shown was created or changed.
    busy_changed(): a reply started or ended.
    """

    message = Signal(str, str, object)
    sent = Signal()
    conversation_changed = Signal()
    busy_changed = Signal()

    def __init__(
        self,
        *,
        bridge: EngineBridge,
        store: HistoryStore,
        settings: Settings,
        chat_view: ChatView,
        input_bar: InputBar,
        status: QStatusBar,
        preset: Callable[[], ModePreset],
        mode: Callable[[], str],
        other_work: Callable[[], bool],
        documents_loading: Callable[[], bool],
    ) -> None:
        super().__init__(chat_view)
        self.bridge = bridge
        self.store = store
        self.settings = settings
        self.chat_view = chat_view
        self.input_bar = input_bar
        self.status = status
        self._preset = preset
        self._mode = mode
        self._other_work = other_work  # a summary is being written: the conversation must not change under it
        self._documents_loading = documents_loading  # questions asked now would miss the attached documents
        self.session = ChatSession(store, mode=mode())
        self.last_stats: ReplyStats | None = None
        self._reply_cpu: CpuWindow | None = None  # how busy the machine was while the reply ran
        self.view_generation = 0  # changes whenever another conversation is shown

        self.speed_label = QLabel()
        self.speed_label.setAccessibleName("Speed of the last reply")
        status.addPermanentWidget(self.speed_label)
        self.context_meter = QProgressBar()
        self.context_meter.setMaximumWidth(200)
        # At least as wide as its text for a large context: a long status message beside it squeezed it until
        # "Context 584 / 4096" broke onto a second, cut-off line.
        self.context_meter.setMinimumWidth(
            min(200, self.context_meter.fontMetrics().horizontalAdvance("Context 000000 / 000000") + 16)
        )
        self.context_meter.setFormat("Context %v / %m")
        self.context_meter.setAccessibleName("Context used")
        self.context_meter.setToolTip("Tokens of the conversation in the model's context window")
        status.addPermanentWidget(self.context_meter)
        self.context_meter.hide()  # until a reply says how much of the context is used

        bridge.token.connect(self._on_token)
        bridge.prompt_progress.connect(chat_view.show_prompt_progress)
        bridge.reply_finished.connect(self._on_reply_finished)
        bridge.reply_failed.connect(self._on_reply_failed)
        bridge.model_loaded.connect(self._on_model_loaded)
        chat_view.regenerate_message_requested.connect(self.regenerate_reply)
        chat_view.retry_requested.connect(self.retry_question)
        chat_view.edit_message_requested.connect(self.edit_question)
        chat_view.branch_requested.connect(self.switch_branch)

    @property
    def conversation_id(self) -> int | None:
        return self.session.conversation_id

    @property
    def mode(self) -> str:
        """The mode the window is in (a question is sent in it, an attached document is summarized in it)."""
        return self._mode()

    def busy(self) -> bool:
        """A reply, a summary or a load is under way."""
        return self.bridge.is_busy or self._other_work()

    def _say(self, text: str, action_label: str = "", action: Callable[[], None] | None = None) -> None:
        self.message.emit(text, action_label, action)

    # -- showing conversations -----------------------------------------------------------------------------

    def show_new(self) -> None:
        self.abandon_reply()
        self.input_bar.switch_draft(self.conversation_id, None)
        self.session = ChatSession(self.store, mode=self._mode())
        self.view_generation += 1
        self.chat_view.clear()
        self._show_reply_stats(None)
        self.conversation_changed.emit()

    def show(self, conversation_id: int, highlight: list[str]) -> Conversation | None:
        """Show a stored conversation, newest messages first and older ones as the person scrolls up; returns
        it (its mode and model, for the window to follow), or None if it could not be read."""
        self.abandon_reply()
        store = self.store
        try:
            conversation = store.get_conversation(conversation_id)
            if highlight:
                self._show_branch_with_match(conversation_id, highlight)
            # A search shows every message from the first match on, so all are read; otherwise one page.
            newest = (
                store.messages(conversation_id) if highlight else store.recent_messages(conversation_id, PAGE)
            )
            shown = _entries(store, newest)
        except UserError as exc:
            self._say(str(exc))
            return None
        oldest = [newest[0].id] if newest else []

        def fetch_older(count: int) -> list[HistoryEntry]:
            if not oldest:
                return []
            try:
                older = store.recent_messages(conversation_id, count, before_id=oldest[0])
                entries = _entries(store, older)
            except UserError as exc:
                self._say(str(exc))
                return []
            if older:
                oldest[0] = older[0].id
            return entries

        self.input_bar.switch_draft(self.conversation_id, conversation_id)
        self.session = ChatSession(store, conversation_id, mode=self._mode())
        # The last reply's stats, stored with it, say how much of the context this conversation uses.
        replies = [m for m in newest if m.role == "assistant"]
        self._show_reply_stats(_stats_from_dict(replies[-1].stats) if replies else None)
        self.view_generation += 1
        self.chat_view.clear()
        self.chat_view.show_history(
            shown, None if highlight or len(newest) < PAGE else fetch_older, highlight
        )
        self.conversation_changed.emit()
        return conversation

    def _show_reply_stats(self, stats: ReplyStats | None) -> None:
        """The status bar describes the reply at the end of the branch on screen: its speed and how much of the
        context it used (nothing for a reply without them: one that failed, or none)."""
        self.last_stats = stats
        speed = stats.tokens_per_second if stats is not None else 0.0
        self.speed_label.setText(f"{speed:.1f} tokens/s" if speed > 0 else "")
        self._show_context()

    def _show_stats_on_screen(self) -> None:
        replies = [m for m in self.chat_view.messages if m.role == "assistant"]
        self._show_reply_stats(replies[-1].stats if replies else None)

    def _show_context(self) -> None:
        """The meter shows what the last reply used of the context window (of the loaded model, else of the
        one that wrote it); with no reply yet it shows nothing, not "0 / 100"."""
        stats = self.last_stats
        model = self.bridge.model
        size = model.context_size if model is not None else (stats.context_size if stats else 0)
        if stats is None or size <= 0 or stats.context_used <= 0:
            self.context_meter.hide()
            return
        self.context_meter.setMaximum(size)
        self.context_meter.setValue(min(stats.context_used, size))
        self.context_meter.show()

    # -- sending and replies -------------------------------------------------------------------------------

    def send(self) -> None:
        text = self.input_bar.input.toPlainText().strip()
        if not text or self.bridge.is_generating:
            return
        if self._other_work():
            self._say("A summary is being written; your message is kept. Stop the summary (Esc) or wait.")
            return
        model = self.bridge.model
        if model is None:
            if self.bridge.is_loading:
                self._say("The model is still loading; your message is kept. Send it when loading is done.")
            else:
                self._say("No model is loaded. Choose one in the model menu or open a GGUF file (Ctrl+O).")
            return
        if self.bridge.is_busy:
            self._say("The model is still busy; your message is kept. Send it again in a moment.")
            return
        if self._documents_loading():
            self._say(
                "The attached documents are still being read; your message is kept. Send it in a moment."
            )
            return
        self.session.mode = self._mode()
        editing = self.input_bar.editing_id
        try:
            if editing is not None:
                stored: Message | None = self.session.edit_question(editing, text)
            else:
                stored = self.session.add_user_message(
                    text,
                    model=str(model.path),
                    preset=self._preset(),
                    context_size=self.settings.context_size,
                )
        except UserError as exc:
            self._say(str(exc))
            return
        if editing is not None:
            self.input_bar.edit_sent()  # the draft set aside comes back
            self._show_branch()  # the new version of the question, in place of the old one
        else:
            self.input_bar.input.clear()
            self.chat_view.add_message("user", text).set_stored(stored.id if stored else None)
        self.chat_view.scroll_to_end()
        self.sent.emit()
        self.conversation_changed.emit()
        try:
            self._start_reply()
        except UserError as exc:
            self._say(str(exc))

    def engine_messages(self) -> list[ChatMessage]:
        """What the model is sent for the conversation as it stands."""
        model = self.bridge.model
        context_size = model.context_size if model else self.settings.context_size
        return self.session.engine_messages(self._preset(), context_size)

    def _start_reply(self, *, another_version: bool = False, versions: BranchPosition | None = None) -> None:
        messages = self.engine_messages()
        self.session.begin_reply()
        self.speed_label.setText("")  # the figure was the previous reply's; the new one's comes when it ends
        show_sources(self.chat_view.begin_reply(versions).body, self.session.reply_sources)
        self._reply_cpu = CpuWindow.start()
        sampling = self._preset().sampling
        if another_version and sampling.temperature == 0:
            # Regenerate asks for a different reply: at temperature 0 it would be the same one, word for word.
            sampling = dataclasses.replace(sampling, temperature=REGENERATE_TEMPERATURE)
        self.bridge.chat(messages, sampling, state_key=self.session.state_key)
        self.busy_changed.emit()

    def stop(self) -> None:
        self.bridge.stop()

    def abandon_reply(self) -> None:
        """Leaving a conversation mid-reply: stop it and keep what was written, marked stopped."""
        if not self.bridge.is_generating:
            return
        self.bridge.abandon_reply()
        _saved, problem = self._finish_session_reply("stopped")
        if problem:
            self._say(problem)
        self.chat_view.finish_reply(None, "stopped")
        self.busy_changed.emit()

    def _finish_session_reply(
        self, state: Literal["complete", "stopped"], stats: ReplyStats | None = None
    ) -> tuple[Message | None, str]:
        """The stored reply (None when nothing was said), and a sentence if the history could not keep it."""
        try:
            return self.session.finish_reply(state, stats), ""
        except UserError as exc:
            return None, str(exc)

    @Slot(str)
    def _on_token(self, text: str) -> None:
        if self.session.repeating:
            return  # being stopped: the reply repeats itself (see ``session.repeating``)
        self.chat_view.append_to_reply(text)
        try:
            self.session.record(text)
        except UserError as exc:
            self._say(str(exc))
        if self.session.repeating:
            self.bridge.stop()

    @Slot(ReplyStats)
    def _on_reply_finished(self, stats: ReplyStats) -> None:
        state: Literal["stopped", "complete"] = (
            "stopped" if stats.finish_reason == "cancelled" else "complete"
        )
        saved, problem = self._finish_session_reply(state, stats)
        if problem:
            self._say(problem)
        streaming = self.chat_view.streaming_message
        self.chat_view.finish_reply(stats, state)
        if streaming is not None and self.session.repeating:
            streaming.set_text(self.session.kept_text(streaming.text))
            streaming.set_state("complete")
        if saved is None and streaming is not None and not streaming.text:
            self.chat_view.remove_last()  # stopped before the first word: nothing to keep
        if saved is not None and streaming is not None:
            streaming.set_stored(saved.id, self.session.branch_positions([saved]).get(saved.id))
        elif saved is None:
            self._show_branch()  # a new version of a reply that said nothing: the old one is back
        self._record_speed(stats)
        self._show_reply_stats(stats)
        if stats.dropped_messages:
            self.status.showMessage(
                f"Left out of this reply to fit the context: the {counted(stats.dropped_turns, 'oldest turn')}.",
                STATUS_SECONDS_MS,
            )
        self.busy_changed.emit()
        self.conversation_changed.emit()

    def _record_speed(self, stats: ReplyStats) -> None:
        """Teach the fit advisor how fast this model really runs here (replies too short to time are skipped, and
        so are replies that shared the machine with hashing the model file: no measurement of the model)."""
        model = self.bridge.model
        if model is None or stats.generated_tokens < MIN_TIMED_TOKENS or stats.tokens_per_second <= 0:
            return
        if stats.hashing_model:
            return
        try:
            busy = self._reply_cpu.busy_share() if self._reply_cpu is not None else None
            record_measured_speed(
                model.path, model.parameters, model.file_size, stats.tokens_per_second, busy_share=busy
            )
        except OSError:
            log.warning("could not record the measured speed", exc_info=True)

    @Slot(str)
    def _on_reply_failed(self, message: str) -> None:
        saved: Message | None = None
        failure = self._failure_stats()
        if self.session.replying:
            saved, problem = self._finish_session_reply("stopped", failure)
            message = f"{message} {problem}".strip()
        streaming = self.chat_view.streaming_message
        self.chat_view.finish_reply(failure, "failed")
        if streaming is not None and not streaming.text:
            self.chat_view.remove_last()
        if saved is not None and streaming is not None:
            streaming.set_stored(saved.id, self.session.branch_positions([saved]).get(saved.id))
        else:
            self._show_branch()  # a new version of a reply that failed at once: the old one is back
        # A question left without a reply says why under it, with Retry (a reply that broke off has its own).
        self.chat_view.show_failure(message)
        self._show_stats_on_screen()
        self._say(message, "Try again", self.regenerate)
        self.busy_changed.emit()

    def _failure_stats(self) -> ReplyStats:
        """What is kept with a reply that broke off: that it failed, and which engine and model wrote it."""
        model = self.bridge.model
        if isinstance(model, RemoteModelInfo):
            return RemoteReplyStats(
                finish_reason="failed",
                context_size=model.context_size,
                server=model.base_url,
                model=model.name,
            )
        return ReplyStats(finish_reason="failed", model=str(model.path) if model is not None else "")

    @Slot(ModelInfo)
    def _on_model_loaded(self, info: ModelInfo) -> None:
        self.chat_view.assistant_name = info.display_name  # the name the terminal and the picker show too
        self._show_context()
        if self.conversation_id is not None:
            try:
                self.store.update_conversation(self.conversation_id, model=str(info.path))
            except UserError as exc:
                self._say(str(exc))

    # -- changing the past -----------------------------------------------------------------------------------

    def regenerate(self) -> None:
        """Write the last reply again (or answer the last question if its reply failed)."""
        self._regenerate(None)

    def retry_question(self, question: MessageWidget) -> None:
        """Send ``question``, whose reply failed, again: it is answered where it stands (stored once, never
        copied), as Regenerate answers a branch that ends with a question."""
        if not self.chat_view.messages or question is not self.chat_view.messages[-1]:
            return  # answered since: there is nothing to retry
        if self._regenerate(None):
            self.sent.emit()  # the failure's sentence no longer holds

    def regenerate_reply(self, reply: MessageWidget) -> None:
        """Write ``reply`` again: a new version of it, answering the conversation up to its question; the
        turns below it stay with the old version."""
        last_reply = next((m for m in reversed(self.chat_view.messages) if m.role == "assistant"), None)
        if reply is last_reply and reply is self.chat_view.messages[-1]:
            self._regenerate(None)
        elif reply.message_id is None or self.store.read_only:
            self._say("This conversation is not saved, so only its last reply can be written again.")
        else:
            self._regenerate(reply.message_id)

    def _regenerate(self, reply_id: int | None) -> bool:
        """Whether the new reply started. A conversation not saved (no id) is answered from the turns the
        session keeps in memory."""
        if self.busy() or self.bridge.model is None:
            return False
        try:
            shown = self.chat_view.messages
            old_id = reply_id if reply_id is not None else (shown[-1].message_id if shown else None)
            # A question whose reply failed is answered as asked; a reply written again is asked to differ.
            replacing = reply_id is not None or (bool(shown) and shown[-1].role == "assistant")
            if not self.session.prepare_new_version(reply_id):
                return False
            versions = self._new_version_position(old_id)
            if self.store.read_only and shown and shown[-1].role == "assistant":
                self.chat_view.remove_last()  # not saved: written again in place
            self._show_branch()  # the branch now ends at the question; the old reply stays a version
            self._start_reply(another_version=replacing, versions=versions)
            return True
        except UserError as exc:
            self._say(str(exc))
            try:  # the old reply is shown again, not hidden behind a version that never started
                self.session.cancel_new_version()
                self._show_branch()
            except UserError:
                log.warning("the branch on screen could not be restored after a failed regenerate")
            return False

    def _new_version_position(self, old_reply_id: int | None) -> BranchPosition | None:
        """Where a new version of reply ``old_reply_id`` will stand among its versions: after the last one."""
        if old_reply_id is None or self.store.read_only or self.conversation_id is None:
            return None
        old = self.store.get_message(old_reply_id)
        if old.role != "assistant":
            return None  # the branch ended with a question: the reply is a first one
        position = self.store.branch_positions(self.conversation_id, [old]).get(old.id)
        siblings = position.sibling_ids if position is not None else (old.id,)
        return BranchPosition((*siblings, NEW_VERSION_ID), len(siblings))

    def edit_question(self, question: MessageWidget) -> None:
        """Put a question in the input to edit (the draft set aside): sending it adds a new version of the
        question, and Cancel leaves everything as it was. Nothing is removed."""
        if self.busy() or self.conversation_id is None:
            return
        if question.message_id is None:
            self._say(
                "This conversation is not saved, so its questions cannot be edited. Send a new one instead."
            )
            return
        self.input_bar.begin_edit(question.message_id, question.text)
        self.busy_changed.emit()

    def switch_branch(self, shown: MessageWidget, version_id: int) -> None:
        """Show version ``version_id`` in place of the message ``shown``, and the latest path below it."""
        if self.busy():
            self._say("Wait for the reply to finish (or stop it), then switch versions.")
            return
        try:
            self.session.switch_branch(version_id)
            self._show_branch()
            self._show_stats_on_screen()
        except UserError as exc:
            self._say(str(exc))
        self.conversation_changed.emit()

    def _show_branch_with_match(self, conversation_id: int, terms: list[str]) -> None:
        """A search found this conversation by words that are only in another version of a message: show the
        branch through the best match, so the person sees what they searched for."""
        if self.store.read_only:
            return
        hits = [hit for hit in self.store.search(" ".join(terms)) if hit.conversation_id == conversation_id]
        on_screen = {message.id for message in self.store.messages(conversation_id)}
        if hits and not any(hit.message_id in on_screen for hit in hits):
            self.store.switch_branch(conversation_id, hits[0].message_id)

    def _show_branch(self) -> None:
        """Bring the transcript in line with the branch on screen after it changed (another version chosen, a
        question edited, a reply about to be written again): from the first message that differs, the shown
        messages are rebuilt; those above stay as they are."""
        conversation_id = self.conversation_id
        shown = self.chat_view.messages
        if conversation_id is None or self.store.read_only or not shown or shown[0].message_id is None:
            return
        branch = self.store.messages(conversation_id)
        ids = [m.id for m in branch]
        if shown[0].message_id in ids:
            start = ids.index(shown[0].message_id)
        else:  # the first message shown is the one replaced: its version on this branch has the same parent
            parent = self.store.get_message(shown[0].message_id).parent_id
            start = next((i for i, m in enumerate(branch) if m.parent_id == parent), len(branch))
        for offset, widget in enumerate(shown):
            if widget is self.chat_view.streaming_message:
                return
            if start + offset >= len(branch) or widget.message_id != branch[start + offset].id:
                self.chat_view.replace_from(widget, _entries(self.store, branch[start + offset :]))
                return
        if start + len(shown) < len(branch):
            self.chat_view.replace_from(None, _entries(self.store, branch[start + len(shown) :]))


def _entry(
    message: Message, sources: Sequence[ReplySource] = (), branch: BranchPosition | None = None
) -> HistoryEntry:
    stats = _stats_from_dict(message.stats)
    # A reply that broke off is stored as stopped (its text is cut short), with why in its stats.
    failed = message.state == "stopped" and stats is not None and stats.finish_reason == "failed"
    return HistoryEntry(
        message.role,
        message.content,
        "failed" if failed else message.state,
        stats,
        tuple(sources),
        message_id=message.id,
        branch=branch,
        author=_author(stats),
    )


UNKNOWN_AUTHOR = "Unknown model"


def _author(stats: ReplyStats | None) -> str:
    """The name of the model that wrote a reply, as the model menu shows it; UNKNOWN_AUTHOR when its stats do
    not say (a reply stored before they did, or imported without it): never the model loaded now, which may not
    be the one that wrote it."""
    if stats is None or not stats.model:
        return UNKNOWN_AUTHOR
    if stats.engine == "server":
        return f"{stats.model} (server)"
    return Path(stats.model).stem


def _entries(store: HistoryStore, messages: Sequence[Message]) -> list[HistoryEntry]:
    """``messages`` to show, each reply with the sources stored with it (read for all of them at once)."""
    sources = store.reply_sources(m.id for m in messages if m.role == "assistant")
    branches = store.branch_positions(messages[0].conversation_id, messages) if messages else {}
    return [_entry(m, sources.get(m.id, ()), branches.get(m.id)) for m in messages]


def _stats_from_dict(data: dict[str, Any] | None) -> ReplyStats | None:
    if not data:
        return None
    known = {f.name for f in dataclasses.fields(ReplyStats)}
    try:
        return ReplyStats(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None
