"""Run in a child process under Xvfb: the real window (no model needed) showing a conversation whose question was
edited and whose reply was written again, each version marked "< 2/2 >"; saves a PNG of the window and one of
the edited question's message.

Usage: python -m tests.ui.screenshot_branch_switcher WINDOW.png MESSAGE.png
"""

from __future__ import annotations

import sys
import time

from PySide6.QtWidgets import QApplication


def main(window_output: str, message_output: str) -> int:
    app = QApplication(sys.argv[:1])
    from app.core.history.store import HistoryStore
    from app.core.settings import Settings
    from app.ui.main_window import MainWindow

    store = HistoryStore()
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", "What is the capital of Spain?")
    store.add_message(conversation.id, "assistant", "The capital of Spain is Madrid.")
    edited = store.add_message(
        conversation.id, "user", "What is the capital of France?", parent_id=question.parent_id
    )
    store.add_message(conversation.id, "assistant", "The capital of France is Lyon.")
    store.add_message(conversation.id, "assistant", "The capital of France is Paris.", parent_id=edited.id)

    window = MainWindow(settings=Settings(), store=store, open_default_model=False)
    window.resize(1000, 640)
    window.show()
    window.open_conversation(conversation.id)
    deadline = time.monotonic() + 60

    def wait(condition: object) -> None:
        while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
            app.processEvents()
            time.sleep(0.01)

    wait(lambda: len(window.chat_view.messages) == 2 and window.chat_view.messages[0].isVisible())
    settle = time.monotonic() + 1.0
    wait(lambda: time.monotonic() > settle)
    labels = [m.branch_switcher.label.text() for m in window.chat_view.messages]
    shown = all(m.branch_switcher.isVisible() for m in window.chat_view.messages)
    # Read back from the X server, so this is what the display shows, not a re-render of the widgets.
    picture = window.screen().grabWindow(window.winId())
    ok = picture.save(window_output, "PNG") and window.chat_view.messages[0].grab().save(
        message_output, "PNG"
    )
    window.close()
    print(labels, shown)
    return 0 if ok and shown and labels == ["2/2", "2/2"] and time.monotonic() < deadline else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
