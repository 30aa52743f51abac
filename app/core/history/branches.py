"""A conversation as a tree (migration 0006): which messages make the branch on screen, the versions of a message
(its siblings: the messages with the same parent), and moving the branch on screen to another version.

Editing a question stores a sibling question; regenerating a reply stores a sibling reply; nothing is replaced.
The conversation remembers the newest message of the branch on screen (``current_leaf_id``); the branch is the
path from the first message to it. A child is always stored after its parent (the app writes a reply after
its question, an import inserts parents first, the migration links each message to the one before it), so a
branch read in id order is in conversation order.

Each message also remembers which of its children was last on the branch on screen (``viewed_child_id``,
migration 0008), so moving to a version shows the path the person last viewed below it (their follow-up
questions), not merely the newest one; a version never viewed shows its newest path.
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
    """Make the branch on screen end at ``message_id``, and remember along it, for each message, the child the
    branch goes on with (``remember_branch``)."""
    row = connection.execute(
        "SELECT current_leaf_id FROM conversations WHERE id = ?", (conversation_id,)
    ).fetchone()
    before = None if row is None else row[0]
    connection.execute(
        "UPDATE conversations SET current_leaf_id = ? WHERE id = ?", (message_id, conversation_id)
    )
    if message_id is None or message_id == before:
        return
    # The branch on screen is always remembered whole, so the two everyday changes cost one row at most, not
    # a walk up a long branch: a message added to its end, and its end moved up one (a reply written again).
    if before is not None:
        parent = _parent(connection, conversation_id, message_id)
        if parent == before:
            _remember_choices(connection, [(before, message_id)])
            return
        if _parent(connection, conversation_id, before) == message_id:
            return
    remember_branch(connection, conversation_id, message_id)


def _parent(connection: sqlite3.Connection, conversation_id: int, message_id: int) -> int | None:
    row = connection.execute(
        "SELECT parent_id FROM messages WHERE id = ? AND conversation_id = ?", (message_id, conversation_id)
    ).fetchone()
    return None if row is None else row[0]


# The branch ending at :leaf, each message with its parent and the child it remembers. UNION ends the walk on
# a damaged file whose parents loop.
_PATH_UP = """WITH RECURSIVE path(id, parent, viewed) AS (
    SELECT id, parent_id, viewed_child_id FROM messages WHERE id = :leaf AND conversation_id = :conversation
    UNION
    SELECT m.id, m.parent_id, m.viewed_child_id FROM messages AS m JOIN path ON m.id = path.parent
    WHERE m.conversation_id = :conversation
) SELECT id, parent, viewed FROM path"""


def remember_branch(connection: sqlite3.Connection, conversation_id: int, leaf: int | None = None) -> None:
    """Remember, for each message of the branch ending at ``leaf`` (default: the branch on screen), that it goes
    on with the child on that branch; only the messages whose choice changed are written."""
    if leaf is None:
        leaf = current_leaf(connection, conversation_id)
        if leaf is None:
            return
    path = {
        message_id: (parent, viewed)
        for message_id, parent, viewed in connection.execute(
            _PATH_UP, {"leaf": leaf, "conversation": conversation_id}
        )
    }
    _remember_choices(
        connection,
        [
            (parent, message_id)
            for message_id, (parent, _viewed) in path.items()
            if parent in path and path[parent][1] != message_id
        ],
    )


def _remember_choices(connection: sqlite3.Connection, choices: Iterable[tuple[int, int]]) -> None:
    connection.executemany(
        "UPDATE messages SET viewed_child_id = ? WHERE id = ?", [(child, parent) for parent, child in choices]
    )


# The child a message goes on with: the one last on the branch on screen, while it is still one of its
# children; otherwise (never viewed, or moved by a deletion) its newest.
_NEXT_BELOW = """SELECT coalesce(
    (SELECT child.id FROM messages AS child
     WHERE child.id = here.viewed_child_id AND child.parent_id = here.id
       AND child.conversation_id = here.conversation_id),
    (SELECT max(id) FROM messages WHERE conversation_id = here.conversation_id AND parent_id = here.id)
) FROM messages AS here WHERE here.id = ? AND here.conversation_id = ?"""


def viewed_leaf_below(connection: sqlite3.Connection, conversation_id: int, message_id: int) -> int:
    """The end of the path last viewed below ``message_id``: at each step the child that was last on the
    branch on screen, or the newest child where none was, so moving to a version of a message shows what
    followed it when the person was last there (their follow-up included)."""
    leaf = message_id
    seen = {leaf}
    while True:
        row = connection.execute(_NEXT_BELOW, (leaf, conversation_id)).fetchone()
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
    # Its parent now goes on with the child it went on with (which moves up to the parent).
    connection.execute(
        "UPDATE messages SET viewed_child_id = (SELECT viewed_child_id FROM messages WHERE id = :gone) "
        "WHERE id = :parent AND viewed_child_id = :gone",
        {"gone": message_id, "parent": parent_id},
    )
    connection.execute("UPDATE messages SET parent_id = ? WHERE parent_id = ?", (parent_id, message_id))
    connection.execute(
        "UPDATE conversations SET current_leaf_id = ? WHERE id = ? AND current_leaf_id = ?",
        (parent_id, conversation_id, message_id),
    )
