"""The one owner of a ``llama_cpp.Llama``: load, stream, cancel, keep the context within budget, report stats.

Threading contract: a ``Llama`` is one llama.cpp context and is not thread-safe, so every method here except
``cancel()`` must be called from the single thread that owns the engine: the engine service's thread
(``app.core.llm.service``) in the app; a benchmark's or a test's own thread when they drive an engine directly. ``cancel()`` may be called from any thread: it only sets an event that the token
loop checks between tokens and that llama.cpp's abort callback checks while a prompt is being evaluated.
"""

from __future__ import annotations

import codecs
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

from app.core.errors import (
    Cancelled,
    ModelFileError,
    NoModelLoadedError,
    NotEnoughMemoryError,
    UserError,
)
from app.core.llm.bindings import (
    AbortSwitch,
    cached_tokens,
    end_of_generation,
    evaluate_prompt,
    evaluate_rest,
    fill_in_the_middle_tokens,
    load_progress,
    parallel_sequences,
    special_token_texts,
)
from app.core.llm.context import ChatMessage, ContextCut, Prompt, fit_to_context, whole_prompt
from app.core.llm.drafting import DraftStats, DraftVerifier, PromptLookupDrafter, drafting_applies
from app.core.llm.load_options import (
    LoadOptions,
    LoadPlan,
    builtin_template_for,
    check_load_options,
    physical_cores,
    template_choice,
    template_note,
)
from app.core.llm.sampling import ReplyOptions, TokenLogprob, TokenSampler, token_logprob
from app.core.llm.saved_states import SavedStates
from app.core.llm.stops import StopScanner
from app.core.llm.templates import BUILTIN_TEMPLATES, ChatTemplate, checked_template
from app.core.llm.tools import tool_format
from app.core.modes import SamplingOptions
from app.core.units import human_bytes

log = logging.getLogger(__name__)

# What of a message its chat template sees: tool calls and their results too, for templates that lay them out.
TEMPLATE_FIELDS = ("role", "content", "tool_calls", "tool_call_id", "name")

# "failed": the reply broke off (a server's stream cut, say); what arrived is kept, with this as why it ended.
FinishReason = Literal["stop", "length", "cancelled", "failed"]


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str
    architecture: str
    parameters: int
    native_context: int | None
    context_size: int
    has_chat_template: bool
    file_size: int
    quantization: str
    threads: int
    gpu_layers: int
    load_seconds: float
    # The built-in chat template used instead of the file's own (a templates.BUILTIN_TEMPLATES name), chosen by
    # the person or picked for a file that has none; None: the file's own template.
    builtin_template: str | None = None
    # What to tell the person about that ("no chat template in the file: using the built-in Gemma template");
    # "" when the file's own template is used.
    template_note: str = ""
    # How the model writes tool calls (a ``tools.ToolFormat`` value): its template's own way, or the generic
    # prompt for a template that knows no tools.
    tool_format: str = "generic"
    # Requests answered together (``LoadOptions.parallel`` as loaded: the number an automatic load chose), each
    # with ``context_size`` cells.
    parallel: int = 1

    @property
    def display_name(self) -> str:
        """The name a person sees everywhere (the picker, the status bar, the terminal): the file's own name, which
        tells quantizations apart where a GGUF's ``general.name`` often does not."""
        return self.path.stem


@dataclass
class ReplyStats:
    prompt_tokens: int = 0  # the whole prompt as sent, after any old turns were dropped
    evaluated_tokens: int = 0  # prompt tokens not found in the cache, so actually computed
    generated_tokens: int = 0
    time_to_first_token: float = 0.0  # seconds from the request to the first token of text
    tokens_per_second: float = 0.0  # generation speed, first token to last
    prompt_tokens_per_second: float = 0.0
    total_seconds: float = 0.0
    finish_reason: FinishReason = "stop"
    dropped_messages: int = 0  # old messages left out to fit the context
    context_size: int = 0
    # Who wrote the reply, kept with it so each version of a reply is labelled with its own writer: "local"
    # (a file on this computer, ``model`` its path) or "server" (``model`` the server's name for it).
    engine: str = "local"
    model: str = ""
    # The model file was being hashed (for its saved states) while the reply ran: the hash competed for the CPU
    # and memory bandwidth, so the reply's speed is no measurement of the model's.
    hashing_model: bool = False
    # Prompt-lookup drafting (app.core.llm.drafting): tokens drafted, and how many of them the model's own
    # sampling kept; both 0 when the reply was not drafted.
    drafted_tokens: int = 0
    accepted_tokens: int = 0

    @property
    def dropped_turns(self) -> int:
        """Turns are user + assistant pairs; a trailing odd message counts as a turn too."""
        return (self.dropped_messages + 1) // 2

    @property
    def context_used(self) -> int:
        return self.prompt_tokens + self.generated_tokens


