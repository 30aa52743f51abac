"""The saved-state store on its own: files, budgets, eviction, damage (real files; the engine's side is in
test_saved_states.py)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from app.core import settings as settings_store
from app.core.llm.state_cache import (
    SUFFIX,
    SignatureSource,
    StateCache,
    StateSignature,
    common_prefix,
    conversation_key,
)
from app.core.paths import app_paths

SIGNATURE = SignatureSource(lambda: StateSignature("ab" * 32, 2048, 1, 1, -1, "0.3.36"))
OTHER_MODEL = SignatureSource(lambda: StateSignature("cd" * 32, 2048, 1, 1, -1, "0.3.36"))
MB = 1024 * 1024


def state_bytes(size: int, fill: int = 7) -> bytearray:
    return bytearray([fill]) * size


def files(cache: StateCache) -> list[Path]:
    return sorted(p for p in cache.folder.iterdir() if p.name.endswith(SUFFIX))


def test_common_prefix_counts_matching_leading_tokens() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2]) == 2


def test_a_saved_state_reads_back_from_disk_with_private_permissions(tmp_path: Path) -> None:
    cache = StateCache(tmp_path / "states", ram_budget=0)
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
    cache = StateCache(tmp_path / "states", ram_budget=0)
    cache.put("a", range(100), state_bytes(100), SIGNATURE)
    cache.flush(30)
    with caplog.at_level(logging.INFO, logger="app.core.llm.state_cache"):
        assert cache.best("a", range(100), OTHER_MODEL, better_than=0) is None
    assert "another model or setting" in caplog.text
    assert len(files(cache)) == 1  # the person may load that model again


def test_a_new_state_replaces_the_ones_it_extends_and_keeps_other_branches(tmp_path: Path) -> None:
    cache = StateCache(tmp_path / "states")
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
    cache = StateCache(tmp_path / "states", disk_budget=int(2.5 * MB), ram_budget=0)
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
    settings = settings_store.Settings(state_cache_mb=1)
    settings_store.save(settings)
    cache = StateCache.default()
    assert cache.folder == app_paths().state_cache_dir
    cache.put("big", range(10), state_bytes(2 * MB), SIGNATURE)  # over the budget: kept in memory only
    cache.put("small", range(10), state_bytes(MB // 2), SIGNATURE)
    cache.flush(30)
    assert len(files(cache)) == 1
    loaded, _ = settings_store.from_dict({"state_cache_mb": -5})
    assert loaded.state_cache_mb == 4096  # out of range: the default


def test_memory_keeps_recent_states_within_its_budget(tmp_path: Path) -> None:
    cache = StateCache(tmp_path / "states", disk_budget=0, ram_budget=2 * MB)
    for key in ("a", "b", "c"):
        cache.put(key, range(10), state_bytes(MB), SIGNATURE)
    assert cache.memory_usage() == 2 * MB
    assert cache.best("a", range(10), SIGNATURE, better_than=0) is None  # the oldest left memory
    found = cache.best("b", range(10), SIGNATURE, better_than=0)
    assert found is not None and found.data is not None and found.path is None
    cache.drop_memory()
    assert cache.best("b", range(10), SIGNATURE, better_than=0) is None


def test_truncated_and_damaged_files_are_discarded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = StateCache(tmp_path / "states", ram_budget=0)
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
    with caplog.at_level(logging.WARNING, logger="app.core.llm.state_cache"):
        assert cache.best("cut", range(30), SIGNATURE, better_than=0) is None
        assert cache.load(flipped, SIGNATURE) is None
    assert "truncated" in caplog.text and "checksum" in caplog.text
    assert files(cache) == []
    (cache.folder / f"junk{SUFFIX}").write_bytes(b"not a state")
    assert cache.disk_usage() > 0
    cache.clear()
    assert cache.disk_usage() == 0


def test_forget_deletes_a_conversations_states_even_while_queued(tmp_path: Path) -> None:
    cache = StateCache(tmp_path / "states")
    key = conversation_key("12")
    cache.put(key, range(10), state_bytes(1000), SIGNATURE)
    cache.put("other", range(10), state_bytes(1000), SIGNATURE)
    cache.forget(key)
    cache.flush(30)
    assert cache.best(key, range(10), SIGNATURE, better_than=0) is None
    assert len(files(cache)) == 1


def test_copies_waiting_for_a_slow_disk_stay_within_the_memory_budget(tmp_path: Path) -> None:
    cache = StateCache(tmp_path / "states", ram_budget=0)
    cache.queue_budget = 1500
    with cache._lock:  # the writer cannot finish a file meanwhile: the disk is "slow"
        cache.put("conversation-1", [1, 2, 3], state_bytes(1000), SIGNATURE)
        cache.put("conversation-2", [4, 5, 6], state_bytes(1000), SIGNATURE)  # over the budget: not queued
        assert cache._queued_bytes == 1000
    assert cache.flush(timeout=10)
    assert cache._queued_bytes == 0
    assert len(files(cache)) == 1
