"""A switch for the API server that never makes its caller wait: the window's "Let other apps use the loaded
model". ``want(wish)`` returns at once; a thread of its own stops the server running and starts the one wished
(binding the port, importing the server's libraries and waiting for it to accept requests take seconds), the
newest wish winning over those still waiting. Each step is told to ``on_status`` on that thread.

Plain Python and light to import: the server's libraries load only in ``start``, on the switch's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from app.core.errors import UserError

if TYPE_CHECKING:
    from app.core.serve.runner import ApiServer

log = logging.getLogger(__name__)

STARTING = "starting"
SERVING = "serving"
STOPPING = "stopping"
OFF = "off"
FAILED = "failed"

NOT_STARTED = (
    "The server for other apps did not start because of an error inside LlamaDesk; "
    "the details are in the log."
)

Wish = TypeVar("Wish", bound=Hashable)


@dataclass(frozen=True)
class ServerStatus:
    state: str  # STARTING | SERVING | STOPPING | OFF | FAILED
    base_url: str = ""  # while SERVING
    sentence: str = ""  # when FAILED: what happened and what to do

    @property
    def busy(self) -> bool:
        return self.state in (STARTING, STOPPING)


class ServerSwitch(Generic[Wish]):
    """Serves as last wished: ``want(wish)`` for a server built by ``start(wish)`` (which returns it started,
    or raises a UserError whose sentence the person reads), ``want(None)`` for none. ``close()`` turns it off
    for good: a server still starting then is stopped as soon as it is up."""

    def __init__(self, start: Callable[[Wish], ApiServer], on_status: Callable[[ServerStatus], None]) -> None:
        self._start = start
        self._on_status = on_status
        self._lock = threading.Lock()
        self._wish: Wish | None = None
        self._asked = 0  # wishes made so far
        self._done = 0  # the wishes the thread has acted on
        self._server: ApiServer | None = None
        self._serving: Wish | None = None  # the wish the running server was started for
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def server(self) -> ApiServer | None:
        """The server running now, if any."""
        with self._lock:
            return self._server

    def want(self, wish: Wish | None) -> None:
        """Serve as ``wish`` says (None: stop serving); returns at once. Wishing again after a failure tries
        again; wishing for what runs does nothing."""
        with self._lock:
            if self._closed:
                return
            settled = self._thread is None
            if settled and wish == self._serving and (wish is None or self._server is not None):
                return
            self._wish = wish
            self._asked += 1
            if settled:
                self._thread = threading.Thread(target=self._run, name="api-server-switch", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop serving and take no more wishes; returns at once (the server stops on the switch's thread)."""
        self.want(None)
        with self._lock:
            self._closed = True

    def wait(self, timeout: float | None = None) -> bool:
        """Until every wish so far is acted on (tests, the terminal; never a GUI thread); False on timeout."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._done == self._asked:
                    self._thread = None
                    return
                wish, asked = self._wish, self._asked
                server, serving = self._server, self._serving
            if server is not None and serving != wish:
                self._stop(server)
                server = None
            if wish is None:
                self._on_status(ServerStatus(OFF))
            elif server is None:
                self._serve(wish)
            with self._lock:
                self._done = asked

    def _stop(self, server: ApiServer) -> None:
        self._on_status(ServerStatus(STOPPING))
        try:
            server.stop()
        except Exception:  # the port is the process's until it exits; the switch goes on
            log.exception("the API server did not stop cleanly")
        with self._lock:
            self._server = self._serving = None

    def _serve(self, wish: Wish) -> None:
        self._on_status(ServerStatus(STARTING))
        try:
            server = self._start(wish)
        except UserError as exc:
            self._on_status(ServerStatus(FAILED, sentence=str(exc)))
            return
        except Exception:
            log.exception("the API server could not start")
            self._on_status(ServerStatus(FAILED, sentence=NOT_STARTED))
            return
        with self._lock:
            self._server, self._serving = server, wish
        self._on_status(ServerStatus(SERVING, base_url=server.base_url))
