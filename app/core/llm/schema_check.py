"""JSON schemas checked before they become grammars (``app.core.llm.grammars``): every keyword the converter
would not enforce is refused with a sentence naming it and where it is, annotations are dropped, sizes and
nesting are capped (a bound becomes that many nested grammar rules), and the schema is rewritten into the
shapes the converter handles correctly."""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from app.core.errors import UserError

log = logging.getLogger(__name__)

# Characters a regular expression's negated class must also leave out, so it never writes an unescaped quote,
# a backslash or a control character into a JSON string.
_JSON_SAFE_NEGATION = r'"\\\x7F\x00-\x1F'


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


# The largest bound (minLength, maxLength, minItems, maxItems, a pattern's {m,n}) enforced: each unit of a bound
# is one nested group in llama.cpp's recursive grammar parser, and 1,000 compile with room to spare on a thread's
# stack, while real schemas bound names, codes and lists well below it.
MAX_REPEAT = 1_000
# The deepest nesting of schemas (and of a pattern's groups): a JSON document rarely nests past a dozen levels,
# and each level costs recursion in this module, the converter and llama.cpp's parser.
MAX_DEPTH = 64
# The largest grammar text made, for one schema or all of a request's tools together: the converter stops
# writing past it, so no schema, however many bounded parts it has, costs more than this much work and memory.
MAX_GRAMMAR_CHARS = 256 * 1024
# Rule names longer than this (the converter joins every property name on the way down) are shortened, so a
# rule repeated MAX_REPEAT times stays small whatever the names of properties are.
MAX_RULE_NAME = 48
# The converter writes a rule for every tail of an object's optional properties, cubic work in their number:
# 100 take a few hundredths of a second, 900 several seconds.
MAX_OPTIONAL_PROPERTIES = 100
# Integer bounds past 20 digits (int64's limits have 19) make the bounded-integer rule grow with no use: the
# converter lets a number have 16 digits.
_MAX_INTEGER_BOUND = 10**20


class SchemaPath:
    """Where a keyword is, as a person reads it: ``schema.properties.a.items``."""

    def __init__(self, where: str, parts: tuple[str, ...] = ()) -> None:
        self.where, self.parts = where, parts

    def __truediv__(self, part: object) -> SchemaPath:
        return SchemaPath(self.where, (*self.parts, str(part)))

    def __str__(self) -> str:
        return ".".join((self.where, *self.parts))


def _refuse(keyword: str, path: SchemaPath, what: str = "") -> GrammarError:
    hint = _HINTS.get(keyword, "remove it")
    detail = f" {what}" if what else ""
    return GrammarError(
        f"The JSON schema uses '{keyword}'{detail} at {path}, which LlamaDesk cannot enforce; {hint} and try again."
    )


def _invalid(path: SchemaPath, problem: str) -> GrammarError:
    return GrammarError(f"The JSON schema at {path} {problem}; correct it and try again.")


def _too_large(keyword: str, value: int, path: SchemaPath, what: str) -> GrammarError:
    return GrammarError(
        f"The JSON schema sets '{keyword}' of {value} at {path}; LlamaDesk enforces {what} up to {MAX_REPEAT:,}: "
        "lower it or leave it out, and try again."
    )


def _too_deep(path: SchemaPath) -> GrammarError:
    return GrammarError(
        f"The JSON schema nests more than {MAX_DEPTH} levels deep at {path}, which LlamaDesk does not accept; "
        "flatten it and try again."
    )


