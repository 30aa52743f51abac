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
"""

from __future__ import annotations

import copy
import json
import math
import re
import sys
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, RESERVED_NAMES, BuiltinRule, SchemaConverter

from app.core.errors import UserError


class GrammarError(UserError):
    """A JSON schema (or a tool's parameters) that LlamaDesk cannot turn into a grammar it fully enforces."""


# Words that describe a schema without constraining the value.
ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentMediaType",
        "contentEncoding",
        "contentSchema",
    }
)

# Assertions the converter ignores, wherever they are.
UNSUPPORTED = frozenset(
    {
        "not",
        "if",
        "then",
        "else",
        "allOf",
        "oneOf",
        "dependentSchemas",
        "dependentRequired",
        "dependencies",
        "multipleOf",
        "contains",
        "minContains",
        "maxContains",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "unevaluatedProperties",
        "unevaluatedItems",
        "additionalItems",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
        "$anchor",
    }
)

_HINTS = {
    "oneOf": "use 'anyOf' when its choices cannot both match",
    "allOf": "merge its parts into one schema",
    "multipleOf": "check the value after the reply arrives",
    "uniqueItems": "check for duplicates after the reply arrives",
}

# The keywords that apply to each type; the others are no-ops for that type under JSON Schema's own rules.
_FAMILIES: dict[str, frozenset[str]] = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "prefixItems", "minItems", "maxItems", "uniqueItems"}),
    "string": frozenset({"pattern", "format", "minLength", "maxLength"}),
    "integer": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}),
    "number": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}),
    "boolean": frozenset(),
    "null": frozenset(),
}
_TYPES = tuple(_FAMILIES)
_STRUCTURE = frozenset({"$ref", "$defs", "definitions", "anyOf", "type", "const", "enum"})
_KNOWN = _STRUCTURE | frozenset().union(*_FAMILIES.values())
_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})
_LOCAL_REF = re.compile(r"^#/(\$defs|definitions)/([^/]+)$")
_ANY_VALUE: dict[str, Any] = {"type": ["object", "array", "string", "number", "boolean", "null"]}

# Characters a JSON string may hold unescaped: no quote, backslash or control character.
_JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_JSON_SAFE_DOT = r'[^"\\\x7F\x00-\x1F]'
_JSON_SAFE_NEGATION = r'"\\\x7F\x00-\x1F'


class _Path:
    """Where a keyword is, as a person reads it: ``schema.properties.a.items``."""

    def __init__(self, where: str, parts: tuple[str, ...] = ()) -> None:
        self.where, self.parts = where, parts

    def __truediv__(self, part: object) -> _Path:
        return _Path(self.where, (*self.parts, str(part)))

    def __str__(self) -> str:
        return ".".join((self.where, *self.parts))


def _refuse(keyword: str, path: _Path, what: str = "") -> GrammarError:
    hint = _HINTS.get(keyword, "remove it")
    detail = f" {what}" if what else ""
    return GrammarError(
        f"The JSON schema uses '{keyword}'{detail} at {path}, which LlamaDesk cannot enforce; {hint} and try again."
    )


def _invalid(path: _Path, problem: str) -> GrammarError:
    return GrammarError(f"The JSON schema at {path} {problem}; correct it and try again.")


