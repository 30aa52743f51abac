"""Chat templates under a budget: hostile templates written into copies of the real model, refused at load with a
sentence, quickly and without a burst of memory; a built-in template chosen instead gives a working reply."""

from __future__ import annotations

import resource
import threading
import time
from pathlib import Path

import pytest

from app.core.errors import ModelFileError
from app.core.llm.engine import Engine
from app.core.llm.gguf_check import GGUFInfo, read_gguf
from app.core.llm.load_options import LoadOptions
from app.core.llm.templates import (
    BUILTIN_TEMPLATES,
    PROBE_CONVERSATION,
    ChatTemplate,
    ChatTemplateError,
    builtin_for_file,
    checked_template,
)
from app.core.modes import SamplingOptions
from tests.helpers.gguf import with_template

GREEDY = SamplingOptions(temperature=0.0, max_tokens=32)

HOSTILE = {
    "raises": (
        "{{ raise_exception('Only user and assistant roles are supported!') }}",
        "it fails (Only user",
    ),
    "does_not_parse": ("{% for m in messages %}{{ m.content }", "it does not parse (line 1"),
    "dunder": ("{{ messages.__class__.__mro__ }}", "it reaches for something templates may not use"),
    "nested_loops": (
        "{% for i in range(100000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        "it took more than 2 s",
    ),
    "huge_string": ("{{ 'x' * 3000000000 }}", "it builds text longer than"),
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_template_is_refused_without_the_template_running_away(name: str) -> None:
    source, sentence = HOSTILE[name]
    before = peak_rss_mb()
    started = time.perf_counter()
    with pytest.raises(ChatTemplateError) as refused:
        checked_template(source, None, model_name="Hostile")
    seconds = time.perf_counter() - started
    grown = peak_rss_mb() - before
    message = str(refused.value)
    print(f"{name}: {seconds:.2f} s, peak RSS +{grown:.0f} MB: {message}")
    assert sentence in message
    assert message.startswith("The chat template in Hostile cannot be used:")
    assert "ChatML (chatml)" in message and "Llama 3 (llama3)" in message
    assert "Traceback" not in message
    assert seconds < 10
    assert grown < 200


@pytest.mark.parametrize(
    "source",
    [
        "{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{% set ns = namespace(s=[1]) %}{% for i in range(60) %}{% set ns.s = [ns.s, ns.s] %}{% endfor %}{{ ns.s }}",
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}"
        "{% set ns.s = t %}{% endfor %}",
        "{% set ns = namespace(n=3) %}{% for i in range(60) %}{% set ns.n = ns.n * ns.n %}{% endfor %}",
        "{{ 'x' | center(3000000000) }}",
        "{{ 'x'.center(3000000000) }}",
        "{{ '{:>3000000000}'.format('x') }}",
        "{{ '%3000000000s' % 'x' }}",
        "{{ ((7 ** 64) ** 64) ** 64 }}",
        "{{ ('x' * 1000000) | replace('', 'y' * 1000) }}",
        "{{ range(100000) | join('y' * 100000) }}",
        "{{ ('a\n' * 1000000) | indent(1000) }}",
        "{{ messages | tojson(indent=3000000000) }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "{% for x in messages recursive %}{{ loop(messages) }}{% endfor %}",
        "{{ foo.bar.baz }}",
        "{{ 1 / 0 }}",
        "Hello",  # leaves the conversation out
    ],
)
def test_neighbours_are_refused_quickly_and_small(source: str) -> None:
    before = peak_rss_mb()
    started = time.perf_counter()
    with pytest.raises(ChatTemplateError) as refused:
        checked_template(source, None, model_name="Hostile")
    seconds, grown = time.perf_counter() - started, peak_rss_mb() - before
    print(f"{seconds:.2f} s, +{grown:.0f} MB: {str(refused.value).split(': ', 1)[1].split(' Choose')[0]}")
    assert seconds < 10
    assert grown < 200


def test_every_builtin_renders_the_probe_conversation() -> None:
    for name in BUILTIN_TEMPLATES:
        rendered = checked_template("", name, model_name="x").render(PROBE_CONVERSATION)
        for message in PROBE_CONVERSATION:
            assert message["content"] in rendered.prompt, name


def test_an_unknown_builtin_is_a_sentence_listing_the_names() -> None:
    with pytest.raises(ChatTemplateError, match=r'no built-in chat template called "vicuna".*chatml'):
        checked_template("", "vicuna", model_name="x")


def test_a_stop_ends_a_slow_render_at_chat_time() -> None:
    """A template that passes the probe but loops on a longer conversation: Stop ends it at once."""
    slow = (
        "{% for m in messages %}{% if loop.length > 4 %}{% for i in range(100000) %}{% for j in range(100000) %}"
        "{% endfor %}{% endfor %}{% endif %}{{ m['content'] }}{% endfor %}"
    )
    template = ChatTemplate(slow, bos_token="<s>", eos_token="</s>")
    template.probe()
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.perf_counter()
    from app.core.errors import Cancelled

    with pytest.raises(Cancelled):
        template.render([*PROBE_CONVERSATION, *PROBE_CONVERSATION], cancel=stop, seconds=60)
    stopped_after = time.perf_counter() - started
    print(f"render stopped {stopped_after:.2f} s after it began (stop at 0.3 s)")
    assert stopped_after < 1.5
    with pytest.raises(ChatTemplateError, match=r"took more than 0\.5 s"):
        template.render([*PROBE_CONVERSATION, *PROBE_CONVERSATION], seconds=0.5)


