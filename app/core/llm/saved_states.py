"""When the engine saves and restores saved states (the storage itself is ``saved_state_store``).

The engine calls four hooks, all on its own thread:

- ``model_loaded`` / ``model_unloading``: states in memory belong to one loaded model; the state the llama holds
  is saved before the model goes.
- ``before_prompt(key, tokens)``: first, if the llama holds a conversation's unsaved state that the new prompt does
  not simply extend (another conversation, another branch, an API request), that state is saved (a memory copy;
  the file is written by the cache's writer thread). Then, if one of the key's saved states shares a longer
  prefix with the prompt than the llama's cache does, it is restored, and ``Llama.generate`` evaluates only the
  rest of the prompt.
- ``idle()``: the engine has nothing queued: the state of the conversation just answered is saved now, so a
  restart or a switch finds it.

Requests without a key (the API server's) are never saved, on disk or in memory, and restore nothing.

None of the hooks waits for the model file's hash (``SignatureSource``): a file hashed before is known at once;
a new one is hashed on a thread of its own, and meanwhile states are restored from memory only and saved states
wait in the writer's queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.core.llm.bindings import (
    cache_settings,
    cached_tokens,
    restore_sequence_state,
    sequence_state,
)
from app.core.llm.saved_state_store import SavedStateStore, SignatureSource, StateSignature, common_prefix

log = logging.getLogger(__name__)

# Restoring costs a file read and a copy; for a handful of tokens evaluating them is as fast.
MIN_TOKENS_GAINED = 32


class SavedStates:
    """The engine's side of saved states. ``cache`` None: the app's (``SavedStateStore.default()``), on
    first use."""

    def __init__(self, cache: SavedStateStore | None = None) -> None:
        self._cache = cache
        self._signature: SignatureSource | None = None
        self._holder: str | None = None  # the key of the conversation whose tokens the llama holds
        self._unsaved = False  # the llama holds a state of ``_holder`` newer than any saved one
        self.last_restored_tokens = 0  # for statistics and tests: tokens the last prompt took from a state

    @property
    def cache(self) -> SavedStateStore:
        if self._cache is None:
            self._cache = SavedStateStore.default()
        return self._cache

    @cache.setter
    def cache(self, cache: SavedStateStore) -> None:
        self._cache = cache

    def model_loaded(self, path: Path, llama: Any) -> None:
        import llama_cpp

        type_k, type_v, flash = cache_settings(llama)
        context_size = int(llama.n_ctx())
        version = str(llama_cpp.__version__)
        # Read here, on the engine thread: ``compute`` may run on a thread of its own.
        digests = self.cache.digests

        def signature(digest: str) -> StateSignature:
            return StateSignature(digest, context_size, type_k, type_v, flash, version)

        if self._cache is not None:
            self._cache.drop_memory()
        try:
            known = digests.known(path)
        except OSError:
            known = None
        if known is not None:
            self._signature = SignatureSource.known(signature(known))
        else:
            self._signature = SignatureSource.hashing(lambda: signature(digests.digest(path)))
        self._holder, self._unsaved = None, False

    def hashing_since(self, since: float) -> bool:
        """Whether the loaded model's file was being hashed at any moment from ``since`` (``perf_counter()``) on:
        a reply meanwhile shared the machine with it."""
        return self._signature is not None and self._signature.hashing_since(since)

    def wait_for_signature(self, timeout: float) -> bool:
        """Wait until the loaded model's file is hashed (or known); False if ``timeout`` ran out first or it
        could not be hashed. For a benchmark or a test that needs its first reply saved and restored from disk;
        the app never waits for it."""
        return self._signature is not None and self._signature.wait(timeout) is not None

    def model_unloading(self, llama: Any) -> None:
        self._save_held(llama)
        self._signature = None
        self._holder, self._unsaved = None, False
        if self._cache is not None:
            self._cache.drop_memory()

    def cache_cleared(self) -> None:
        """The llama's cache was emptied by hand (a benchmark, a reset): it holds no conversation now."""
        self._holder, self._unsaved = None, False

    def before_prompt(self, llama: Any, key: str | None, tokens: Sequence[int]) -> None:
        self.last_restored_tokens = 0
        held = cached_tokens(llama)
        held_prefix = common_prefix(held, tokens)
        if self._unsaved and (key != self._holder or held_prefix < len(held)):
            self._save_held(llama)
        self._holder, self._unsaved = key, key is not None
        if key is None or self._signature is None:
            return
        try:
            self._restore_best(llama, key, tokens, held_prefix)
        except Exception:  # a state is only a shortcut: the reply is evaluated as it would be without it
            log.exception("restoring the saved state of %s failed", key)

    def idle(self, llama: Any) -> None:
        if llama is not None:
            self._save_held(llama)

    def _restore_best(self, llama: Any, key: str, tokens: Sequence[int], held_prefix: int) -> None:
        assert self._signature is not None
        started = time.perf_counter()
        candidate = self.cache.best(key, tokens, self._signature, held_prefix + MIN_TOKENS_GAINED)
        if candidate is None:
            return
        data = self.cache.load(candidate, self._signature)
        if data is None:
            return
        try:
            restored = restore_sequence_state(llama, list(candidate.tokens), data)
        except Exception:
            llama.reset()  # half set: what the llama holds can no longer be trusted, only a cold start can
            raise
        if not restored:
            log.warning("llama.cpp refused the saved state of %s; the prompt is evaluated in full", key)
            return
        self.last_restored_tokens = len(candidate.tokens)
        log.info(
            "restored %d tokens of %s from %s in %.3f s",
            len(candidate.tokens),
            key,
            "memory" if candidate.path is None else candidate.path.name,
            time.perf_counter() - started,
        )

    def _save_held(self, llama: Any) -> None:
        if not self._unsaved or self._holder is None or self._signature is None:
            return
        key = self._holder
        self._unsaved = False
        try:
            tokens, data = sequence_state(llama)
            if tokens:
                self.cache.put(key, tokens, data, self._signature)
        except Exception:
            log.exception("saving the state of %s failed", key)
