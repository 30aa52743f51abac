"""Who may talk to the server: a Host header naming this machine (DNS-rebinding protection), a web page only from
the server's own origin or one the person allowed (a browser sends any page's "simple" POST without asking the
server first, so the origin is checked before the app runs anything), and, when a key is set,
``Authorization: Bearer KEY``. An ASGI middleware, so every route (an unknown one too) is covered."""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.limits import OutOfRange
from app.core.serve.errors import ApiError
from app.core.settings import check_web_origin

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
OPEN_PATHS = frozenset({"/health"})  # a liveness probe needs no key
# What an allowed web app may send: the API's methods, and the headers OpenAI's clients add.
CORS_PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "authorization, content-type",
    "Access-Control-Max-Age": "600",
}


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_host_names(bound_host: str) -> frozenset[str]:
    """This machine's names a browser would send in Host: loopback ones, and when bound beyond loopback the bound
    address and this machine's own names."""
    if is_loopback(bound_host):
        return LOOPBACK_NAMES | {
            bound_host.strip("[]").lower()
        }  # 127.0.0.2 too, when that is the address bound
    names = {bound_host.strip("[]").lower(), socket.gethostname().lower(), socket.getfqdn().lower()}
    return LOOPBACK_NAMES | names


def host_name(header: str) -> str:
    """``example.com:8080`` -> ``example.com``; ``[::1]:8080`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """Refuses a foreign Host (403), a web page from a foreign origin (403) and a missing or wrong key (401)
    before the app sees the request; answers an allowed web app's CORS preflight and marks its responses as
    readable by it."""

    def __init__(
        self, app: ASGIApp, *, bound_host: str, api_key: str | None, allowed_origins: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.allowed = allowed_host_names(bound_host)
        # An address literal cannot be rebound by a DNS answer, so beyond loopback any of ours is fine.
        self.allow_ip_literals = not is_loopback(bound_host)
        self.key = api_key.encode() if api_key else None
        self.trusted_origins = frozenset(check_web_origin(origin) for origin in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Latin-1 maps each byte to one character, so ``encode("latin-1")`` gives back the bytes sent (a key with
        # non-ASCII characters is compared as the client's UTF-8 bytes).
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        origin = headers.get("origin")
        refusal = self.host_refusal(headers)
        if refusal is None and origin is not None:
            server = scope.get("server")  # the address the request arrived at
            refusal = self.origin_refusal(origin, server[1] if server else None)
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        if origin is not None:
            if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
                # A preflight carries no key: the browser asks whether the real request may be sent.
                # The headers the app's client asks for are allowed (openai-node adds x-stainless-* ones): the
                # origin itself is what was trusted.
                asked = headers.get("access-control-request-headers", "")[:2048]
                allowed = CORS_PREFLIGHT_HEADERS | (
                    {"Access-Control-Allow-Headers": asked} if asked.strip() else {}
                )
                preflight = Response(status_code=204, headers=allowed)
                await preflight(scope, receive, _with_cors(send, origin))
                return
            send = _with_cors(send, origin)
        refusal = self.key_refusal(headers, scope["path"])
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, headers: dict[str, str], path: str) -> ApiError | None:
        """Why a request without an Origin would be refused (its Host, its key), if it would."""
        return self.host_refusal(headers) or self.key_refusal(headers, path)

    def origin_refusal(self, origin: str, port: int | None) -> ApiError | None:
        """A web page's request is refused unless the page is the server's own (at ``port``, where the request
        arrived) or one the person allowed."""
        if self._own_origin(origin, port):
            return None
        try:
            if check_web_origin(origin) in self.trusted_origins:
                return None
        except OutOfRange:  # "null" (a local file, a sandboxed frame) or garbage: no web app one can allow
            return ApiError(
                403,
                f"This server does not answer web pages without an origin of their own (Origin: "
                f"{origin!r:.80}), such as a local file or a sandboxed frame. Call it from a program, or from a "
                "web app whose origin you allow.",
                "origin_not_allowed",
            )
        return ApiError(
            403,
            f"This server does not answer web pages from {origin!r:.200}. If you trust that web app, allow its "
            f"origin: start the server with --allow-origin {origin:.200}, or add it in LlamaDesk's Settings, "
            "under Other apps.",
            "origin_not_allowed",
        )

    def _own_origin(self, origin: str, port: int | None) -> bool:
        """http, a name of this machine the server answers to in Host, and the server's port."""
        try:
            parts = urlsplit(origin.strip())
            origin_port = parts.port or 80
        except ValueError:
            return False
        return (
            port is not None
            and origin_port == port
            and parts.scheme.lower() == "http"
            and (parts.hostname or "") in self.allowed
            and not (parts.path or parts.query or parts.fragment or parts.username)
        )

    def host_refusal(self, headers: dict[str, str]) -> ApiError | None:
        name = host_name(headers.get("host", ""))
        if not self._host_allowed(name):
            return ApiError(
                403,
                f"This server answers only requests addressed to this computer, not to {name or 'no host'!r}. "
                "Use http://127.0.0.1:PORT/v1 (or the address the server printed).",
                "host_not_allowed",
            )
        return None

    def key_refusal(self, headers: dict[str, str], path: str) -> ApiError | None:
        if self.key is None or path in OPEN_PATHS:
            return None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode("latin-1"), self.key):
            return ApiError(
                401,
                "A missing or wrong API key. Send the key the server was started with as "
                "'Authorization: Bearer KEY'.",
                "invalid_api_key",
            )
        return None

    def _host_allowed(self, name: str) -> bool:
        if name in self.allowed:
            return True
        if self.allow_ip_literals:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                return False
            return True
        return False


def _with_cors(send: Send, origin: str) -> Send:
    """``send`` that marks the response (streamed ones too: the mark goes on its start) as readable by the web
    page at ``origin``, and as varying by origin so no cache hands it to another page."""

    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers["Access-Control-Allow-Origin"] = origin
            headers.add_vary_header("Origin")
        await send(message)

    return send_with_cors
