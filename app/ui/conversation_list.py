"""The sidebar: New chat, Import, search, and the conversations grouped by when they were last used.

Renaming, exporting and deleting happen here, on the history store the window owns (GUI thread); importing
too, on a store of its own off the GUI thread (``import_action``). The window hears of a deleted conversation
through ``deleted`` and of a chosen (or just imported) one through ``conversation_chosen``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path, PurePath
from typing import Literal

from PySide6.QtCore import (
    QAbstractItemModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QDropEvent, QFont, QFontMetrics, QKeyEvent, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import UserError
from app.core.history.records import ConversationSummary, to_datetime
from app.core.history.store import HistoryStore
from app.core.modes import Mode
from app.ui.import_action import ConversationImport, ImportReport, is_export_file

SEARCH_DELAY_MS = 150
LIST_LIMIT = 500

# A sentence for the banner, with an optional action: (text, action label, action).
Notify = Callable[[str, str, Callable[[], None] | None], None]


DETAILS_ROLE = Qt.ItemDataRole.UserRole + 1  # a row's second line: last activity, mode, model
ROW_PADDING = 3  # pixels above the title and below the second line


def activity_label(updated_ms: int, now: datetime | None = None) -> str:
    """When a conversation was last used, as short as still tells rows apart: the time today, the day this
    year ("Mar 4"), else the full date ("2025-03-04")."""
    moment = to_datetime(updated_ms).astimezone()  # stored in UTC; shown in the user's own time
    today = (now or datetime.now().astimezone()).date()
    if moment.date() == today:
        return f"{moment:%H:%M}"
    if moment.year == today.year:
        return f"{moment:%b} {moment.day}"
    return f"{moment:%Y-%m-%d}"


def mode_label(mode: str) -> str:
    try:
        return Mode(mode).label
    except ValueError:  # a mode from a newer version or an imported file: shown as it is stored
        return mode.capitalize() or "Chat"


def model_label(model: str) -> str:
    """The model as the list names it: a file's stem (no folders, no ".gguf"), a remote model's last name
    part, or "unknown" when none was recorded."""
    name = PurePath(model.strip()).name
    if name.lower().endswith(".gguf"):
        name = name[: -len(".gguf")]
    return name or "unknown"


def details_line(summary: ConversationSummary, now: datetime | None = None) -> str:
    return " · ".join(
        (activity_label(summary.updated_ms, now), mode_label(summary.mode), model_label(summary.model))
    )


class _ConversationRows(QStyledItemDelegate):
    """Draws a conversation as its title over a smaller, dimmer second line (details_line), each elided ("…")
    to the list's width, and edits the title in place.

    Rows are as wide as the list, not as their text: a list widget lays its rows out at their text's width, so
    turning the scroll bar off alone would clip them. An edited title is saved through ``rename`` rather than
    written into the row: the store refuses an empty title, and then the row keeps its old one.
    """

    def __init__(self, rename: Callable[[int, str], str | None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rename = rename

    @staticmethod
    def _details_font(option: QStyleOptionViewItem) -> QFont:
        font = QFont(option.font)
        font.setPointSizeF(max(font.pointSizeF() * 0.85, 6.0))
        return font

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        height = super().sizeHint(option, index).height()
        if index.data(DETAILS_ROLE):
            height += QFontMetrics(self._details_font(option)).height() + 2 * ROW_PADDING
        return QSize(0, height)

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        details = index.data(DETAILS_ROLE)
        if not details:
            super().paint(painter, option, index)
            return
        view_option = QStyleOptionViewItem(option)
        self.initStyleOption(view_option, index)
        title = view_option.text
        view_option.text = ""  # the style draws the background and selection; the two lines are drawn here
        style = view_option.widget.style() if view_option.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, view_option, painter, view_option.widget)
        selected = bool(view_option.state & QStyle.StateFlag.State_Selected)
        group = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        area = self._text_area(view_option)
        title_height = QFontMetrics(view_option.font).height()
        painter.save()
        painter.setPen(view_option.palette.color(group))
        painter.setFont(view_option.font)
        elided = QFontMetrics(view_option.font).elidedText(title, Qt.TextElideMode.ElideRight, area.width())
        painter.drawText(
            area.x(), area.y(), area.width(), title_height, Qt.AlignmentFlag.AlignVCenter, elided
        )
        small = self._details_font(view_option)
        color = view_option.palette.color(group)
        if not selected:
            color = view_option.palette.color(QPalette.ColorRole.PlaceholderText)
        painter.setPen(color)
        painter.setFont(small)
        elided = QFontMetrics(small).elidedText(str(details), Qt.TextElideMode.ElideRight, area.width())
        painter.drawText(
            area.x(),
            area.y() + title_height,
            area.width(),
            QFontMetrics(small).height(),
            # Unclipped: an underscore ("Q4_1") sits below the small font's descent, and clipped it read "Q4 1".
            Qt.AlignmentFlag.AlignVCenter | Qt.TextFlag.TextDontClip,
            elided,
        )
        painter.restore()

    @staticmethod
    def _text_area(option: QStyleOptionViewItem) -> QRect:
        return option.rect.adjusted(6, ROW_PADDING, -6, -ROW_PADDING)

    def updateEditorGeometry(
        self, editor: QWidget, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        # Over the title only: the second line stays visible while the name is typed.
        area = self._text_area(option)
        height = max(editor.sizeHint().height(), QFontMetrics(option.font).height())
        editor.setGeometry(area.x() - 3, area.y() - 1, area.width() + 6, min(height, option.rect.height()))

    def setModelData(
        self, editor: QWidget, model: QAbstractItemModel, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        assert isinstance(editor, QLineEdit)
        conversation_id = index.data(Qt.ItemDataRole.UserRole)
        if conversation_id is None:
            return
        saved = self._rename(int(conversation_id), editor.text())
        if saved is not None:
            model.setData(index, saved, Qt.ItemDataRole.DisplayRole)


class ConversationList(QWidget):
    """Signals:
    new_requested(): New chat (or Ctrl+N, wired by the window).
    conversation_chosen(int): a conversation was clicked or activated, or is the first of an import.
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
        self._shown: list[tuple[int, str, str, str]] = []  # the rows on screen: id, title, group, second line
        side = QVBoxLayout(self)
        side.setContentsMargins(8, 8, 4, 8)
        self.new_chat_button = QPushButton("New chat")
        self.new_chat_button.setAccessibleName("New chat")
        self.new_chat_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_chat_button.clicked.connect(self.new_requested)
        # Import sits by New chat, and in the list's right-click menu by Export; export files dropped on the
        # list are imported too (other files dropped there go on to the window, which attaches them).
        self.importer = ConversationImport(store.path, self)
        self.importer.finished.connect(self._on_imported)
        self.import_button = QToolButton()
        # The button shows the action's icon text, and takes it again whenever the action changes (disabled while
        # an import runs): set there, "Import…" stays, instead of turning into the menu's longer text.
        self.importer.action.setIconText("Import…")
        self.import_button.setDefaultAction(self.importer.action)
        self.import_button.setAccessibleName("Import conversations")
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.new_chat_button, 1)
        buttons.addWidget(self.import_button)
        side.addLayout(buttons)
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
        self.list.setItemDelegate(_ConversationRows(self._rename_from_editor, self.list))
        # Rename in place: F2 or a double click on a row opens an editor over its title; Enter saves, Esc leaves.
        self.list.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self.list.setAccessibleName("Conversations")
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemActivated.connect(self._on_item)
        self.list.itemClicked.connect(self._on_item)
        self.list.viewport().setAcceptDrops(True)
        self.list.viewport().installEventFilter(self)
        side.addWidget(self.list, 1)
        self.setMinimumWidth(200)
        QWidget.setTabOrder(self.new_chat_button, self.search_box)
        QWidget.setTabOrder(self.search_box, self.list)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Export files dropped on the list are imported. Esc in a search box with text clears it: the window's
        Esc (stop the reply) is a shortcut, which Qt would otherwise give the key to first; accepting the
        override keeps the key here. An empty box lets Esc through, so it still stops a reply."""
        if watched is self.list.viewport() and event.type() in (
            QEvent.Type.DragEnter,
            QEvent.Type.DragMove,
            QEvent.Type.Drop,
        ):
            assert isinstance(event, QDropEvent)  # a drag enter or move event is one too
            exports = _dropped_exports(event)
            if not exports:
                event.ignore()  # not for the list: the window takes it (a document to attach)
                return False
            event.acceptProposedAction()
            if event.type() == QEvent.Type.Drop:
                self.importer.start(exports)
            return True
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
        try:
            summaries = self.store.list_conversations(self.query() or None, limit=LIST_LIMIT)
        except UserError as exc:
            self.list.clear()
            self._shown = []
            self._notify(str(exc), "", None)
            return
        shown = [(s.id, s.display_title, s.group, details_line(s)) for s in summaries]
        if shown == self._shown:
            # Clicking a row opens its conversation, which refreshes the list: rebuilding the same rows would drop
            # the row under the mouse, and the click's double click could then not start renaming it.
            for row in range(self.list.count()):
                item = self.list.item(row)
                conversation_id = item.data(Qt.ItemDataRole.UserRole)
                if conversation_id is not None:
                    item.setSelected(conversation_id == self.current_id)
            return
        self._shown = shown
        self.list.clear()
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
            item.setData(DETAILS_ROLE, details_line(summary))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            item.setToolTip(
                f"{summary.display_title}\n{mode_label(summary.mode)} mode, {model_label(summary.model)} model"
                "\nF2 or double-click to rename"
            )
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
            menu = QMenu(self)  # below the rows, or on a day's heading: what does not need a conversation
            menu.addAction(self.importer.action)
        else:
            menu = self.context_menu(int(item.data(Qt.ItemDataRole.UserRole)))
        menu.exec(self.list.viewport().mapToGlobal(position))
        menu.deleteLater()  # one menu per right click: not kept for the life of the sidebar

    def context_menu(self, conversation_id: int) -> QMenu:
        """The actions offered for one conversation (right click): Rename, Export, Import, Delete."""
        menu = QMenu(self)
        menu.addAction("Rename", lambda: self.rename(conversation_id))
        menu.addAction(
            "Export as Markdown…", lambda: self._guarded(lambda: self.export(conversation_id, "md"))
        )
        menu.addAction("Export as JSON…", lambda: self._guarded(lambda: self.export(conversation_id, "json")))
        menu.addAction(self.importer.action)
        menu.addSeparator()
        menu.addAction("Delete", lambda: self._guarded(lambda: self.delete(conversation_id)))
        return menu

    def row_of(self, conversation_id: int) -> QListWidgetItem | None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == conversation_id:
                return item
        return None

    def rename(self, conversation_id: int) -> None:
        """Open the in-place editor on the conversation's title (the context menu's Rename)."""
        item = self.row_of(conversation_id)
        if item is None and self.query():  # hidden by the search: show every conversation to edit this one
            self.search_box.clear()
            self.refresh()
            item = self.row_of(conversation_id)
        if item is None:
            return
        self.list.setCurrentItem(item)
        self.list.scrollToItem(item)
        self.list.setFocus()
        self.list.editItem(item)

    def _rename_from_editor(self, conversation_id: int, title: str) -> str | None:
        """Save a title typed in the row's editor; the title as stored, or None if it was refused (an empty
        title, a storage problem: the banner says so, and the row keeps its old name)."""
        try:
            self.store.rename_conversation(conversation_id, title)
            return self.store.get_conversation(conversation_id).display_title
        except UserError as exc:
            self._notify(str(exc), "", None)
            return None

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

    def _on_imported(self, report: ImportReport) -> None:
        """Show what an import added, the first conversation of the file open and selected, and say what was done
        (or what was wrong with the file)."""
        if not self.window().isVisible():
            return  # the window closed while the file was read: its history is closed, and nobody is looking
        if report.imported and self.query():
            self.search_box.clear()  # a search could hide what was just imported
        self.refresh()
        if report.imported:
            self.conversation_chosen.emit(report.imported[0])
        self._notify(report.text, "", None)


def _dropped_exports(event: QDropEvent) -> list[Path]:
    """The files dragged over the list when all of them are export files; none when any is not (then the whole
    drag is the window's, so a document dragged along with an export is attached, not dropped on the floor)."""
    data = event.mimeData()
    if not data.hasUrls():
        return []
    urls = data.urls()
    files = [url.toLocalFile() for url in urls if url.isLocalFile()]
    if len(files) != len(urls) or not all(is_export_file(f) for f in files):
        return []
    return [Path(f) for f in files]
