"""ChatKit's server protocol answered by Keel workflows (``openai-chatkit``'s :class:`ChatKitServer`).

A ChatKit front end posts JSON requests to one endpoint (``/chatkit``); the ``chatkit``
package parses them, calls the :class:`~chatkit.store.Store` (here
:class:`~keel.operate.server.chatkit_store.KeelChatKitStore`) and, for a new user message,
:meth:`KeelChatKitServer.respond`, whose events go back as Server-Sent Events.

**Which workflow answers.** A thread is bound to one workflow when it is created, chosen
by, in order: the request's ``metadata.workflow``, the ``X-Keel-Workflow`` header or the
``?workflow=`` query parameter of the endpoint URL, ``workflow`` under ``[chatkit]`` in
keel.toml (or ``KEEL_CHATKIT_WORKFLOW``), and finally the only published workflow, if
there is exactly one. Later messages in the thread go to the same workflow (its latest
version).

**A turn.** The conversation so far becomes the run's input as ``{"messages": [...]}``
(the chat-history convention of :mod:`keel.operate.server.routes_openai`), or, for a
workflow whose Start node has an object ``input_schema``, the message parsed as JSON.
While the run goes, each File search, Agent, Guardrails or MCP step shows as a progress
update; then the answer arrives as an assistant message (its ``sources`` as annotations).
A run that stops at a Human approval shows a card with Approve / Reject buttons when the
thread's user may decide it (the node says ``allow_requester: true``, or the caller is an
approver key that did not start the run; the rule is
:func:`~keel.operate.server.auth.authorize_decision`), else a card that waits for an
approver; pressing a button answers the approval (``threads.custom_action``, checked by the
same rule) and the run continues in the same stream. A failed run answers with one line saying why, and how to fix it when Keel knows
(e.g. no model configured).

**Widgets.** An Agent node with a ``widget`` (docs/widgets.md) shows its structured answer as
that widget, one widget item per step, before the run's answer; the answer itself is left out
when it is that same data. A button or form in such a widget sends its action back
(``threads.custom_action``): if the widget declares that action, the thread's workflow runs
again with it as the turn's input (:func:`~keel.operate.server.chatkit_widgets.action_input`),
in the same stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from chatkit.errors import CustomStreamError
from chatkit.server import ChatKitServer
from chatkit.types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    FileSource,
    ProgressUpdateEvent,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
    WidgetItem,
)

from keel.errors import ConfigError, KeelError, UserError
from keel.operate.server.auth import authorize_decision
from keel.operate.server.chatkit_store import ChatContext, KeelChatKitStore
from keel.operate.server.chatkit_widgets import (
    APPROVAL_ACTION,
    action_input,
    approval_card,
    approval_of,
    decided_card,
    output_widget,
)
from keel.operate.server.errors import ApiError
from keel.operate.server.runner import AnswerTokens
from keel.safeload import load_toml
from keel.secrets import scrub
from keel.workflows import RunResult, WorkflowError
from keel.workflows.widgets import action_allowed, run_widgets, widget_origin

__all__ = ["KeelChatKitServer", "NoWorkflowError", "answer_text", "default_workflow"]

_PROGRESS = {
    "file_search": ("search", "Searching the documents…"),
    "agent": ("sparkle", "Writing an answer…"),
    "guardrails": ("check-circle", "Checking…"),
    "mcp": ("bolt", "Calling a tool…"),
}
_ANSWER_KEYS = ("answer", "output_text", "text", "message", "reply", "content")
_NO_MODEL_MARKERS = ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "no API key", "api key is not set", "credentials")


def _delta(message: AssistantMessageItem, text: str) -> ThreadItemUpdatedEvent:
    """More words of ``message``'s text."""
    return ThreadItemUpdatedEvent(item_id=message.id, update=AssistantMessageContentPartTextDelta(
        content_index=0, delta=text))


class NoWorkflowError(UserError):
    """No workflow was named for a new ChatKit thread and none could be chosen."""


