"""Lists keep to the caller's workflows in SQL, before ``LIMIT`` (issue 13, review of findings
1-3): filtered after it, ``GET /v1/runs`` and ``/ui/api/runs`` gave a key scoped to some
workflows (an admin key, a client token narrowed to one workflow) an empty list as soon as
``limit`` newer runs of other workflows existed. On the shared real ``keel serve``."""

from __future__ import annotations

import httpx

from tests.operate.conftest import Server, create_key


def _call(serve: Server, method: str, path: str, key: str, user: str | None = None, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **({"X-Keel-User": user} if user else {})}
    r = httpx.request(method, serve.url + path, headers=headers, timeout=60, **kw)
    assert r.status_code == 200, (path, r.text)
    return r


def _start(serve: Server, key: str, workflow: str, n: int, user: str | None = None) -> list[str]:
    return [_call(serve, "POST", f"/v1/workflows/{workflow}/runs", key, user, json={"input": f"{workflow} {i}"}
                  ).json()["id"] for i in range(n)]


def test_a_key_scoped_to_one_workflow_lists_its_runs_behind_newer_runs_of_another(serve: Server) -> None:
    starter = create_key(serve.home, "lists-starter", "--workflow", "*")
    admin_a = create_key(serve.home, "lists-admin-a", "--workflow", "echo3", "--admin")
    mine = _start(serve, starter, "echo3", 2)
    _start(serve, starter, "other", 10)  # newer, and out of admin_a's scope

    listed = _call(serve, "GET", "/v1/runs?limit=5", admin_a).json()["data"]
    assert [r["id"] for r in listed[:2]] == mine[::-1], listed
    assert {r["workflow"] for r in listed} == {"echo3"}  # earlier tests' echo3 runs may follow
    ui = _call(serve, "GET", "/ui/api/runs?limit=5", admin_a).json()["runs"]
    assert [r["id"] for r in ui[:2]] == mine[::-1], ui
    assert {r["workflow"] for r in ui} == {"echo3"}
    # A request's own filters still apply within the scope.
    done = _call(serve, "GET", "/v1/runs?limit=5&status=succeeded&workflow=echo3", admin_a).json()["data"]
    assert [r["id"] for r in done[:2]] == mine[::-1]

def test_a_client_token_for_one_workflow_lists_its_users_runs_behind_newer_ones_of_another(serve: Server) -> None:
    backend = create_key(serve.home, "lists-backend", "--workflow", "echo3", "--workflow", "other")
    mine = _start(serve, backend, "echo3", 2, user="carol")
    _start(serve, backend, "other", 10, user="carol")  # the same key and user, the token's other workflow
    minted = _call(serve, "POST", "/v1/chatkit/sessions", backend, json={"user": "carol", "workflow": "echo3"})
    token = minted.json()["client_secret"]

    listed = _call(serve, "GET", "/v1/runs?limit=5", token).json()["data"]
    assert [r["id"] for r in listed] == mine[::-1], listed
    ui = _call(serve, "GET", "/ui/api/runs?limit=5", token).json()["runs"]
    assert [r["id"] for r in ui] == mine[::-1], ui
    # The key itself, for carol, sees both workflows' runs: the newest five are the other's.
    assert {r["workflow"] for r in _call(serve, "GET", "/v1/runs?limit=5", backend, "carol").json()["data"]} == {
        "other"}


def test_an_approver_scoped_to_one_workflow_lists_only_its_workflows_approvals(serve: Server) -> None:
    starter = create_key(serve.home, "lists-asker", "--workflow", "approve", "--workflow", "confirm")
    approver = create_key(serve.home, "lists-approver", "--workflow", "approve", "--approver")
    asked = _call(serve, "POST", "/v1/workflows/approve/runs", starter, json={"input": "order 5"}).json()
    other = _call(serve, "POST", "/v1/workflows/confirm/runs", starter, json={"input": "order 6"}).json()
    pending = _call(serve, "GET", "/v1/approvals", approver).json()["data"]
    ids = [a["id"] for a in pending]
    assert asked["approval"]["id"] in ids and other["approval"]["id"] not in ids
    assert {a["workflow"] for a in pending} == {"approve"}
    # The requester (no role) lists its own runs' approvals, of both its workflows.
    own = [a["id"] for a in _call(serve, "GET", "/v1/approvals", starter).json()["data"]]
    assert asked["approval"]["id"] in own and other["approval"]["id"] in own
