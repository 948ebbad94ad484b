"""ChatKit threads, items and attachments in Keel's store (tables of migration ``0203_chatkit``).

The ``chatkit`` package defines the objects (``ThreadMetadata``, ``ThreadItem``,
``Attachment``) and the :class:`chatkit.store.Store` interface its server calls; this
module keeps them as JSON documents in SQLite, next to the runs that answered them.

Every call carries a :class:`ChatContext`. Its ``owner`` (the API key and end user of the
request) scopes what a caller sees: a thread belongs to whoever created it, and another
owner asking for it gets "not found", never someone else's conversation.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

from chatkit.store import NotFoundError, Store
from chatkit.types import Attachment, Page, ThreadItem, ThreadMetadata
from pydantic import TypeAdapter

from keel.store import SQLiteStore

__all__ = ["ChatContext", "KeelChatKitStore"]

_ITEM = TypeAdapter(ThreadItem)
_ATTACHMENT = TypeAdapter(Attachment)


@dataclass
class ChatContext:
    """What one ChatKit request carries into the store and into ``respond``."""

    owner: str = ""
    """Who may see the threads: ``key_id/end_user`` of the caller ('' in open mode)."""
    workflow: str | None = None
    """The workflow the request asked for (request ``metadata.workflow`` or ``?workflow=``)."""
    caller: Any = None
    """The authenticated caller (the server's auth object), used for budgets and scopes; None in open mode."""
    request_state: Any = None
    """The HTTP request's ``request.state``: a run that ends within the request leaves its ``run_id`` and
    ``run_status`` there for the access log (``serve_requests``); None outside ``keel serve``."""


def _item(doc: str) -> Any:
    # A stored widget validates into chatkit's named widget classes, which warn that building
    # them directly is deprecated: loading what was saved is not building, so stay quiet.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _ITEM.validate_json(doc)


def _page_size(limit: Any) -> int:
    """A page of 1 to 1000 rows, whatever a client asked for."""
    try:
        return max(1, min(int(limit), 1000))
    except (TypeError, ValueError, OverflowError):
        return 20


def _ts(value: Any) -> float:
    return value.timestamp() if hasattr(value, "timestamp") else time.time()


class KeelChatKitStore(Store[ChatContext]):
    """:class:`chatkit.store.Store` over Keel's SQLite store."""

    def __init__(self, store: SQLiteStore) -> None:
        self.db = store

    # -- threads -------------------------------------------------------------------------

    def _thread_row(self, thread_id: str, context: ChatContext) -> dict[str, Any]:
        rows = self.db.query("SELECT * FROM chatkit_threads WHERE id = ? AND owner = ?", (thread_id, context.owner))
        caller = context.caller
        if not rows or (rows[0]["workflow"] and caller is not None and not caller.may_see(rows[0]["workflow"])):
            # (a client token narrowed to one workflow does not see its user's threads of the others)
            raise NotFoundError(f"no ChatKit thread {thread_id}")
        return rows[0]

    async def load_thread(self, thread_id: str, context: ChatContext) -> ThreadMetadata:
        return ThreadMetadata.model_validate_json(self._thread_row(thread_id, context)["doc"])

    def thread_workflow(self, thread_id: str, context: ChatContext) -> str | None:
        """The workflow that answers ``thread_id`` (set when the thread was created)."""
        return self._thread_row(thread_id, context)["workflow"]

    def set_thread_workflow(self, thread_id: str, workflow: str) -> None:
        self.db.execute("UPDATE chatkit_threads SET workflow = ? WHERE id = ?", (workflow, thread_id))

    async def save_thread(self, thread: ThreadMetadata, context: ChatContext) -> None:
        doc = ThreadMetadata.model_validate(thread.model_dump()).model_dump_json()
        now = time.time()
        with self.db.transaction():
            changed = self.db.execute("UPDATE chatkit_threads SET doc = ?, updated_at = ? WHERE id = ? AND owner = ?",
                                      (doc, now, thread.id, context.owner))
            if not changed:
                self.db.execute("INSERT INTO chatkit_threads (id, owner, workflow, created_at, updated_at, doc)"
                                " VALUES (?, ?, ?, ?, ?, ?)",
                                (thread.id, context.owner, context.workflow, _ts(thread.created_at), now, doc))

    async def load_threads(self, limit: int, after: str | None, order: str,
                           context: ChatContext) -> Page[ThreadMetadata]:
        desc, limit = order != "asc", _page_size(limit)
        sql, params = "SELECT id, created_at, doc FROM chatkit_threads WHERE owner = ?", [context.owner]
        key = getattr(context.caller, "key", None)
        if key is not None and "*" not in key.scopes:  # only threads of workflows this caller may use
            sql += f" AND (workflow IS NULL OR workflow IN ({', '.join('?' * len(key.scopes))}))"
            params += list(key.scopes)
        if after:
            cursor = self._thread_row(after, context)
            sql += " AND (created_at, id) " + ("<" if desc else ">") + " (?, ?)"
            params += [cursor["created_at"], cursor["id"]]
        sql += " ORDER BY created_at {0}, id {0} LIMIT ?".format("DESC" if desc else "ASC")
        rows = self.db.query(sql, [*params, limit + 1])
        data = [ThreadMetadata.model_validate_json(r["doc"]) for r in rows[:limit]]
        return Page(data=data, has_more=len(rows) > limit, after=data[-1].id if data else None)

    async def delete_thread(self, thread_id: str, context: ChatContext) -> None:
        self._thread_row(thread_id, context)
        with self.db.transaction():
            self.db.execute("DELETE FROM chatkit_items WHERE thread_id = ?", (thread_id,))
            self.db.execute("DELETE FROM chatkit_threads WHERE id = ?", (thread_id,))

    # -- items ---------------------------------------------------------------------------

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: ChatContext) -> None:
        await self.save_item(thread_id, item, context)

    async def save_item(self, thread_id: str, item: ThreadItem, context: ChatContext) -> None:
        self._thread_row(thread_id, context)
        doc = _ITEM.dump_json(item).decode()
        with self.db.transaction():
            changed = self.db.execute("UPDATE chatkit_items SET doc = ? WHERE id = ? AND thread_id = ?",
                                      (doc, item.id, thread_id))
            if not changed:
                # Lock the thread's row first: on PostgreSQL (READ COMMITTED) two writers computing
                # MAX(seq) + 1 at once would give two items one place. (SQLite's transaction already
                # holds the only write lock.)
                self.db.execute("UPDATE chatkit_threads SET updated_at = updated_at WHERE id = ?", (thread_id,))
                seq = self.db.query("SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM chatkit_items WHERE thread_id = ?",
                                    (thread_id,))[0]["n"]
                self.db.execute("INSERT INTO chatkit_items (id, thread_id, seq, type, created_at, doc)"
                                " VALUES (?, ?, ?, ?, ?, ?)",
                                (item.id, thread_id, seq, item.type, _ts(item.created_at), doc))

    async def load_thread_items(self, thread_id: str, after: str | None, limit: int, order: str,
                                context: ChatContext) -> Page[ThreadItem]:
        self._thread_row(thread_id, context)
        desc, limit = order == "desc", _page_size(limit)
        sql, params = "SELECT id, seq, doc FROM chatkit_items WHERE thread_id = ?", [thread_id]
        if after:
            rows = self.db.query("SELECT seq FROM chatkit_items WHERE id = ? AND thread_id = ?", (after, thread_id))
            if not rows:
                raise NotFoundError(f"no item {after} in ChatKit thread {thread_id}")
            sql += " AND seq " + ("<" if desc else ">") + " ?"
            params.append(rows[0]["seq"])
        sql += f" ORDER BY seq {'DESC' if desc else 'ASC'} LIMIT ?"
        rows = self.db.query(sql, [*params, limit + 1])
        data = [_item(r["doc"]) for r in rows[:limit]]
        return Page(data=data, has_more=len(rows) > limit, after=data[-1].id if data else None)

    async def load_item(self, thread_id: str, item_id: str, context: ChatContext) -> ThreadItem:
        self._thread_row(thread_id, context)
        rows = self.db.query("SELECT doc FROM chatkit_items WHERE id = ? AND thread_id = ?", (item_id, thread_id))
        if not rows:
            raise NotFoundError(f"no item {item_id} in ChatKit thread {thread_id}")
        return _item(rows[0]["doc"])

    async def delete_thread_item(self, thread_id: str, item_id: str, context: ChatContext) -> None:
        self._thread_row(thread_id, context)
        self.db.execute("DELETE FROM chatkit_items WHERE id = ? AND thread_id = ?", (item_id, thread_id))

    # -- attachments (stored metadata only; Keel's workflows take text) -------------------

    async def save_attachment(self, attachment: Attachment, context: ChatContext) -> None:
        doc = _ATTACHMENT.dump_json(attachment).decode()
        self.db.execute("DELETE FROM chatkit_attachments WHERE id = ?", (attachment.id,))
        self.db.execute("INSERT INTO chatkit_attachments (id, owner, created_at, doc) VALUES (?, ?, ?, ?)",
                        (attachment.id, context.owner, time.time(), doc))

    async def load_attachment(self, attachment_id: str, context: ChatContext) -> Attachment:
        rows = self.db.query("SELECT doc FROM chatkit_attachments WHERE id = ? AND owner = ?",
                             (attachment_id, context.owner))
        if not rows:
            raise NotFoundError(f"no ChatKit attachment {attachment_id}")
        return _ATTACHMENT.validate_json(rows[0]["doc"])

    async def delete_attachment(self, attachment_id: str, context: ChatContext) -> None:
        self.db.execute("DELETE FROM chatkit_attachments WHERE id = ? AND owner = ?", (attachment_id, context.owner))
