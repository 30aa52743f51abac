"""The on-disk summary cache: what it keeps, and a damaged file that must not stop a summary."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from app.core.documents.summary_cache import SummaryCache, cache_key


def test_a_damaged_cache_file_is_replaced_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "summaries.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    cache = SummaryCache(path)
    assert cache.get("anything") is None
    cache.put("key", "a summary")
    assert cache.get("key") == "a summary"


def test_cache_keys_are_stable_across_runs_and_versions() -> None:
    """Keys are sha256 of the parts as JSON: summaries cached by earlier versions must still be found."""
    assert cache_key("chunk text") == hashlib.sha256(json.dumps(["chunk text"]).encode("utf-8")).hexdigest()
    assert cache_key(2, {"b": 1, "a": 2}) == cache_key(2, {"a": 2, "b": 1})
    assert cache_key("section", 1) != cache_key("section", 2)
