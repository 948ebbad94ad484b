"""``router:NAME``: a model string that routes each request to one of two models.

The policy is trained by ``keel router train`` from eval results (:mod:`keel.optimize.router`);
this provider only decides and delegates, so the call that answers is the chosen model's own
call: its retries, structured-output checks, ``model_calls`` row and trace span are the usual
ones, and ``response.model`` names the model that answered. The decision and its reason are
added to the tags of that call's ``model_calls`` rows (``router``, ``router.choice``,
``router.reason``), which carry the trace and span ids of the node that made the call, so
``keel runs show`` and the trace view show them next to the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from keel.errors import KeelError, StructuredOutputError, ToolCallError
from keel.models import _recording
from keel.models.base import Model, ModelRequest
from keel.models.types import Message, ResponseDone, StreamEvent, TextDelta

__all__ = ["RouterModel", "query_of"]

VERIFY_SCHEMA = {
    "type": "object",
    "properties": {"accept": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 300}},
    "required": ["accept", "reason"],
    "additionalProperties": False,
}
VERIFY_PROMPT = ("You check another assistant's answer. Accept it when it answers the request correctly and "
                 "completely; otherwise reject it. Reply with JSON: {\"accept\": true or false, \"reason\": \"...\"}.")


def query_of(request: ModelRequest) -> str:
    """What the router embeds: the user's last message."""
    users = [m.content for m in request.messages if m.role == "user"]
    return users[-1] if users else (request.messages[-1].content if request.messages else "")


@contextlib.contextmanager
def _tags(name: str, choice: str, reason: str) -> Iterator[None]:
    ctx = _recording.current_context()
    tags = {**(ctx.tags if ctx else {}), "router": name, "router.choice": choice, "router.reason": reason[:300]}
    new = _recording.CallContext(ctx.trace_id if ctx else None, ctx.span_id if ctx else None, tags)
    token = _recording._context.set(new)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # an async generator closed from another context
            _recording._context.reset(token)


class RouterModel(Model):
    provider = "router"

    def __init__(self, name: str, *, settings: Any = None) -> None:
        super().__init__(name)
        self._settings = settings
        self._store: Any = None
        self._models: dict[str, Model] = {}
        self.last_decision: Any = None
        """The last decision made (for tests and benchmarks)."""

    def policy(self) -> Any:
        from keel.optimize.router import load_policy
        from keel.store import open_store

        if self._store is None:
            self._store = open_store(self._settings.home) if self._settings is not None else open_store()
        return load_policy(self._store, self.name)

    def _model(self, model: str) -> Model:
        if model not in self._models:
            from keel.models.registry import get_model

            self._models[model] = get_model(model, settings=self._settings)
        return self._models[model]

    async def _attempt(self, request: ModelRequest) -> AsyncIterator[Any]:  # pragma: no cover - never used
        raise NotImplementedError("a router delegates whole calls")
        yield

    async def _run(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        policy = self.policy()
        spec = policy.spec
        if spec.policy == "cascade":
            async for event in self._cascade(spec, request):
                yield event
            return
        decision = policy.decide(query_of(request))
        self.last_decision = decision
        with _tags(spec.name, decision.choice, decision.reason):
            async for event in self._model(decision.model)._run(request):
                yield event

    async def _cascade(self, spec: Any, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        from keel.optimize.router import Decision

        weak = self._model(spec.weak)
        response = None
        try:
            with _tags(spec.name, "weak", "cascade: the weak model answers first"):
                async for event in weak._run(request):  # not streamed: the answer may be replaced
                    if isinstance(event, ResponseDone):
                        response = event.response
        except (StructuredOutputError, ToolCallError) as e:
            why = f"cascade: {spec.weak} broke the output contract ({e.message[:160]}); escalated to {spec.strong}"
        else:
            assert response is not None
            accept, verdict = await self._verify(spec, request, response.text)
            if accept:
                self.last_decision = Decision(spec.weak, "weak", f"cascade: {verdict}")
                if request.stream and response.text:
                    yield TextDelta(text=response.text)
                yield ResponseDone(response=response)
                return
            why = f"cascade: {verdict}; escalated to {spec.strong}"
        self.last_decision = Decision(spec.strong, "strong", why)
        with _tags(spec.name, "strong", why):
            async for event in self._model(spec.strong)._run(request):
                yield event

    async def _verify(self, spec: Any, request: ModelRequest, answer: str) -> tuple[bool, str]:
        if not spec.verifier:
            return True, "the weak answer kept the output contract (no verifier)"
        convo = "\n".join(f"{m.role}: {m.content}" for m in request.messages if m.role != "tool")
        try:
            with _tags(spec.name, "verifier", "cascade: checking the weak answer"):
                r = await self._model(spec.verifier).generate(
                    [Message.system(VERIFY_PROMPT), Message.user(f"Request:\n{convo}\n\nAnswer:\n{answer}")],
                    output_schema=VERIFY_SCHEMA)
        except KeelError as e:
            return False, f"the verifier {spec.verifier} failed ({e.message[:120]})"
        reason = str(r.parsed.get("reason", ""))[:200]
        return bool(r.parsed["accept"]), f"verifier {'accepted' if r.parsed['accept'] else 'rejected'}: {reason}"

    async def aclose(self) -> None:
        for m in self._models.values():
            await m.aclose()
