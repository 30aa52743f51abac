"""Structured output: schemas become grammars llama.cpp compiles, what cannot be enforced is refused by name,
and the real model, generating under a grammar through the app's engine, writes JSON that validates against
its schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import llama_cpp
import pytest

from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine
from app.core.llm.grammars import JSON_OBJECT_GRAMMAR, check_grammar, schema_grammar
from app.core.llm.load_options import LoadOptions
from app.core.llm.sampling import ReplyOptions
from app.core.llm.schema_check import GrammarError
from app.core.modes import SamplingOptions

PERSON = {
    "type": "object",
    "title": "Person",
    "description": "annotations are dropped",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", 'quote"d', "back\\slash"]},
    },
    "required": ["name", "age", "role"],
}

SHAPES: dict[str, dict[str, Any]] = {
    "nested objects": {
        "type": "object",
        "properties": {
            "owner": PERSON,
            "address": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 20}, "zip": {"type": "string"}},
                "required": ["city"],
            },
        },
        "required": ["owner"],
    },
    "array with bounds": {
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "items": {"type": "string", "maxLength": 8},
                "minItems": 1,
                "maxItems": 3,
            }
        },
        "required": ["tags"],
    },
    "enum and const": {
        "type": "object",
        "properties": {"kind": {"const": "point"}, "color": {"enum": ["red", "green", 3, None]}},
        "required": ["kind", "color"],
    },
    "anyOf": {
        "type": "object",
        "properties": {
            "value": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 5}, {"type": "null"}]}
        },
        "required": ["value"],
    },
    "optional properties": {
        "type": "object",
        "properties": {"a": {"type": "boolean"}, "b": {"type": "number"}, "c": {"type": ["string", "null"]}},
        "required": ["a"],
    },
    "string pattern": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
            "word": {"type": "string", "pattern": "^(yes|no)$"},
        },
        "required": ["code", "word"],
    },
    "integer bounds": {
        "type": "object",
        "properties": {
            "small": {"type": "integer", "exclusiveMinimum": -5, "exclusiveMaximum": 5},
            "big": {"type": "integer", "minimum": 1000, "maximum": 250000},
            "negative": {"type": "integer", "maximum": -10},
        },
        "required": ["small", "big", "negative"],
    },
    "defs and local refs": {
        "type": "object",
        "$defs": {
            "point": {
                "type": "object",
                "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                "required": ["x", "y"],
            },
            "string": {"type": "string", "maxLength": 4},
        },
        "properties": {
            "start": {"$ref": "#/$defs/point"},
            "path": {"type": "array", "items": {"$ref": "#/$defs/point"}, "maxItems": 2},
            "label": {"$ref": "#/$defs/string"},
        },
        "required": ["start", "label"],
    },
    "tuple and formats": {
        "type": "object",
        "properties": {
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}]},
            "day": {"type": "string", "format": "date"},
            "id": {"type": "string", "format": "uuid"},
        },
        "required": ["pair", "day", "id"],
    },
}

UNSUPPORTED: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "not", "schema.properties.a"),
    ({"type": "object", "properties": {"a": {"if": {}, "then": {}}}}, "if", "schema.properties.a"),
    ({"type": "object", "dependentSchemas": {"a": {}}}, "dependentSchemas", "schema"),
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems", "schema"),
    ({"type": "integer", "multipleOf": 3}, "multipleOf", "schema"),
    ({"type": "array", "contains": {"const": 1}}, "contains", "schema"),
    ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties", "schema"),
    (
        {"type": "object", "properties": {"b": {"$ref": "https://example.com/s.json"}}},
        "$ref",
        "schema.properties.b",
    ),
    ({"type": "string", "format": "email"}, "format", "schema"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "oneOf", "schema"),
    ({"allOf": [{"type": "string"}]}, "allOf", "schema"),
    ({"type": "number", "minimum": 0.5}, "minimum", "schema"),
    ({"type": "string", "pattern": "^\\d+$"}, "pattern", "schema"),
    ({"type": "string", "pattern": "abc"}, "pattern", "schema"),
    ({"type": "string", "pattern": "^a+?$"}, "pattern", "schema"),
    (
        {"type": "array", "items": {"anyOf": [{"type": "string", "minProperties": 1}]}},
        "minProperties",
        "schema.items.anyOf.0",
    ),
    ({"$ref": "#/$defs/a", "maxLength": 3, "$defs": {"a": {"type": "string"}}}, "maxLength", "schema"),
    ({"type": "string", "pattern": "^a$", "maxLength": 3}, "maxLength", "schema"),
]


@pytest.fixture(scope="module")
def vocab(model_path: Path) -> Iterator[Any]:
    """The test model's vocabulary alone (no weights): what llama.cpp's grammar parser needs."""
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), params)
    assert model
    yield llama_cpp.llama_model_get_vocab(model)
    llama_cpp.llama_model_free(model)


@pytest.fixture(scope="module")
def grammar_engine(model_path: Path) -> Iterator[Engine]:
    """The test model in the app's engine, which generates under a grammar as the API server asks it to."""
    engine = Engine()
    engine.load(model_path, LoadOptions(context_size=1024))
    yield engine
    engine.unload()


