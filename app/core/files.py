"""Small files written whole: JSON that is replaced atomically, and read back forgivingly; and a file's sha256."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a crash mid-write leaves the previous file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """The decoded file, or None when it is missing or unreadable (a cache can always be rebuilt)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("Ignoring unreadable %s: %s", path, exc)
        return None


def file_sha256(path: Path, block_bytes: int = 1 << 20) -> str:
    """The sha256 of the file at ``path``, read in blocks (a file of gigabytes costs no memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(block_bytes):
            digest.update(block)
    return digest.hexdigest()
