"""A conversation as a tree (migration 0006): which messages make the branch on screen, the versions of a message
(its siblings: the messages with the same parent), and moving the branch on screen to another version.

Editing a question stores a sibling question; regenerating a reply stores a sibling reply; nothing is replaced.
The conversation remembers the newest message of the branch on screen (``current_leaf_id``); the branch is the
path from the first message to it. A child is always stored after its parent (the app writes a reply after
its question, an import inserts parents first, the migration links each message to the one before it), so a
branch read in id order is in conversation order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from app.core.history.records import BranchPosition

# The leaf of the branch on screen: the remembered one, or the newest message of a conversation that has none
# remembered (written by a caller that set no leaf).
_LEAF = (
    "SELECT coalesce(current_leaf_id, (SELECT max(id) FROM messages WHERE conversation_id = :conversation)) "
    "FROM conversations WHERE id = :conversation"
)
# The branch on screen, as the ids of its messages. UNION (not UNION ALL) ends the walk on a damaged file
# whose parents loop, instead of walking forever.
BRANCH_IDS = f"""WITH RECURSIVE branch(id) AS (
    {_LEAF}
    UNION
    SELECT m.parent_id FROM messages AS m JOIN branch ON m.id = branch.id
    WHERE m.parent_id IS NOT NULL AND m.conversation_id = :conversation
)"""


# At most :limit messages of the branch through :start, from :start up: a page of a long branch costs its own
# length, not the branch's.
BRANCH_PAGE_IDS = """WITH RECURSIVE page(id, depth) AS (
    SELECT :start, 1
    UNION ALL
    SELECT m.parent_id, page.depth + 1 FROM messages AS m JOIN page ON m.id = page.id
    WHERE m.parent_id IS NOT NULL AND m.conversation_id = :conversation AND page.depth < :limit
)"""


def current_leaf(connection: sqlite3.Connection, conversation_id: int) -> int | None:
    """The newest message of the branch on screen; None for a conversation without messages."""
    row = connection.execute(_LEAF, {"conversation": conversation_id}).fetchone()
    return None if row is None else row[0]


def set_current_leaf(connection: sqlite3.Connection, conversation_id: int, message_id: int | None) -> None:
    connection.execute(
        "UPDATE conversations SET current_leaf_id = ? WHERE id = ?", (message_id, conversation_id)
    )


def latest_leaf_below(connection: sqlite3.Connection, conversation_id: int, message_id: int) -> int:
    """The end of the latest path down from ``message_id``: at each step its newest child, so moving to a
    version of a message shows what followed that version most recently."""
    leaf = message_id
    seen = {leaf}
    while True:
        row = connection.execute(
            "SELECT max(id) FROM messages WHERE conversation_id = ? AND parent_id = ?",
            (conversation_id, leaf),
        ).fetchone()
        if row is None or row[0] is None or row[0] in seen:
            return leaf
        leaf = row[0]
        seen.add(leaf)


def positions(
    connection: sqlite3.Connection, conversation_id: int, messages: Iterable[tuple[int, int | None]]
) -> dict[int, BranchPosition]:
    """For each ``(message id, parent id)``, where it stands among its versions (only those with siblings)."""
    wanted = list(messages)
    parents = {parent for _id, parent in wanted}
    siblings: dict[int | None, list[int]] = {parent: [] for parent in parents}
    known = [parent for parent in parents if parent is not None]
    if known:
        placeholders = ", ".join("?" * len(known))
        for parent, message_id in connection.execute(
            f"SELECT parent_id, id FROM messages WHERE conversation_id = ? AND parent_id IN ({placeholders}) "
            "ORDER BY id",
            (conversation_id, *known),
        ):
            siblings[parent].append(message_id)
    if None in parents:
        siblings[None] = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM messages WHERE conversation_id = ? AND parent_id IS NULL ORDER BY id",
                (conversation_id,),
            )
        ]
    result = {}
    for message_id, parent in wanted:
        versions = tuple(siblings[parent])
        if len(versions) > 1 and message_id in versions:
            result[message_id] = BranchPosition(versions, versions.index(message_id))
    return result


def remove_from_tree(connection: sqlite3.Connection, message_id: int) -> None:
    """Before a message is deleted: its children move up to its parent, and a branch on screen that ended at
    it now ends at its parent, so nothing else of the tree is lost or left pointing at nothing."""
    row = connection.execute(
        "SELECT conversation_id, parent_id FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    if row is None:
        return
    conversation_id, parent_id = row
    connection.execute("UPDATE messages SET parent_id = ? WHERE parent_id = ?", (parent_id, message_id))
    connection.execute(
        "UPDATE conversations SET current_leaf_id = ? WHERE id = ? AND current_leaf_id = ?",
        (parent_id, conversation_id, message_id),
    )
