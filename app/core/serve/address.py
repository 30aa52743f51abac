"""Where the server is reached: the base URL clients are given, from the address and port it listens on. Kept
apart from the server's libraries so the window can show an address without loading them."""

from __future__ import annotations

LOOPBACK = "127.0.0.1"


def base_url(host: str, port: int) -> str:
    """OpenAI's base URL for a server on ``host:port`` (an IPv6 address in brackets)."""
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"
