"""Deeply nested JSON bodies (issue 13, finding 7) are a 4xx naming the problem, never a 500,
on every route that reads JSON."""

from __future__ import annotations

import pytest

DEEP = b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
DEEP_WITH_ESCAPE = b'{"input": "\\ud83d\\ude00", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize("body", [DEEP, DEEP_WITH_ESCAPE], ids=["plain", "with-an-escape"])
@pytest.mark.parametrize("route", ["/v1/workflows/echo3/runs", "/v1/chat/completions", "/v1/responses",
                                   "/chatkit"])
def test_a_deeply_nested_body_is_a_4xx_not_a_500(serve, route: str, body: bytes) -> None:
    with serve.client() as c:
        r = c.post(route, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (route, r.status_code, r.text[:300])
    assert "Traceback" not in r.text

