"""Who may talk to the server: a Host header naming this machine (DNS-rebinding protection) and, when a key is
set, ``Authorization: Bearer KEY``. An ASGI middleware, so every route (an unknown one too) is covered."""

from __future__ import annotations

import hmac
import ipaddress
import socket

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.serve.errors import ApiError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
OPEN_PATHS = frozenset({"/health"})  # a liveness probe needs no key


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
    """Refuses a foreign Host (403) and a missing or wrong key (401) before the app sees the request."""

    def __init__(self, app: ASGIApp, *, bound_host: str, api_key: str | None) -> None:
        self.app = app
        self.allowed = allowed_host_names(bound_host)
        # An address literal cannot be rebound by a DNS answer, so beyond loopback any of ours is fine.
        self.allow_ip_literals = not is_loopback(bound_host)
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Latin-1 maps each byte to one character, so ``encode("latin-1")`` gives back the bytes sent (a key with
        # non-ASCII characters is compared as the client's UTF-8 bytes).
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        refusal = self.refusal(headers, scope["path"])
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, headers: dict[str, str], path: str) -> ApiError | None:
        name = host_name(headers.get("host", ""))
        if not self._host_allowed(name):
            return ApiError(
                403,
                f"This server answers only requests addressed to this computer, not to {name or 'no host'!r}. "
                "Use http://127.0.0.1:PORT/v1 (or the address the server printed).",
                "host_not_allowed",
            )
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
