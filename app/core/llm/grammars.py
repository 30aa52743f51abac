"""Structured output: JSON schemas turned into llama.cpp grammars (GBNF) that force a reply to follow them.

The conversion is llama-cpp-python's port of llama.cpp's converter (``llama_cpp.llama_grammar.SchemaConverter``).
It silently ignores what it does not understand, and a grammar that ignores part of a schema lets through replies
that break it. So a schema is first walked here: every keyword the converter would not enforce is refused with a
sentence naming it and where it is, annotations are dropped, and the schema is rewritten into the shapes the
converter handles correctly. Four faults of the converter are worked around in ``_Converter``: strings may hold
raw control characters (invalid JSON), literals with a backslash or a newline come out wrong, a regular
expression's ``.`` may produce an unescaped quote, and integer bounds are ignored (the bounded-integer rule is
ported from today's llama.cpp converter).

Runaway output: whitespace between tokens is at most one space (the converter's ``space`` rule) and numbers have
at most 16 digits per part, so only strings (and arrays without ``maxItems``) can grow without end; the request's
``max_tokens`` bounds those, as in every OpenAI-compatible server.

Runaway grammars: a bound such as ``maxLength`` becomes that many nested optional groups, and llama.cpp's grammar
parser recurses once per group (100,000 overflow its stack and kill the process), so a schema's bounds, its
nesting and its pattern's repetitions are capped, and the converter stops as soon as the grammar it writes
passes ``MAX_GRAMMAR_CHARS``: a small request cannot make a large grammar, nor much work.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import sys
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, RESERVED_NAMES, BuiltinRule, SchemaConverter

from app.core.llm.schema_check import (
    MAX_GRAMMAR_CHARS,
    MAX_RULE_NAME,
    GrammarError,
    SchemaCleaner,
    SchemaPath,
)

log = logging.getLogger(__name__)


# Characters a JSON string may hold unescaped: no quote, backslash or control character.
_JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_JSON_SAFE_DOT = r'[^"\\\x7F\x00-\x1F]'


class _Converter(SchemaConverter):
    """llama-cpp-python's converter with its faults for JSON output corrected (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
        )
        # Characters of rules added so far: a bound on the grammar's size and on the work done.
        self.written = 0

    def _format_literal(self, literal: str) -> str:
        return gbnf_literal(literal)

    def _add_rule(self, name: str, rule: str) -> str:
        if name == "dot":
            rule = _JSON_SAFE_DOT
        if len(name) > MAX_RULE_NAME:
            # A digest keeps shortened names apart; the converter still numbers any that meet.
            digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
            name = f"{name[: MAX_RULE_NAME - 11]}-{digest}"
        if self._rules.get(name) != rule:  # the converter adds some rules again and again, unchanged
            self.written += len(name) + len(rule) + 6
            if self.written > MAX_GRAMMAR_CHARS:
                raise _grammar_too_large()
        return super()._add_rule(name, rule)  # type: ignore[no-untyped-call,no-any-return]

    def _add_primitive(self, name: str, rule: BuiltinRule) -> str:
        if rule is PRIMITIVE_RULES["char"]:
            rule = BuiltinRule(_JSON_CHAR, [])
        return super()._add_primitive(name, rule)  # type: ignore[no-any-return]

    def visit(self, schema: dict[str, Any], name: str) -> str:
        if schema.get("type") == "integer" and ("minimum" in schema or "maximum" in schema):
            out: list[str] = []
            _min_max_int(schema.get("minimum"), schema.get("maximum"), out)
            rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
            return self._add_rule(rule_name, "(" + "".join(out) + ") space")
        return super().visit(schema, name)  # type: ignore[no-untyped-call,no-any-return]


def gbnf_literal(text: str) -> str:
    escaped = "".join(
        "\\\\" if c == "\\" else '\\"' if c == '"' else f"\\x{ord(c):02X}" if ord(c) < 0x20 else c
        for c in text
    )
    return f'"{escaped}"'


def _grammar_too_large() -> GrammarError:
    return GrammarError(
        f"The grammar made from the JSON schema would pass {MAX_GRAMMAR_CHARS // 1024} KB, more than LlamaDesk "
        "accepts; lower its bounds (maxLength, maxItems, repetitions) or make it smaller, and try again."
    )


def schema_rules(converter: _Converter, schema: object, namespace: str, where: str) -> str:
    """Add ``schema``'s rules to ``converter`` under ``namespace``; the name of its top rule.

    Whatever goes wrong becomes a GrammarError: a request's schema must never end in a server error."""
    try:
        cleaned = SchemaCleaner(schema, namespace, SchemaPath(where)).schema
        resolved = converter.resolve_refs(copy.deepcopy(cleaned), namespace)
        return converter.visit(resolved, namespace)
    except GrammarError:
        raise
    except RecursionError as exc:
        raise GrammarError(
            f"The JSON schema at {where} refers to itself, or branches, too deeply to be turned into a grammar; "
            "simplify it and try again."
        ) from exc
    except (AssertionError, ValueError) as exc:
        # The converter's asserts and ValueErrors are about the schema, not a bug of ours.
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise GrammarError(
            f"The JSON schema at {where} cannot be turned into a grammar ({detail}); simplify it and try again."
        ) from exc
    except Exception as exc:
        log.exception("Turning the JSON schema at %s into a grammar failed unexpectedly", where)
        raise GrammarError(
            f"The JSON schema at {where} could not be turned into a grammar; simplify it and try again, "
            "and if it keeps failing, report it with the log."
        ) from exc


def new_converter() -> _Converter:
    """A converter to add several schemas' rules to (``schema_rules``), each under its own namespace."""
    return _Converter()


