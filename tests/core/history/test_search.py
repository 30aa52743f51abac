"""Searching the history: safe FTS5 queries, ranked hits with snippets, the filtered conversation list."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.core.history.search import fts_query
from app.core.history.store import HistoryStore


def test_fts_query_quotes_every_word() -> None:
    assert fts_query('capital "of" France') == '"capital" """of""" "France"'
    assert fts_query("fran", prefix_last=True) == '"fran"*'
    assert fts_query("f", prefix_last=True) == '"f"'  # one letter would match hundreds of words
    assert fts_query(" -- ( * ) ") is None


def test_list_is_newest_first_grouped_and_filterable(store: HistoryStore) -> None:
    first = store.create_conversation()
    store.add_message(first.id, "user", "Plan a trip to Lisbon")
    store.add_message(first.id, "assistant", "Start at the Alfama district.")
    second = store.create_conversation()
    store.add_message(second.id, "user", "Explain recursion")
    listed = store.list_conversations()
    assert [c.id for c in listed] == [second.id, first.id]
    assert [c.group for c in listed] == ["Today", "Today"]
    assert [c.title for c in listed] == ["Explain recursion", "Plan a trip to Lisbon"]
    assert store.count_conversations() == 2
    assert [c.id for c in store.list_conversations(limit=1, offset=1)] == [first.id]
    assert [c.id for c in store.list_conversations("lisb")] == [first.id]  # title, as typed
    assert [c.id for c in store.list_conversations("alfa")] == [first.id]  # a message's word, as a prefix
    assert store.list_conversations("nothing like this") == []
    tomorrow = datetime.now() + timedelta(days=8)
    assert {c.group for c in store.list_conversations(now=tomorrow)} == {"Older"}


def test_search_finds_a_word_from_an_old_message_with_a_marked_snippet(store: HistoryStore) -> None:
    old = store.create_conversation()
    store.add_message(old.id, "user", "What does a narwhal use its tusk for?")
    store.add_message(old.id, "assistant", "The narwhal's tusk is a sensory organ; a narwhal has one tusk.")
    for index in range(30):
        later = store.create_conversation()
        store.add_message(later.id, "user", f"Unrelated question number {index}")
    store.close()

    reopened = HistoryStore()
    hits = reopened.search("NARWHAL tusk")
    assert [hit.conversation_id for hit in hits] == [old.id, old.id]
    assert hits[0].role == "assistant"  # more occurrences: the better match comes first
    assert "«narwhal" in hits[0].snippet.lower() and "«tusk»" in hits[0].snippet
    assert hits[0].score <= hits[1].score
    assert reopened.search("narwhals") == []  # whole words, not prefixes


def test_search_skips_trashed_hits_even_when_they_rank_first(store: HistoryStore) -> None:
    live = store.create_conversation()
    store.add_message(
        live.id, "user", "A long message that mentions the quokka once among many other words here."
    )
    store.add_message(
        live.id, "user", "Another long message, and the quokka again, with plenty of other words."
    )
    for _ in range(20):
        trashed = store.create_conversation()
        store.add_message(trashed.id, "user", "quokka quokka")  # short and dense: ranks above the live ones
        store.delete_conversation(trashed.id)
    hits = store.search("quokka", limit=2)
    assert [hit.conversation_id for hit in hits] == [live.id, live.id]
    assert all("«quokka»" in hit.snippet for hit in hits)


def test_search_survives_query_syntax_typed_by_a_user(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", 'The "AND" operator, (OR) NEAR: star* here')
    for text in ['"AND', "(OR", "NEAR:", "star*", "- ^ :", "a AND OR NOT", "'"]:
        store.search(text)  # never an FTS syntax error
    assert len(store.search('"AND" (OR)')) == 1
    assert store.search("   ") == []
