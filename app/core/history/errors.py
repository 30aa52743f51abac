"""The history's errors a person can act on: each says what happened and what to do."""

from __future__ import annotations

import sqlite3

from app import APP_NAME
from app.core.errors import UserError

# How long a read or write waits for another process's write to end before it gives up with a sentence. An
# import releases the lock between its batches, so a wait this long means another program is stuck or slow.
BUSY_TIMEOUT_SECONDS = 5.0


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
        cause = f"another program has been writing to the history for over {BUSY_TIMEOUT_SECONDS:.0f} seconds"
        advice = f"Wait for other {APP_NAME} windows or commands (an import, say) to finish, then try again."
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


class HistoryUnavailableError(UserError):
    """The history cannot be opened at all: a folder where the file should be, an unreadable file, a lock."""


class HistoryReadOnlyError(UserError):
    """A write to a history that was opened read-only (the file or its folder cannot be written)."""


def history_busy(path: object) -> HistoryUnavailableError:
    return HistoryUnavailableError(
        f"The conversation history at {path} is busy: another {APP_NAME} window or command has been writing to "
        f"it for over {BUSY_TIMEOUT_SECONDS:.0f} seconds (an import, say). Wait for it to finish and try again."
    )
