"""The workflow spec: typed nodes and edges, written as YAML or JSON.

A workflow is a graph of nodes joined by edges. Each node has an ``id`` and a
``type`` from Agent Builder's vocabulary; each edge leaves a node through a
*port* (``next`` for most nodes, one per branch for If/else, ``approved`` /
``rejected`` for Human approval, ...) and enters another node::

    name: support
    nodes:
      - {id: start, type: start, state: {tries: 0}}
      - id: classify
        type: agent
        model: openai:gpt-4.1-mini
        instructions: Classify the customer's message.
        output_schema: {type: object, properties: {kind: {enum: [refund, other]}},
                        required: [kind], additionalProperties: false}
      - id: route
        type: if_else
        branches: [{name: refund, condition: 'input.output_parsed.kind == "refund"'}]
      - {id: done, type: end}
    edges:
      - {from: start, to: classify}
      - {from: classify, to: route}
      - {from: route, port: refund, to: done}
      - {from: route, port: else, to: done}

Variables, available to every CEL expression and ``{{ ... }}`` template:

``input_as_text``  the run's input as text
``workflow.input`` the run's input as given (text or JSON)
``input``          the previous node's output: ``input.output_text``, ``input.output_parsed``
``nodes.<id>``     any earlier node's output, e.g. ``nodes.classify.output_parsed.kind``
``state.<name>``   workflow state, declared on the Start node, changed by Set state

New fields are appended, never reordered. ``docs/workflow.schema.json`` is
generated from these models (``keel workflows schema``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "NODE_TYPES",
    "AgentNode",
    "Branch",
    "Edge",
    "EndNode",
    "FileSearchNode",
    "GuardrailsNode",
    "HumanApprovalNode",
    "IfElseNode",
    "McpNode",
    "Node",
    "NoteNode",
    "SetStateNode",
    "StartNode",
    "TransformNode",
    "WhileNode",
    "WorkflowSpec",
]

_ID = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _NodeBase(_Spec):
    id: str = Field(pattern=_ID)
    """Unique within the workflow; letters, digits and ``_`` (it is a CEL name: ``nodes.<id>``)."""
    title: str | None = None
    """Label shown on a canvas."""

    #: Ports this node's outgoing edges may use (``error`` is allowed on nodes that can fail).
    ports: ClassVar[tuple[str, ...]] = ("next",)
    can_fail: ClassVar[bool] = False

    def allowed_ports(self) -> tuple[str, ...]:
        return (*self.ports, "error") if self.can_fail else self.ports


class StartNode(_NodeBase):
    """Where every run begins. Its output is the run's input."""

    type: Literal["start"] = "start"
    state: dict[str, Any] = Field(default_factory=dict)
    """Initial workflow state variables and their values, read as ``state.<name>``."""
    input_schema: dict[str, Any] | None = None
    """Optional JSON schema the run's input must satisfy (then the input is JSON)."""


class AgentNode(_NodeBase):
    """Ask a model, letting it call tools in a loop, optionally with a strict output schema."""

    type: Literal["agent"] = "agent"
    model: str
    """Model string, e.g. ``openai:gpt-4.1-mini``, ``ollama:llama3.2``, ``scripted:bot``, or an alias."""
    instructions: str = ""
    """System instructions; ``{{ expr }}`` is replaced by the value of a CEL expression."""
    input: str = "input.output_text"
    """CEL expression for the user message sent to the model (default: the previous node's text)."""
    tools: list[str] = Field(default_factory=list)
    """Python function tools: ``package.module:function`` import paths, or names registered
    with :func:`keel.workflows.function_tool`."""
    max_turns: int = Field(default=10, ge=1, le=100)
    """Model calls allowed in the tool-calling loop before the node fails."""
    output_schema: dict[str, Any] | None = None
    """JSON schema for a strict structured reply, available as ``output_parsed``."""
    include_chat_history: bool = True
    """Send the run's conversation so far (earlier Agent nodes' turns) before this node's input."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature (the provider's default when unset)."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Cap on tokens generated per model call."""

    can_fail: ClassVar[bool] = True


class NoteNode(_NodeBase):
    """A comment on the canvas. Never runs and takes no edges."""

    type: Literal["note"] = "note"
    text: str = ""
    ports: ClassVar[tuple[str, ...]] = ()


class FileSearchNode(_NodeBase):
    """Retrieve passages from a context-engine collection (not available yet)."""

    type: Literal["file_search"] = "file_search"
    collection: str
    """Name of the context-engine collection to search."""
    query: str = "input_as_text"
    """CEL expression for the query text."""
    max_results: int = Field(default=10, ge=1, le=200)
    """Passages returned, best first."""
    can_fail: ClassVar[bool] = True


class GuardrailsNode(_NodeBase):
    """Check text for PII, jailbreaks, moderation or hallucination (not available yet)."""

    type: Literal["guardrails"] = "guardrails"
    checks: list[str] = Field(default_factory=list)
    """Checks to run, e.g. ``pii``, ``jailbreak``, ``moderation``, ``hallucination``."""
    text: str = "input.output_text"
    """CEL expression for the text to check."""
    ports: ClassVar[tuple[str, ...]] = ("pass", "fail")
    can_fail: ClassVar[bool] = True


