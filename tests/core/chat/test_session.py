"""The conversation session: history -> the engine's messages (excerpts included) -> the reply, recorded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.core.chat.session import ChatSession
from app.core.documents.document import Section, make_document
from app.core.documents.retrieval import DocumentIndex
from app.core.errors import UserError
from app.core.history.store import HistoryStore
from app.core.llm.engine import Engine
from app.core.llm.service import EngineService
from app.core.modes import Mode, preset_for

GREEDY = preset_for(Mode.CHAT, {"temperature": 0.0, "max_tokens": 24})


@pytest.fixture
def store() -> Iterator[HistoryStore]:
    with HistoryStore() as opened:
        yield opened


def test_the_question_is_stored_before_the_model_is_asked(store: HistoryStore) -> None:
    session = ChatSession(store)
    assert session.conversation_id is None and session.turns() == []
    session.add_user_message("Hello there", model="m.gguf", preset=GREEDY, context_size=2048)
    assert session.conversation_id is not None
    stored = store.messages(session.conversation_id)
    assert [(m.role, m.content) for m in stored] == [("user", "Hello there")]
    conversation = store.get_conversation(session.conversation_id)
    assert conversation.model == "m.gguf" and conversation.settings["context_size"] == 2048


def test_engine_messages_start_with_the_mode_s_system_prompt(store: HistoryStore) -> None:
    session = ChatSession(store)
    session.add_user_message("First", model="m", preset=GREEDY, context_size=2048)
    session.begin_reply()
    session.record("An answer")
    session.finish_reply("complete")
    session.add_user_message("Second", model="m", preset=GREEDY, context_size=2048)
    messages = session.engine_messages(GREEDY, 2048)
    assert messages[0] == {"role": "system", "content": GREEDY.system_prompt}
    assert [m["content"] for m in messages[1:]] == ["First", "An answer", "Second"]


def test_document_excerpts_ride_with_the_newest_question_only(store: HistoryStore) -> None:
    session = ChatSession(store)
    document = make_document(
        "harbour.txt",
        "text",
        [
            Section(
                "page 1", "The lighthouse on the north rocks was built in 1871 by the harbour board.", page=1
            )
        ],
    )
    index = DocumentIndex()
    index.add(document)
    session.documents = index
    session.add_user_message("Hello", model="m", preset=GREEDY, context_size=2048)
    session.begin_reply()
    session.record("Hi")
    session.finish_reply("complete")
    session.add_user_message("When was the lighthouse built?", model="m", preset=GREEDY, context_size=2048)
    messages = session.engine_messages(GREEDY, 2048)
    assert "1871" in messages[-1]["content"] and messages[-1]["content"].endswith(
        "When was the lighthouse built?"
    )
    assert all("1871" not in m["content"] for m in messages[:-1])
    # The stored question is the person's words, not the excerpts.
    assert store.messages(session.conversation_id or 0)[-1].content == "When was the lighthouse built?"
    index.close()


def test_a_reply_streamed_from_the_engine_service_is_recorded(store: HistoryStore, engine: Engine) -> None:
    client = EngineService(engine).client("cli")
    session = ChatSession(store)
    session.add_user_message("What is the capital of France?", model="m", preset=GREEDY, context_size=2048)
    shown: list[str] = []
    stats = session.record_stream(session.ask(client, GREEDY), shown.append)
    assert "".join(shown) and stats.generated_tokens > 0
    reply = store.messages(session.conversation_id or 0)[-1]
    assert reply.role == "assistant" and reply.content == "".join(shown) and reply.state == "complete"
    assert reply.stats is not None and reply.stats["generated_tokens"] == stats.generated_tokens


def test_without_a_store_the_turns_are_kept_in_memory_and_a_failed_question_is_taken_back(
    engine: Engine,
) -> None:
    client = EngineService(engine).client("cli")
    session = ChatSession(None)
    session.add_user_message("What is the capital of France?", model="m", preset=GREEDY, context_size=2048)
    session.record_stream(session.ask(client, GREEDY), lambda _piece: None)
    assert [t["role"] for t in session.turns()] == ["user", "assistant"]
    session.add_user_message("word " * 50_000, model="m", preset=GREEDY, context_size=2048)
    with pytest.raises(UserError, match="too long"):
        session.record_stream(session.ask(client, GREEDY), lambda _piece: None)
    session.forget_last_question()
    assert [t["role"] for t in session.turns()] == ["user", "assistant"]


def test_a_stored_question_that_could_not_be_answered_is_taken_back(store: HistoryStore) -> None:
    session = ChatSession(store)
    session.add_user_message("First", model="m", preset=GREEDY, context_size=2048)
    session.begin_reply()
    session.record("Answer")
    session.finish_reply("complete")
    session.add_user_message("word " * 50_000, model="m", preset=GREEDY, context_size=2048)
    session.forget_last_question()
    assert [m.content for m in store.messages(session.conversation_id or 0)] == ["First", "Answer"]
    session.forget_last_question()  # the conversation ends with a reply: nothing to take back
    assert len(store.messages(session.conversation_id or 0)) == 2


def test_the_passages_given_with_a_question_are_stored_with_its_reply(store: HistoryStore) -> None:
    session = ChatSession(store)
    document = make_document(
        "harbour.pdf",
        "pdf",
        [
            Section("page 1", "The harbour board meets in the old customs house.", page=1),
            Section(
                "page 2", "The lighthouse on the north rocks was built in 1871 by the harbour board.", page=2
            ),
        ],
    )
    index = DocumentIndex()
    index.add(document)
    session.documents = index
    session.add_user_message("When was the lighthouse built?", model="m", preset=GREEDY, context_size=2048)
    question_turn = session.engine_messages(GREEDY, 2048)[-1]["content"]
    # The model is shown the passages under their document's name only, and is not asked for pages.
    assert "[harbour.pdf]" in question_turn and "page" not in question_turn.lower()
    assert "harbour.pdf, page 2" in [s.reference for s in session.sources]
    session.begin_reply()
    session.record("It was built in 1871.")
    reply = session.finish_reply("complete")
    assert reply is not None
    stored = store.reply_sources([reply.id])[reply.id]
    assert stored == session.reply_sources and any(s.page == 2 and "1871" in s.text for s in stored)
    # A question with nothing to find still gets the openings as context, and a reply without documents none.
    session.documents = None
    session.add_user_message("Thanks", model="m", preset=GREEDY, context_size=2048)
    session.engine_messages(GREEDY, 2048)
    session.begin_reply()
    session.record("You are welcome.")
    plain = session.finish_reply("complete")
    assert plain is not None and store.reply_sources([plain.id]) == {}
    index.close()


def test_a_reply_that_loops_is_stored_up_to_its_first_telling(store: HistoryStore) -> None:
    session = ChatSession(store)
    session.add_user_message("What did maintenance cost?", model="m", preset=GREEDY, context_size=2048)
    session.begin_reply()
    loop = "Spending on maintenance rose to 1.9 million euros. "
    pieces = ("The report says so. " + loop * 5).split(" ")
    for piece in pieces:
        if session.repeating:
            break
        session.record(piece + " ")
    assert session.repeating
    reply = session.finish_reply("stopped")  # the front end stopped it
    assert reply is not None
    assert reply.content == "The report says so. " + loop.rstrip()
    assert reply.state == "complete"
    session.begin_reply()
    assert not session.repeating  # each reply is watched afresh
