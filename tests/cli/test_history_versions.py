"""``llamadesk history`` and the versions of a conversation, as a person runs it: ``show`` and ``export`` print
the branch on screen, and with ``--message`` the version holding a message with the path last viewed below it,
the same path the window shows after going there; ``search`` names the message each hit is in."""

from __future__ import annotations

import json

import pytest

from app.core.history.store import HistoryStore
from tests.helpers.cli import run

FOLLOW_UP = ["Name a planet.", "Mars.", "How far is it from the Sun?", "About 228 million km."]


@pytest.fixture
def versions() -> dict[str, int]:
    """A first question edited after a follow-up was asked under it; its reply written again after the
    follow-up, which the person then went back to (so the newest path below the question is not the one last
    viewed); the edited question on screen."""
    with HistoryStore() as store:
        conversation = store.create_conversation()
        ids = {"conversation": conversation.id}
        ids["q1"] = store.add_message(conversation.id, "user", FOLLOW_UP[0]).id
        ids["a1"] = store.add_message(conversation.id, "assistant", FOLLOW_UP[1]).id
        store.add_message(conversation.id, "user", FOLLOW_UP[2])
        ids["a2"] = store.add_message(conversation.id, "assistant", FOLLOW_UP[3]).id
        store.set_branch_end(conversation.id, ids["q1"])
        store.add_message(conversation.id, "assistant", "Jupiter.")
        store.switch_branch(conversation.id, ids["a1"])
        ids["q1e"] = store.add_message(conversation.id, "user", "Name a moon.", parent_id=None).id
        store.add_message(conversation.id, "assistant", "Titan.")
    return ids


def printed_messages(markdown: str) -> list[str]:
    """The messages of a Markdown export, in order: the paragraph under each message's heading."""
    return [part.split("\n\n", 1)[1].strip() for part in markdown.split("\n## ")[1:]]


def test_show_prints_the_branch_on_screen_and_a_chosen_version_with_its_path(
    versions: dict[str, int],
) -> None:
    conversation = str(versions["conversation"])
    shown = run("history", "show", conversation)
    assert shown.returncode == 0, shown.stderr
    assert printed_messages(shown.stdout) == ["Name a moon.", "Titan."]
    assert "- Shown: the version on screen;" in shown.stdout

    chosen = run("history", "show", conversation, "--message", str(versions["q1"]))
    assert chosen.returncode == 0, chosen.stderr
    assert printed_messages(chosen.stdout) == FOLLOW_UP  # not "Jupiter.", the newest reply below it
    assert "- Shown: the version chosen;" in chosen.stdout
    assert printed_messages(run("history", "show", conversation).stdout) == ["Name a moon.", "Titan."]

    # The window goes there: the same path, which show and export now print as the branch on screen.
    with HistoryStore() as store:
        store.switch_branch(versions["conversation"], versions["q1"])
        in_window = [m.content for m in store.messages(versions["conversation"])]
    assert in_window == FOLLOW_UP
    assert printed_messages(run("history", "show", conversation).stdout) == FOLLOW_UP
    exported = run("history", "export", conversation, "--format", "md")
    assert printed_messages(exported.stdout) == FOLLOW_UP


def test_export_of_a_chosen_version(versions: dict[str, int]) -> None:
    conversation = str(versions["conversation"])
    result = run("history", "export", conversation, "--message", str(versions["q1"]), "--format", "json")
    assert result.returncode == 0, result.stderr
    [exported] = json.loads(result.stdout)["conversations"]
    assert exported["current_message"] == versions["a2"]
    assert len(exported["messages"]) == 7  # the whole tree, with the chosen version on screen
    markdown = run("history", "export", conversation, "--message", str(versions["q1"]))
    assert printed_messages(markdown.stdout) == FOLLOW_UP
    edited = run("history", "export", conversation, "--message", str(versions["q1e"]))
    assert printed_messages(edited.stdout) == ["Name a moon.", "Titan."]


def test_search_names_the_message_and_show_opens_its_version(versions: dict[str, int]) -> None:
    found = run("history", "search", "Sun")
    assert found.returncode == 0, found.stderr
    question = next(m for m in json_messages(versions) if m["content"] == FOLLOW_UP[2])
    assert f"message {question['id']}:" in found.stdout
    assert "--message N" in found.stderr
    shown = run("history", "show", str(versions["conversation"]), "--message", str(question["id"]))
    assert printed_messages(shown.stdout) == FOLLOW_UP


def json_messages(versions: dict[str, int]) -> list[dict[str, object]]:
    exported = run("history", "export", str(versions["conversation"]), "--format", "json")
    messages: list[dict[str, object]] = json.loads(exported.stdout)["conversations"][0]["messages"]
    return messages


@pytest.mark.parametrize(
    ("arguments", "sentence"),
    [
        (("show", "{conversation}", "--message", "4242"), "There is no message 4242 in conversation"),
        (("export", "--message", "{q1}"), "Give the conversation's number with --message"),
    ],
)
def test_a_wrong_message_is_one_sentence_and_exit_1(
    versions: dict[str, int], arguments: tuple[str, ...], sentence: str
) -> None:
    result = run("history", *(argument.format(**versions) for argument in arguments))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and sentence in result.stderr
