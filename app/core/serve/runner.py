"""Running the API server: a listening socket, uvicorn over ``create_app``, on the caller's thread (the terminal's
``llamadesk serve``) or on a thread of its own that stops cleanly (the window's switch, which starts and stops
it off the GUI thread through ``app.core.serve.switch``).

The socket is bound before anything slow happens, so a taken port is a sentence at once; uvicorn then serves on
that socket. Stopping ends every reply the server is running or holding, so a shutdown never waits for a long
reply to finish.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Sequence

import uvicorn

from app.core.errors import UserError
from app.core.llm.service import EngineClient
from app.core.serve.address import base_url
from app.core.serve.app import SERVER_STOPPED, ServeState, create_app
from app.core.serve.embeddings import EmbeddingWorker
from app.core.serve.library_context import LibraryWorker

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


CLI_PORT_HINT = "choose another with --port N, or --port 0 for any free one."


def listen(host: str, port: int, *, port_hint: str = CLI_PORT_HINT) -> socket.socket:
    """A socket listening on ``host:port`` (port 0: any free one); a sentence if it cannot be had, ending with
    ``port_hint`` (where this front end sets the port)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family, backlog=64)
    except socket.gaierror:
        raise UserError(f"{host!r} is not an address of this computer; try --host 127.0.0.1.") from None
    except OSError as exc:
        # Python adds "(while attempting to bind on address ...)" to the system's reason: the address is said.
        reason = (exc.strerror or str(exc)).split(" (while attempting")[0]
        raise UserError(
            f"Cannot listen on {host}:{port} ({reason}). Another program may be using the port; {port_hint}"
        ) from None


class ApiServer:
    """The API over ``client`` on ``listener``: ``run()`` serves on the calling thread until Ctrl+C (or
    ``stop()``); ``start()`` serves on a thread of its own until ``stop()``. ``on_stopped`` is called once,
    when ``stop()`` has freed the port (the window closes the history its replies were kept in)."""

    def __init__(
        self,
        client: EngineClient,
        listener: socket.socket,
        *,
        host: str = "127.0.0.1",
        api_key: str | None = None,
        allowed_origins: Sequence[str] = (),
        state: ServeState | None = None,
        on_stopped: Callable[[], None] | None = None,
        embeddings: EmbeddingWorker | None = None,
        libraries: LibraryWorker | None = None,
    ) -> None:
        self.client = client
        self._on_stopped = on_stopped
        self.host = host
        self.state = state or ServeState(client)
        self._listener = listener
        self.port: int = listener.getsockname()[1]
        app = create_app(
            client,
            bound_host=host,
            api_key=api_key,
            allowed_origins=allowed_origins,
            state=self.state,
            embeddings=embeddings,
            libraries=libraries,
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,  # a streaming reply is cancelled rather than waited for
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return base_url(self.host, self.port)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """Serve on this thread; Ctrl+C and SIGTERM end it after a clean shutdown."""
        # uvicorn raises the captured Ctrl+C again once it has shut down.
        with self._listener, contextlib.suppress(KeyboardInterrupt):
            self._server.run(sockets=[self._listener])

    def start(self) -> None:
        """Serve on a thread of its own; returns once the server accepts requests."""
        self._thread = threading.Thread(target=self._serve_in_thread, name="api-server", daemon=True)
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(START_TIMEOUT_S / 0.02)):
            if self._server.started or not self._thread.is_alive():
                break
            deadline.wait(0.02)
        if not self._server.started:
            self.stop()
            raise UserError("The server for other apps did not start; the details are in the log.")

    def _serve_in_thread(self) -> None:
        try:
            with self._listener:
                self._server.run(sockets=[self._listener])
        except Exception:  # never a traceback on the window: it says the server did not start
            log.exception("the API server failed")

    def stop_replies(self, reason: str = SERVER_STOPPED) -> int:
        """End the replies this server is running or holding, telling their clients ``reason``; how many."""
        return self.state.stop_all(reason)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop serving: replies in progress are ended, the port is free when this returns."""
        self.stop_replies()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("the API server did not stop in time")
        with contextlib.suppress(OSError):
            self._listener.close()
        on_stopped, self._on_stopped = self._on_stopped, None
        if on_stopped is not None:
            on_stopped()
