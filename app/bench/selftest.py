"""``llamadesk --self-test``: load a model, generate a few tokens, open and close the main window, and print
each step's outcome; the installed bundle is checked with it. The window step imports Qt, so it lives beside
the other benchmarks rather than in core."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from app import APP_NAME, __version__
from app.core import settings as settings_store
from app.core.errors import UserError
from app.core.paths import scratch_home

log = logging.getLogger(__name__)


def self_test(model: str | None) -> int:
    """Load a model, generate a few tokens, open and close the main window; print each step's outcome."""
    from app.core.llm.bindings import backend_description
    from app.core.llm.load_options import LoadOptions
    from app.core.llm.service import EngineService
    from app.core.models.inventory import default_model
    from app.core.modes import SamplingOptions

    failures = 0

    def step(name: str, ok: bool, detail: str) -> None:
        nonlocal failures
        failures += 0 if ok else 1
        print(f"[{'ok' if ok else 'FAILED'}] {name}: {detail}", flush=True)

    print(f"{APP_NAME} {__version__} self-test", flush=True)
    print(f"  {backend_description()}", flush=True)
    path = Path(model).expanduser() if model else default_model()
    if path is None:
        step("model", False, "no model given (--model PATH) and none installed")
        return 1
    service = EngineService()  # the way every front end reaches the model
    try:
        client = service.client("self-test")
        started = time.perf_counter()
        info = client.load_and_wait(str(path), LoadOptions(context_size=1024))
        step(
            "load",
            True,
            f"{info.display_name} ({info.quantization}) in {time.perf_counter() - started:.1f} s",
        )
        reply = client.stream_chat(
            [{"role": "user", "content": "Say hello in five words."}],
            SamplingOptions(temperature=0.0, max_tokens=16),
        )
        text = "".join(reply)
        generated = reply.stats.generated_tokens if reply.stats else 0
        step("generate", generated > 0, f"{generated} tokens: {text.strip()!r}")
    except UserError as exc:
        step("load", False, str(exc))
    finally:
        service.shutdown()

    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    # The window step runs in a throwaway home: closing a window saves settings and empties the trash.
    with scratch_home("llamadesk-self-test-"):
        try:
            from PySide6.QtWidgets import QApplication

            from app.core.history.store import HistoryStore
            from app.ui.application import make_application
            from app.ui.engine_bridge import EngineBridge
            from app.ui.main_window import MainWindow

            app = make_application()
            assert isinstance(app, QApplication)
            window = MainWindow(
                settings=settings_store.Settings(), store=HistoryStore(), bridge=EngineBridge()
            )
            window.show()
            app.processEvents()
            shown = window.isVisible()
            window.close()
            app.processEvents()
            step("window", shown, f"opened and closed on the '{app.platformName()}' platform")
        except Exception as exc:
            log.exception("self-test window step failed")
            step("window", False, f"{type(exc).__name__}: {exc}")
    print("Self-test passed." if failures == 0 else f"Self-test failed: {failures} step(s).", flush=True)
    return 0 if failures == 0 else 1
