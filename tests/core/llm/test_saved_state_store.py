"""The saved-state store on its own: files, budgets, eviction, damage (real files; the engine's side is in
test_saved_states.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.core import settings as settings_store
from app.core.llm.saved_state_store import (
    DIGESTS_FILE,
    MAGIC,
    SUFFIX,
    ModelDigests,
    SavedStateStore,
    SignatureSource,
    StateSignature,
    common_prefix,
    remember_model_digest,
    saved_state_key,
)
from app.core.paths import app_paths
from tests.helpers.slow_disk import SlowDisk

SIGNATURE = SignatureSource.known(StateSignature("ab" * 32, 2048, 1, 1, -1, "0.3.36"))
OTHER_MODEL = SignatureSource.known(StateSignature("cd" * 32, 2048, 1, 1, -1, "0.3.36"))
MB = 1024 * 1024


def state_bytes(size: int, fill: int = 7) -> bytearray:
    return bytearray([fill]) * size


def files(cache: SavedStateStore) -> list[Path]:
    return sorted(p for p in cache.folder.iterdir() if p.name.endswith(SUFFIX))


def test_common_prefix_counts_matching_leading_tokens() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2]) == 2


def test_a_saved_state_reads_back_from_disk_with_private_permissions(tmp_path: Path) -> None:
    cache = SavedStateStore(tmp_path / "states", ram_budget=0)
    cache.put("a", range(100), state_bytes(5000), SIGNATURE)
    assert cache.flush(30)
    (saved,) = files(cache)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.folder.stat().st_mode) == 0o700
    prompt = [*range(90), 999]
    candidate = cache.best("a", prompt, SIGNATURE, better_than=0)
    assert candidate is not None and candidate.usable == 90 and candidate.path == saved
    assert cache.load(candidate, SIGNATURE) == state_bytes(5000)
    assert cache.best("b", prompt, SIGNATURE, better_than=0) is None  # another conversation's key
    assert cache.best("a", prompt, SIGNATURE, better_than=90) is None  # no better than the cache already is


def test_states_of_another_model_are_not_used_but_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = SavedStateStore(tmp_path / "states", ram_budget=0)
    cache.put("a", range(100), state_bytes(100), SIGNATURE)
    cache.flush(30)
    with caplog.at_level(logging.INFO, logger="app.core.llm.saved_state_store"):
        assert cache.best("a", range(100), OTHER_MODEL, better_than=0) is None
    assert "another model or setting" in caplog.text
    assert len(files(cache)) == 1  # the person may load that model again


def test_a_new_state_replaces_the_ones_it_extends_and_keeps_other_branches(tmp_path: Path) -> None:
    cache = SavedStateStore(tmp_path / "states")
    cache.put("a", range(50), state_bytes(100), SIGNATURE)
    cache.put("a", [*range(40), 7, 7, 7], state_bytes(100), SIGNATURE)  # an edited message: another branch
    cache.flush(30)
    assert len(files(cache)) == 2
    cache.put("a", range(80), state_bytes(100), SIGNATURE)  # the first branch, one turn later
    cache.flush(30)
    assert len(files(cache)) == 2
    candidate = cache.best("a", range(80), SIGNATURE, better_than=0)
    assert candidate is not None and candidate.usable == 80
    branch = cache.best("a", [*range(40), 7, 7, 7, 8], SIGNATURE, better_than=0)
    assert branch is not None and branch.usable == 43


def test_the_disk_budget_evicts_the_least_recently_used_state(tmp_path: Path) -> None:
    cache = SavedStateStore(tmp_path / "states", disk_budget=int(2.5 * MB), ram_budget=0)
    for key in ("first", "second"):
        cache.put(key, range(10), state_bytes(MB), SIGNATURE)
        cache.flush(30)
    first = cache.best("first", range(10), SIGNATURE, better_than=0)
    assert first is not None and first.path is not None
    os.utime(files(cache)[0], (1, 1))  # both old ...
    os.utime(files(cache)[1], (1, 1))
    assert cache.load(first, SIGNATURE) is not None  # ... and "first" used again just now
    cache.put("third", range(10), state_bytes(MB), SIGNATURE)
    cache.flush(30)
    assert cache.best("second", range(10), SIGNATURE, better_than=0) is None  # least recently used: gone
    assert cache.best("first", range(10), SIGNATURE, better_than=0) is not None
    assert cache.best("third", range(10), SIGNATURE, better_than=0) is not None
    assert cache.disk_usage() <= 2.5 * MB


def test_the_disk_budget_comes_from_the_settings() -> None:
    settings = settings_store.Settings(saved_states_mb=1)
    settings_store.save(settings)
    cache = SavedStateStore.default()
    assert cache.folder == app_paths().saved_states_dir
    cache.put("big", range(10), state_bytes(2 * MB), SIGNATURE)  # over the budget: kept in memory only
    cache.put("small", range(10), state_bytes(MB // 2), SIGNATURE)
    cache.flush(30)
    assert len(files(cache)) == 1
    loaded, _ = settings_store.from_dict({"saved_states_mb": -5})
    assert loaded.saved_states_mb == 4096  # out of range: the default


def test_memory_keeps_recent_states_within_its_budget(tmp_path: Path) -> None:
    cache = SavedStateStore(tmp_path / "states", disk_budget=0, ram_budget=2 * MB)
    for key in ("a", "b", "c"):
        cache.put(key, range(10), state_bytes(MB), SIGNATURE)
    assert cache.memory_usage() == 2 * MB
    assert cache.best("a", range(10), SIGNATURE, better_than=0) is None  # the oldest left memory
    found = cache.best("b", range(10), SIGNATURE, better_than=0)
    assert found is not None and found.data is not None and found.path is None
    cache.drop_memory()
    assert cache.best("b", range(10), SIGNATURE, better_than=0) is None


def test_truncated_and_damaged_files_are_discarded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = SavedStateStore(tmp_path / "states", ram_budget=0)
    cache.put("cut", range(30), state_bytes(4000), SIGNATURE)
    cache.put("flipped", range(30), state_bytes(4000), SIGNATURE)
    cache.flush(30)
    cut = cache.best("cut", range(30), SIGNATURE, better_than=0)
    flipped = cache.best("flipped", range(30), SIGNATURE, better_than=0)
    assert cut is not None and cut.path is not None and flipped is not None and flipped.path is not None
    with cut.path.open("r+b") as handle:
        handle.truncate(cut.path.stat().st_size - 100)
    raw = bytearray(flipped.path.read_bytes())
    raw[-10] ^= 0xFF
    flipped.path.write_bytes(raw)
    with caplog.at_level(logging.WARNING, logger="app.core.llm.saved_state_store"):
        assert cache.best("cut", range(30), SIGNATURE, better_than=0) is None
        assert cache.load(flipped, SIGNATURE) is None
    assert "truncated" in caplog.text and "checksum" in caplog.text
    assert files(cache) == []
    (cache.folder / f"junk{SUFFIX}").write_bytes(b"not a state")
    assert cache.disk_usage() > 0
    cache.clear()
    assert cache.disk_usage() == 0


def forged(header: dict[str, Any], **changes: object) -> dict[str, Any]:
    """``header`` with ``changes``; a ``signature_`` prefix changes a field of its signature."""
    forged_header: dict[str, Any] = json.loads(json.dumps(header))
    for name, value in changes.items():
        if name.startswith("signature_"):
            forged_header["signature"][name.removeprefix("signature_")] = value
        else:
            forged_header[name] = value
    return forged_header


def with_header(header: object) -> bytes:
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return MAGIC + struct.pack("<I", len(text)) + text


# Each: a saved file's header and what follows it -> the file's forged bytes.
FORGED_HEADERS: dict[str, Callable[[dict[str, Any], bytes], bytes]] = {
    "huge token count": lambda h, rest: with_header(forged(h, n_tokens=2**62)) + rest,
    "huge state size": lambda h, rest: with_header(forged(h, state_bytes=2**62)) + rest,
    "negative token count": lambda h, rest: with_header(forged(h, n_tokens=-1)) + rest,
    "negative state size": lambda h, rest: with_header(forged(h, state_bytes=-4000)) + rest,
    "huge checksum": lambda h, rest: with_header(forged(h, crc32=2**62)) + rest,
    "text for a count": lambda h, rest: with_header(forged(h, n_tokens="garbage")) + rest,
    "infinite count": lambda h, rest: with_header(forged(h, n_tokens=float("inf"))) + rest,
    "a truth for a count": lambda h, rest: with_header(forged(h, n_tokens=True)) + rest,
    "huge context in the signature": lambda h, rest: (
        with_header(forged(h, signature_context_size=2**62)) + rest
    ),
    "a number for the model hash": lambda h, rest: with_header(forged(h, signature_model_sha256=7)) + rest,
    "a list for a header": lambda h, rest: with_header([h]) + rest,
    "deep nesting": lambda h, rest: with_header(b"[" * 30_000 + b"]" * 30_000) + rest,
    "a header cut short": lambda h, rest: with_header(h)[: len(MAGIC) + 4 + 20],
    "a header length past the end": lambda h, rest: MAGIC + struct.pack("<I", 60_000) + b"{",
    "the largest header length": lambda h, rest: MAGIC + struct.pack("<I", 2**32 - 1) + rest,
    "random bytes after the magic": lambda h, rest: MAGIC + random.Random(5).randbytes(5000),
    "random bytes": lambda h, rest: random.Random(7).randbytes(5000),
}


@pytest.mark.parametrize("forgery", FORGED_HEADERS)
def test_a_forged_header_is_damage_the_file_goes_and_the_store_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, forgery: str
) -> None:
    cache = SavedStateStore(tmp_path / "states", ram_budget=0)
    cache.put("a", range(30), state_bytes(4000), SIGNATURE)
    assert cache.flush(30)
    (saved,) = files(cache)
    raw = saved.read_bytes()
    (length,) = struct.unpack("<I", raw[len(MAGIC) : len(MAGIC) + 4])
    header_end = len(MAGIC) + 4 + length
    header = json.loads(raw[len(MAGIC) + 4 : header_end])
    candidate = cache.best("a", range(30), SIGNATURE, better_than=0)
    assert candidate is not None

    saved.write_bytes(FORGED_HEADERS[forgery](header, raw[header_end:]))
    with caplog.at_level(logging.WARNING, logger="app.core.llm.saved_state_store"):
        assert cache.best("a", range(30), SIGNATURE, better_than=0) is None  # looked up: no exception
    assert not saved.exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and saved.name in warnings[0].getMessage()
    print(f"{forgery}: {warnings[0].getMessage()}")

    saved.write_bytes(FORGED_HEADERS[forgery](header, raw[header_end:]))
    assert cache.load(candidate, SIGNATURE) is None  # a state found before the file was forged
    assert not saved.exists()

    # The conversation carries on cold, and its next state is saved and read back.
    cache.put("a", range(40), state_bytes(3000), SIGNATURE)
    assert cache.flush(30)
    again = cache.best("a", range(40), SIGNATURE, better_than=0)
    assert again is not None and again.usable == 40
    assert cache.load(again, SIGNATURE) == state_bytes(3000)


def test_forget_deletes_a_conversations_states_even_while_queued(tmp_path: Path) -> None:
    cache = SavedStateStore(tmp_path / "states")
    key = saved_state_key("12")
    cache.put(key, range(10), state_bytes(1000), SIGNATURE)
    cache.put("other", range(10), state_bytes(1000), SIGNATURE)
    cache.forget(key)
    cache.flush(30)
    assert cache.best(key, range(10), SIGNATURE, better_than=0) is None
    assert len(files(cache)) == 1


def test_copies_waiting_for_a_slow_disk_stay_within_the_memory_budget(tmp_path: Path) -> None:
    cache = SavedStateStore(tmp_path / "states", ram_budget=0)
    cache.queue_budget = 1500
    with cache._lock:  # the writer cannot finish a file meanwhile: the disk is "slow"
        cache.put("conversation-1", [1, 2, 3], state_bytes(1000), SIGNATURE)
        cache.put("conversation-2", [4, 5, 6], state_bytes(1000), SIGNATURE)  # over the budget: not queued
        assert cache._queued_bytes == 1000
    assert cache.flush(timeout=10)
    assert cache._queued_bytes == 0
    assert len(files(cache)) == 1


def model_files(folder: Path, count: int, prefix: str = "model") -> dict[Path, str]:
    """Small files standing in for models, with their sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for number in range(count):
        path = folder / f"{prefix}-{number}.gguf"
        path.write_bytes(f"{prefix} {number}".encode() * 100)
        made[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return made


def test_forty_digests_remembered_at_once_all_stay(tmp_path: Path) -> None:
    """Downloads finishing together and two caches of the app's folder: one owner of the digests file, so no
    update is lost to another's."""
    models = model_files(tmp_path / "models", 40)
    first, second = SavedStateStore(app_paths().saved_states_dir), SavedStateStore.default()
    assert first.digests is second.digests
    start = threading.Barrier(len(models))
    failures: list[BaseException] = []

    def remember(number: int, path: Path, digest: str) -> None:
        start.wait()
        try:
            if number % 3 == 0:
                remember_model_digest(path, digest)  # the download's way
            else:
                (first if number % 3 == 1 else second).digests.remember(path, digest)
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=remember, args=(number, path, digest))
        for number, (path, digest) in enumerate(models.items())
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    kept = json.loads((app_paths().saved_states_dir / DIGESTS_FILE).read_text())
    assert len(kept) == 40
    assert all(first.digests.known(path) == digest for path, digest in models.items())


