"""Chat templates: a GGUF's own Jinja template or one of ours, rendered under a time and size budget.

Templates come from downloaded files. llama-cpp-python renders them in Jinja's immutable sandbox, which stops a
template from running code, but not from raising, looping for ever (``range`` is capped at 100,000 items, so two
nested loops make 10^10 iterations) or building a string of gigabytes (``'x' * 3000000000``). Here the sandbox is
budgeted on top of that:

- every loop iteration, call, attribute lookup and operator is a *step* that checks the deadline and the
  request's cancel, so a stop or a slow template ends the render within milliseconds;
- every value a template builds is measured before it can grow: operators, calls and filters whose result
  could exceed the size budget are refused before Python allocates it, and nested containers are measured as
  the text they would print as;
- constant folding at compile time is off, so nothing runs while a template is parsed.

A template is rendered once on a probe conversation when a model loads (``probe``); one that fails is refused
with a sentence naming what is wrong and offering the built-in templates below.
"""

from __future__ import annotations

import functools
import operator
import re
import time
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
import jinja2.exceptions
import jinja2.ext
import jinja2.nodes
import jinja2.runtime
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from app.core.errors import Cancelled, ModelFileError
from app.core.llm.gguf_check import GGUFInfo

PROBE_SECONDS = 2.0  # a real template renders a short conversation in about a millisecond
RENDER_SECONDS = 10.0  # at chat time, where a long conversation takes longer; Stop ends it sooner
BASE_SIZE_BUDGET = 8_000_000  # characters a render may build beyond a few times its input

MAX_INTEGER_BITS = 100_000  # far beyond any count a template needs; squaring in a loop would take hours
_COUNTED = "llamadesk_counted"  # the filter wrapped around every loop's iterable
_SIZED = "llamadesk_sized"  # the filter wrapped around every concatenation's parts and result
_LARGE_FORMAT_NUMBER = re.compile(r"\d{7,}")  # a width or precision of millions in a format string


@dataclass(frozen=True)
class BuiltinTemplate:
    title: str
    source: str
    stops: tuple[str, ...]  # the turn's end as text, for models whose tokens do not mark it


BUILTIN_TEMPLATES: dict[str, BuiltinTemplate] = {
    "chatml": BuiltinTemplate(
        "ChatML",
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        ("<|im_end|>",),
    ),
    "llama3": BuiltinTemplate(
        "Llama 3",
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}",
        ("<|eot_id|>",),
    ),
    "gemma": BuiltinTemplate(
        "Gemma",
        # Gemma has no system role: the system prompt opens the first user turn.
        "{{ bos_token }}{% set ns = namespace(system='') %}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.system = m['content'] ~ '\n\n' %}{% else %}"
        "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ ns.system }}"
        "{{ m['content'] | trim }}<end_of_turn>\n{% set ns.system = '' %}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}",
        ("<end_of_turn>",),
    ),
    "mistral": BuiltinTemplate(
        "Mistral / Llama 2 [INST]",
        "{{ bos_token }}{% set ns = namespace(system='') %}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.system = m['content'] ~ '\n\n' %}"
        "{% elif m['role'] == 'user' %}[INST] {{ ns.system }}{{ m['content'] }} [/INST]"
        "{% set ns.system = '' %}{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}",
        ("[INST]",),
    ),
    "phi3": BuiltinTemplate(
        "Phi-3",
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}",
        ("<|end|>",),
    ),
}


# The built-in template each architecture's chat models were tuned on, for a file that carries no template.
ARCHITECTURE_TEMPLATES: dict[str, str] = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "gemma3n": "gemma",
    "phi3": "phi3",
}
# What a Llama 3 tokenizer says of itself in a GGUF: its pre-tokenizer's name and its BOS, <|begin_of_text|>.
LLAMA3_PRE_TOKENIZER = "llama-bpe"
LLAMA3_BOS_ID = 128_000
# ChatML for everything else: what most small instruct models were tuned on.
DEFAULT_BUILTIN = "chatml"


def builtin_for_file(gguf: GGUFInfo) -> str:
    """The built-in template for a model file without one of its own: the one its architecture's chat models
    were tuned on (Gemma's for Gemma; Llama 3's for a Llama with Llama 3's tokenizer), else ChatML. A model
    given a format it was not tuned on tends to end its turn at once, as Gemma does with ChatML."""
    by_architecture = ARCHITECTURE_TEMPLATES.get(gguf.architecture)
    if by_architecture is not None:
        return by_architecture
    metadata = gguf.metadata
    if gguf.architecture == "llama" and (
        metadata.get("tokenizer.ggml.pre") == LLAMA3_PRE_TOKENIZER
        or metadata.get("tokenizer.ggml.bos_token_id") == LLAMA3_BOS_ID
    ):
        return "llama3"
    return DEFAULT_BUILTIN