class SchemaCleaner:
    """Walks a schema, refusing what the converter would not enforce and returning the shape it handles.

    Every ``$defs``/``definitions`` entry is renamed ``{namespace}ref{n}`` (no hyphen, so it cannot meet a rule
    the converter names after a property, ``{namespace}-{property}``), which keeps several schemas apart in one
    grammar and avoids the converter's own rule names (a definition called ``string``)."""

    def __init__(self, root: object, namespace: str, path: SchemaPath) -> None:
        self.namespace = namespace
        self.depth = 0
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

    def clean(self, node: object, path: SchemaPath) -> dict[str, Any]:
        if self.depth >= MAX_DEPTH:
            raise _too_deep(path)
        self.depth += 1
        try:
            return self._clean(node, path)
        finally:
            self.depth -= 1

    def _clean(self, node: object, path: SchemaPath) -> dict[str, Any]:
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

    def _shape(self, node: dict[str, Any], path: SchemaPath) -> dict[str, Any]:
        for alone in ("$ref", "anyOf"):
            if alone in node:
                others = [k for k in node if k != alone]
                if others:
                    raise _refuse(others[0], path, f"next to '{alone}'")
                return self._ref(node["$ref"], path) if alone == "$ref" else self._any_of(node["anyOf"], path)
        type_ = node.get("type")
        # Checked before any use: a list or an object here cannot be looked up in a set.
        if not (type_ is None or isinstance(type_, str | list)):
            raise _invalid(path / "type", f"is {_kind(type_)}, not a JSON type or a list of them")
        if isinstance(type_, list) and not all(isinstance(t, str) for t in type_):
            raise _invalid(path / "type", "is a list holding something other than names of JSON types")
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

    def _ref(self, ref: object, path: SchemaPath) -> dict[str, Any]:
        if not isinstance(ref, str) or not _LOCAL_REF.match(ref):
            raise _refuse(
                "$ref",
                path,
                f"to {json.dumps(ref)} (only '#/$defs/Name' and '#/definitions/Name' are supported)",
            )
        if ref not in self.renamed:
            raise _invalid(path / "$ref", f"points to {ref}, which the schema does not define")
        return {"$ref": f"#/$defs/{self.renamed[ref]}"}

    def _any_of(self, choices: object, path: SchemaPath) -> dict[str, Any]:
        if not isinstance(choices, list) or not choices:
            raise _invalid(path / "anyOf", "is not a list of schemas")
        return {"anyOf": [self.clean(choice, path / "anyOf" / i) for i, choice in enumerate(choices)]}

    def _object(self, node: dict[str, Any], path: SchemaPath) -> dict[str, Any]:
        properties = node.get("properties", {})
        if not isinstance(properties, dict):
            raise _invalid(path / "properties", "is not an object of named schemas")
        required = node.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise _invalid(path / "required", "is not a list of property names")
        for name in required:
            if name not in properties:
                raise _invalid(path / "required", f"lists '{name}', which is not among its properties")
        optional = len(set(properties) - set(required))
        if optional > MAX_OPTIONAL_PROPERTIES:
            raise GrammarError(
                f"The JSON schema at {path} has {optional:,} optional 'properties'; LlamaDesk enforces up to "
                f"{MAX_OPTIONAL_PROPERTIES} in one object: list more of them in 'required' or split the object, "
                "and try again."
            )
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

    def _array(self, node: dict[str, Any], path: SchemaPath) -> dict[str, Any]:
        low, high = node.get("minItems"), node.get("maxItems")
        for key, bound in (("minItems", low), ("maxItems", high)):
            if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool) or bound < 0):
                raise _invalid(path / key, "is not a whole number of 0 or more")
        for key, bound in (("minItems", low), ("maxItems", high)):
            if bound is not None and bound > MAX_REPEAT:
                raise _too_large(key, bound, path, "numbers of items")
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

    def _string(self, node: dict[str, Any], path: SchemaPath) -> dict[str, Any]:
        if len(node) > 1 and ("pattern" in node or "format" in node):
            first = "pattern" if "pattern" in node else "format"
            other = next(k for k in node if k != first)
            raise _refuse(other, path, f"next to '{first}'")
        if "pattern" in node:
            return {"type": "string", "pattern": _checked_pattern(node["pattern"], path / "pattern")}
        if "format" in node:
            if not isinstance(node["format"], str):
                raise _invalid(path / "format", f"is {_kind(node['format'])}, not the name of a format")
            if node["format"] not in _FORMATS:
                raise _refuse("format", path, f"with the value {json.dumps(node['format'])}")
            return {"type": "string", "format": node["format"]}
        low, high = node.get("minLength", 0), node.get("maxLength")
        for key, bound in (("minLength", low), ("maxLength", high)):
            if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool) or bound < 0):
                raise _invalid(path / key, "is not a whole number of 0 or more")
        for key, bound in (("minLength", low), ("maxLength", high)):
            if bound is not None and bound > MAX_REPEAT:
                raise _too_large(key, bound, path, "lengths")
        if high is not None and low > high:
            raise _invalid(path, f"asks for at least {low} and at most {high} characters")
        shaped: dict[str, Any] = {"type": "string"}
        if low:
            shaped["minLength"] = low
        if high is not None:
            shaped["maxLength"] = high
        return shaped

    def _integer(self, node: dict[str, Any], path: SchemaPath) -> dict[str, Any]:
        low: int | None = None
        high: int | None = None
        for key, value in node.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise _invalid(path / key, "is not a number")
            if not (isinstance(value, int) or math.isfinite(value)):
                raise _invalid(path / key, "is not a number")
            if abs(value) >= _MAX_INTEGER_BOUND:
                shown = f"{value:.3g}" if isinstance(value, float) else "a number of more than 20 digits"
                raise GrammarError(
                    f"The JSON schema sets '{key}' of {shown} at {path}; LlamaDesk enforces integer bounds of "
                    "up to 20 digits: bring it closer to 0 or leave it out, and try again."
                )
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

    def _number(self, node: dict[str, Any], path: SchemaPath) -> dict[str, Any]:
        if node:
            raise GrammarError(
                f"The JSON schema uses '{next(iter(node))}' on a number at {path}, which LlamaDesk cannot enforce "
                "(bounds are supported on integers only); remove it, or make the value an integer, and try again."
            )
        return {"type": "number"}

    def _boolean(self, node: dict[str, Any], path: SchemaPath) -> dict[str, Any]:
        return {"type": "boolean"}

    def _null(self, node: dict[str, Any], path: SchemaPath) -> dict[str, Any]:
        return {"type": "null"}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        str: "a string",
        list: "a list",
        dict: "an object",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _check_literal(value: object, path: SchemaPath) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _invalid(path, "holds a value that is not JSON") from exc