_REMEMBER_IN_A_CHILD = """
import sys
from pathlib import Path
from app.core.llm.saved_state_store import ModelDigests
digests = ModelDigests(Path(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
for line in sys.argv[2:]:
    path, digest = line.split("=")
    digests.remember(Path(path), digest)
"""


def test_digests_remembered_by_two_processes_at_once_all_stay(tmp_path: Path) -> None:
    """A terminal's download and the window update the same file: its lock is shared across processes."""
    file = tmp_path / "states" / DIGESTS_FILE
    ours = model_files(tmp_path / "models", 30, "ours")
    theirs = model_files(tmp_path / "models", 30, "theirs")
    child = subprocess.Popen(
        [sys.executable, "-c", _REMEMBER_IN_A_CHILD, str(file)]
        + [f"{path}={digest}" for path, digest in theirs.items()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "ready"
    child.stdin.write("go\n")
    child.stdin.flush()
    digests = ModelDigests.for_file(file)
    for path, digest in ours.items():
        digests.remember(path, digest)
    assert child.wait(60) == 0
    kept = json.loads(file.read_text())
    assert len(kept) == 60
    assert all(digests.known(path) == digest for path, digest in {**ours, **theirs}.items())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="a named pipe stands in for a slow disk")
def test_a_model_file_being_hashed_never_holds_up_the_engine_thread(tmp_path: Path) -> None:
    """While the model file's hash cannot finish, looking up and saving states return at once; the saved state
    waits for the hash on the writer thread, and a file's state is used once the hash is known."""
    cache = SavedStateStore(tmp_path / "states", ram_budget=0)
    cache.put("a", range(50), state_bytes(1000), SIGNATURE)
    assert cache.flush(30)
    disk = SlowDisk(tmp_path / "model.gguf", b"weights")
    loaded_at = time.perf_counter()
    signature = SignatureSource.hashing(
        lambda: StateSignature(cache.digests.digest(disk.path), 2048, 1, 1, -1, "0.3.36")
    )
    started = time.perf_counter()
    assert signature.get_if_ready() is None
    assert cache.best("a", range(50), signature, better_than=0) is None  # a file's state waits for the hash
    cache.put("b", range(60), state_bytes(1000), signature)
    engine_thread_seconds = time.perf_counter() - started
    assert signature.hashing_since(loaded_at)
    assert not cache.flush(timeout=0.5)  # the writer waits for the hash
    assert len(files(cache)) == 1
    disk.answer()
    assert not disk.answered_late and engine_thread_seconds < 5.0
    known = signature.wait(30)
    assert known is not None and known.model_sha256 == hashlib.sha256(b"weights").hexdigest()
    assert cache.flush(30)
    assert len(files(cache)) == 2
    assert cache.best("b", range(60), signature, better_than=0) is not None
    assert not signature.hashing_since(time.perf_counter())
    assert cache.digests.known(disk.path) == known.model_sha256  # hashed once: known at the next load