class _RequestCancel:
    """Whether the request under way was stopped: by ``Engine.cancel()`` or by its own event."""

    def __init__(self, engine_event: threading.Event, own: threading.Event | None) -> None:
        self._engine_event = engine_event
        self._own = own

    def is_set(self) -> bool:
        return self._engine_event.is_set() or (self._own is not None and self._own.is_set())

    def cancel(self) -> None:
        self._engine_event.set()


class FillInTheMiddleUnsupported(UserError):
    """A completion asked to fill in before a suffix, from a model with no fill-in-the-middle tokens."""


class Reply:
    """A streamed reply: iterate for text pieces; ``stats`` is complete once iteration ends. ``logprobs`` grows
    by one entry per generated token before the text holding it is yielded, when they were asked for."""

    def __init__(
        self, pieces: Iterator[str], stats: ReplyStats, logprobs: list[TokenLogprob] | None = None
    ) -> None:
        self._pieces = pieces
        self.stats = stats
        self.logprobs: list[TokenLogprob] = logprobs if logprobs is not None else []
        self.text = ""

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            self.text += piece
            yield piece

    def collect(self) -> str:
        for _ in self:
            pass
        return self.text


class Engine:
    """Owns one model at a time. See the module docstring for which thread may call what."""

    def __init__(self) -> None:
        self._llama: Any = None
        self._info: ModelInfo | None = None
        self._options: LoadOptions | None = None  # what the loaded model was loaded with, to reload it
        self._template: ChatTemplate | None = None
        self._cancel_event = threading.Event()
        self._abort = AbortSwitch(self._cancel_event)
        self._cut = ContextCut()
        self._request: _RequestCancel | None = None  # the request under way, whose stop ends a render too
        self.load_fraction = 0.0  # progress of the load under way, readable from any thread
        self._loaded_footprint = 0  # estimated bytes the loaded model holds
        self.states = SavedStates()  # conversations' saved llama.cpp states (app.core.llm.saved_states)
        # The prompt evaluated in batches before generating (progress, a stop between batches); off only to
        # measure that it costs no speed.
        self.prompt_in_batches = True

    # -- state -------------------------------------------------------------------------------------------

    @property
    def model(self) -> ModelInfo | None:
        return self._info

    @property
    def load_options(self) -> LoadOptions | None:
        """What the loaded model was loaded with (to load it again, as a benchmark's restart does)."""
        return self._options

    @property
    def is_loaded(self) -> bool:
        return self._llama is not None

    @property
    def sequence_context(self) -> int:
        """The cells one request may use: the whole context, or with ``parallel`` sequences its even share, on the
        batched loop and on this engine's own path alike (as llama-server's slots), so a conversation has the same
        room whichever path answers it and a batch never runs out of cells."""
        parallel = self._options.parallel if self._options is not None else 1
        return int(self.llama.n_ctx()) // max(1, parallel)

    @property
    def llama(self) -> Any:
        """The underlying ``Llama``, for the benchmark's raw comparison only. Same thread rules apply."""
        if self._llama is None:
            raise NoModelLoadedError("No model is loaded. Choose a model first.")
        return self._llama

    def cancel(self) -> None:
        """Stop the current load or reply as soon as possible. Safe from any thread."""
        self._cancel_event.set()
        self._abort.trip()

    def clear_cache(self) -> None:
        """Forget the evaluated prompt, so the next request starts cold (benchmarks, a model reset), and any stop
        pressed after the last request ended: the benchmark's raw ``Llama.generate`` would be aborted by it."""
        self.llama.reset()
        self._cancel_event.clear()
        self._abort.reset()
        self._cut = ContextCut()
        self.states.cache_cleared()

    def interrupt(self) -> None:
        """Stop the llama.cpp computation under way without cancelling any request: a batched step's
        ``llama_decode`` returns 2 and removes the cells it had begun (``app.core.llm.batched``); a request of the
        engine's own path resets it as it begins. Safe from any thread."""
        self._abort.trip()

    def resume(self) -> None:
        """Let llama.cpp compute again after ``interrupt`` (engine thread)."""
        self._abort.reset()

    def lend_cache(self) -> None:
        """The batched loop takes the cache over (``app.core.llm.batched``): what sequence 0 holds is saved, as
        when idle, and left for the loop to continue from, but is no longer counted as any conversation's (the
        loop may replace it); a stop pressed after the last request must not abort the loop's steps."""
        self.idle()
        self._cancel_event.clear()
        self._abort.reset()
        self.states.cache_cleared()

    def _begin_request(self, cancel: threading.Event | None = None) -> _RequestCancel:
        """A fresh start for the engine's own cancel flag. A caller that queues requests passes each one's own
        event, so a stop pressed while the request was still waiting is not wiped out here."""
        self._cancel_event.clear()
        self._abort.reset()
        request = _RequestCancel(self._cancel_event, cancel)
        self._request = request
        if request.is_set():
            self.cancel()  # stopped before it started: make llama.cpp's abort callback see it too
        return request

    # -- loading -----------------------------------------------------------------------------------------

    def load(
        self,
        path: str | os.PathLike[str],
        options: LoadOptions | None = None,
        progress: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> ModelInfo:
        """Validate, check memory, then load. Raises ModelFileError, NotEnoughMemoryError or Cancelled.

        The model loaded before stays loaded until the new file has passed its checks and is known to fit; then
        it is closed before the new one loads, so two models never share the memory that was counted for one.
        If the new model then fails to load (or the load is stopped), the previous one is loaded again.
        """
        try:
            return self._load(path, options or LoadOptions(), progress, cancel)
        finally:
            self._request = None  # the load ended; a stop of it must not reach later work

    def _load(
        self,
        path: str | os.PathLike[str],
        options: LoadOptions,
        progress: Callable[[float], None] | None,
        cancel: threading.Event | None,
    ) -> ModelInfo:
        check_load_options(options)
        cancel_event = self._begin_request(cancel)
        budget = options.memory_budget
        if budget is None:
            # The model loaded now gives its memory back before the new one loads.
            budget = psutil.virtual_memory().available + self._loaded_footprint
        plan = LoadPlan.make(path, options, budget)
        if plan.needed > budget:
            raise NotEnoughMemoryError(
                f"{plan.gguf.name} needs about {human_bytes(plan.needed)} of memory at a context of "
                f"{plan.context_size} tokens (weights {human_bytes(plan.estimate.weights)}, context cache "
                f"{human_bytes(plan.estimate.kv_cache)}), but only {human_bytes(budget)} is free. Close other "
                "programs, choose a smaller context size, or pick a smaller model or quantization."
            )
        previous = (self._info.path, self._options) if self._info is not None and self._options else None
        if cancel_event.is_set():  # stopped before anything changed: the model loaded now stays
            raise Cancelled()
        self.unload()
        try:
            return self._load_planned(plan, progress, cancel_event)
        except (ModelFileError, Cancelled) as exc:
            if previous is None:
                raise
            restored = self._reload(*previous)
            if isinstance(exc, Cancelled) or restored is None:
                raise
            raise ModelFileError(f"{exc} {restored.name} is loaded again.") from exc

    def _reload(self, path: Path, options: LoadOptions) -> ModelInfo | None:
        """Load again the model a failed or stopped load replaced; None if even that fails."""
        try:
            return self._load_planned(LoadPlan.make(path, options), None, self._begin_request())
        except (UserError, Cancelled):
            log.warning("the previous model %s could not be loaded again", path, exc_info=True)
            return None

    def _load_planned(
        self, plan: LoadPlan, progress: Callable[[float], None] | None, cancel_event: _RequestCancel
    ) -> ModelInfo:
        gguf, options, context_size, gpu_layers = plan.gguf, plan.options, plan.context_size, plan.gpu_layers
        import llama_cpp

        threads = options.threads or physical_cores()
        started = time.perf_counter()
        self.load_fraction = 0.0

        def track(fraction: float) -> None:
            self.load_fraction = fraction
            if progress is not None:
                progress(fraction)

        # parallel > 1: room for that many sequences in the one KV cache, for app.core.llm.batched.
        with load_progress(track, cancel_event), parallel_sequences(options.parallel):
            try:
                llama = llama_cpp.Llama(
                    model_path=str(gguf.path),
                    n_ctx=context_size,
                    n_batch=options.batch_size,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_gpu_layers=gpu_layers,
                    use_mmap=options.use_mmap,
                    flash_attn=options.flash_attention,
                    verbose=False,
                )
            except ValueError as exc:
                if cancel_event.is_set():
                    raise Cancelled() from exc
                raise ModelFileError(
                    f"llama.cpp could not load {gguf.path.name} ({exc}). The file may be damaged or made for a "
                    "newer llama.cpp; download it again or update LlamaDesk."
                ) from exc
        if cancel_event.is_set():
            llama.close()
            raise Cancelled()
        try:  # again with the model's own BOS and EOS texts, which the probe could only stand in for
            bos, eos = special_token_texts(llama)
            template = checked_template(
                *template_choice(gguf, options), model_name=gguf.name, bos_token=bos, eos_token=eos
            )
        except BaseException:
            llama.close()
            raise

        self._llama = llama
        self._options = options
        self._loaded_footprint = plan.needed
        self._abort.install(llama)
        self._template = template
        self._cut = ContextCut()
        self.states.model_loaded(gguf.path, llama)
        builtin = builtin_template_for(gguf, options)
        note = template_note(builtin, chosen=options.chat_template is not None)
        if note:
            log.info("%s: %s", gguf.path.name, note)
        self._info = ModelInfo(
            path=gguf.path,
            name=gguf.name,
            architecture=gguf.architecture,
            parameters=gguf.parameter_count,
            native_context=gguf.context_length,
            context_size=self.sequence_context,
            has_chat_template=gguf.chat_template is not None and options.chat_template is None,
            file_size=gguf.file_size,
            quantization=gguf.quantization,
            threads=threads,
            gpu_layers=gpu_layers,
            load_seconds=time.perf_counter() - started,
            builtin_template=builtin,
            template_note=note,
            tool_format=tool_format(
                BUILTIN_TEMPLATES[builtin].source if builtin else gguf.chat_template or ""
            ).value,
            parallel=options.parallel,
        )
        self.load_fraction = 1.0
        if progress:
            progress(1.0)
        return self._info

    def unload(self) -> None:
        if self._llama is not None:
            self.states.model_unloading(self._llama)
            self._llama.close()
        self._llama = None
        self._loaded_footprint = 0
        self._info = None
        self._options = None
        self._template = None
        self._abort.release()

    # -- prompts and the context budget --------------------------------------------------------------------

    def tokenize_messages(
        self, messages: Sequence[ChatMessage], tools: list[dict[str, Any]] | None = None
    ) -> tuple[list[int], list[str]]:
        """The exact tokens the model sees for ``messages`` (and ``tools``, for a template that lays them out),
        ending with the assistant's turn opening.

        Raises ChatTemplateError (a sentence) if the template fails on them, Cancelled if the request under way
        is stopped while the template renders."""
        llama = self.llama
        assert self._template is not None  # set with the model
        rendered = self._template.render(
            [{key: m[key] for key in TEMPLATE_FIELDS if key in m} for m in messages],  # type: ignore[literal-required]
            cancel=self._request,
            tools=tools,
        )
        # Like llama-cpp-python's formatter: the template writes its own BOS (most print ``bos_token``).
        tokens = llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=False, special=True)
        return tokens, rendered.stop

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def build_prompt(self, messages: Sequence[ChatMessage], max_tokens: int) -> Prompt:
        """The prompt for ``messages`` in this model's context, keeping the previous turn's cut when it still
        applies (see ``app.core.llm.context``)."""
        prompt, self._cut = fit_to_context(
            messages,
            self.tokenize_messages,
            self.count_tokens,
            self.sequence_context,
            max_tokens,
            self._cut,
        )
        return prompt

    # -- generation ----------------------------------------------------------------------------------------

    def chat(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingOptions | None = None,
        cancel: threading.Event | None = None,
        state_key: str | None = None,
        prompt_progress: Callable[[int, int], None] | None = None,
        options: ReplyOptions | None = None,
    ) -> Reply:
        """Start a streamed reply to ``messages``. Iterate the result for text; read ``stats`` afterwards.

        ``state_key`` names the conversation (``saved_state_store.saved_state_key``): its saved state is restored when
        it serves the prompt better than the cache, and the state after the reply is saved under it.

        ``prompt_progress(done, total)`` is called, on this thread, after each batch of the prompt is evaluated
        (``total``: the tokens not served by the cache) and once more when all are.

        ``options`` (``sampling.ReplyOptions``): stops, a grammar, a logit bias, log-probabilities, tools, and
        whether a history too long for the context is cut (the window) or refused (the API).

        Raises UserError before streaming starts (no model, message too long, a grammar refused); once
        streaming, a cancel ends the reply with ``finish_reason == "cancelled"`` and what was generated so far.
        """
        options = options or ReplyOptions()
        sampling = sampling or SamplingOptions()

        def prompt_for_messages() -> Prompt:
            if options.cut_history and not options.tools:
                return self.build_prompt(messages, sampling.max_tokens)
            tokens, stops = self.tokenize_messages(messages, tools=options.tools)
            return self._whole_prompt(tokens, stops, sampling.max_tokens, options)

        return self._reply(prompt_for_messages, sampling, cancel, state_key, prompt_progress, options)

    def complete(
        self,
        prompt: str | Sequence[int],
        sampling: SamplingOptions | None = None,
        cancel: threading.Event | None = None,
        options: ReplyOptions | None = None,
        *,
        echo: bool = False,
        suffix: str | None = None,
    ) -> Reply:
        """Continue ``prompt`` as given (text, or token ids), with no chat template: a raw completion.

        ``echo``: the reply starts with the prompt's text. ``suffix``: fill in the middle between ``prompt`` and
        ``suffix``, for a model with fill-in-the-middle tokens (a sentence otherwise). The prompt is taken whole:
        one longer than the context raises ContextLimitError."""
        options = options or ReplyOptions()
        sampling = sampling or SamplingOptions()
        echoed: list[str] = []

        def prompt_tokens() -> Prompt:
            tokens = self.raw_tokens(prompt, add_bos=suffix is None)
            if echo:
                echoed.append(
                    prompt
                    if isinstance(prompt, str)
                    else self.llama.detokenize(tokens).decode("utf-8", "replace")
                )
            if suffix is not None:
                tokens = self._fill_in_the_middle(tokens, suffix)
            if not tokens:
                raise UserError("The prompt is empty: give the model some text to continue.")
            return self._whole_prompt(tokens, [], sampling.max_tokens, options)

        reply = self._reply(prompt_tokens, sampling, cancel, None, None, options)
        if echoed and echoed[0]:
            return Reply(itertools.chain(echoed, reply), reply.stats, reply.logprobs)
        return reply

    def _fill_in_the_middle(self, prefix: list[int], suffix: str) -> list[int]:
        """The tokens of a fill-in-the-middle prompt (prefix, suffix, middle: llama.cpp's server's order)."""
        llama = self.llama
        special = fill_in_the_middle_tokens(llama)
        if special is None:
            raise FillInTheMiddleUnsupported(
                f"{self.model.display_name if self.model else 'This model'} has no fill-in-the-middle tokens, so it "
                "cannot "
                "fill in between a prompt and a suffix; leave out 'suffix', or load a code model made for it."
            )
        pre, suf, mid = special
        bos = [int(llama.token_bos())] if llama._model.add_bos_token() and llama.token_bos() != -1 else []
        after = llama.tokenize(suffix.encode("utf-8"), add_bos=False, special=False)
        return [*bos, pre, *prefix, suf, *after, mid]

    def _whole_prompt(
        self, tokens: list[int], stops: list[str], max_tokens: int, options: ReplyOptions
    ) -> Prompt:
        """``tokens`` as the prompt, all of them: refused with the figures when the context cannot hold them."""
        return whole_prompt(
            tokens,
            stops,
            max_tokens,
            limit=self.sequence_context,
            max_tokens_required=options.max_tokens_required,
            space="the model's context",
            remedy="load the model with a larger context",
        )

    def raw_tokens(self, prompt: str | Sequence[int], *, add_bos: bool = True) -> list[int]:
        """A raw completion's prompt as token ids: text tokenized (its special tokens read as such), ids checked
        against the vocabulary (a sentence for one the model lacks)."""
        llama = self.llama
        if isinstance(prompt, str):
            return list(llama.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True))
        tokens = list(prompt)
        vocabulary = int(llama.n_vocab())
        outside = [t for t in tokens if not 0 <= t < vocabulary]
        if outside:
            raise UserError(
                f"The prompt holds token {outside[0]}, which this model does not have (its tokens are numbered 0 "
                f"to {vocabulary - 1})."
            )
        return tokens

    def _reply(
        self,
        make_prompt: Callable[[], Prompt],
        sampling: SamplingOptions,
        cancel: threading.Event | None,
        state_key: str | None,
        prompt_progress: Callable[[int, int], None] | None,
        options: ReplyOptions,
    ) -> Reply:
        cancel_event = self._begin_request(cancel)
        requested = time.perf_counter()
        try:
            prompt = make_prompt()
            sampler = TokenSampler(self.llama, sampling, options)
        except Cancelled:  # stopped while the template rendered: an empty, stopped reply
            self._request = None
            stopped = ReplyStats(finish_reason="cancelled", context_size=self.sequence_context)
            stopped.total_seconds = time.perf_counter() - requested
            return Reply(iter(()), stopped)
        except BaseException:
            self._request = None  # the request ended here; a stop of it must not reach later work
            raise
        stats = ReplyStats(
            prompt_tokens=len(prompt.tokens),
            dropped_messages=prompt.dropped_messages,
            context_size=self.sequence_context,
            model=str(self._info.path) if self._info is not None else "",
        )
        try:
            self.states.before_prompt(self.llama, state_key, prompt.tokens)
            stats.evaluated_tokens = self._tokens_to_evaluate(prompt.tokens)
        except BaseException:
            sampler.close()
            self._request = None
            raise
        logprobs: list[TokenLogprob] = []
        turn = _Turn(prompt, sampler, options, stats, logprobs, cancel_event, requested, prompt_progress)
        return Reply(self._stream(turn), stats, logprobs)

    def idle(self) -> None:
        """Nothing is queued: save the state of the conversation just answered (a copy; written elsewhere)."""
        self.states.idle(self._llama)

    def _tokens_to_evaluate(self, tokens: list[int]) -> int:
        """What the reply will compute: everything after the longest cached prefix (at least one)."""
        cached = cached_tokens(self.llama)
        prefix = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            prefix += 1
        if prefix == len(tokens):
            prefix -= 1  # the last token is evaluated again for its logits
        return len(tokens) - max(0, prefix)

    def _stream(self, turn: _Turn) -> Iterator[str]:
        llama = self.llama
        prompt, stats, cancel_event = turn.prompt, turn.stats, turn.cancel_event
        is_end = end_of_generation(llama)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopScanner([*prompt.stop, *turn.options.stops])  # every stop checked here, in one place
        top_logprobs = turn.options.top_logprobs
        first_token_at: float | None = None
        prompt_done_at: float | None = None
        finish: FinishReason = "length"
        generated: list[int] = []
        previous: list[int] = list(prompt.tokens)
        starts: list[int] = []  # where each generated token's text begins in the reply as decoded
        decoded = returned = 0  # characters decoded, and given to the caller
        # A tool call's marker may be a control token (Mistral's [TOOL_CALLS], Llama's <|python_tag|>): with
        # tools, such tokens are written out so the call can be read.
        special = turn.options.tools is not None
        drafter: PromptLookupDrafter | None = None
        verifier: DraftVerifier | None = None
        if drafting_applies(turn.options):
            drafter = PromptLookupDrafter(prompt.tokens)
            verifier = DraftVerifier(llama, turn.draft_stats, drafter)
        try:
            try:
                if self.prompt_in_batches:  # with progress, and a stop heard between batches
                    evaluate_prompt(llama, prompt.tokens, turn.prompt_progress, cancel_event.is_set)
                if not cancel_event.is_set():
                    evaluate_rest(llama, prompt.tokens)
            except RuntimeError:
                if not cancel_event.is_set():  # else llama_decode was aborted by our callback
                    raise
            while True:
                if cancel_event.is_set():
                    finish = "cancelled"
                    break
                row = verifier.row if verifier is not None else -1
                token = turn.sampler.sample(row)
                if prompt_done_at is None:
                    prompt_done_at = time.perf_counter()
                    if turn.prompt_progress is not None:
                        turn.prompt_progress(stats.evaluated_tokens, stats.evaluated_tokens)
                if is_end(token):
                    finish = "stop"
                    break
                if top_logprobs is not None:
                    turn.logprobs.append(token_logprob(llama, token, top_logprobs, row))
                generated.append(token)
                stats.generated_tokens = len(generated)
                piece = decoder.decode(llama.detokenize([token], prev_tokens=previous, special=special))
                previous.append(token)
                starts.append(decoded)
                decoded += len(piece)
                if piece:
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                        stats.time_to_first_token = first_token_at - turn.requested
                    text = stops.feed(piece)
                    if text:
                        returned += len(text)
                        yield text
                    if stops.stopped:
                        finish = "stop"
                        break
                if len(generated) >= prompt.max_tokens:
                    finish = "length"
                    break
                try:
                    if verifier is None or drafter is None:
                        llama.eval([token])
                        continue
                    drafter.add(token)
                    if verifier.take(token):  # the drafted token it was: already evaluated
                        continue
                    # Rows past the tokens the reply can still take would be evaluated for nothing.
                    room = min(prompt.max_tokens - len(generated) - 1, int(llama.n_batch) - 1)
                    verifier.evaluate(token, drafter.draft(room))
                except RuntimeError:
                    if cancel_event.is_set():  # llama_decode aborted by our callback
                        finish = "cancelled"
                        break
                    raise
            if not stops.stopped:
                tail = stops.feed(decoder.decode(b"", final=True))
                tail += stops.flush() if not stops.stopped else ""
                if tail:
                    returned += len(tail)
                    yield tail
        finally:
            if verifier is not None:  # the cache keeps the reply's tokens, not a draft beyond them
                verifier.discard()
            stats.drafted_tokens = turn.draft_stats.drafted
            stats.accepted_tokens = turn.draft_stats.accepted
            turn.sampler.close()
            self._request = (
                None  # the request ended; a stop of it must not reach later work (a summary's counts)
            )
            done = time.perf_counter()
            # Tokens that only wrote the stop string (or text after it) were not returned: not counted, and
            # their log-probabilities dropped, so the figures describe the reply as the caller got it.
            returned_tokens = (
                sum(1 for start in starts if start < returned) if stops.stopped else len(generated)
            )
            del turn.logprobs[returned_tokens:]
            stats.generated_tokens = returned_tokens
            stats.finish_reason = finish
            stats.total_seconds = done - turn.requested
            if prompt_done_at is not None:
                eval_seconds = prompt_done_at - turn.requested
                if eval_seconds > 0:
                    stats.prompt_tokens_per_second = stats.evaluated_tokens / eval_seconds
                if len(generated) > 1 and done > prompt_done_at:
                    stats.tokens_per_second = (len(generated) - 1) / (done - prompt_done_at)
            if first_token_at is None:
                stats.time_to_first_token = done - turn.requested
            stats.hashing_model = self.states.hashing_since(turn.requested)


@dataclass
class _Turn:
    """One reply under way: its prompt, its sampler chain, and where its figures go."""

    prompt: Prompt
    sampler: TokenSampler  # closed when the reply ends
    options: ReplyOptions
    stats: ReplyStats
    logprobs: list[TokenLogprob]
    cancel_event: _RequestCancel
    requested: float
    prompt_progress: Callable[[int, int], None] | None
    draft_stats: DraftStats = field(default_factory=DraftStats)