# The converter reads everything from '{' to the next '}' as a repetition (spaces included), so that is a token.
_PATTERN_TOKENS = re.compile(r"\[[^\]]*\]|\{[^}]*\}|\(\?|.", re.DOTALL)
_REPETITION = re.compile(r"^\{\s*([0-9]*)\s*(?:(,)\s*([0-9]*)\s*)?\}$")


def _repetition_problem(token: str) -> str:
    """Why the repetition ``{m}``, ``{m,}`` or ``{m,n}`` cannot be enforced, or "" if it can."""
    found = _REPETITION.match(token)
    if not found or not (found[1] or found[3]):
        return f"with the repetition {token}, which is not {{m}}, {{m,}} or {{m,n}}"
    fewest = int(found[1] or 0)
    most = fewest if not found[2] else int(found[3]) if found[3] else None
    if most is not None and fewest > most:
        return f"with the repetition {token}, whose least is above its most"
    return ""


def _repetition_size(token: str) -> int:
    """The larger bound of the repetition ``token`` (0 if it is not one)."""
    found = _REPETITION.match(token)
    return max(int(found[1] or 0), int(found[3] or 0)) if found else 0


# llama.cpp refuses a group, followed by ?, * or +, that holds more than 2,000 rules it generates: each unit of
# a pattern's repetitions makes two, each group and each ?, * or + one. Kept under that for the whole pattern,
# no group of it can pass the limit.
_MAX_PATTERN_RULES = 2_000


def _checked_pattern(pattern: object, path: SchemaPath) -> str:
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
    groups = 0
    generated_rules = 0
    for token in _PATTERN_TOKENS.findall(body):
        problem = ""
        groups += 1 if token == "(" else -1 if token == ")" else 0
        if groups > MAX_DEPTH:
            problem = f"with groups nested more than {MAX_DEPTH} deep"
        elif "\\" in token:
            problem = "with a backslash escape (write a character class such as [0-9] instead)"
        elif token == "(?":
            problem = "with a lookaround or special group"
        elif token in "^$" or '"' in token or any(ord(c) < 0x20 for c in token):
            problem = f"with {token!r} inside it"
        elif token == "?" and previous[-1:] in ("*", "+", "?", "}"):
            problem = "with a lazy quantifier"
        elif token.startswith("{"):
            if _repetition_size(token) > MAX_REPEAT:
                raise GrammarError(
                    f"The JSON schema's 'pattern' {json.dumps(pattern)} at {path} repeats with {token}; LlamaDesk "
                    f"enforces repetitions up to {MAX_REPEAT:,}: lower it or leave it out, and try again."
                )
            problem = _repetition_problem(token)
        generated_rules += 2 * _repetition_size(token) if token.startswith("{") else token in "(*+?"
        if not problem and generated_rules > _MAX_PATTERN_RULES:
            problem = (
                f"whose repetitions add up to more than llama.cpp's grammars hold (at most {MAX_REPEAT:,} "
                "in all, fewer with many groups); lower them"
            )
        if problem:
            raise _refuse("pattern", path, f"{json.dumps(pattern)} {problem}")
        if token.startswith("[^"):
            token = f"[^{_JSON_SAFE_NEGATION}{token[2:]}"
        out.append(token)
        previous = token
    return "^(" + "".join(out) + ")$"