def grammar_text(converter: _Converter, root: str) -> str:
    """The grammar of every rule in ``converter``, with ``root`` as its rule ``root``."""
    rules: str = converter.format_grammar()  # type: ignore[no-untyped-call]
    text = rules + f"\nroot ::= {root}\n"
    if len(text) > MAX_GRAMMAR_CHARS:
        raise _grammar_too_large()
    return text


def schema_grammar(schema: object, *, where: str = "schema") -> str:
    """GBNF that forces a reply to be one JSON value matching ``schema``; GrammarError names what cannot be."""
    converter = new_converter()
    top = schema_rules(converter, schema, "s", where)
    return grammar_text(converter, top)


JSON_OBJECT_GRAMMAR: str = schema_grammar({"type": "object"})


def check_grammar(gbnf: str, vocab: Any) -> None:
    """Compile ``gbnf`` with llama.cpp's own parser against a loaded model's vocabulary (``llama_vocab *``).

    ``LlamaGrammar.from_string`` only stores the text in llama-cpp-python 0.3.x: the parse happens when the
    sampler is built, and a grammar that fails there gives a null sampler that crashes the chain. Raises
    GrammarError if it does not compile."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
    if not sampler:
        raise GrammarError(
            "The grammar made from the JSON schema does not compile in llama.cpp; simplify the schema and try again."
        )
    llama_cpp.llama_sampler_free(sampler)


def _min_max_int(
    low: int | None, high: int | None, out: list[str], decimals_left: int = 16, top: bool = True
) -> None:
    """GBNF for the whole numbers from ``low`` to ``high`` (either may be open), appended to ``out``.

    Ported from llama.cpp's json_schema_to_grammar.py (MIT), which llama-cpp-python 0.3.x's copy predates."""

    def digit_range(first: str, last: str) -> None:
        out.append(f"[{first}]" if first == last else f"[{first}-{last}]")

    def more_digits(fewest: int, most: int) -> None:
        out.append("[0-9]")
        if fewest == most == 1:
            return
        out.append("{" + str(fewest))
        if most != fewest:
            out.append("," + ("" if most == sys.maxsize else str(most)))
        out.append("}")

    def uniform_range(start: str, end: str) -> None:
        i = 0
        while i < len(start) and start[i] == end[i]:
            i += 1
        if i > 0:
            out.append(f'"{start[:i]}"')
        if i < len(start):
            if i > 0:
                out.append(" ")
            rest = len(start) - i - 1
            if rest > 0:
                start_rest, end_rest = start[i + 1 :], end[i + 1 :]
                zeros, nines = "0" * rest, "9" * rest
                end_reached = False
                out.append("(")
                if start_rest == zeros:
                    digit_range(start[i], chr(ord(end[i]) - 1))
                    out.append(" ")
                    more_digits(rest, rest)
                else:
                    out.append(f"[{start[i]}] (")
                    uniform_range(start_rest, nines)
                    out.append(")")
                    if ord(start[i]) < ord(end[i]) - 1:
                        out.append(" | ")
                        if end_rest == nines:
                            digit_range(chr(ord(start[i]) + 1), end[i])
                            end_reached = True
                        else:
                            digit_range(chr(ord(start[i]) + 1), chr(ord(end[i]) - 1))
                        out.append(" ")
                        more_digits(rest, rest)
                if not end_reached:
                    out.append(" | ")
                    digit_range(end[i], end[i])
                    out.append(" ")
                    uniform_range(zeros, end_rest)
                out.append(")")
            else:
                out.append(f"[{start[i]}-{end[i]}]")

    if low is not None and high is not None:
        if low < 0 and high < 0:
            out.append('"-" (')
            _min_max_int(-high, -low, out, decimals_left, top=True)
            out.append(")")
            return
        if low < 0:
            out.append('"-" (')
            _min_max_int(0, -low, out, decimals_left, top=True)
            out.append(") | ")
            low = 0
        low_text, high_text = str(low), str(high)
        for digits in range(len(low_text), len(high_text)):
            uniform_range(low_text, "9" * digits)
            low_text = "1" + "0" * digits
            out.append(" | ")
        uniform_range(low_text, high_text)
        return

    fewer = max(decimals_left - 1, 1)
    if low is not None:
        if low < 0:
            out.append('"-" (')
            _min_max_int(None, -low, out, decimals_left, top=False)
            out.append(") | [0] | [1-9] ")
            more_digits(0, decimals_left - 1)
        elif low == 0:
            if top:
                out.append("[0] | [1-9] ")
                more_digits(0, fewer)
            else:
                more_digits(1, decimals_left)
        elif low <= 9:
            c = str(low)
            range_start = "1" if top else "0"
            if c > range_start:
                digit_range(range_start, chr(ord(c) - 1))
                out.append(" ")
                more_digits(1, fewer)
                out.append(" | ")
            digit_range(c, "9")
            out.append(" ")
            more_digits(0, fewer)
        else:
            low_text = str(low)
            length = len(low_text)
            c = low_text[0]
            if c > "1":
                digit_range("1" if top else "0", chr(ord(c) - 1))
                out.append(" ")
                more_digits(length, fewer)
                out.append(" | ")
            digit_range(c, c)
            out.append(" (")
            _min_max_int(int(low_text[1:]), None, out, fewer, top=False)
            out.append(")")
            if c < "9":
                out.append(" | ")
                digit_range(chr(ord(c) + 1), "9")
                out.append(" ")
                more_digits(length - 1, fewer)
        return

    if high is not None:
        if high >= 0:
            if top:
                out.append('"-" [1-9] ')
                more_digits(0, fewer)
                out.append(" | ")
            _min_max_int(0, high, out, decimals_left, top=True)
        else:
            out.append('"-" (')
            _min_max_int(-high, None, out, decimals_left, top=False)
            out.append(")")
        return
