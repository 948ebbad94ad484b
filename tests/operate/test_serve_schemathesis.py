"""schemathesis against the running server's own OpenAPI spec: no generated request,
valid or not, gets a 5xx. Bounded: a fixed number of examples per operation.

Two tests: the routes of ``keel serve`` itself (workflows API, OpenAI-compatible,
health), and the routers it mounts from other modules (UI, ChatKit), so a failure
says whose code answered 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.operate.conftest import Server

EXAMPLES_PER_OPERATION = 12
SERVE_TAGS = {"workflows", "openai", "health"}


def _fuzz(serve: Server, *, own: bool) -> None:
    schema = schemathesis.openapi.from_url(serve.url + "/openapi.json")
    operations = [op for op in (r.ok() for r in schema.get_all_operations())
                  if bool(set(op.definition.raw.get("tags", [])) & SERVE_TAGS) == own]
    assert len(operations) >= (10 if own else 1)
    failures: list[str] = []
    calls = 0
    for operation in operations:

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            response = case.call(base_url=serve.url, headers=serve.headers(), timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.body!r:.200} -> "
                                f"{response.status_code} {response.text[:300]}")
            else:
                assert "Traceback" not in response.text

        check()
    assert not failures, "\n".join(failures[:10])
    assert calls >= len(operations)


def test_no_5xx_from_generated_requests_to_serve_routes(serve: Server) -> None:
    _fuzz(serve, own=True)


def test_no_5xx_from_generated_requests_to_mounted_routers(serve: Server) -> None:
    """The UI's and ChatKit's routes, behind the same server and error handlers."""
    _fuzz(serve, own=False)