def builtin_choices() -> str:
    """The built-in templates as a person reads them: "ChatML (chatml), Llama 3 (llama3), ..."."""
    return ", ".join(f"{t.title} ({name})" for name, t in BUILTIN_TEMPLATES.items())


class ChatTemplateError(ModelFileError):
    """A chat template that does not parse, fails, or exceeds its budget; the sentence offers the built-ins."""


class _OverBudget(Exception):
    """A render went past its time or size budget; the text says which, for the sentence."""


@dataclass(frozen=True)
class RenderedPrompt:
    prompt: str
    stop: list[str]


class _Budget:
    """One render's limits: checked at every step the template takes and on every value it builds."""

    def __init__(self, seconds: float, max_size: int, cancel: Any) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.max_size = max_size
        self.cancel = cancel
        self._sizes: dict[
            int, tuple[Any, int]
        ] = {}  # id -> (object kept alive, size): containers are immutable

    def step(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()
        if time.monotonic() > self.deadline:
            raise _OverBudget(f"it took more than {self.seconds:g} s to render a short conversation")

    def refuse_size(self) -> _OverBudget:
        return _OverBudget(f"it builds text longer than {self.max_size:,} characters")

    def size(self, value: Any) -> int:
        """How large ``value`` is as text (strings by length, containers by their printed contents), giving up
        past the budget: a list nested 40 deep in itself has a small footprint but prints as terabytes."""
        if isinstance(value, str | bytes):
            return len(value)
        if isinstance(value, int) and value.bit_length() > MAX_INTEGER_BITS:
            raise _OverBudget(f"it computes a number of more than {MAX_INTEGER_BITS:,} bits")
        if not isinstance(value, list | tuple | dict | set | frozenset):
            return 1
        known = self._sizes.get(id(value))
        if known is not None:
            return known[1]
        total = 2
        items = value.items() if isinstance(value, dict) else value
        for item in items:
            total += self.size(item) + 2
            if total > self.max_size:
                raise self.refuse_size()
        self._sizes[id(value)] = (value, total)
        return total

    def check(self, value: Any) -> Any:
        if self.size(value) > self.max_size:
            raise self.refuse_size()
        return value

    def check_growth(self, name: str, subject: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Refuse a string operation whose result would exceed the budget, before Python allocates it: the
        few that multiply (``replace``, ``join``, ``indent``, ``expandtabs``, ``wordwrap``), pad to a width
        (``center``, ``ljust``, ``rjust``, ``zfill``) or format (a width of millions in a format string)."""
        values = [*args, *kwargs.values()]
        if name == "join":
            sequence = next(
                (v for v in (subject, *values) if isinstance(v, Sized) and not isinstance(v, str)), None
            )
            separator = next((v for v in (subject, *values) if isinstance(v, str)), "")
            if sequence is not None and len(separator) * len(sequence) > self.max_size:
                raise self.refuse_size()
            return
        numbers = [int(min(abs(v), 1e18)) for v in values if isinstance(v, int | float) and v == v]
        texts = [v for v in values if isinstance(v, str)]
        widest = max(numbers, default=0)
        if name == "tojson":
            if self.size(subject) * (1 + widest) > self.max_size:
                raise self.refuse_size()
            return
        if not isinstance(subject, str):
            return
        lines = subject.count("\n") + 1
        if name == "replace" and len(texts) >= 2:
            old, new = texts[0], texts[1]
            estimate = len(subject) + (subject.count(old) if old else len(subject) + 1) * len(new)
        elif name in ("center", "ljust", "rjust", "zfill"):
            estimate = max(len(subject), widest)
        elif name == "indent":
            estimate = len(subject) + lines * max(widest, *(len(t) for t in texts), 0)
        elif name == "expandtabs":
            estimate = len(subject) + (subject.count("\t") + 1) * widest
        elif name == "wordwrap":
            estimate = len(subject) * (1 + max((len(t) for t in texts), default=1))
        elif name in ("format", "format_map", "%"):
            if any(_LARGE_FORMAT_NUMBER.search(t) for t in (subject, *texts)):
                raise self.refuse_size()
            return
        else:
            return
        if estimate > self.max_size:
            raise self.refuse_size()


class _Instrument(NodeTransformer):
    """Route every loop's iterable and every ``~`` concatenation through the budget."""

    def visit_For(self, node: jinja2.nodes.For) -> jinja2.nodes.Node:
        self.generic_visit(node)
        node.iter = jinja2.nodes.Filter(node.iter, _COUNTED, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: jinja2.nodes.Concat) -> jinja2.nodes.Node:
        self.generic_visit(node)
        node.nodes = [_sized(part) for part in node.nodes]
        return _sized(node)


def _sized(node: jinja2.nodes.Expr) -> jinja2.nodes.Filter:
    return jinja2.nodes.Filter(node, _SIZED, [], [], None, None, lineno=node.lineno)


class _IgnoreGenerationTags(jinja2.ext.Extension):
    """Hugging Face's ``{% generation %}`` tag marks the assistant's text for training; rendering ignores it."""

    tags = {"generation"}  # noqa: RUF012  (Jinja declares it an instance attribute)

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


_JINJA_STATE = (jinja2.runtime.Context, jinja2.Environment, jinja2.nodes.EvalContext)

_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "*": operator.mul,
    "+": operator.add,
    "%": operator.mod,
    "**": operator.pow,
}


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with every step and every built value checked against ``budget``."""

    intercepted_binops = frozenset(_BINOPS)

    def __init__(self) -> None:
        # Same options as Hugging Face's and llama-cpp-python's chat-template environments; no constant folding,
        # so an expression such as 'x' * 3000000000 is never evaluated while the template is parsed.
        super().__init__(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[_IgnoreGenerationTags, jinja2.ext.loopcontrols],
            optimized=False,
            finalize=self._finalize,
        )
        self.budget = _Budget(PROBE_SECONDS, BASE_SIZE_BUDGET, None)
        self.filters["tojson"] = _tojson
        for name, function in list(self.filters.items()):
            self.filters[name] = self._guarded(name, function)
        self.filters[_COUNTED] = self._counted
        self.filters[_SIZED] = self._sized

    def _guarded(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)  # keeps Jinja's pass_context/pass_environment marks
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self.budget.step()
            values = [a for a in args if not isinstance(a, _JINJA_STATE)]
            self.budget.check_growth(name, values[0] if values else None, values[1:], kwargs)
            return self.budget.check(function(*args, **kwargs))

        return guarded

    def _counted(self, iterable: Any) -> Any:
        for item in iterable:
            self.budget.step()
            yield item

    def _sized(self, value: Any) -> Any:
        self.budget.step()
        return self.budget.check(value)

    def _finalize(self, value: Any) -> Any:
        return self.budget.check(value)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        self.budget.step()
        if operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and left.bit_length() * right > MAX_INTEGER_BITS:
                raise self.budget.refuse_size()
        elif operator == "*":
            sequence, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INTEGER_BITS:
                    raise self.budget.refuse_size()
            elif (
                isinstance(count, int)
                and isinstance(sequence, str | list | tuple)
                and self.budget.size(sequence) * max(count, 0) > self.budget.max_size
            ):
                raise self.budget.refuse_size()
        elif operator == "%" and isinstance(left, str):
            self.budget.check_growth("%", left, right if isinstance(right, tuple) else (right,), {})
        return self.budget.check(_BINOPS[operator](left, right))

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self.budget.step()
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format in its own function
        name = getattr(method, "__name__", "")
        __self.budget.check_growth(name, getattr(method, "__self__", None), args, kwargs)
        return __self.budget.check(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.budget.step()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.budget.step()
        return super().getitem(obj, argument)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, **kwargs: Any) -> str:
    """Transformers' ``tojson``: no HTML escaping, unlike Jinja's own."""
    import json

    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, **kwargs)


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


class ChatTemplate:
    """A compiled chat template with the model's BOS and EOS texts; render it with a budget."""

    def __init__(self, source: str, *, bos_token: str, eos_token: str, stops: Sequence[str] = ()) -> None:
        self._environment = BudgetedSandbox()
        self._bos, self._eos = bos_token, eos_token
        self.stops = [s for s in (eos_token, *stops) if s]
        try:
            tree = self._environment.parse(source)
            self._template = self._environment.from_string(_Instrument().visit(tree))
        except jinja2.TemplateSyntaxError as exc:
            raise ChatTemplateError(f"it does not parse (line {exc.lineno}: {exc.message}).") from exc
        except (jinja2.TemplateError, RecursionError, MemoryError) as exc:
            raise ChatTemplateError(f"it does not parse ({_describe(exc)}).") from exc

    @classmethod
    def builtin(cls, name: str, *, bos_token: str, eos_token: str) -> ChatTemplate:
        chosen = BUILTIN_TEMPLATES[name]
        return cls(chosen.source, bos_token=bos_token, eos_token=eos_token, stops=chosen.stops)

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        cancel: Any = None,
        seconds: float = RENDER_SECONDS,
        tools: list[dict[str, Any]] | None = None,
    ) -> RenderedPrompt:
        """The prompt for ``messages`` (and ``tools``, in OpenAI's shape, for a template that lays them out).
        Raises ChatTemplateError with a sentence, or Cancelled."""
        input_size = sum(
            len(str(m.get("content") or "")) + len(str(m.get("tool_calls") or "")) for m in messages
        )
        input_size += len(str(tools or ""))
        budget = _Budget(seconds, BASE_SIZE_BUDGET + 4 * input_size, cancel)
        self._environment.budget = budget
        pieces: list[str] = []
        produced = 0
        try:
            for piece in self._template.generate(
                messages=[dict(m) for m in messages],
                bos_token=self._bos,
                eos_token=self._eos,
                add_generation_prompt=True,
                raise_exception=_raise_exception,
                strftime_now=lambda f: datetime.now().strftime(str(f)),
                tools=tools,
                functions=None,
                tool_choice=None,
                function_call=None,
            ):
                produced += len(piece)
                if produced > budget.max_size:
                    raise budget.refuse_size()
                pieces.append(piece)
        except Cancelled:
            raise
        except _OverBudget as exc:
            raise ChatTemplateError(f"{exc}.") from exc
        except jinja2.exceptions.SecurityError as exc:
            raise ChatTemplateError(
                f"it reaches for something templates may not use ({str(exc).rstrip('.')})."
            ) from exc
        except (RecursionError, MemoryError) as exc:
            raise ChatTemplateError(f"{_describe(exc)}.") from exc
        except Exception as exc:  # whatever a template raises is the template's failure, not ours
            raise ChatTemplateError(f"it fails ({_describe(exc).rstrip('.')}).") from exc
        return RenderedPrompt("".join(pieces), list(self.stops))

    def probe(self, cancel: Any = None) -> None:
        """Render a short conversation (system, user, assistant, user) within ``PROBE_SECONDS``; raise
        ChatTemplateError if the template fails or leaves out what was said."""
        rendered = self.render(PROBE_CONVERSATION, cancel=cancel, seconds=PROBE_SECONDS)
        if PROBE_CONVERSATION[-1]["content"] not in rendered.prompt:
            raise ChatTemplateError("it leaves out the person's message.")


