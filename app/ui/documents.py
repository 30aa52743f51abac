"""Documents in the window: attaching (drop or Attach…), their cards in the transcript, and their summaries.

Reading a file, storing it and indexing its passages all happen off the GUI thread: a read is a pool job, and
storing and indexing another one that opens its own connection to the history (a connection belongs to the
thread that opened it) and builds a fresh passage index of the conversation's documents, which the GUI thread
then owns. A summary runs on the engine service as a job; everything about the summary under way is one
``SummaryRun``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QThreadPool, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QStatusBar, QWidget

from app.core.documents.document import Document
from app.core.documents.extraction_process import ReadingStopped
from app.core.documents.reader import read_document
from app.core.documents.retrieval import DocumentIndex, approximate_tokens
from app.core.documents.summarize import Summarizer
from app.core.documents.summary_types import SummaryProgress, SummaryResult, SummaryStyle, summary_style
from app.core.errors import UserError
from app.core.history.store import HistoryStore
from app.core.llm.engine import ModelInfo
from app.core.llm.protocol import ChatEngine
from app.core.llm.remote_info import RemoteModelInfo
from app.core.llm.service import Ticket
from app.core.modes import Mode
from app.ui.background import keep_until_deleted, run_in_pool
from app.ui.conversation import ConversationController
from app.ui.document_card import DocumentCard, ReadingCard
from app.ui.engine_bridge import EngineBridge
from app.ui.transcript.chat_view import ChatView

log = logging.getLogger(__name__)

STATUS_MS = 5000
FILE_FILTER = (
    "Documents (*.pdf *.docx *.txt *.md *.markdown *.rst *.html *.htm *.py *.js *.ts *.java *.c *.cpp "
    "*.h *.rs *.go *.rb *.sh *.json *.yaml *.yml *.toml *.csv);;All files (*)"
)


@dataclass
class Attached:
    """A document of the conversation shown, with its row id and its card."""

    document_id: int
    document: Document
    card: DocumentCard


@dataclass
class _Indexed:
    """What a storing or loading job hands back: the conversation's documents and their new passage index."""

    conversation_id: int
    generation: int
    attached: list[tuple[int, Document, str | None]]  # (document id, document, summary), as stored
    index: DocumentIndex | None
    added: Document | None = None  # the document this job stored, if it stored one
    added_id: int | None = None  # its row id
    duplicate: str | None = None  # the name of a document that was already attached


@dataclass(eq=False)  # each reading is itself: the same file dropped twice is read twice
class _Reading:
    """A file being read, then stored and indexed, before it joins the conversation; its card offers Stop."""

    name: str
    card: ReadingCard
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class SummaryRun:
    """The summary being written: whose it is, where it is saved, and how to stop it."""

    number: int  # tells this run's text and progress from those of a run stopped before it
    document_id: int
    content_hash: str
    conversation_id: int
    card: DocumentCard
    ticket: Ticket | None = None
    streamed: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.streamed)


class _SummarySignals(QObject):
    """Emitted from the engine thread while a summary runs; queued to the GUI thread. With no Qt parent and
    kept (``keep_until_deleted``) for good: the engine thread may still emit after the window is gone, and an
    object deleted while another thread emits on it crashes the process."""

    progress = Signal(int, SummaryProgress)  # the run's number, and its progress
    text = Signal(int, str)


