"""Two kinds of failure: the environment's fault (a sentence for a person) and bugs (a traceback for us)."""

from __future__ import annotations


class UserError(Exception):
    """Something a person can understand and act on: a bad file, too little memory, no network.

    ``str(error)`` is the sentence shown in the window or printed by the CLI: what happened and what to do.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ModelFileError(UserError):
    """A model file that is missing, incomplete, corrupt or of an unsupported kind."""


class NotEnoughMemoryError(UserError):
    """Loading the model would not fit in the memory that is free right now."""


class ContextOverflowError(UserError):
    """A single message is longer than the whole context window."""


class ContextLimitError(ContextOverflowError):
    """A request that must be taken whole (an API request) needs more tokens than the context holds."""

    def __init__(self, message: str, *, prompt_tokens: int, limit: int) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class ModelChangedError(UserError):
    """The model a request was accepted for is no longer the one loaded when its turn came."""


class NoModelLoadedError(UserError):
    """A reply was asked for before a model was loaded."""


class InvalidOptionError(UserError):
    """An option or setting outside the range it must fall in."""


class Cancelled(Exception):
    """The user stopped the work; not an error, nothing to report."""