PROBE_CONVERSATION: list[dict[str, str]] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello, who are you?"},
    {"role": "assistant", "content": "I am an assistant. How can I help?"},
    {"role": "user", "content": "What is the capital of France?"},
]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "it calls itself without end"
    if isinstance(exc, MemoryError):
        return "it ran out of memory"
    text = str(exc).strip() or type(exc).__name__
    return text[:300]


def refusal(model_name: str, error: ChatTemplateError) -> ChatTemplateError:
    """The load-time sentence: whose template, what is wrong with it, and what to choose instead."""
    return ChatTemplateError(
        f"The chat template in {model_name} cannot be used: {error} Choose one of the built-in chat templates "
        f"instead: {builtin_choices()}."
    )


def checked_template(
    source: str,
    builtin: str | None,
    *,
    model_name: str,
    bos_token: str = "<s>",
    eos_token: str = "</s>",
) -> ChatTemplate:
    """The template a model will chat with, already probed: the built-in ``builtin`` when one was chosen,
    else ``source`` (the model's own). Raises ChatTemplateError with the load-time sentence."""
    if builtin is not None:
        if builtin not in BUILTIN_TEMPLATES:
            raise ChatTemplateError(
                f'There is no built-in chat template called "{builtin}". Choose one of: {builtin_choices()}.'
            )
        template = ChatTemplate.builtin(builtin, bos_token=bos_token, eos_token=eos_token)
    else:
        try:
            template = ChatTemplate(source, bos_token=bos_token, eos_token=eos_token)
        except ChatTemplateError as exc:
            raise refusal(model_name, exc) from exc
    try:
        template.probe()
    except ChatTemplateError as exc:
        raise refusal(model_name, exc) from exc
    return template
