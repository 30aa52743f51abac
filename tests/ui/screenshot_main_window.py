"""Run in a child process under Xvfb: open the real window, hold a short conversation, save a PNG.

Usage: python -m tests.ui.screenshot_main_window OUTPUT.png MODEL.gguf
"""

from __future__ import annotations

import sys
import time

from PySide6.QtWidgets import QApplication


def main(output: str, model: str) -> int:
    app = QApplication(sys.argv[:1])
    from app.core.history.store import HistoryStore
    from app.core.settings import Settings
    from app.ui.main_window import MainWindow

    settings = Settings(context_size=2048, last_model=model, mode_overrides={"chat": {"temperature": 0.0}})
    window = MainWindow(settings=settings, store=HistoryStore())
    window.resize(1200, 800)
    window.show()
    deadline = time.monotonic() + 120

    def wait(condition: object) -> None:
        while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
            app.processEvents()
            time.sleep(0.01)

    wait(lambda: window.bridge.model is not None)
    for question in ("What is the capital of France?", "Write a Python function that reverses a string."):
        window.input.setPlainText(question)
        window.send()
        wait(lambda: not window.bridge.is_generating)
    window.input.setPlainText("Thanks! One more question…")
    settle = time.monotonic() + 1.0
    wait(lambda: time.monotonic() > settle)
    # Read back from the X server, so this is what the display shows, not a re-render of the widgets.
    picture = window.screen().grabWindow(window.winId())
    ok = picture.save(output, "PNG")
    window.close()
    return 0 if ok and time.monotonic() < deadline else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
