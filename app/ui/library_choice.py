"""Which libraries the conversation shown answers from, and the Library panel's place in the window.

The choice is kept in the conversation's own ``settings`` (``settings["libraries"]``, a list of names), where
its other choices (system prompt, sampling) already are: it is per conversation by nature, so it goes with the
conversation when it is exported, imported or deleted, and needs no table, migration or key in the app's
settings that could outlive the conversation. A new chat's choice is held until its first message creates it.

The session's passage source is the libraries (searched on the library thread), the attached documents, or
both as one ``CombinedPassages``; it is set again whenever either changes, and whenever another conversation
(another session) is shown.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow

from app.core.documents.retrieval import PassageSource
from app.core.errors import UserError
from app.core.history.store import HistoryStore
from app.core.library.search import CombinedPassages
from app.core.llm.activity import EngineActivity
from app.core.paths import app_paths
from app.ui.conversation import ConversationController
from app.ui.documents import DocumentsController
from app.ui.downloads import Downloads
from app.ui.library_jobs import LibraryThread
from app.ui.library_panel import LibraryDock, LibraryPanel

log = logging.getLogger(__name__)

SETTINGS_KEY = "libraries"


class ConversationLibraries(QObject):
    """Signals:
    message(str): a sentence for the banner.
    """

    message = Signal(str)

    def __init__(
        self,
        window: QMainWindow,
        *,
        conversation: ConversationController,
        documents: DocumentsController,
        store: HistoryStore,
        downloads: Downloads | None = None,
        engine_activity: EngineActivity | None = None,
    ) -> None:
        super().__init__(window)
        self.conversation = conversation
        self.documents = documents
        self.store = store
        db_path = app_paths().ensure().library_db
        self.library_thread = LibraryThread(db_path)
        self.panel = LibraryPanel(
            self.library_thread, db_path, downloads=downloads, engine_activity=engine_activity
        )
        self.dock = LibraryDock(self.panel, window)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.names: list[str] = []  # the libraries the conversation shown uses
        self._generation = -1  # the conversation view this choice is of
        self._conversation_id: int | None = None
        conversation.conversation_changed.connect(self._on_conversation_changed)
        documents.index_changed.connect(self.apply)
        self.panel.chosen_changed.connect(self.choose)
        self.panel.changed.connect(self._on_libraries_changed)
        self.panel.message.connect(self.message)
        self.library_thread.relay.problem.connect(self.message)
        self._on_conversation_changed()

    @property
    def action(self) -> QAction:
        """Library in the toolbar: shows and hides the panel."""
        return self.dock.toggleViewAction()

    # -- the choice --------------------------------------------------------------------------------------------

    def choose(self, names: list[str]) -> None:
        """The person ticked ``names`` for the conversation shown: kept with it (or with its first message)."""
        self.names = list(names)
        conversation_id = self.conversation.conversation_id
        if conversation_id is not None:
            self._keep(conversation_id)
        self.panel.show_choice(self.names)
        self.apply()

    def _on_conversation_changed(self) -> None:
        generation = self.conversation.view_generation
        conversation_id = self.conversation.conversation_id
        if generation != self._generation:  # another conversation (and session) is shown
            self._generation, self._conversation_id = generation, conversation_id
            self.names = self._stored(conversation_id) if conversation_id is not None else []
            self.panel.show_choice(self.names)
            self.apply()
        elif conversation_id != self._conversation_id:  # a new chat's first message created it
            self._conversation_id = conversation_id
            if conversation_id is not None and self.names:
                self._keep(conversation_id)

    def _stored(self, conversation_id: int) -> list[str]:
        try:
            stored = self.store.get_conversation(conversation_id).settings.get(SETTINGS_KEY, [])
        except UserError as error:
            self.message.emit(str(error))
            return []
        names = [name for name in stored if isinstance(name, str)] if isinstance(stored, list) else []
        if self.panel.loaded:  # a library removed since is left out, not searched for in vain
            known = {library.name for library in self.panel.libraries}
            names = [name for name in names if name in known]
        return names

    def _keep(self, conversation_id: int) -> None:
        try:
            settings = dict(self.store.get_conversation(conversation_id).settings)
            settings[SETTINGS_KEY] = self.names
            self.store.update_conversation(conversation_id, settings=settings)
        except UserError as error:
            self.message.emit(str(error))

    # -- the session's passages --------------------------------------------------------------------------------

    def apply(self) -> None:
        """The session answers from the chosen libraries and the attached documents."""
        libraries = self.library_thread.passages(self.names) if self.names else None
        sources: list[PassageSource] = [
            source for source in (self.documents.index, libraries) if source is not None
        ]
        session = self.conversation.session
        if len(sources) > 1:
            session.documents = CombinedPassages(sources)
        else:
            session.documents = sources[0] if sources else None
        if self.names:
            self.library_thread.prepare(
                self.names
            )  # the embedding models load now, not at the first question

    def _on_libraries_changed(self) -> None:
        self.library_thread.forget_passages()  # indexed again or removed: read afresh
        self.apply()

    def shutdown(self) -> None:
        self.panel.shutdown()
        self.library_thread.shutdown()