class DocumentsController(QObject):
    """Signals:
    message(str): a sentence for the banner.
    attached(): a document joined the conversation (the window refreshes; in Summarize mode it is summarized).
    busy_changed(): a summary started or ended.
    index_changed(): the attached documents' passage index was replaced (the libraries join it again).
    """

    message = Signal(str)
    attached = Signal()
    busy_changed = Signal()
    index_changed = Signal()

    def __init__(
        self,
        *,
        bridge: EngineBridge,
        store: HistoryStore,
        conversation: ConversationController,
        chat_view: ChatView,
        status: QStatusBar,
        window: QWidget,
    ) -> None:
        super().__init__(window)
        self.bridge = bridge
        self.store = store
        self.conversation = conversation
        self.chat_view = chat_view
        self.status = status
        self.window = window
        self.documents: dict[str, Attached] = {}  # by content hash, for the conversation shown
        self.summary: SummaryRun | None = None
        self._runs = 0
        self._index: DocumentIndex | None = (
            None  # the passage index of the conversation shown; the session uses it
        )
        self._loading: int | None = None  # the view generation whose documents are being read
        self._readings: list[_Reading] = []  # files dropped or chosen, not yet attached
        # One thread: documents are stored and indexed one after another, each index built from all before it.
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self.summary_signals = _SummarySignals()
        keep_until_deleted(self.summary_signals)
        self.summary_signals.progress.connect(self._on_summary_progress)
        self.summary_signals.text.connect(self._on_summary_text)

    @property
    def summarizing(self) -> bool:
        return self.summary is not None

    @property
    def loading(self) -> bool:
        """The documents of the conversation shown are still being read (questions would miss them)."""
        return self._loading is not None and self._loading == self.conversation.view_generation

    # -- attaching -------------------------------------------------------------------------------------------

    def choose(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self.window, "Attach documents", str(Path.home()), FILE_FILTER
        )
        if paths:
            self.attach(paths)

    def attach(self, paths: list[str]) -> None:
        """Read each file off the GUI thread, under a card with Stop; a readable one joins the conversation, a
        bad one gets its sentence."""
        for path in paths:
            self._read(Path(path))

    def _read(self, path: Path) -> None:
        reading = _Reading(path.name, ReadingCard(path.name))
        reading.card.stop_requested.connect(lambda: self._stop_reading(reading))
        self._readings.append(reading)
        self.chat_view.add_widget(reading.card)
        self.chat_view.scroll_to_end()
        self.status.showMessage(f"Reading {path.name}…", STATUS_MS)
        run_in_pool(
            lambda: read_document(path, cancel=reading.cancel),
            lambda document: self._on_read(reading, document),
            lambda error: self._on_read_failed(reading, error),
            owner=self,
        )

    @property
    def reading(self) -> bool:
        """A file is being read, stored or indexed (its card shows Stop)."""
        return bool(self._readings)

    def stop_reading(self) -> None:
        """Stop every file being read (Esc, or leaving the conversation): none of them is attached."""
        for reading in list(self._readings):
            self._stop_reading(reading)

    def _stop_reading(self, reading: _Reading) -> None:
        # The reading thread sees the event within moments and kills the reader process; what it or the
        # storing job hands back afterwards is dropped (``_on_read``, ``_on_stored``).
        reading.cancel.set()
        if self._end_reading(reading):
            self.status.showMessage(f"Stopped reading {reading.name}; it was not attached.", STATUS_MS)

    def _end_reading(self, reading: _Reading) -> bool:
        """The reading is over: its card goes. False when it was already over (stopped before its answer)."""
        if reading not in self._readings:
            return False
        self._readings.remove(reading)
        self.chat_view.remove_widget(reading.card)
        return True

    def _on_read_failed(self, reading: _Reading, error: BaseException) -> None:
        if not self._end_reading(reading) or isinstance(error, ReadingStopped):
            return
        if isinstance(error, UserError):
            self.message.emit(str(error))
            return
        log.error("reading %s failed", reading.name, exc_info=error)
        self.message.emit(f"{reading.name} could not be read. Try again, or save it in another format.")

    def _on_read(self, reading: _Reading, document: Document) -> None:
        if reading.cancel.is_set():
            return  # stopped as its reading ended
        if document.content_hash in self.documents:
            self._end_reading(reading)
            self.status.showMessage(f"{document.name} is already attached to this conversation.", STATUS_MS)
            return
        model = self.bridge.model
        try:
            conversation_id = self.conversation.session.ensure_conversation(
                model=str(model.path) if model else ""
            )
        except UserError as exc:
            self._end_reading(reading)
            self.message.emit(str(exc))
            return
        if conversation_id is None:  # the history is open read-only
            self._end_reading(reading)
            self.message.emit(
                f"{document.name} was not attached: the conversation history is open read-only, so nothing new "
                "can be kept. Make it writable and restart LlamaDesk to attach documents."
            )
            return
        reading.card.set_indexing()
        generation = self.conversation.view_generation
        path = self.store.path
        stopped = reading.cancel

        def store_and_index() -> _Indexed:
            if stopped.is_set():
                raise ReadingStopped
            with HistoryStore(path) as own:
                attached = own.attached_documents(conversation_id)
                if any(known.content_hash == document.content_hash for _, known in attached):
                    return _Indexed(conversation_id, generation, [], None, duplicate=document.name)
                stored = own.add_document(
                    conversation_id, document, token_count=approximate_tokens(document.text)
                )
            rows = [(row.id, known, row.summary) for row, known in attached] + [(stored.id, document, None)]
            # Stopped while it was stored: no index is built; the document is taken out again (``_on_stored``).
            index = None if stopped.is_set() else _index_of([d for _, d, _ in rows])
            return _Indexed(conversation_id, generation, rows, index, added=document, added_id=stored.id)

        def on_error(error: BaseException) -> None:
            if not self._end_reading(reading) or isinstance(error, ReadingStopped):
                return
            self.message.emit(
                str(error) if isinstance(error, UserError) else f"{document.name} could not be stored."
            )

        run_in_pool(
            store_and_index, lambda result: self._on_stored(result, reading), on_error, self._pool, owner=self
        )

    def _on_stored(self, result: _Indexed, reading: _Reading) -> None:
        if not self._end_reading(reading):  # stopped while it was stored and indexed
            self._take_back(result)
            return
        if result.duplicate:
            self.status.showMessage(
                f"{result.duplicate} is already attached to this conversation.", STATUS_MS
            )
            return
        if result.generation != self.conversation.view_generation:
            if result.index is not None:
                result.index.close()  # the person moved on; the document is stored with its conversation
            return
        self._use_index(result.index)
        for document_id, document, summary in result.attached:
            if document.content_hash not in self.documents:
                self._add_card(document_id, document, summary)
        self.attached.emit()
        added = self.documents.get(result.added.content_hash) if result.added else None
        if added is None:
            return
        # Only Summarize mode summarizes what is attached; in Chat or Code mode a document is attached to be
        # asked about, and its card offers Summarize.
        if self.conversation.mode != Mode.SUMMARIZE.value:
            added.card.set_idle("Attached. Ask questions about it, or summarize it.")
        elif self.bridge.model is not None and not self.conversation.busy():
            self.summarize(added.document.content_hash, added.card.chosen_style())
        else:
            added.card.set_idle("Attached. Summarize it when the model is ready, or ask about it.")

    # -- the conversation shown --------------------------------------------------------------------------------

    def clear(self) -> None:
        self.stop_reading()  # a file still being read was dropped into the conversation left
        self.documents = {}
        self._loading = None
        self._use_index(None)

    def load(self, conversation_id: int) -> None:
        """Show the documents of a conversation just opened; read and indexed off the GUI thread."""
        self.clear()
        generation = self._loading = self.conversation.view_generation
        path = self.store.path

        def read_and_index() -> _Indexed:
            with HistoryStore(path) as own:
                attached = own.attached_documents(conversation_id)
            rows = [(row.id, document, row.summary) for row, document in attached]
            index = _index_of([d for _, d, _ in rows]) if rows else None
            return _Indexed(conversation_id, generation, rows, index)

        def on_error(error: BaseException) -> None:
            if generation == self._loading:
                self._loading = None
            self.message.emit(
                str(error) if isinstance(error, UserError) else "The attached documents could not be read."
            )

        run_in_pool(read_and_index, self._on_loaded, on_error, self._pool)

    def _on_loaded(self, result: _Indexed) -> None:
        if result.generation != self.conversation.view_generation:
            if result.index is not None:
                result.index.close()
            return
        self._loading = None
        self._use_index(result.index)
        for document_id, document, summary in result.attached:
            self._add_card(document_id, document, summary, at_top=True)

    def _take_back(self, result: _Indexed) -> None:
        """A document stored as its reading was stopped: out of the conversation again, as the person asked."""
        if result.index is not None:
            result.index.close()
        if result.added_id is not None:
            try:
                self.store.remove_document(result.added_id)
            except UserError as exc:
                self.message.emit(str(exc))

    def _use_index(self, index: DocumentIndex | None) -> None:
        """``index`` becomes the conversation's; the one it replaces is closed (this controller owns both)."""
        if self._index is not None and self._index is not index:
            self._index.close()
        self._index = index
        self.conversation.session.documents = index
        self.index_changed.emit()

    @property
    def index(self) -> DocumentIndex | None:
        """The passage index of the conversation shown's attached documents (None: none attached)."""
        return self._index

    def _add_card(
        self, document_id: int, document: Document, summary: str | None, *, at_top: bool = False
    ) -> DocumentCard:
        card = DocumentCard(document, approximate_tokens(document.text))
        card.summarize_requested.connect(
            lambda style, h=document.content_hash: self.summarize(h, summary_style(style))
        )
        card.stop_requested.connect(self.stop)
        if summary:
            card.set_idle("Summarized. Ask questions about it, or summarize it in another style.")
        if at_top:
            self.chat_view.insert_widget(len(self.documents), card)
        else:
            self.chat_view.add_widget(card)
            self.chat_view.scroll_to_end()
        self.documents[document.content_hash] = Attached(document_id, document, card)
        return card

    # -- summaries ---------------------------------------------------------------------------------------------

    def summarize(self, content_hash: str, style: SummaryStyle) -> None:
        attached = self.documents.get(content_hash)
        conversation_id = self.conversation.conversation_id
        if attached is None or conversation_id is None:
            return
        if self.bridge.model is None:
            self.message.emit("No model is loaded. Choose one in the model menu, then summarize.")
            return
        if self.conversation.busy():
            self.message.emit("The model is busy. Stop the current reply or summary first (Esc).")
            return
        self._runs += 1
        run = SummaryRun(self._runs, attached.document_id, content_hash, conversation_id, attached.card)
        document = attached.document
        signals = self.summary_signals
        number = run.number

        def job(engine: ChatEngine, cancel: threading.Event) -> SummaryResult:
            summarizer = Summarizer(engine)  # built on the engine thread, with the engine it is given
            return summarizer.summarize(
                document,
                style,
                on_progress=lambda progress: signals.progress.emit(number, progress),
                on_text=lambda text: signals.text.emit(number, text),
                cancel=cancel,
            )

        self.summary = run
        attached.card.set_started()
        run.ticket = self.bridge.run_job(
            job,
            lambda result: self._on_summary_finished(run, result),
            lambda message: self._on_summary_failed(run, message),
        )
        self.busy_changed.emit()

    def _shown(self, run: SummaryRun) -> bool:
        return run.conversation_id == self.conversation.conversation_id

    @Slot(int, SummaryProgress)
    def _on_summary_progress(self, number: int, progress: SummaryProgress) -> None:
        run = self.summary
        if run is not None and run.number == number and self._shown(run):
            run.card.set_progress(progress)

    @Slot(int, str)
    def _on_summary_text(self, number: int, text: str) -> None:
        run = self.summary
        if run is None or run.number != number:
            return
        run.streamed.append(text)
        if self._shown(run):
            if self.chat_view.streaming_message is None:
                self.chat_view.begin_reply()
            self.chat_view.append_to_reply(text)

    def _on_summary_finished(self, run: SummaryRun, result: SummaryResult) -> None:
        if run is not self.summary:
            return  # abandoned: its partial text was kept when the person left
        shown = self._shown(run)
        streaming = self.chat_view.streaming_message if shown else None
        if streaming is not None:
            self.chat_view.finish_reply(None, "stopped" if result.cancelled else "complete")
        if result.text:
            try:
                self.store.add_message(
                    run.conversation_id,
                    "assistant",
                    result.text,
                    state="stopped" if result.cancelled else "complete",
                    stats={
                        "summary_of": result.document_name,
                        "style": result.style,
                        "parts": result.chunk_count,
                        **_writer(self.bridge.model),
                    },
                )
                if not result.cancelled:
                    self.store.set_document_summary(run.document_id, result.text)
            except UserError as exc:
                self.message.emit(str(exc))
        elif streaming is not None and not streaming.text:
            self.chat_view.remove_last()
        if shown:
            run.card.set_finished(result)
        self._end_summary()

    def _on_summary_failed(self, run: SummaryRun, message: str) -> None:
        if run is not self.summary:
            return
        if self._shown(run):
            streaming = self.chat_view.streaming_message
            if streaming is not None:
                self.chat_view.finish_reply(None, "failed")
                if not streaming.text:
                    self.chat_view.remove_last()
            run.card.set_failed(message)
        if message:
            self.message.emit(message)
        self._end_summary()

    def _end_summary(self) -> None:
        self.summary = None
        self.busy_changed.emit()

    def stop(self) -> None:
        if self.summary is not None and self.summary.ticket is not None:
            self.summary.ticket.cancel()

    def abandon_summary(self) -> None:
        """Leaving the conversation mid-summary: stop it, and keep what was written as a stopped reply."""
        run = self.summary
        if run is None:
            return
        self.stop()
        self.summary = None
        if run.text:
            try:
                self.store.add_message(run.conversation_id, "assistant", run.text, state="stopped")
            except UserError as exc:
                self.message.emit(str(exc))
        if self.chat_view.streaming_message is not None:
            self.chat_view.finish_reply(None, "stopped")
        self.busy_changed.emit()


def _index_of(documents: list[Document]) -> DocumentIndex:
    """A passage index of ``documents``, built on the calling (pool) thread and then handed to the GUI thread."""
    index = DocumentIndex(handed_over=True)
    for document in documents:
        index.add(document)
    return index


def _writer(model: ModelInfo | None) -> dict[str, str]:
    """Which model wrote a summary, in a reply's stats as the transcript reads them (``engine``, ``model``)."""
    if model is None:
        return {}
    if isinstance(model, RemoteModelInfo):
        return {"engine": "server", "model": model.name}
    return {"engine": "local", "model": str(model.path)}