def generate(engine: Engine, messages: list[ChatMessage], gbnf: str, max_tokens: int = 400) -> str:
    """The reply the app would stream for ``messages`` under ``gbnf``, greedy (its choices are repeatable)."""
    reply = engine.chat(
        messages,
        SamplingOptions(temperature=0.0, seed=1, repeat_penalty=1.0, max_tokens=max_tokens),
        options=ReplyOptions(grammar=gbnf, cut_history=False),
    )
    text = reply.collect()
    assert reply.stats.finish_reason == "stop", "the grammar let the reply run to max_tokens"
    return text


@pytest.mark.parametrize("shape", SHAPES)
def test_schemas_of_every_supported_shape_compile_in_llama_cpp(shape: str, vocab: Any) -> None:
    gbnf = schema_grammar(SHAPES[shape])
    assert "root ::=" in gbnf
    check_grammar(gbnf, vocab)


def test_the_json_object_grammar_compiles(vocab: Any) -> None:
    check_grammar(JSON_OBJECT_GRAMMAR, vocab)


def test_a_grammar_that_does_not_compile_is_refused_with_a_sentence(vocab: Any) -> None:
    with pytest.raises(GrammarError, match="does not compile"):
        check_grammar("root ::= missing-rule", vocab)


@pytest.mark.parametrize(
    ("schema", "keyword", "where"), UNSUPPORTED, ids=[u[1] + "@" + u[2] for u in UNSUPPORTED]
)
def test_unsupported_keywords_are_refused_naming_keyword_and_path(
    schema: dict[str, Any], keyword: str, where: str
) -> None:
    with pytest.raises(GrammarError) as caught:
        schema_grammar(schema)
    message = str(caught.value)
    assert f"'{keyword}'" in message
    assert f" at {where}" in message
    assert message.endswith(".")


def test_the_path_starts_where_the_caller_says() -> None:
    with pytest.raises(GrammarError, match=r"at response_format\.json_schema\.schema\.properties\.a,"):
        schema_grammar(
            {"type": "object", "properties": {"a": {"not": {}}}}, where="response_format.json_schema.schema"
        )


@pytest.mark.parametrize(
    "schema",
    [
        None,
        "object",
        ["type"],
        {"type": "object", "required": ["x"]},
        {"type": "thing"},
        {"$ref": "#/$defs/nowhere"},
    ],
)
def test_schemas_that_are_not_valid_are_refused_with_a_sentence(schema: object) -> None:
    with pytest.raises(GrammarError, match=r"^The JSON schema .*try again\.$"):
        schema_grammar(schema)


def test_annotations_and_unknown_words_are_accepted() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "x",
        "$comment": "c",
        "type": "object",
        "properties": {
            "a": {
                "type": "string",
                "default": "x",
                "examples": ["y"],
                "deprecated": True,
                "readOnly": True,
                "x-vendor": 1,
            }
        },
    }
    assert "root ::=" in schema_grammar(schema)


