"""Structured output: schemas become grammars llama.cpp compiles, what cannot be enforced is refused by name, and
the real model generating under a grammar writes JSON that validates against its schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import llama_cpp
import pytest
from llama_cpp.llama_grammar import LlamaGrammar

from app.core.llm.bindings import special_token_texts
from app.core.llm.gguf_check import check_model_file
from app.core.llm.grammars import JSON_OBJECT_GRAMMAR, GrammarError, check_grammar, schema_grammar
from app.core.llm.templates import ChatTemplate, builtin_for_file

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
def llama(model_path: Path) -> Iterator[Any]:
    loaded = llama_cpp.Llama(model_path=str(model_path), n_ctx=1024, verbose=False)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def template(model_path: Path, llama: Any) -> ChatTemplate:
    """The chat template the app would use for the test model: its own, else the built-in for its kind."""
    info = check_model_file(model_path)
    bos, eos = special_token_texts(llama)
    if info.chat_template:
        return ChatTemplate(info.chat_template, bos_token=bos, eos_token=eos)
    return ChatTemplate.builtin(builtin_for_file(info), bos_token=bos, eos_token=eos)


def generate(
    llama: Any, template: ChatTemplate, messages: list[dict[str, str]], gbnf: str, max_tokens: int = 400
) -> str:
    prompt = template.render(messages).prompt
    result = llama.create_completion(
        prompt,
        grammar=LlamaGrammar.from_string(gbnf, verbose=False),
        max_tokens=max_tokens,
        temperature=0.0,
        seed=1,
    )
    assert result["choices"][0]["finish_reason"] == "stop", "the grammar let the reply run to max_tokens"
    return str(result["choices"][0]["text"])


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


def test_the_model_writes_a_json_object_under_the_json_object_grammar(
    llama: Any, template: ChatTemplate
) -> None:
    text = generate(
        llama,
        template,
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
def test_the_model_writes_json_that_validates_against_the_schema(
    shape: str, llama: Any, template: ChatTemplate
) -> None:
    schema = SHAPES[shape]
    messages = [
        {
            "role": "user",
            "content": f"Reply with a JSON value for this schema, keeping strings short: {json.dumps(schema)}",
        }
    ]
    text = generate(llama, template, messages, schema_grammar(schema))
    jsonschema.validate(json.loads(text), schema, format_checker=jsonschema.FormatChecker())