class McpNode(_NodeBase):
    """Call one tool on an MCP server (not available yet)."""

    type: Literal["mcp"] = "mcp"
    server: str
    """``stdio:COMMAND ARGS`` or an ``http(s)://`` streamable-HTTP URL."""
    tool: str
    """Name of the tool on that server."""
    arguments: dict[str, str] = Field(default_factory=dict)
    """Tool argument name -> CEL expression."""
    can_fail: ClassVar[bool] = True


class Branch(_Spec):
    """One branch of an If/else node: taken when its condition is true (first match wins)."""

    name: str = Field(pattern=_ID)
    """The port name edges use to leave through this branch."""
    condition: str
    """CEL expression that must evaluate to a bool."""


class IfElseNode(_NodeBase):
    """Take the first branch whose CEL condition is true, else the ``else`` port."""

    type: Literal["if_else"] = "if_else"
    branches: list[Branch] = Field(min_length=1)

    def allowed_ports(self) -> tuple[str, ...]:
        return (*(b.name for b in self.branches), "else")


class WhileNode(_NodeBase):
    """Loop: while the condition is true leave through ``body`` (which must lead back here),
    then leave through ``next``."""

    type: Literal["while"] = "while"
    condition: str
    """CEL expression evaluated each time the run arrives here."""
    max_iterations: int = Field(default=100, ge=1, le=100_000)
    """Safety cap: the run fails if the loop body runs more often than this."""
    ports: ClassVar[tuple[str, ...]] = ("body", "next")


class HumanApprovalNode(_NodeBase):
    """Pause the run until a person approves or rejects; the wait survives restarts."""

    type: Literal["human_approval"] = "human_approval"
    message: str = "Approve?"
    """What the approver sees; ``{{ expr }}`` templates are filled in."""
    timeout: float | None = Field(default=None, gt=0)
    """Seconds to wait before the ``timeout`` port is taken (``rejected`` if it has no edge).
    None waits forever."""
    ports: ClassVar[tuple[str, ...]] = ("approved", "rejected", "timeout")


class TransformNode(_NodeBase):
    """Reshape data with CEL: ``expression`` for one value, or ``fields`` for an object."""

    type: Literal["transform"] = "transform"
    expression: str | None = None
    """CEL expression whose value becomes ``output_parsed``."""
    fields: dict[str, str] = Field(default_factory=dict)
    """Output field name -> CEL expression; ``output_parsed`` is the object of their values."""
    can_fail: ClassVar[bool] = True


class SetStateNode(_NodeBase):
    """Assign workflow state variables from CEL expressions; passes its input through."""

    type: Literal["set_state"] = "set_state"
    assign: dict[str, str] = Field(min_length=1)
    """State variable name -> CEL expression (all evaluated against the state before the node)."""
    can_fail: ClassVar[bool] = True


class EndNode(_NodeBase):
    """Finish the run. Its output is the run's output."""

    type: Literal["end"] = "end"
    output: str | None = None
    """CEL expression for the run's output (default: the previous node's output)."""
    ports: ClassVar[tuple[str, ...]] = ()


Node = Annotated[
    StartNode | AgentNode | NoteNode | FileSearchNode | GuardrailsNode | McpNode | IfElseNode
    | WhileNode | HumanApprovalNode | TransformNode | SetStateNode | EndNode,
    Field(discriminator="type"),
]
"""Any node, told apart by its ``type``."""

NODE_TYPES: tuple[str, ...] = (
    "start", "agent", "note", "file_search", "guardrails", "mcp", "if_else", "while",
    "human_approval", "transform", "set_state", "end",
)


class Edge(_Spec):
    """A connection: leaving ``from`` through ``port``, the run continues at ``to``."""

    source: str = Field(alias="from")
    """Id of the node the edge leaves."""
    target: str = Field(alias="to")
    """Id of the node the edge enters."""
    port: str = "next"
    """Which exit of ``from``: ``next``, ``error``, a branch name, ``else``, ``body``,
    ``approved``, ``rejected``, ``timeout``, ``pass`` or ``fail``."""


class WorkflowSpec(_Spec):
    """A whole workflow: what ``keel workflows publish`` stores as an immutable version."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$")
    """Name runs refer to (lowercase letters, digits, ``_``, ``-``, ``.``)."""
    description: str = ""
    """One line saying what the workflow does (shown by ``keel workflows list``)."""
    nodes: list[Node] = Field(min_length=1)
    """The nodes, in any order; exactly one ``start``, at least one ``end``."""
    edges: list[Edge] = Field(default_factory=list)
    """Connections between nodes (Note nodes take none)."""

    def node(self, node_id: str) -> Any:
        """The node with id ``node_id`` (KeyError if none)."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)
