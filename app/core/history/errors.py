"""The history's errors a person can act on: each says what happened and what to do."""

from __future__ import annotations

import sqlite3

from app.core.errors import UserError


class ConversationNotFoundError(UserError):
    """A conversation id that is not in the history (never was, or purged from the trash)."""


class HistoryWriteError(UserError):
    """The history could not be written or read right now: a full disk, a locked or failing file."""


def storage_error(error: sqlite3.Error, action: str) -> HistoryWriteError:
    """The sentence for an SQLite error that is the environment's fault (disk full, file locked, I/O)."""
    text = str(error).lower()
    if "full" in text:
        cause = "the disk is full"
        advice = "Free some disk space; what is on screen is still there, and saving resumes by itself."
    elif "locked" in text or "busy" in text:
        cause = "another program is holding the history file"
        advice = "Close other LlamaDesk windows or commands and try again."
    else:
        cause = f"the history file could not be used ({error})"
        advice = "Check the disk; what is on screen is still there."
    return HistoryWriteError(f"The conversation could not be {action}: {cause}. {advice}")


def conversation_not_found(conversation_id: int) -> ConversationNotFoundError:
    return ConversationNotFoundError(
        f"There is no conversation {conversation_id} in the history. List them with: llamadesk history list"
    )


class HistoryFormatError(UserError):
    """A file given to import that is not a LlamaDesk history export."""