class _Cleaner:
    """Walks a schema, refusing what the converter would not enforce and returning the shape it handles.

    Every ``$defs``/``definitions`` entry is renamed ``{namespace}ref{n}`` (no hyphen, so it cannot meet a rule
    the converter names after a property, ``{namespace}-{property}``), which keeps several schemas apart in one
    grammar and avoids the converter's own rule names (a definition called ``string``)."""

    def __init__(self, root: object, namespace: str, path: _Path) -> None:
        self.namespace = namespace
        self.definitions: dict[str, Any] = {}
        self.renamed: dict[str, str] = {}
        if not isinstance(root, dict):
            raise _invalid(path, f'is {_kind(root)}, not an object such as {{"type": "object", ...}}')
        for group in ("$defs", "definitions"):
            found = root.get(group, {})
            if not isinstance(found, dict):
                raise _invalid(path / group, "is not an object of named schemas")
            for name in found:
                self.renamed[f"#/{group}/{name}"] = f"{namespace}ref{len(self.renamed)}"
        for group in ("$defs", "definitions"):
            for name, definition in root.get(group, {}).items():
                key = self.renamed[f"#/{group}/{name}"]
                self.definitions[key] = self.clean(definition, path / group / name)
        self.schema = self.clean(root, path)
        if self.definitions:
            self.schema["$defs"] = self.definitions

    def clean(self, node: object, path: _Path) -> dict[str, Any]:
        if node is True:
            return dict(_ANY_VALUE)
        if node is False:
            raise _invalid(path, "is false, which no value matches")
        if not isinstance(node, dict):
            raise _invalid(path, f"is {_kind(node)}, not a schema object")
        kept: dict[str, Any] = {}
        for key, value in node.items():
            if key in ANNOTATIONS or key in ("$defs", "definitions"):
                continue
            if key == "uniqueItems" and value is False:
                continue
            if key in UNSUPPORTED or key == "uniqueItems":
                raise _refuse(key, path)
            if key in _KNOWN:  # other words are not JSON Schema's: validators ignore them, and so do we
                kept[key] = value
        return self._shape(kept, path)

    def _shape(self, node: dict[str, Any], path: _Path) -> dict[str, Any]:
        for alone in ("$ref", "anyOf"):
            if alone in node:
                others = [k for k in node if k != alone]
                if others:
                    raise _refuse(others[0], path, f"next to '{alone}'")
                return self._ref(node["$ref"], path) if alone == "$ref" else self._any_of(node["anyOf"], path)
        type_ = node.get("type")
        if "const" in node or "enum" in node:
            choice = "const" if "const" in node else "enum"
            extra = [k for k in node if k not in (choice, "type")]
            if extra:
                raise _refuse(extra[0], path, f"next to '{choice}'")
            if choice == "enum" and (not isinstance(node["enum"], list) or not node["enum"]):
                raise _invalid(path / "enum", "is not a list of values")
            values = [node["const"]] if choice == "const" else node["enum"]
            for value in values:
                _check_literal(value, path / choice)
            return {choice: node[choice]}
        if isinstance(type_, list):
            if not type_ or any(t not in _FAMILIES for t in type_):
                raise _invalid(path / "type", f"is {json.dumps(type_)}, not a list of JSON types")
            applying = [k for k in node if k != "type" and any(k in _FAMILIES[t] for t in type_)]
            if applying:
                raise _refuse(applying[0], path, "with a list of types")
            return {"type": list(dict.fromkeys(type_))}
        if type_ is None:
            families = [
                t for t in ("object", "array", "string", "number") if any(k in _FAMILIES[t] for k in node)
            ]
            if not families:
                return dict(_ANY_VALUE)
            if len(families) > 1:
                raise _invalid(path, f"mixes keywords of {' and '.join(families)} without a 'type'; add one")
            type_ = families[0]
        if type_ not in _FAMILIES:
            raise _invalid(path / "type", f"is {json.dumps(type_)}, not one of {', '.join(_TYPES)}")
        node = {k: v for k, v in node.items() if k in _FAMILIES[type_]}
        return getattr(self, f"_{type_}")(node, path)  # type: ignore[no-any-return]

    def _ref(self, ref: object, path: _Path) -> dict[str, Any]:
        if not isinstance(ref, str) or not _LOCAL_REF.match(ref):
            raise _refuse(
                "$ref",
                path,
                f"to {json.dumps(ref)} (only '#/$defs/Name' and '#/definitions/Name' are supported)",
            )
        if ref not in self.renamed:
            raise _invalid(path / "$ref", f"points to {ref}, which the schema does not define")
        return {"$ref": f"#/$defs/{self.renamed[ref]}"}

    def _any_of(self, choices: object, path: _Path) -> dict[str, Any]:
        if not isinstance(choices, list) or not choices:
            raise _invalid(path / "anyOf", "is not a list of schemas")
        return {"anyOf": [self.clean(choice, path / "anyOf" / i) for i, choice in enumerate(choices)]}

    def _object(self, node: dict[str, Any], path: _Path) -> dict[str, Any]:
        properties = node.get("properties", {})
        if not isinstance(properties, dict):
            raise _invalid(path / "properties", "is not an object of named schemas")
        required = node.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise _invalid(path / "required", "is not a list of property names")
        for name in required:
            if name not in properties:
                raise _invalid(path / "required", f"lists '{name}', which is not among its properties")
        shaped: dict[str, Any] = {
            "type": "object",
            "properties": {name: self.clean(s, path / "properties" / name) for name, s in properties.items()},
        }
        if required:
            shaped["required"] = list(dict.fromkeys(required))
        additional = node.get("additionalProperties", properties == {})
        if isinstance(additional, dict):
            shaped["additionalProperties"] = self.clean(additional, path / "additionalProperties")
        elif isinstance(additional, bool):
            shaped["additionalProperties"] = additional
        else:
            raise _invalid(path / "additionalProperties", "is neither true, false nor a schema")
        if not properties and shaped["additionalProperties"] is True:
            return {"type": "object"}
        return shaped

    def _array(self, node: dict[str, Any], path: _Path) -> dict[str, Any]:
        low, high = node.get("minItems"), node.get("maxItems")
        for key, bound in (("minItems", low), ("maxItems", high)):
            if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool) or bound < 0):
                raise _invalid(path / key, "is not a whole number of 0 or more")
        if low is not None and high is not None and low > high:
            raise _invalid(path, f"asks for at least {low} and at most {high} items")
        tuple_items = node.get(
            "prefixItems", node.get("items") if isinstance(node.get("items"), list) else None
        )
        if tuple_items is not None:
            if "prefixItems" in node and "items" in node:
                raise _refuse("items", path, "next to 'prefixItems'")
            if low is not None or high is not None:
                raise _refuse(
                    "minItems" if low is not None else "maxItems", path, "with a fixed list of items"
                )
            where = path / ("prefixItems" if "prefixItems" in node else "items")
            return {
                "type": "array",
                "prefixItems": [self.clean(item, where / i) for i, item in enumerate(tuple_items)],
            }
        if "items" not in node:
            if low or high is not None:
                raise _invalid(path, "bounds its number of items without saying what they are; add 'items'")
            return {"type": "array"}
        shaped: dict[str, Any] = {"type": "array", "items": self.clean(node["items"], path / "items")}
        if low:
            shaped["minItems"] = low
        if high is not None:
            shaped["maxItems"] = high
        return shaped

    def _string(self, node: dict[str, Any], path: _Path) -> dict[str, Any]:
        if len(node) > 1 and ("pattern" in node or "format" in node):
            first = "pattern" if "pattern" in node else "format"
            other = next(k for k in node if k != first)
            raise _refuse(other, path, f"next to '{first}'")
        if "pattern" in node:
            return {"type": "string", "pattern": _checked_pattern(node["pattern"], path / "pattern")}
        if "format" in node:
            if node["format"] not in _FORMATS:
                raise _refuse("format", path, f"with the value {json.dumps(node['format'])}")
            return {"type": "string", "format": node["format"]}
        low, high = node.get("minLength", 0), node.get("maxLength")
        for key, bound in (("minLength", low), ("maxLength", high)):
            if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool) or bound < 0):
                raise _invalid(path / key, "is not a whole number of 0 or more")
        if high is not None and low > high:
            raise _invalid(path, f"asks for at least {low} and at most {high} characters")
        shaped: dict[str, Any] = {"type": "string"}
        if low:
            shaped["minLength"] = low
        if high is not None:
            shaped["maxLength"] = high
        return shaped

    def _integer(self, node: dict[str, Any], path: _Path) -> dict[str, Any]:
        low: int | None = None
        high: int | None = None
        for key, value in node.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise _invalid(path / key, "is not a number")
            if key == "minimum":
                bound = math.ceil(value)
            elif key == "exclusiveMinimum":
                bound = math.floor(value) + 1
            elif key == "maximum":
                bound = math.floor(value)
            else:
                bound = math.ceil(value) - 1
            if key.endswith("inimum"):
                low = bound if low is None else max(low, bound)
            else:
                high = bound if high is None else min(high, bound)
        if low is not None and high is not None and low > high:
            raise _invalid(path, "allows no whole number between its bounds")
        shaped: dict[str, Any] = {"type": "integer"}
        if low is not None:
            shaped["minimum"] = low
        if high is not None:
            shaped["maximum"] = high
        return shaped

    def _number(self, node: dict[str, Any], path: _Path) -> dict[str, Any]:
        if node:
            raise GrammarError(
                f"The JSON schema uses '{next(iter(node))}' on a number at {path}, which LlamaDesk cannot enforce "
                "(bounds are supported on integers only); remove it, or make the value an integer, and try again."
            )
        return {"type": "number"}

    def _boolean(self, node: dict[str, Any], path: _Path) -> dict[str, Any]:
        return {"type": "boolean"}

    def _null(self, node: dict[str, Any], path: _Path) -> dict[str, Any]:
        return {"type": "null"}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "a list", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _check_literal(value: object, path: _Path) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _invalid(path, "holds a value that is not JSON") from exc


