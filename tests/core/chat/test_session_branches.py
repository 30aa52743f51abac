"""The session's branches: editing a question and writing a reply again add versions, and the engine is sent only
the branch on screen."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.core.chat.session import ChatSession
from app.core.errors import UserError
from app.core.history.store import HistoryStore
from app.core.llm.engine import ReplyStats
from app.core.modes import Mode, preset_for

GREEDY = preset_for(Mode.CHAT, {"temperature": 0.0, "max_tokens": 24})


@pytest.fixture
def store() -> Iterator[HistoryStore]:
    with HistoryStore() as opened:
        yield opened


def answer(session: ChatSession, text: str) -> int:
    session.begin_reply()
    session.record(text)
    message = session.finish_reply("complete")
    assert message is not None
    return message.id


def conversation(session: ChatSession) -> list[str]:
    return [turn["content"] for turn in session.engine_messages(GREEDY, 2048)[1:]]


def test_edit_and_regenerate_add_versions_and_the_engine_gets_the_branch_on_screen(
    store: HistoryStore,
) -> None:
    session = ChatSession(store)
    first = session.add_user_message("Capital of Spain?", model="m", preset=GREEDY, context_size=2048)
    assert first is not None
    answer(session, "Madrid")
    session.add_user_message("And of Italy?", model="m", preset=GREEDY, context_size=2048)
    old_reply = answer(session, "Rome")

    # Regenerate the last reply: the new one is the old one's sibling.
    assert session.prepare_new_version() is True
    assert conversation(session) == ["Capital of Spain?", "Madrid", "And of Italy?"]  # what the model is sent
    new_reply = answer(session, "Rome, of course")
    assert conversation(session)[-1] == "Rome, of course"
    shown = store.messages(session.conversation_id or 0)
    position = session.branch_positions(shown)[new_reply]
    assert position.sibling_ids == (old_reply, new_reply) and position.index == 1

    # Edit the first question: a sibling question, and the engine sees only it.
    edited = session.edit_question(first.id, "Capital of France?")
    assert conversation(session) == ["Capital of France?"]
    answer(session, "Paris")
    assert conversation(session) == ["Capital of France?", "Paris"]

    # "< 1/2": back to the first version, with its latest replies.
    session.switch_branch(first.id)
    assert conversation(session) == ["Capital of Spain?", "Madrid", "And of Italy?", "Rome, of course"]
    session.switch_branch(edited.id)
    assert conversation(session) == ["Capital of France?", "Paris"]
    assert len(store.all_messages(session.conversation_id or 0)) == 7  # nothing was lost


def test_a_new_version_stopped_before_its_first_word_shows_the_old_one_again(store: HistoryStore) -> None:
    session = ChatSession(store)
    session.add_user_message("Name a colour.", model="m", preset=GREEDY, context_size=2048)
    answer(session, "Blue")
    assert session.prepare_new_version() is True
    session.begin_reply()
    assert session.finish_reply("stopped") is None
    assert conversation(session) == ["Name a colour.", "Blue"]


def test_a_branch_ending_with_an_unanswered_question_is_answered(store: HistoryStore) -> None:
    session = ChatSession(store)
    assert session.prepare_new_version() is False  # nothing to answer yet
    session.add_user_message("Name a colour.", model="m", preset=GREEDY, context_size=2048)
    assert session.prepare_new_version() is True  # its reply failed: try again
    assert conversation(session) == ["Name a colour."]


def test_a_question_whose_reply_failed_at_once_is_retried_without_a_copy_or_a_dangling_reply(
    store: HistoryStore,
) -> None:
    session = ChatSession(store)
    session.add_user_message("Name a colour.", model="m", preset=GREEDY, context_size=2048)
    session.begin_reply()
    assert session.finish_reply("stopped", ReplyStats(finish_reason="failed")) is None  # nothing was said
    assert session.conversation_id is not None
    assert [m.role for m in store.messages(session.conversation_id)] == ["user"]

    assert session.prepare_new_version() is True  # Retry: the same question is answered where it stands
    answer(session, "Blue.")
    stored = store.messages(session.conversation_id)
    assert [(m.role, m.content) for m in stored] == [("user", "Name a colour."), ("assistant", "Blue.")]
    assert stored[1].parent_id == stored[0].id


def test_an_unsaved_conversation_has_no_versions(store: HistoryStore) -> None:
    session = ChatSession(None)
    session.add_user_message("Name a colour.", model="m", preset=GREEDY, context_size=2048)
    session.begin_reply()
    session.record("Blue")
    session.finish_reply("complete")
    assert session.prepare_new_version() is True  # the reply is written again in place
    assert conversation(session) == ["Name a colour."]
    with pytest.raises(UserError, match="not saved"):
        session.edit_question(1, "Name a fruit.")


def test_a_new_version_that_cannot_start_leaves_the_old_reply_on_screen(store: HistoryStore) -> None:
    session = ChatSession(store)
    session.add_user_message("Name a colour.", model="m", preset=GREEDY, context_size=2048)
    answer(session, "Blue")
    assert session.prepare_new_version() is True
    assert conversation(session) == ["Name a colour."]  # ready for the new version
    session.cancel_new_version()  # e.g. the engine refused the request
    assert conversation(session) == ["Name a colour.", "Blue"]
    session.add_user_message("Another?", model="m", preset=GREEDY, context_size=2048)
    assert conversation(session) == ["Name a colour.", "Blue", "Another?"]  # follows the reply, not beside it


def test_saved_states_are_keyed_by_the_conversations_uuid_which_is_never_reused(store: HistoryStore) -> None:
    from app.core.llm.saved_state_store import saved_state_key

    session = ChatSession(store)
    assert session.state_key is None  # nothing stored yet: nothing to save a state under
    session.add_user_message("Name a colour.", model="m", preset=GREEDY, context_size=2048)
    assert session.conversation_id is not None
    uuid = store.get_conversation(session.conversation_id).uuid
    assert session.state_key == saved_state_key(uuid)