def test_model_with_hostile_templates_refused_at_load_then_builtin_answers(
    smollm2_path: Path, tmp_path: Path
) -> None:
    """On SmolLM2 whichever test model is chosen: the hostile templates are written over the file's own, and
    Gemma's file has none to overwrite."""
    engine = Engine()
    try:
        engine.load(smollm2_path, LoadOptions(context_size=1024))
        for name, (source, sentence) in HOSTILE.items():
            hostile = with_template(smollm2_path, tmp_path, name, source)
            before = peak_rss_mb()
            started = time.perf_counter()
            with pytest.raises(ModelFileError) as refused:
                engine.load(hostile, LoadOptions(context_size=1024))
            seconds, grown = time.perf_counter() - started, peak_rss_mb() - before
            print(f"load {name}: {seconds:.2f} s, peak RSS +{grown:.0f} MB: {refused.value}")
            assert sentence in str(refused.value)
            assert "Choose one of the built-in chat templates" in str(refused.value)
            assert seconds < 10 and grown < 200
            # The refusal came before the loaded model was closed: it still answers.
            assert engine.model is not None and engine.model.path == smollm2_path
        hostile = with_template(smollm2_path, tmp_path, "nested", HOSTILE["nested_loops"][0])
        info = engine.load(hostile, LoadOptions(context_size=1024, chat_template="chatml"))
        assert info.path == hostile.resolve() or info.path == hostile
        assert not info.has_chat_template
        reply = engine.chat([{"role": "user", "content": "What is the capital of France?"}], GREEDY)
        text = reply.collect()
        print(f"with the built-in ChatML template: {text!r}")
        assert text and reply.stats.finish_reason in ("stop", "length")
    finally:
        engine.unload()


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"general.architecture": "gemma"}, "gemma"),
        ({"general.architecture": "gemma2"}, "gemma"),
        ({"general.architecture": "gemma3"}, "gemma"),
        ({"general.architecture": "phi3"}, "phi3"),
        ({"general.architecture": "llama", "tokenizer.ggml.pre": "llama-bpe"}, "llama3"),
        ({"general.architecture": "llama", "tokenizer.ggml.bos_token_id": 128_000}, "llama3"),
        (
            {
                "general.architecture": "llama",
                "tokenizer.ggml.pre": "smollm",
                "tokenizer.ggml.bos_token_id": 1,
            },
            "chatml",
        ),
        ({"general.architecture": "qwen2", "tokenizer.ggml.pre": "llama-bpe"}, "chatml"),
        ({"general.architecture": "mistral3"}, "chatml"),
    ],
)
def test_a_file_without_a_template_gets_the_builtin_of_its_architecture(
    metadata: dict[str, object], expected: str
) -> None:
    assert builtin_for_file(GGUFInfo(Path("m.gguf"), 0, 3, metadata)) == expected


def test_gemma_without_a_template_of_its_own_is_given_gemmas_and_answers(
    gemma_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Gemma 3 270M whichever test model is chosen: its file has no chat template; given ChatML it ends every
    turn at once or writes ChatML's markers back, so the built-in Gemma template is chosen, and said so."""
    assert read_gguf(gemma_path).chat_template is None
    engine = Engine()
    try:
        with caplog.at_level("INFO", logger="app.core.llm.engine"):
            info = engine.load(gemma_path, LoadOptions(context_size=1024))
        assert not info.has_chat_template
        assert info.builtin_template == "gemma"
        assert info.template_note == "no chat template in the file: using the built-in Gemma template"
        assert info.template_note in caplog.text
        # The prompt is written in Gemma's own special tokens, and the reply ends at Gemma's end of turn.
        prompt_tokens, stops = engine.tokenize_messages([{"role": "user", "content": "Hello"}])
        start_of_turn = engine.llama.tokenize(b"<start_of_turn>", add_bos=False, special=True)
        assert len(start_of_turn) == 1 and start_of_turn[0] in prompt_tokens
        assert "<end_of_turn>" in stops
        reply = engine.chat([{"role": "user", "content": "What is the capital of France?"}], GREEDY)
        text = reply.collect()
        print(f"Gemma with the built-in Gemma template: {text!r}")
        assert text.strip() and reply.stats.generated_tokens > 0
        assert reply.stats.finish_reason in ("stop", "length")

        chosen = engine.load(gemma_path, LoadOptions(context_size=1024, chat_template="chatml"))
        assert chosen.builtin_template == "chatml"
        assert chosen.template_note == "using the built-in ChatML chat template chosen for it"
    finally:
        engine.unload()


def test_a_file_with_its_own_template_uses_it_and_says_nothing(smollm2_path: Path) -> None:
    engine = Engine()
    try:
        info = engine.load(smollm2_path, LoadOptions(context_size=512))
        assert info.has_chat_template
        assert info.builtin_template is None and info.template_note == ""
    finally:
        engine.unload()
