"""Errors the server answers with: one JSON shape for every 4xx and 5xx.

``{"error": {"type", "code", "message", "field", "param", "hint"}}`` — ``message`` says
what was wrong, ``field`` where (a path into the request body, a header or a URL part;
``param`` is the same, under the name OpenAI's clients read) and ``hint`` what to do.
No response ever carries a stack trace.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel.errors import KeelError, ProviderError, StoreError, UserError
from keel.secrets import scrub
from keel.workflows import ApprovalError, RunNotFoundError, WorkflowNotFoundError

__all__ = ["ApiError", "ErrorBody", "ErrorDetail", "install_error_handlers"]


class ErrorDetail(BaseModel):
    type: str
    """``invalid_request_error``, ``authentication_error``, ``permission_error``, ``not_found_error``,
    ``rate_limit_error``, ``request_too_large``, ``upstream_error``, ``server_error``."""
    code: str | None = None
    message: str
    field: str | None = None
    param: str | None = None
    hint: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """Raise in a route to answer ``status`` with the JSON error body."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 field: str | None = None, hint: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.field = status, message, type, field
        self.hint, self.code, self.headers = hint, code, headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, type=self.type, field=self.field, hint=self.hint,
                              code=self.code, headers=self.headers)


def error_response(status: int, message: str, *, type: str = "invalid_request_error", field: str | None = None,
                   hint: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    # Every error answer is scrubbed of known secrets (a run's error can quote a provider's words).
    detail = ErrorDetail(type=type, code=code, message=scrub(message), field=field, param=field,
                         hint=scrub(hint) if hint else hint)
    return JSONResponse({"error": detail.model_dump()}, status_code=status, headers=headers)


_HINTS = {
    "missing": "add it",
    "json_invalid": "send valid JSON with Content-Type: application/json",
    "model_attributes_type": "send a JSON object",
    "dict_type": "send a JSON object",
    "string_type": "send a string",
    "int_parsing": "send an integer",
    "int_type": "send an integer",
    "bool_type": "send true or false",
    "bool_parsing": "send true or false",
    "list_type": "send a JSON array",
    "extra_forbidden": "remove it (see the OpenAPI spec at /openapi.json)",
    "literal_error": "use one of the values listed",
}


def _field(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        where = parts.pop(0)
        if where == "body" and not parts:
            return "body"
        if where != "body":
            return f"{where}.{'.'.join(map(str, parts))}"
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    err = exc.errors()[0]
    field = _field(tuple(err.get("loc", ())))
    kind = err.get("type", "")
    if kind == "json_invalid":
        return error_response(400, f"the request body is not valid JSON: {err.get('ctx', {}).get('error', '')}".strip(),
                              field="body", hint=_HINTS[kind], code=kind)
    msg = str(err.get("msg", "invalid value"))
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return error_response(422, f"{field}: {msg}{more}", field=field, code=kind,
                          hint=_HINTS.get(kind, "see the OpenAPI spec at /openapi.json for the expected shape"))


def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    kinds = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
             405: "invalid_request_error", 413: "request_too_large"}
    hints = {404: "see /docs for the routes", 405: "see /docs for the methods each route takes"}
    return error_response(exc.status_code, str(exc.detail), type=kinds.get(exc.status_code, "invalid_request_error"),
                          hint=hints.get(exc.status_code), headers=getattr(exc, "headers", None))


def keel_error(exc: KeelError) -> ApiError:
    """The HTTP answer for an error Keel raised on purpose."""
    if isinstance(exc, WorkflowNotFoundError | RunNotFoundError):
        return ApiError(404, exc.message, type="not_found_error", hint=exc.hint)
    if isinstance(exc, ApprovalError):
        return ApiError(409 if "already" in exc.message or "meanwhile" in exc.message else 404, exc.message,
                        type="invalid_request_error" if "already" in exc.message else "not_found_error",
                        hint=exc.hint)
    if isinstance(exc, StoreError):  # the store is unreachable or failing: nothing was done, retry
        return ApiError(503, f"the store is unavailable: {exc.message}", type="server_error", code="store_unavailable",
                        hint="retry in a few seconds; if it lasts, check the database (keel doctor)",
                        headers={"Retry-After": "5"})
    if isinstance(exc, UserError):
        return ApiError(400, exc.message, hint=exc.hint)
    if isinstance(exc, ProviderError):
        return ApiError(502, f"the model provider failed: {exc.message}", type="upstream_error", hint=exc.hint)
    return ApiError(502, exc.message, type="upstream_error", hint=exc.hint)


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the server's log (scrubbed of secrets), never to the client.
    return error_response(500, "the server failed to answer this request", type="server_error",
                          hint="retry; if it keeps failing, see the server's log and report the request id")


def install_error_handlers(app: Any) -> None:
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(ApiError, lambda _r, e: e.response())
    app.add_exception_handler(KeelError, lambda _r, e: keel_error(e).response())
