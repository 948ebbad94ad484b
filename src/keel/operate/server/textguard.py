"""Refuse JSON bodies that carry text no store or answer can hold (issue 13, finding 6).

JSON may spell half of a UTF-16 surrogate pair (``"\\ud800"``); Python decodes it to a string
without a UTF-8 form, which then fails wherever it is written: the run's row, a log line, the
JSON answer. Every route is covered here, before any sees the body: a JSON body with such a
string gets 400 naming the field (``body.messages[0].content``). Runs out of
:class:`~keel.workflows.Engine` refuse such input too; this answers first, with the field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from keel.operate.server.errors import error_response
from keel.textcheck import lone_surrogate_at

__all__ = ["SurrogateGuard"]

_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A surrogate escape: the only way a lone surrogate gets into JSON text (UTF-8 cannot carry one)."""


class SurrogateGuard:
    """ASGI middleware: 400 for a JSON request body holding a lone surrogate; the rest passes."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        content_type = next((v for k, v in scope.get("headers", []) if k == b"content-type"), b"")
        if b"json" not in content_type.lower():
            await self.app(scope, receive, send)
            return
        messages, chunks = [], []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if _ESCAPE.search(body):
            try:
                bad = lone_surrogate_at(json.loads(body), "body")
            except (ValueError, RecursionError):
                bad = None  # not JSON, or nested past the parser's stack: the route says so (a 400)
            if bad is not None:
                response = error_response(
                    400, f"{bad} contains a lone UTF-16 surrogate (like \\ud800), which is not text", field=bad,
                    hint="send valid Unicode: a surrogate escape only as half of a pair (\\ud83d\\ude00)")
                await response(scope, receive, send)
                return

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