def test_the_model_writes_a_json_object_under_the_json_object_grammar(grammar_engine: Engine) -> None:
    text = generate(
        grammar_engine,
        [
            {
                "role": "user",
                "content": 'What is the capital of France? Reply as a JSON object like {"answer": "..."}.',
            }
        ],
        JSON_OBJECT_GRAMMAR,
    )
    assert isinstance(json.loads(text), dict)


GENERATED = [
    "nested objects",
    "array with bounds",
    "enum and const",
    "anyOf",
    "string pattern",
    "integer bounds",
    "defs and local refs",
    "tuple and formats",
]


@pytest.mark.slow
@pytest.mark.parametrize("shape", GENERATED)
def test_the_model_writes_json_that_validates_against_the_schema(shape: str, grammar_engine: Engine) -> None:
    schema = SHAPES[shape]
    messages: list[ChatMessage] = [
        {
            "role": "user",
            "content": f"Reply with a JSON value for this schema, keeping strings short: {json.dumps(schema)}",
        }
    ]
    text = generate(grammar_engine, messages, schema_grammar(schema))
    jsonschema.validate(json.loads(text), schema, format_checker=jsonschema.FormatChecker())


def _nested(leaf: dict[str, Any], levels: int) -> dict[str, Any]:
    """``leaf`` inside ``levels`` objects, each holding the next as its one required property."""
    schema = leaf
    for level in range(levels):
        schema = {"type": "object", "properties": {f"level{level}": schema}, "required": [f"level{level}"]}
    return schema


HOSTILE: list[tuple[str, object, str]] = [
    ("maxLength 100000", {"type": "string", "maxLength": 100000}, "'maxLength' of 100000 at schema;"),
    ("maxLength 10000", {"type": "string", "maxLength": 10000}, "'maxLength' of 10000"),
    ("minLength", {"type": "string", "minLength": 100000}, "'minLength' of 100000"),
    (
        "maxLength in a property",
        {"type": "object", "properties": {"a": {"type": "string", "maxLength": 100000}}},
        "'maxLength' of 100000 at schema.properties.a;",
    ),
    (
        "minItems",
        {"type": "array", "items": {"type": "integer"}, "minItems": 10**7},
        "'minItems' of 10000000",
    ),
    (
        "maxItems",
        {"type": "array", "items": {"type": "integer"}, "maxItems": 10**8},
        "'maxItems' of 100000000",
    ),
    ("pattern repetition", {"type": "string", "pattern": "^a{1,100000}$"}, "'pattern'"),
    ("pattern repetition with spaces", {"type": "string", "pattern": "^[a-z]{ 100000 }$"}, "'pattern'"),
    ("pattern repetitions in all", {"type": "string", "pattern": "^(a{0,600}b{0,600})?$"}, "'pattern'"),
    ("pattern groups", {"type": "string", "pattern": "^" + "(" * 100 + "a" + ")" * 100 + "$"}, "'pattern'"),
    ("type object", {"type": {}}, "schema.type is an object"),
    ("type list of objects", {"type": [{}]}, "schema.type is a list"),
    ("format object", {"type": "string", "format": {}}, "schema.format is an object"),
    ("format list", {"format": []}, "schema.format is a list"),
    ("nested 450 levels", _nested({"type": "string"}, 450), "more than 64 levels"),
    ("nested 20000 levels", _nested({"type": "string"}, 20000), "more than 64 levels"),
    (
        "many long strings",
        {
            "type": "object",
            "properties": {f"p{i}": {"type": "string", "maxLength": 1000} for i in range(1000)},
            "required": [f"p{i}" for i in range(1000)],
        },
        "256 KB",
    ),
    (
        "many optional properties",
        {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(900)}},
        "900 optional 'properties'",
    ),
    ("huge integer bound", {"type": "integer", "minimum": 10**400}, "'minimum'"),
    ("huge float bound", {"type": "integer", "maximum": 1e300}, "'maximum'"),
]


