"""Conversation history in SQLite: ``store`` (HistoryStore, the owner of a connection), ``records`` (what it
returns), ``schema`` and ``database`` (named migrations; opening a file safely), ``search``, ``recorder`` (a reply
saved while it streams), ``attachments`` (documents stored with their text once) and ``export`` (JSON/Markdown,
import)."""