_PATTERN_TOKENS = re.compile(r"\[[^\]]*\]|\{\d*(?:,\d*)?\}|\(\?|.", re.DOTALL)


def _checked_pattern(pattern: object, path: _Path) -> str:
    """The pattern rewritten for the converter, after refusing what it would get wrong.

    The converter needs ``^...$``; it knows no escapes (``\\d``, ``\\.``), lookarounds or lazy quantifiers;
    a top-level ``|`` would escape the string's quotes, so the body is grouped; and ``.`` and ``[^...]`` are
    narrowed to characters a JSON string holds unescaped (the quote would end the string early)."""
    if not isinstance(pattern, str):
        raise _invalid(path, "is not a string")
    if not (pattern.startswith("^") and pattern.endswith("$") and len(pattern) >= 2):
        raise _refuse("pattern", path, f"{json.dumps(pattern)} without '^' at its start and '$' at its end")
    body = pattern[1:-1]
    out: list[str] = []
    previous = ""
    for token in _PATTERN_TOKENS.findall(body):
        problem = ""
        if "\\" in token:
            problem = "with a backslash escape (write a character class such as [0-9] instead)"
        elif token == "(?":
            problem = "with a lookaround or special group"
        elif token in "^$" or '"' in token or any(ord(c) < 0x20 for c in token):
            problem = f"with {token!r} inside it"
        elif token == "?" and previous[-1:] in ("*", "+", "?", "}"):
            problem = "with a lazy quantifier"
        if problem:
            raise _refuse("pattern", path, f"{json.dumps(pattern)} {problem}")
        if token.startswith("[^"):
            token = f"[^{_JSON_SAFE_NEGATION}{token[2:]}"
        out.append(token)
        previous = token
    return "^(" + "".join(out) + ")$"