def default_workflow() -> str | None:
    """``KEEL_CHATKIT_WORKFLOW``, else ``workflow`` under ``[chatkit]`` in ./keel.toml, else None."""
    env = os.environ.get("KEEL_CHATKIT_WORKFLOW")
    if env:
        return env
    path = Path("keel.toml")
    if not path.is_file():
        return None
    try:
        table = load_toml(path.read_text(encoding="utf-8"), where=str(path)).get("chatkit", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: {e}", hint="fix the TOML syntax (https://toml.io)") from None
    value = table.get("workflow") if isinstance(table, dict) else None
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{path}: [chatkit] workflow must be a string", hint='e.g. workflow = "support"')
    return value


def answer_text(output: Any) -> tuple[str, list[str]]:
    """What a workflow's output says to a person, and the sources it cites.

    A string is the answer; an object's ``answer`` (or ``output_text``, ``text``,
    ``message``, ``reply``, ``content``) string is, with its ``sources`` list; anything
    else is shown as JSON.
    """
    if isinstance(output, str):
        return output, []
    if isinstance(output, dict):
        text = next((output[k] for k in _ANSWER_KEYS if isinstance(output.get(k), str)), None)
        if text is not None:
            sources = [s if isinstance(s, str) else json.dumps(s, ensure_ascii=False)
                       for s in output.get("sources") or [] if s]
            return text, list(dict.fromkeys(sources))
    return "```json\n" + json.dumps(output, ensure_ascii=False, indent=2) + "\n```", []


def _failure_text(error: str | None, workflow: str, run_id: str) -> str:
    """One line for a person: why the run failed, and the fix when Keel knows it (stored as a thread
    item: no secrets)."""
    error = scrub(error) if error else "unknown error"
    if isinstance(error, str) and any(m.lower() in error.lower() for m in _NO_MODEL_MARKERS):
        return (f"No model is set up for workflow {workflow!r} yet: export OPENAI_API_KEY=sk-... and restart "
                f"`keel up` (or `keel serve`), or use a local model: {_local_model_fix()}.")
    return f"Sorry, workflow {workflow!r} failed (run {run_id}): {error}"


def _local_model_fix() -> str:
    """How to switch to a local model, runnable from wherever the person's terminal is: the
    server's folder by its absolute path when it is a project ``keel up`` made or reuses."""
    import shlex

    here = Path.cwd()
    if (here / "workflow.yaml").is_file() and (here / "keel.toml").is_file():
        return f"`keel up {shlex.quote(str(here))} --model ollama:llama3.2`"
    return ("point the workflow's model alias at one in the keel.toml of the folder the server runs in "
            '([models] ALIAS = "ollama:llama3.2")')


def _user_text(item: UserMessageItem) -> str:
    parts = [c.text for c in item.content if getattr(c, "text", None)]
    text = "\n".join(parts).strip()
    if item.quoted_text:
        text = f"> {item.quoted_text}\n\n{text}"
    return text


class KeelChatKitServer(ChatKitServer[ChatContext]):
    """ChatKit's protocol over Keel's runner (``services.runner``) and store."""

    def __init__(self, services: Any) -> None:
        super().__init__(KeelChatKitStore(services.store))
        self.services = services
        self.runner = services.runner
        self.kstore: KeelChatKitStore = self.store  # type: ignore[assignment]

    # -- choosing the workflow ------------------------------------------------------------

    def choose_workflow(self, requested: str | None) -> str:
        """The workflow a new thread talks to (see the module docstring); raises
        :class:`WorkflowNotFoundError` or :class:`NoWorkflowError`."""
        name = requested or default_workflow()
        if name:
            self.runner.version(name, None)  # raises WorkflowNotFoundError, with a hint
            return name
        published = [r["name"] for r in self.runner.versions.list()]
        if len(published) == 1:
            return published[0]
        raise NoWorkflowError(
            "no workflow chosen for this ChatKit thread" + (f" (published: {', '.join(published)})"
                                                            if published else " and none is published"),
            hint=("send metadata.workflow in the request, add ?workflow=NAME to the ChatKit URL, or set "
                  'workflow = "NAME" under [chatkit] in keel.toml') if published
            else "publish one: keel workflows publish workflow.yaml")

    def thread_workflow(self, thread: ThreadMetadata, context: ChatContext) -> str:
        name = self.kstore.thread_workflow(thread.id, context)
        if name is None:  # a thread created before any workflow was bound to it
            name = self.choose_workflow(context.workflow)
            self.kstore.set_thread_workflow(thread.id, name)
        return name

    def _thread_version(self, thread: ThreadMetadata, context: ChatContext) -> tuple[str, Any]:
        """The thread's workflow and its published version; a stream error naming the fix if none."""
        try:
            workflow = self.thread_workflow(thread, context)
            return workflow, self.runner.version(workflow, None)
        except (WorkflowError, NoWorkflowError) as e:
            raise CustomStreamError(f"{e.message} (fix: {e.hint})" if e.hint else e.message,
                                    allow_retry=False) from None

    # -- a turn -----------------------------------------------------------------------------

    async def respond(self, thread: ThreadMetadata, input_user_message: UserMessageItem | None,
                      context: ChatContext) -> AsyncIterator[ThreadStreamEvent]:
        if input_user_message is None:
            return
        workflow, version = self._thread_version(thread, context)
        if not thread.title:
            text = _user_text(input_user_message)
            thread.title = text[:60] + ("…" if len(text) > 60 else "")
        if thread.metadata.get("workflow") != workflow:  # stored with the thread (ChatKit keeps metadata server-side)
            thread.metadata = {**thread.metadata, "workflow": workflow}
        value = await self._run_input(thread, version, input_user_message, context)
        started = await self._start(version, value, context)
        async for event in self._follow(thread, started, version, context):
            yield event

    async def _run_input(self, thread: ThreadMetadata, version: Any, item: UserMessageItem,
                         context: ChatContext) -> Any:
        text = _user_text(item)
        if not text:  # an error event, not a run that cannot start (and a broken stream)
            raise CustomStreamError("the message is empty: write some text (fix: send a message with text)",
                                    allow_retry=False)
        start = next(n for n in version.spec.nodes if n.type == "start")
        schema = getattr(start, "input_schema", None)
        if schema:
            try:
                return json.loads(text)
            except ValueError:
                raise CustomStreamError(
                    f"workflow {version.name!r} takes JSON input matching {json.dumps(schema)}; "
                    "send the message as JSON", allow_retry=False) from None
        return {"messages": await self._history(thread, item, context) + [{"role": "user", "content": text}]}

    async def _history(self, thread: ThreadMetadata, current: UserMessageItem | None,
                       context: ChatContext) -> list[dict[str, str]]:
        """Earlier user and assistant messages of the thread, oldest first (the last 50); a widget
        output counts as the assistant's message, its data as JSON."""
        page = await self.store.load_thread_items(thread.id, None, 51, "desc", context)
        out = []
        for item in reversed(page.data):
            if current is not None and item.id == current.id:
                continue
            if isinstance(item, UserMessageItem):
                out.append({"role": "user", "content": _user_text(item)})
            elif isinstance(item, AssistantMessageItem):
                out.append({"role": "assistant", "content": "".join(c.text for c in item.content)})
            elif isinstance(item, WidgetItem) and widget_origin(item.widget) is not None:  # a widget output:
                out.append({"role": "assistant", "content": item.copy_text or ""})  # its data, as JSON
        return [m for m in out if m["content"]][-50:]

    async def _start(self, version: Any, value: Any, context: ChatContext) -> Any:
        caller = context.caller
        try:
            if caller is not None:
                caller.allow(version.name)
                self.services.budgets.check(caller.key, caller.end_user)
            return await self.runner.start(version, value, key=getattr(caller, "key", None),
                                           end_user=getattr(caller, "end_user", None),
                                           provider_key=getattr(caller, "provider_key", None),
                                           stream_text=bool(self.runner.answer_nodes(version)))
        except ApiError as e:
            raise CustomStreamError(f"{e.message} (fix: {e.hint})" if e.hint else e.message,
                                    allow_retry=e.status == 429) from None
        except KeelError as e:
            raise CustomStreamError(f"{e.message} (fix: {e.hint})" if e.hint else e.message,
                                    allow_retry=False) from None

    async def _follow(self, thread: ThreadMetadata, started: Any, version: Any,
                      context: ChatContext) -> AsyncIterator[ThreadStreamEvent]:
        """Progress while the run goes, the answer as it is written (when an Agent node writes
        it, see :mod:`keel.workflows.answer`), then what the run came to."""
        workflow = version.name
        tokens = AnswerTokens(self.runner.answer_nodes(version))
        message: AssistantMessageItem | None = None
        async for event in self.runner.events(started):
            piece = tokens.feed(event)
            if piece:
                if message is None:
                    message = self._new_message(thread, context)
                    for e in self._open(message):
                        yield e
                yield _delta(message, piece)
            elif event.get("kind") == "node_started" and event.get("node_type") in _PROGRESS:
                icon, text = _PROGRESS[event["node_type"]]
                yield ProgressUpdateEvent(icon=icon, text=text)
        if message is not None:  # what the client shows so far
            message = message.model_copy(update={"content": [AssistantMessageContent(text=tokens.sent)]})
        try:
            result: RunResult = await started.task
        except KeelError as e:  # e.g. no key for the model's provider: the run could not go on
            error = f"{e.message} ({e.hint})" if e.hint else e.message
            async for event in self._message(thread, _failure_text(error, workflow, started.run_id), [], context,
                                             streamed=message):
                yield event
            return
        async for event in self._outcome(thread, result, workflow, context, streamed=message):
            yield event

    async def _outcome(self, thread: ThreadMetadata, result: RunResult, workflow: str, context: ChatContext,
                       streamed: AssistantMessageItem | None = None, after: int = -1
                       ) -> AsyncIterator[ThreadStreamEvent]:
        """What the run came to; ``after``: the step up to which its widgets were shown already."""
        if context.request_state is not None:  # the access log's: a failed run is an error on the dashboard
            context.request_state.run_id, context.request_state.run_status = result.run_id, result.status
        widgets = await asyncio.to_thread(self._widgets, result.run_id, after) \
            if result.status in ("succeeded", "waiting") else []
        if result.status == "waiting" and result.approval is not None:
            if streamed is not None:  # words written before a tool call that waits for a person
                text = "".join(c.text for c in streamed.content)
                async for event in self._message(thread, text, [], context, streamed=streamed):
                    yield event
            for w in widgets:
                yield ThreadItemDoneEvent(item=self._widget_item(thread, w, context))
            a = result.approval
            yield ThreadItemDoneEvent(item=WidgetItem(
                id=self.store.generate_item_id("message", thread, context), thread_id=thread.id,
                created_at=datetime.now(), widget=approval_card(a.id, a.message, workflow,
                                                                actionable=self._may_decide(a, context)),
                copy_text=f"Waiting for approval: {a.message}"))
            return
        for w in widgets:
            yield ThreadItemDoneEvent(item=self._widget_item(thread, w, context))
        if result.status == "succeeded" and widgets and streamed is None \
                and any(result.output in (w["data"], w["output"]) for w in widgets):
            return  # the answer is the data the widget shows
        if result.status == "succeeded":
            text, sources = answer_text(result.output)
        else:
            text, sources = _failure_text(result.error, workflow, result.run_id), []
        async for event in self._message(thread, text, sources, context, streamed=streamed):
            yield event

    def _widgets(self, run_id: str, after: int = -1) -> list[dict[str, Any]]:
        """The widgets of ``run_id``'s steps after step ``after`` (docs/widgets.md)."""
        run = self.runner.runs.get(run_id, prefix=False)
        spec = self.runner.versions.get(run.workflow, run.version).spec
        if not any(getattr(n, "widget", None) is not None for n in spec.nodes):
            return []
        steps = {s.seq: s for s in self.runner.runs.steps(run_id) if s.seq > after}
        found = run_widgets(spec, list(steps.values()))
        for w in found:  # the node's whole output too: an End node may pass it on as it is
            w["output"] = next((s.output for s in steps.values() if s.node_id == w["node_id"]), None)
        return found

    def _last_step(self, run_id: str) -> int:
        return max((s.seq for s in self.runner.runs.steps(run_id)), default=-1)

    def _widget_item(self, thread: ThreadMetadata, w: dict[str, Any], context: ChatContext) -> WidgetItem:
        return WidgetItem(id=self.store.generate_item_id("message", thread, context), thread_id=thread.id,
                          created_at=datetime.now(), widget=output_widget(w["widget"]),
                          copy_text=json.dumps(w["data"], ensure_ascii=False))

    def _new_message(self, thread: ThreadMetadata, context: ChatContext) -> AssistantMessageItem:
        return AssistantMessageItem(id=self.store.generate_item_id("message", thread, context),
                                    thread_id=thread.id, created_at=datetime.now(), content=[])

    @staticmethod
    def _open(item: AssistantMessageItem) -> list[ThreadStreamEvent]:
        return [ThreadItemAddedEvent(item=item), ThreadItemUpdatedEvent(
            item_id=item.id, update=AssistantMessageContentPartAdded(
                content_index=0, content=AssistantMessageContent(text="", annotations=[])))]

    async def _message(self, thread: ThreadMetadata, text: str, sources: list[str], context: ChatContext,
                       streamed: AssistantMessageItem | None = None) -> AsyncIterator[ThreadStreamEvent]:
        """An assistant message, streamed as ChatKit streams one: added, text, annotations, done.

        ``streamed``: the message whose words were already sent as the model wrote them; its
        ``content_part.done`` carries the whole answer, which is what the client keeps."""
        item = streamed
        if item is None:
            item = self._new_message(thread, context)
            for e in self._open(item):
                yield e
            yield _delta(item, text)
        annotations = [Annotation(source=FileSource(title=s, filename=s), index=i + 1) for i, s in enumerate(sources)]
        content = AssistantMessageContent(text=text, annotations=annotations)
        yield ThreadItemUpdatedEvent(item_id=item.id, update=AssistantMessageContentPartDone(
            content_index=0, content=content))
        yield ThreadItemDoneEvent(item=item.model_copy(update={"content": [content]}))

    # -- approvals ---------------------------------------------------------------------------

    def _may_decide(self, approval: Any, context: ChatContext) -> bool:
        if context.caller is None:
            return True
        try:
            authorize_decision(context.caller, approval, self.runner.runs, self.runner.versions)
        except ApiError:
            return False
        return True

    async def action(self, thread: ThreadMetadata, action: Any, sender: WidgetItem | None,
                     context: ChatContext) -> AsyncIterator[ThreadStreamEvent]:
        if action.type != APPROVAL_ACTION:
            async for event in self._widget_action(thread, action, sender, context):
                yield event
            return
        payload = action.payload if isinstance(action.payload, dict) else {}
        # The approval id is read from the stored widget, never trusted from the client alone.
        approval_id = approval_of(sender.widget) if sender is not None else None
        if approval_id is None or payload.get("approval_id") != approval_id:
            raise CustomStreamError("this action does not belong to an approval card of this thread",
                                    allow_retry=False)
        approved = bool(payload.get("approved"))
        caller = context.caller
        workflow = self.thread_workflow(thread, context)
        try:
            if caller is not None:
                caller.allow(workflow)
                approval = self.runner.runs.approval(approval_id, prefix=False)
                if approval is not None:  # the requester may not decide unless the node allows it
                    authorize_decision(caller, approval, self.runner.runs, self.runner.versions)
            by = caller.identity("chatkit") if caller is not None else "chatkit"
            approval = self.runner.runs.approval(approval_id, prefix=False)
            shown = await asyncio.to_thread(self._last_step, approval.run_id) if approval is not None else -1
            result = await self.runner.answer(approval_id, approved=approved, by=by,
                                              comment=None, key=getattr(caller, "key", None),
                                              end_user=getattr(caller, "end_user", None))
        except ApiError as e:
            raise CustomStreamError(e.message, allow_retry=False) from None
        except KeelError as e:
            raise CustomStreamError(f"{e.message} (fix: {e.hint})" if e.hint else e.message,
                                    allow_retry=False) from None
        assert sender is not None
        yield ThreadItemReplacedEvent(item=sender.model_copy(update={"widget": decided_card(sender.widget, approved)}))
        async for event in self._outcome(thread, result, workflow, context, after=shown):
            yield event

    async def _widget_action(self, thread: ThreadMetadata, action: Any, sender: WidgetItem | None,
                             context: ChatContext) -> AsyncIterator[ThreadStreamEvent]:
        """A button or form of a widget output: the thread's workflow runs with it (docs/widgets.md)."""
        payload = action.payload if isinstance(action.payload, dict) else {}
        origin = widget_origin(sender.widget) if sender is not None else None
        # What the widget declares, read from the stored item, never from the client alone.
        if origin is None or not action_allowed(sender.widget, action.type, payload):  # type: ignore[union-attr]
            raise CustomStreamError(f"action {action.type!r} does not belong to a widget of this thread",
                                    allow_retry=False)
        _, version = self._thread_version(thread, context)
        start = next(n for n in version.spec.nodes if n.type == "start")
        history = [] if getattr(start, "input_schema", None) else await self._history(thread, None, context)
        value = action_input(action.type, payload, origin, history, structured=bool(getattr(start, "input_schema",
                                                                                              None)))
        started = await self._start(version, value, context)
        async for event in self._follow(thread, started, version, context):
            yield event

