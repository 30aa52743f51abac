"""The Hub's file lists and search, against the fake hub on 127.0.0.1, and the cache that serves them offline."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.models.catalog import (
    RemoteFile,
)
from app.core.models.hub import HubUnavailableError, cached_listing, fetch_listing, load_listings, search_hub
from tests.fixtures.fake_hub import FakeHub, use_fake_hub_only


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    use_fake_hub_only(monkeypatch, tmp_path)
    with FakeHub() as fake:
        yield fake


def test_file_list_comes_from_the_hub_and_is_cached(hub: FakeHub) -> None:
    q4 = b"q4" * 1000
    hub.add_repo("org/Model-GGUF", {"Model-Q4_K_M.gguf": q4, "Model-Q8_0.gguf": b"q8" * 2000, "x.md": b"x"})
    listing = fetch_listing("org/Model-GGUF", endpoint=hub.url)
    assert listing.commit == hub.repos["org/Model-GGUF"].commit
    option = listing.option("q4_k_m")
    assert option is not None and not option.estimated
    assert option.files == (RemoteFile("Model-Q4_K_M.gguf", 2000, hashlib.sha256(q4).hexdigest()),)
    assert any(r.path == "/api/models/org/Model-GGUF" for r in hub.requests)

    hub.stop()  # the Hub goes away: the cached list is still there
    cached = cached_listing("org/Model-GGUF")
    assert cached is not None and cached.option("Q4_K_M") == option
    result = load_listings(["org/Model-GGUF"], refresh=True, endpoint=hub.url)
    assert result.listings["org/Model-GGUF"].option("Q8_0") is not None
    assert "cannot be reached" in result.problem


def test_offline_uses_the_cache_and_says_why() -> None:
    # The test suite runs with HF_HUB_OFFLINE=1.
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        fetch_listing("org/Anything-GGUF")
    result = load_listings(["org/Anything-GGUF"])
    assert result.listings == {} and "HF_HUB_OFFLINE" in result.problem


def test_search_finds_gguf_repositories(hub: FakeHub) -> None:
    hub.add_repo("someone/Llama-3.2-3B-Instruct-GGUF", {"a-Q4_K_M.gguf": b"a"}, downloads=10)
    hub.add_repo("other/Llama-3.2-1B-Instruct-GGUF", {"b-Q4_K_M.gguf": b"b"}, downloads=99, gated=True)
    hub.add_repo("other/Mistral-GGUF", {"c-Q4_K_M.gguf": b"c"})
    found = search_hub("llama-3.2", endpoint=hub.url)
    assert [m.repo_id for m in found] == [
        "other/Llama-3.2-1B-Instruct-GGUF",
        "someone/Llama-3.2-3B-Instruct-GGUF",
    ]
    assert found[0].gated and found[0].downloads == 99
    search = next(r for r in hub.requests if r.path == "/api/models")
    assert search.method == "GET"


def test_search_fails_at_once_when_the_hub_cannot_be_reached(hub: FakeHub) -> None:
    import socket
    import time

    with socket.socket() as probe:  # a port nothing listens on: every connection is refused
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(HubUnavailableError):
        fetch_listing("org/Model-GGUF", endpoint=url)  # the menu learns the Hub is unreachable
    for attempt in range(2):  # known unreachable, and asked again: each fails at once
        started = time.perf_counter()
        with pytest.raises(HubUnavailableError) as raised:
            search_hub("llama", endpoint=url)
        seconds = time.perf_counter() - started
        print(f"search {attempt + 1} failed in {seconds:.2f} s (was 23.3 s: five retries with back-off)")
        assert seconds < 3.0
        sentence = str(raised.value)
        assert "cannot be reached (the connection was refused)" in sentence
        assert "Errno" not in sentence

    # The Hub is back: the next search asks it and finds what it has.
    hub.add_repo("someone/Llama-3.2-3B-Instruct-GGUF", {"a-Q4_K_M.gguf": b"a"})
    assert [m.repo_id for m in search_hub("llama", endpoint=hub.url)] == [
        "someone/Llama-3.2-3B-Instruct-GGUF"
    ]


def test_a_name_that_cannot_be_looked_up_reads_as_offline(hub: FakeHub) -> None:
    import time

    started = time.perf_counter()
    with pytest.raises(HubUnavailableError) as raised:
        search_hub("llama", endpoint="http://no-such-host.invalid")
    seconds = time.perf_counter() - started
    print(f"{seconds:.2f} s: {raised.value}")
    assert seconds < 6.0
    assert "Errno" not in str(raised.value)
    assert "could not be looked up, so this computer is probably offline" in str(raised.value)