class _Converter(SchemaConverter):
    """llama-cpp-python's converter with its faults for JSON output corrected (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
        )

    def _format_literal(self, literal: str) -> str:
        return gbnf_literal(literal)

    def _add_rule(self, name: str, rule: str) -> str:
        if name == "dot":
            rule = _JSON_SAFE_DOT
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


def schema_rules(converter: _Converter, schema: object, namespace: str, where: str) -> str:
    """Add ``schema``'s rules to ``converter`` under ``namespace``; the name of its top rule."""
    cleaned = _Cleaner(schema, namespace, _Path(where)).schema
    try:
        resolved = converter.resolve_refs(copy.deepcopy(cleaned), namespace)
        return converter.visit(resolved, namespace)
    except RecursionError as exc:
        raise GrammarError(
            f"The JSON schema at {where} refers to itself without end; simplify it and try again."
        ) from exc
    # The converter's asserts and ValueErrors are about the schema, not a bug of ours.
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise GrammarError(
            f"The JSON schema at {where} cannot be turned into a grammar ({detail}); simplify it and try again."
        ) from exc


def new_converter() -> _Converter:
    """A converter to add several schemas' rules to (``schema_rules``), each under its own namespace."""
    return _Converter()


def grammar_text(converter: _Converter, root: str) -> str:
    """The grammar of every rule in ``converter``, with ``root`` as its rule ``root``."""
    rules: str = converter.format_grammar()  # type: ignore[no-untyped-call]
    return rules + f"\nroot ::= {root}\n"


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
