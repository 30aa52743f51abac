"""``/v1/embeddings`` on a real ``llamadesk serve --embedding-model``, through the ``openai`` client (base64 by
default, and floats) and ``langchain-openai``, vectors checked against llama.cpp's own run in the test; and chat
requests that name a library (the ``libraries`` extension field) answered with its ``sources``."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.cli.test_library import house_notes
from tests.cli.test_serve import Server, start_server
from tests.helpers.cli import llamadesk_command

KEY = "embeddings-key"
TEXTS = ["A cat is sleeping on the sofa.", "A kitten naps on the couch.", "File your taxes by April."]


@pytest.fixture(scope="module")
def server(
    model_path: Path, embedding_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    started = start_server(
        model_path, tmp_path_factory.mktemp("embeddings-home"), "--api-key", KEY,
        "--embedding-model", str(embedding_model_path),
    )  # fmt: skip
    yield started
    started.process.send_signal(signal.SIGINT)
    _out, err = started.process.communicate(timeout=30)
    assert started.process.returncode == 0, err
    assert "Traceback" not in err


def reference(embedding_model_path: Path, texts: list[str]) -> np.ndarray:
    from llama_cpp import Llama

    llama = Llama(str(embedding_model_path), embedding=True, n_ctx=512, verbose=False)
    try:
        return np.asarray(llama.embed(texts, normalize=True), dtype=np.float32)
    finally:
        llama.close()


def test_the_openai_client_gets_the_models_vectors_in_base64_and_floats(
    server: Server, embedding_model_path: Path
) -> None:
    client = server.client(KEY)
    expected = reference(embedding_model_path, TEXTS)
    default = client.embeddings.create(model="any", input=TEXTS)  # the client asks for base64 and decodes it
    floats = client.embeddings.create(model="any", input=TEXTS, encoding_format="float")
    for answer in (default, floats):
        assert [item.index for item in answer.data] == [0, 1, 2]
        vectors = np.asarray([item.embedding for item in answer.data], dtype=np.float32)
        assert vectors.shape == (3, 384)
        assert np.allclose(vectors, expected, atol=1e-4)
        assert answer.model == embedding_model_path.stem
        assert answer.usage.prompt_tokens == answer.usage.total_tokens > 0
    single = client.embeddings.create(model="any", input=TEXTS[0], encoding_format="float")
    assert len(single.data) == 1 and np.allclose(single.data[0].embedding, expected[0], atol=1e-4)


def test_langchain_embeds_documents_and_queries(server: Server) -> None:
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(
        base_url=server.base_url,
        api_key=KEY,
        model="any",
        check_embedding_ctx_length=False,  # type: ignore[arg-type]
    )
    cat, kitten, tax = (np.asarray(v) for v in embeddings.embed_documents(TEXTS))
    query = np.asarray(embeddings.embed_query("Where is the cat?"))
    assert cat @ kitten > cat @ tax
    assert query @ cat > query @ tax


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"model": "m", "input": []}, "invalid_value"),
        ({"model": "m", "input": [1, 2, 3]}, "invalid_value"),
        ({"model": "m", "input": ""}, "invalid_value"),
        ({"model": "m", "input": "hi", "encoding_format": "int8"}, "invalid_value"),
        ({"model": "m", "input": "hi", "dimensions": 64}, "invalid_value"),
        ({"model": "m", "input": "hi", "truncate": True}, "unsupported_parameter"),
        ({"model": "m", "input": "word " * 600}, "context_length_exceeded"),
    ],
)
def test_bad_requests_get_a_400_with_a_sentence(server: Server, body: dict[str, object], code: str) -> None:
    answer = httpx.post(
        f"{server.base_url}/embeddings", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["message"].endswith(".")


def test_a_server_without_an_embedding_model_says_how_to_get_one(model_path: Path, tmp_path: Path) -> None:
    started = start_server(model_path, tmp_path, "--api-key", KEY)
    try:
        with pytest.raises(openai.APIStatusError) as refused:
            started.client(KEY).embeddings.create(model="any", input="hi")
        assert refused.value.status_code == 501
        assert "--embedding-model" in str(refused.value)
    finally:
        started.process.send_signal(signal.SIGINT)
        started.process.communicate(timeout=30)


def test_a_chat_request_naming_a_library_is_answered_from_it_with_its_sources(
    model_path: Path, embedding_model_path: Path, tmp_path: Path
) -> None:
    folder = house_notes(tmp_path / "house")
    home = tmp_path / "home"
    env = os.environ | {"LLAMADESK_HOME": str(home)}
    add = llamadesk_command(
        "library", "add", str(folder), "--name", "house", "--embedding-model", str(embedding_model_path)
    )
    added = subprocess.run(add, env=env, capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    started = start_server(model_path, home, "--api-key", KEY)
    try:
        client = started.client(KEY)
        question = [{"role": "user", "content": "What should the boiler pressure read?"}]
        whole = client.chat.completions.create(
            model="m", messages=question, max_tokens=16, extra_body={"libraries": ["house"]}
        )
        sources = whole.model_extra["sources"]  # type: ignore[index]
        assert sources and Path(sources[0]["path"]).name == "boiler.md"
        assert set(sources[0]) == {"path", "label", "page", "score", "text"}
        assert whole.usage is not None and whole.usage.prompt_tokens > 30  # the excerpt went into the prompt

        stream = client.chat.completions.create(
            model="m", messages=question, max_tokens=8, stream=True, extra_body={"libraries": ["house"]}
        )
        chunks = list(stream)
        finishing = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
        assert finishing[0].model_extra["sources"] == sources  # type: ignore[index]

        plain = client.chat.completions.create(model="m", messages=question, max_tokens=4)
        assert "sources" not in (plain.model_extra or {})
        with pytest.raises(openai.NotFoundError, match='no library named "attic"'):
            client.chat.completions.create(
                model="m", messages=question, max_tokens=4, extra_body={"libraries": ["attic"]}
            )
        with pytest.raises(openai.BadRequestError, match="'libraries' is a list"):
            client.chat.completions.create(model="m", messages=question, extra_body={"libraries": "house"})
    finally:
        started.process.send_signal(signal.SIGINT)
        started.process.communicate(timeout=30)
