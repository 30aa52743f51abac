"""A reply that loops is stopped after its first full telling: the rule on text, then measured on the real model
with the question of issue 13 (a figure on page 3 of a 4-page PDF) against a repeat penalty alone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from app.core.chat.repetition import (
    MIN_SPAN_CHARS,
    REPEATS,
    RepetitionGuard,
    repeated_cut,
    requested_copies,
)
from app.core.chat.session import ChatSession
from app.core.documents.reader import read_document
from app.core.documents.retrieval import DocumentIndex
from app.core.history.store import HistoryStore
from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine
from app.core.llm.service import EngineService
from app.core.modes import Mode, SamplingOptions, preset_for
from tests.fixtures.documents import REPORT_PAGES, build_pdf

LOOP = "Spending on maintenance rose to 1.9 million euros. "
QUESTION = "What was the total revenue for the year?"
FIGURE = "4.8"
REPLY_TOKENS = 120


def test_a_loop_is_noticed_and_cut_after_its_first_telling() -> None:
    text = "The revenue was 4.8 million euros. " + LOOP * 4
    guard = RepetitionGuard()
    fired_at = None
    for index in range(0, len(text), 3):  # in token-sized pieces, as a reply streams
        if guard.feed(text[index : index + 3]) and fired_at is None:
            fired_at = index
    assert fired_at is not None and fired_at < len(text) - len(LOOP) // 2, "noticed during the third copy"
    assert guard.kept(text) == ("The revenue was 4.8 million euros. " + LOOP).rstrip()


def test_text_that_moves_on_is_not_a_loop() -> None:
    refrain = "The quick brown fox jumps over the lazy dog near the river. "
    assert repeated_cut(refrain * 3 + "And then the story went somewhere else entirely, far away.") is None
    assert repeated_cut("short " * 5) is None  # too short to say
    assert repeated_cut(" " * (MIN_SPAN_CHARS * REPEATS)) is None  # blank space is padding, not a passage
    short_loop = "ha " * 60
    assert repeated_cut(short_loop) is not None
    ending = "and the figures were the same as the year before. "  # three times, with other text between
    assert repeated_cut(f"First {ending}Then {ending}Later again {ending}") is not None
    assert repeated_cut(f"First {ending}Then {ending}Later again {ending}", requested=5) is None
    guard = RepetitionGuard()
    guard.feed(refrain * 2)
    assert not guard.repeating and guard.kept(refrain * 2) == refrain * 2


def test_code_mode_replies_are_never_cut(store: HistoryStore) -> None:
    session = ChatSession(store, mode="code")
    preset = preset_for(Mode.CODE)
    session.add_user_message("Write setters", model="m", preset=preset, context_size=2048)
    session.begin_reply()
    lines = "    self.value = value  # keep the value given to us, as it came\n" * 5
    session.record(lines)
    assert not session.repeating
    message = session.finish_reply("complete")
    assert message is not None and message.content == lines


LINES = "I will always listen carefully when my teacher is speaking.\n"


def _streamed(guard: RepetitionGuard, text: str) -> bool:
    """Feed ``text`` in token-sized pieces, as a reply streams, until the guard fires; whether it did."""
    return any(guard.feed(text[index : index + 3]) for index in range(0, len(text), 3))


@pytest.mark.parametrize(
    ("question", "copies"),
    [
        ("Write the sentence 'I will not talk in class.' five times.", 5),
        ("Repeat it 12 times, one per line", 12),
        ("Say it twice.", 2),
        ("Twenty-five copies of the line, please", 25),
        ("Write it a dozen times", 12),
        ("Write it 5000 times", 100),  # a count past the cap is not held to
        ("What were the 3 largest costs in 2023?", 1),  # numbers without a word of repetition ask for none
        ("What was the total revenue for the year?", 1),
    ],
)
def test_the_count_a_question_asks_for_is_read(question: str, copies: int) -> None:
    assert requested_copies(question) == copies


def test_a_repetition_asked_for_is_kept_and_a_loop_past_it_is_still_cut() -> None:
    intro = "Here it is:\n\n"
    assert _streamed(RepetitionGuard(), intro + LINES * 5), "without the count, five copies read as a loop"

    asked = RepetitionGuard(requested=5)
    assert not _streamed(asked, intro + LINES * 5)
    assert asked.kept(intro + LINES * 5) == intro + LINES * 5
    asked = RepetitionGuard(requested=5)
    assert not _streamed(asked, intro + LINES * 6), "one copy too many is a miscount, not yet a loop"

    runaway = intro + LINES * 40
    looping = RepetitionGuard(requested=5)
    assert _streamed(looping, runaway)
    assert len(looping.text) < len(intro + LINES * 8), "stopped two copies past the five asked for"
    assert looping.kept(runaway) == (intro + LINES * 5).rstrip()


def test_a_short_sentence_loop_keeps_one_copy_not_two() -> None:
    text = "Sure!\n\n" + "I will not talk in class. " * 12
    assert repeated_cut(text) is not None
    guard = RepetitionGuard()
    assert _streamed(guard, text)
    assert guard.kept(text) == "Sure!\n\nI will not talk in class."


def test_in_chat_mode_the_copies_asked_for_are_stored_whole(store: HistoryStore) -> None:
    session = ChatSession(store, mode="chat")
    preset = preset_for(Mode.CHAT)
    session.add_user_message(
        "Write the sentence 'I will not talk in class.' ten times.",
        model="m",
        preset=preset,
        context_size=2048,
    )
    session.begin_reply()
    reply = "I will not talk in class.\n" * 10
    for index in range(0, len(reply), 3):
        session.record(reply[index : index + 3])
    assert not session.repeating
    message = session.finish_reply("complete")
    assert message is not None and message.content == reply

    # The next question asks for no count: the same copies are a loop again.
    session.add_user_message("And what did the report say?", model="m", preset=preset, context_size=2048)
    session.begin_reply()
    looped = "The report said the harbour was busy all year. " * 6
    for index in range(0, len(looped), 3):
        session.record(looped[index : index + 3])
    assert session.repeating
    message = session.finish_reply("complete")
    assert message is not None and message.content == "The report said the harbour was busy all year."


@pytest.fixture
def store() -> Iterator[HistoryStore]:
    with HistoryStore() as opened:
        yield opened


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pdf(tmp_path_factory.mktemp("report") / "harbour.pdf", REPORT_PAGES)


def _unguarded(engine: Engine, messages: list[ChatMessage], sampling: SamplingOptions) -> Measured:
    started = time.perf_counter()
    reply = engine.chat(messages, sampling)
    text = reply.collect()
    return Measured(reply.stats.generated_tokens, time.perf_counter() - started, text)


@dataclass(frozen=True)
class Measured:
    tokens: int
    seconds: float
    text: str  # as kept: the whole reply, or with the guard what the session stored

    def line(self, name: str) -> str:
        return (
            f"  {name:<26} {self.tokens:>4} tokens {self.seconds:6.1f} s  looped={loops(self.text)!s:<5} "
            f"figure={FIGURE in self.text!s:<5} {len(self.text):>4} chars, ending {self.text[-90:]!r}"
        )


def loops(text: str) -> bool:
    """Whether ``text``, streamed, repeated a passage of itself a third time at any point (it may move on
    after a loop, so its end alone does not tell)."""
    guard = RepetitionGuard()
    return any(guard.feed(text[index : index + 4]) for index in range(0, len(text), 4))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # four replies of up to REPLY_TOKENS: minutes when others share the CPU
def test_measured_on_the_real_model_the_guard_stops_the_loop_a_penalty_does_not(
    engine: Engine, report: Path, store: HistoryStore
) -> None:
    document = read_document(report)
    index = DocumentIndex(engine.count_tokens)
    index.add(document)
    # The question as issue 13 asked it: attaching switched to Summarize mode, whose preset answered it.
    preset = preset_for(Mode.SUMMARIZE, {"temperature": 0.0, "max_tokens": REPLY_TOKENS})
    session = ChatSession(store, mode="summarize")
    session.documents = index
    session.add_user_message(QUESTION, model="m", preset=preset, context_size=engine.llama.n_ctx())
    messages = session.engine_messages(preset, engine.llama.n_ctx())
    assert 3 in [source.page for source in session.sources]

    results = {
        f"repeat penalty {penalty}": _unguarded(
            engine, messages, replace(preset.sampling, repeat_penalty=penalty)
        )
        for penalty in (1.0, 1.1, 1.3)
    }
    # The guard, on the way the window and the terminal take (the session, the engine service, a cancel).
    client = EngineService(engine).client("cli")
    looping = replace(preset, sampling=replace(preset.sampling, repeat_penalty=1.0))
    started = time.perf_counter()
    stats = session.record_stream(session.ask(client, looping), lambda _piece: None)
    reply = store.messages(session.conversation_id or 0)[-1]
    guarded = Measured(stats.generated_tokens, time.perf_counter() - started, reply.content)
    results["repeat penalty 1.0 + guard"] = guarded
    print(
        f"\nReply to {QUESTION!r} (figure on page 3 of 4; Summarize preset, greedy, <= {REPLY_TOKENS} tokens):"
    )
    for name, result in results.items():
        print(result.line(name))

    unguarded = results["repeat penalty 1.0"]
    # Whether the model loops here (SmolLM2 did on the machine of issue 13) depends on its greedy wording,
    # which changes with the CPU and llama.cpp's version: a loop is cut, a reply that does not loop is left
    # whole.
    if loops(unguarded.text):
        assert guarded.tokens < unguarded.tokens and not loops(guarded.text)
    else:
        assert guarded.tokens == unguarded.tokens
    assert reply.state == "complete" and reply.content
    stored = store.reply_sources([reply.id])[reply.id]
    assert any(source.page == 3 and "4.8 million" in source.text for source in stored)
    index.close()