@pytest.mark.parametrize(("case", "schema", "named"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_schemas_are_refused_quickly_with_a_sentence(case: str, schema: object, named: str) -> None:
    import time

    started = time.monotonic()
    with pytest.raises(GrammarError) as caught:
        schema_grammar(schema)
    assert time.monotonic() - started < 2.0, f"{case} took too long to refuse"
    message = str(caught.value)
    assert named in message
    assert message.startswith("The ")
    assert message.endswith("try again.")
    assert len(message) < 2000


def test_bounds_are_refused_before_a_grammar_is_built_and_the_process_survives() -> None:
    """maxLength 100000 once crashed the process in llama.cpp's recursive parser: it must never reach it."""
    import subprocess
    import sys

    script = (
        "from app.core.llm.grammars import schema_grammar\nfrom app.core.llm.schema_check import GrammarError\n"
        "try:\n"
        "    schema_grammar({'type': 'string', 'maxLength': 100000})\n"
        "except GrammarError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "'maxLength'" in done.stdout


LARGEST_ALLOWED: dict[str, object] = {
    "string of 1,000": {"type": "string", "minLength": 1000, "maxLength": 1000},
    "string up to 1,000": {"type": "string", "maxLength": 1000},
    "1,000 strings of up to 1,000": {
        "type": "array",
        "items": {"type": "string", "maxLength": 1000},
        "minItems": 1,
        "maxItems": 1000,
    },
    "nested 63 levels deep": _nested(
        {"type": "array", "items": {"type": "string", "maxLength": 1000}, "maxItems": 1000}, 62
    ),
    "long property names": {
        "type": "object",
        "properties": {"x" * 5000: {"type": "array", "items": {"type": "integer"}, "maxItems": 1000}},
    },
    "pattern repetitions at the limit": {"type": "string", "pattern": "^(a{0,500}b{0,499})?$"},
    "pattern nested repetitions": {"type": "string", "pattern": "^((([a-z]{0,300}-){0,300}){0,300})$"},
    "pattern groups 64 deep": {"type": "string", "pattern": "^" + "(" * 64 + "a{0,900}" + ")" * 64 + "$"},
    "100 optional properties": {
        "type": "object",
        "properties": {f"p{i}": {"type": "string", "maxLength": 100} for i in range(100)},
    },
    "integer bounds of 19 digits": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
}


@pytest.mark.parametrize("case", LARGEST_ALLOWED)
def test_the_largest_allowed_schemas_compile_in_llama_cpp_quickly(case: str, vocab: Any) -> None:
    import threading
    import time

    from app.core.llm.schema_check import MAX_GRAMMAR_CHARS

    started = time.monotonic()
    gbnf = schema_grammar(LARGEST_ALLOWED[case])
    assert len(gbnf) <= MAX_GRAMMAR_CHARS
    # The engine builds its sampler on its own thread, whose stack is what llama.cpp's parser recurses on.
    failures: list[BaseException] = []

    def compile_it() -> None:
        try:
            check_grammar(gbnf, vocab)
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=compile_it)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive() and not failures, failures
    assert time.monotonic() - started < 5.0


def test_several_schemas_in_one_grammar_share_the_size_limit() -> None:
    """A request's tools go into one grammar: many tools, each allowed alone, cannot add up to a huge one."""
    from app.core.llm.grammars import new_converter, schema_rules

    tool = {
        "type": "object",
        "properties": {f"p{i}": {"type": "string", "maxLength": 1000} for i in range(20)},
        "required": [f"p{i}" for i in range(20)],
    }
    converter = new_converter()
    with pytest.raises(GrammarError, match="256 KB"):
        for index in range(200):
            schema_rules(converter, tool, f"t{index}", f"tools[{index}].function.parameters")


def test_an_unexpected_failure_is_a_sentence_and_its_traceback_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class UnreadableSchema(dict[str, Any]):
        """A schema object whose reading fails the way a bug of ours would."""

        def items(self) -> Any:
            raise RuntimeError("unreadable")

    with (
        caplog.at_level("ERROR", logger="app.core.llm.grammars"),
        pytest.raises(GrammarError, match=r"^The JSON schema at schema could not be turned into a grammar"),
    ):
        schema_grammar(UnreadableSchema(type="object"))
    assert any(record.exc_info for record in caplog.records)
