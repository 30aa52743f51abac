"""The sidebar: New chat, search, and the conversations grouped by when they were last used.

Renaming, exporting and deleting happen here, on the history store the window owns (GUI thread); the window
hears of a deleted conversation through ``deleted`` and of a chosen one through ``conversation_chosen``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QSize,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QInputDialog,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import UserError
from app.core.history.store import HistoryStore

SEARCH_DELAY_MS = 150
LIST_LIMIT = 500

# A sentence for the banner, with an optional action: (text, action label, action).
Notify = Callable[[str, str, Callable[[], None] | None], None]


class _FitToWidth(QStyledItemDelegate):
    """Rows as wide as the list, not as their text: a long title is elided ("…") instead of widening the list
    (a list widget lays its rows out at their text's width, so turning the scroll bar off alone clips them)."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        return QSize(0, super().sizeHint(option, index).height())


class ConversationList(QWidget):
    """Signals:
    new_requested(): New chat (or Ctrl+N, wired by the window).
    conversation_chosen(int): a conversation was clicked or activated.
    deleted(int): a conversation went to the trash.
    exported(str): a conversation was written to a file; the sentence names the file ("Saved to PATH").
    """

    new_requested = Signal()
    conversation_chosen = Signal(int)
    deleted = Signal(int)
    exported = Signal(str)

    def __init__(self, store: HistoryStore, notify: Notify, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self._notify = notify
        self.current_id: int | None = None
        side = QVBoxLayout(self)
        side.setContentsMargins(8, 8, 4, 8)
        self.new_chat_button = QPushButton("New chat")
        self.new_chat_button.setAccessibleName("New chat")
        self.new_chat_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_chat_button.clicked.connect(self.new_requested)
        side.addWidget(self.new_chat_button)
        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("Search conversations (Ctrl+K)")
        self.search_box.setAccessibleName("Search conversations")
        self.search_box.setClearButtonEnabled(True)
        side.addWidget(self.search_box)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self._search_now)
        self.search_box.textChanged.connect(lambda _t: self._search_timer.start())
        self.search_box.installEventFilter(self)
        self.list = QListWidget()
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setItemDelegate(_FitToWidth(self.list))
        self.list.setAccessibleName("Conversations")
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemActivated.connect(self._on_item)
        self.list.itemClicked.connect(self._on_item)
        side.addWidget(self.list, 1)
        self.setMinimumWidth(200)
        QWidget.setTabOrder(self.new_chat_button, self.search_box)
        QWidget.setTabOrder(self.search_box, self.list)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Esc in a search box with text clears it. The window's Esc (stop the reply) is a shortcut, which Qt
        would otherwise give the key to first; accepting the override keeps the key here. An empty box lets
        Esc through, so it still stops a reply."""
        if watched is self.search_box and event.type() in (
            QEvent.Type.ShortcutOverride,
            QEvent.Type.KeyPress,
        ):
            assert isinstance(event, QKeyEvent)
            if event.key() == Qt.Key.Key_Escape and self.search_box.text():
                event.accept()
                if event.type() == QEvent.Type.KeyPress:
                    self.search_box.clear()
                return True
        return super().eventFilter(watched, event)

    def query(self) -> str:
        return self.search_box.text().strip()

    def focus_search(self) -> None:
        self.search_box.setFocus()
        self.search_box.selectAll()

    def refresh(self) -> None:
        self.list.clear()
        try:
            summaries = self.store.list_conversations(self.query() or None, limit=LIST_LIMIT)
        except UserError as exc:
            self._notify(str(exc), "", None)
            return
        group = None
        for summary in summaries:
            if summary.group != group:
                group = summary.group
                header = QListWidgetItem(group)
                header.setFlags(Qt.ItemFlag.NoItemFlags)
                font = header.font()
                font.setBold(True)
                header.setFont(font)
                self.list.addItem(header)
            item = QListWidgetItem(summary.display_title)
            item.setData(Qt.ItemDataRole.UserRole, summary.id)
            item.setToolTip(f"{summary.display_title}\n{summary.mode.capitalize()} mode")
            self.list.addItem(item)
            if summary.id == self.current_id:
                item.setSelected(True)

    def _search_now(self) -> None:
        # A search typed just before the window closed fires after the window closed its history: nothing to show.
        if self.window().isVisible():
            self.refresh()

    def select(self, conversation_id: int | None) -> None:
        self.current_id = conversation_id
        if conversation_id is None:
            self.list.clearSelection()

    @Slot(QListWidgetItem)
    def _on_item(self, item: QListWidgetItem) -> None:
        conversation_id = item.data(Qt.ItemDataRole.UserRole)
        if conversation_id is not None and conversation_id != self.current_id:
            self.conversation_chosen.emit(int(conversation_id))

    def _guarded(self, action: Callable[[], None]) -> None:
        """Run a history action; a storage problem becomes the banner's sentence, not a traceback."""
        try:
            action()
        except UserError as exc:
            self._notify(str(exc), "", None)

    def _menu(self, position: QPoint) -> None:
        item = self.list.itemAt(position)
        if item is None or item.data(Qt.ItemDataRole.UserRole) is None:
            return
        menu = self.context_menu(int(item.data(Qt.ItemDataRole.UserRole)))
        menu.exec(self.list.viewport().mapToGlobal(position))
        menu.deleteLater()  # one menu per right click: not kept for the life of the sidebar

    def context_menu(self, conversation_id: int) -> QMenu:
        """The actions offered for one conversation (right click): Rename, Export, Delete."""
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self._guarded(lambda: self.rename(conversation_id)))
        menu.addAction(
            "Export as Markdown…", lambda: self._guarded(lambda: self.export(conversation_id, "md"))
        )
        menu.addAction("Export as JSON…", lambda: self._guarded(lambda: self.export(conversation_id, "json")))
        menu.addSeparator()
        menu.addAction("Delete", lambda: self._guarded(lambda: self.delete(conversation_id)))
        return menu

    def rename(self, conversation_id: int) -> None:
        current = self.store.get_conversation(conversation_id).display_title
        title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=current)
        if ok and title.strip():
            self.store.rename_conversation(conversation_id, title.strip())
            self.refresh()

    def delete(self, conversation_id: int) -> None:
        title = self.store.get_conversation(conversation_id).display_title
        self.store.delete_conversation(conversation_id)
        self.deleted.emit(conversation_id)
        self.refresh()

        def undo() -> None:
            self._guarded(lambda: self.store.restore_conversation(conversation_id))
            self.refresh()

        self._notify(f"Deleted “{title}”. It stays in the trash until you quit.", "Undo", undo)

    def export(self, conversation_id: int, kind: Literal["md", "json"]) -> None:
        title = self.store.get_conversation(conversation_id).display_title
        suffix = {"md": "Markdown (*.md)", "json": "JSON (*.json)"}[kind]
        safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in title).strip() or "conversation"
        path, _ = QFileDialog.getSaveFileName(
            self, "Export conversation", str(Path.home() / f"{safe}.{kind}"), suffix
        )
        if not path:
            return
        text = (
            self.store.export_markdown([conversation_id])
            if kind == "md"
            else self.store.export_json([conversation_id])
        )
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            self._notify(
                f"The conversation could not be saved to {path} ({exc.strerror}). Choose another folder.",
                "",
                None,
            )
            return
        self.exported.emit(f"Saved to {path}")
