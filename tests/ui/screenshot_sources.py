"""Run in a child process under Xvfb: open the real window, attach a 4-page PDF in Chat mode, ask about the
figure on its page 3, open the first source of the answer, save a PNG.

Usage: python -m tests.ui.screenshot_sources OUTPUT.png MODEL.gguf PDF
"""

from __future__ import annotations

import sys
import time

from PySide6.QtWidgets import QApplication


def main(output: str, model: str, pdf: str) -> int:
    app = QApplication(sys.argv[:1])
    from app.core.history.store import HistoryStore
    from app.core.settings import Settings
    from app.ui.main_window import MainWindow
    from app.ui.transcript.sources import sources_of

    settings = Settings(
        context_size=2048,
        last_model=model,
        mode_overrides={"chat": {"temperature": 0.0, "max_tokens": 48}},
    )
    window = MainWindow(settings=settings, store=HistoryStore())
    window.resize(1200, 800)
    window.show()
    deadline = time.monotonic() + 300  # a loaded machine: the first token alone took 60 s

    def wait(condition: object) -> None:
        while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
            app.processEvents()
            time.sleep(0.01)

    wait(lambda: window.bridge.model is not None)
    window.attach_documents([pdf])
    wait(lambda: len(window.documents.documents) == 1)
    window.input.setPlainText("What was the total revenue for the year?")
    window.send()
    wait(lambda: not window.bridge.is_generating)
    panel = sources_of(window.chat_view.messages[-1]) if window.chat_view.messages else None
    if panel is None:
        return 2
    panel.toggle(next(i for i, s in enumerate(panel.sources) if s.page == 3))
    settle = time.monotonic() + 1.0
    wait(lambda: time.monotonic() > settle)
    window.chat_view.scroll_to_end()
    settle = time.monotonic() + 0.5
    wait(lambda: time.monotonic() > settle)
    # Read back from the X server, so this is what the display shows, not a re-render of the widgets.
    picture = window.screen().grabWindow(window.winId())
    ok = picture.save(output, "PNG")
    window.close()
    return 0 if ok and time.monotonic() < deadline else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3]))
