"""Run in a child process under Xvfb: the real window as a newcomer opens it (the starter model loaded, an empty
chat), showing the welcome card once the menu's recommendation has arrived; saves a PNG of the window and one
of the card.

Usage: python -m tests.ui.screenshot_welcome WINDOW.png CARD.png MODEL.gguf
"""

from __future__ import annotations

import sys
import time

from PySide6.QtWidgets import QApplication


def main(window_output: str, card_output: str, model: str) -> int:
    app = QApplication(sys.argv[:1])
    from app.core.history.store import HistoryStore
    from app.core.settings import Settings
    from app.ui.main_window import MainWindow

    window = MainWindow(settings=Settings(context_size=2048, last_model=model), store=HistoryStore())
    window.resize(1100, 700)
    window.show()
    card = window.welcome.card
    deadline = time.monotonic() + 120

    def wait(condition: object) -> None:
        while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
            app.processEvents()
            time.sleep(0.01)

    wait(lambda: window.bridge.model is not None and "Looking" not in card.recommendation_label.text())
    settle = time.monotonic() + 1.0
    wait(lambda: time.monotonic() > settle)
    shown = card.isVisible() and "tiny demo model" in card.model_label.text()
    # Read back from the X server, so this is what the display shows, not a re-render of the widgets.
    picture = window.screen().grabWindow(window.winId())
    ok = picture.save(window_output, "PNG") and card.grab().save(card_output, "PNG")
    print(card.model_label.text())
    print(card.recommendation_label.text())
    window.close()
    return 0 if ok and shown and time.monotonic() < deadline else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3]))
