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
    "AgentMessage",
    "AgentNode",
    "AgentTool",
    "ApprovalPolicy",
    "Branch",
    "CustomCheck",
    "Edge",
    "EndNode",
    "FileSearchNode",
    "GuardrailCheck",
    "GuardrailsNode",
    "HallucinationCheck",
    "HttpTool",
    "HumanApprovalNode",
    "IfElseNode",
    "JailbreakCheck",
    "Layout",
    "Limits",
    "McpNode",
    "McpServer",
    "ModerationCheck",
    "Node",
    "NoteNode",
    "PiiCheck",
    "Position",
    "SetStateNode",
    "StartNode",
    "TransformNode",
    "Viewport",
    "WhileNode",
    "WorkflowSpec",
    "compact",
]

_ID = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Position(_Spec):
    """Where a node sits on a canvas (Agent Builder's ``ui_metadata.positionsByNodeId``)."""

    x: float
    y: float


class Viewport(_Spec):
    """What part of the canvas was in view: the pan offset and the zoom factor."""

    x: float = 0
    y: float = 0
    zoom: float = Field(default=1, gt=0, le=100)


class Layout(_Spec):
    """Where a canvas draws the workflow. It changes no run: it is not part of a version's
    digest (docs/workflows.md, "Layout")."""

    nodes: dict[str, Position] = Field(default_factory=dict)
    """Node id -> its position (the top-left corner, in canvas units). Nodes missing here are
    laid out automatically by the canvas; an id that names no node is a problem."""
    viewport: Viewport | None = None
    """The view the workflow was last saved with."""


class _NodeBase(_Spec):
    id: str = Field(pattern=_ID)
    """Unique within the workflow; letters, digits and ``_`` (it is a CEL name: ``nodes.<id>``)."""
    title: str | None = None
    """Label shown on a canvas (where it is drawn is the workflow's ``layout``)."""

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
    accept_tool_history: bool = False
    """Whether a conversation given as input (``{"messages": [...]}``) may hold ``tool`` messages
    and assistant messages with ``tool_calls``. By default such a run is refused: a caller could
    otherwise forge tool results the model would trust (docs/security.md)."""


ApprovalPolicy = Literal["always", "never"]
"""``always``: a call waits (durably) until a person approves it; ``never``: calls go ahead."""

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


class HttpTool(_Spec):
    """The built-in HTTP request tool of an Agent node (:mod:`keel.workflows.http_tool`): the model
    may call URLs on ``allow_hosts`` only, with ``methods`` only; refusals come back to it as errors."""

    allow_hosts: list[str] = Field(default_factory=list)
    """Hosts the tool may call: ``api.example.com`` (any port), ``127.0.0.1:8080`` (that port),
    ``*.example.com`` (its subdomains). Redirects to other hosts are refused too. Required unless
    ``connector`` names them."""
    connector: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    """An ``--http`` connector of the registry (docs/connectors.md): its hosts, methods and
    credential headers (sent with every call, never seen by the spec or the model). ``allow_hosts``
    and ``methods`` may narrow the connector's; ``headers`` stay unset."""
    methods: list[HttpMethod] = Field(default_factory=lambda: ["GET"], min_length=1)
    """HTTP methods the model may use (default: GET only)."""
    timeout: float = Field(default=10, gt=0, le=600)
    """Seconds one call may take in all (connecting, redirects, reading)."""
    max_response_bytes: int = Field(default=100_000, ge=1, le=100_000_000)
    """Largest response body read; a larger one is not downloaded and the model is told so."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Headers sent with every call; ``${NAME}`` in a value is the environment variable ``NAME``
    at call time (keys stay out of the spec and away from the model)."""
    name: str = Field(default="http_request", pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    """Tool name the model sees (and ``approval`` keys name)."""
    description: str | None = None
    """Tool description the model sees (default: says the hosts and methods)."""


class McpServer(_Spec):
    """An MCP server whose tools an Agent node may call: named inline (``server``) or as a
    connector from the registry (``connector``, see docs/connectors.md), exactly one of them."""

    server: str | None = None
    """``stdio:COMMAND ARGS`` (a subprocess speaking MCP on stdin/stdout) or an ``http(s)://``
    streamable-HTTP URL."""
    tools: list[str] | None = None
    """Tool names the model may call (default: every tool the server lists)."""
    approval: dict[str, ApprovalPolicy] = Field(default_factory=dict)
    """Tool name -> ``always`` | ``never``; the key ``*`` sets the policy of the others (default
    ``always``: a tool the server exposes and no key names needs approval). Names are compared
    case- and punctuation-insensitively (``delete_all`` also covers ``Delete-All``), and tools
    whose names differ only so always need approval (:mod:`keel.workflows.tool_policy`). A call
    that needs approval pauses the run like a Human approval node; a rejected call is reported
    to the model as declined."""
    approval_timeout: float | None = Field(default=None, gt=0)
    """Seconds an approval may wait before the call counts as declined (None waits forever)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables for a ``stdio:`` server (it does not inherit Keel's secrets)."""
    timeout: float = Field(default=60, gt=0)
    """Seconds one tool call may take."""
    connector: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    """A connector of the registry (``keel connectors add``): its server, credentials, tool
    allow-list and approval policies. ``tools`` may narrow the allow-list and ``approval`` may
    make a tool stricter (``always``); ``server`` and ``env`` stay unset. Publishing fails if
    the connector is unknown or does not let this workflow use it."""

    def policy(self, tool: str) -> ApprovalPolicy:
        """The policy of ``tool`` on its own (the Agent node also treats look-alike names)."""
        from keel.workflows.tool_policy import MCP_DEFAULT, decide

        return decide(self.approval, [tool], default=MCP_DEFAULT)[tool].policy  # type: ignore[return-value]


class AgentMessage(_Spec):
    """A fixed message an Agent node sends after its input."""

    role: Literal["user", "assistant"]
    content: str


class WidgetTemplate(_Spec):
    """A ChatKit widget template in its JSON form (a ``.widget`` file from ChatKit Studio, as Agent
    Builder's widget output kept it): ``template`` is Jinja that renders the widget's JSON from the
    Agent node's ``output_parsed`` (its fields are the template's variables; a string written inside
    quotes, ``"{{ title }}"``, is JSON-escaped; ``{{ items | tojson }}`` puts in any value). See
    docs/widgets.md."""

    template: str
    """Jinja text rendering one widget root (``Card``, ``ListView`` or ``Basic``) as JSON."""
    name: str = ""
    """The widget's name (ChatKit Studio's)."""
    version: Literal["1.0"] = "1.0"
    """The ``.widget`` format's version."""
    json_schema: dict[str, Any] | None = Field(default=None, alias="jsonSchema")
    """The data the template expects (ChatKit Studio writes it); when given, every field it
    requires must be in the node's ``output_schema``."""


class AgentMemory(_Spec):
    """Memory by compaction for an Agent node (docs/memory.md): facts remembered from earlier
    conversations, searched with the node's input and put before the conversation; the node's own
    turns are recorded for a later compaction (``keel memory compact``)."""

    collection: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    """Context collection that indexes the facts (created on first use)."""
    scope: str = "default"
    """Whose memory: facts of one scope are never shown in another. ``{{ expr }}`` is replaced by the
    value of a CEL expression, e.g. ``user:{{ workflow.user_id }}``."""
    max_facts: int = Field(default=8, ge=0, le=100)
    """Facts put in the prompt at most (0: recall nothing, only record)."""
    record: bool = True
    """Record this node's turns (input and answer) for compaction into facts."""
    compact_after: int | None = Field(default=None, ge=1, le=100_000)
    """Compact in a background thread of this process once this many turns wait (None: leave it to
    ``keel memory compact``); the node's ``model`` extracts the facts."""


class AgentTool(_Spec):
    """Another Agent node offered to this one as a tool (agents as tools): the model sees a function
    tool taking ``{"input": text}``; a call runs that agent on the text, with its own instructions,
    model and tools, and its final answer comes back as the tool result."""

    agent: str = Field(pattern=_ID)
    """Id of the Agent node to call. It may stay off the graph (no edges): then it runs only as a tool."""
    name: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    """Tool name the model sees (default: the agent's id)."""
    description: str | None = None
    """Tool description the model sees (default: the agent's ``description``)."""


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
    mcp: list[McpServer] = Field(default_factory=list)
    """MCP servers whose tools the model may call, each with its approval policy."""
    messages: list[AgentMessage] = Field(default_factory=list)
    """Fixed turns sent after the input, in order (Agent Builder's per-agent messages)."""
    approval: dict[str, ApprovalPolicy] = Field(default_factory=dict)
    """Approval policy of the Python ``tools``, as an MCP server's ``approval``: tool name ->
    ``always`` | ``never``, ``*`` for the others (default ``never``: the tools are listed one by
    one here). A call that needs approval pauses the run until a person answers; a rejected call
    is reported to the model as declined. MCP tools follow their server's ``approval``."""
    approval_timeout: float | None = Field(default=None, gt=0)
    """Seconds a Python tool call's approval may wait before it counts as declined (None waits
    forever)."""
    http: HttpTool | None = None
    """The built-in HTTP request tool, offered to the model with its allow-listed hosts, methods,
    timeout and size limit (docs/workflows.md, "HTTP request tool"). Its calls follow ``approval``
    like a Python tool's, by its ``name``."""
    max_tool_result_tokens: int | None = Field(default=None, ge=16, le=10_000_000)
    """Longest tool result sent back to the model, in estimated tokens; a longer one is cut and
    ends with ``[truncated: N tokens → M; ask for a narrower query]`` (None: no limit)."""
    agent_tools: list[AgentTool] = Field(default_factory=list)
    """Agent nodes this agent may call as tools (a conductor and its specialists); see
    docs/agents.md. A specialist that calls itself, directly or through others, is refused."""
    handoffs: list[str] = Field(default_factory=list)
    """Agent node ids this agent may hand the conversation to: the model sees a
    ``transfer_to_<id>`` tool; a call carries the conversation over to that agent, which answers in
    this node's place (its answer is the node's output). A handoff cycle needs
    ``limits.max_agent_turns`` set in the spec."""
    description: str = ""
    """What this agent does, shown to agents that call it as a tool or hand off to it (the Agents
    SDK's ``handoff_description``)."""
    memory: AgentMemory | None = None
    """Memory by compaction: facts from earlier conversations recalled into the prompt, and this
    node's turns recorded for compaction (docs/memory.md)."""
    widget: str | WidgetTemplate | None = None
    """Show the answer as a ChatKit widget filled from ``output_parsed`` (needs ``output_schema``): a
    gallery name (``card``, ``list``, ``form``, ``table``: docs/widgets.md) or a template
    (:class:`WidgetTemplate`). ChatKit clients and the web UI's chat show it; the API returns the data.
    Buttons and forms in it send their action back to the workflow (docs/widgets.md)."""

    can_fail: ClassVar[bool] = True


class NoteNode(_NodeBase):
    """A comment on the canvas. Never runs and takes no edges."""

    type: Literal["note"] = "note"
    text: str = ""
    ports: ClassVar[tuple[str, ...]] = ()


class FileSearchNode(_NodeBase):
    """Retrieve passages from a collection of Keel's context engine (``keel context add``).
    Output: ``output_parsed`` is ``{query, results: [{index, text, source, anchor, title,
    start_line, end_line, score}]}``, best first; ``output_text`` the passages numbered
    ``[1]``, ``[2]``... with their sources, ready to cite."""

    type: Literal["file_search"] = "file_search"
    collection: str
    """Name of the context-engine collection to search."""
    query: str = "input_as_text"
    """CEL expression for the query text."""
    max_results: int = Field(default=10, ge=1, le=200)
    """Passages returned, best first."""
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    """First-stage signals: dense vectors and BM25 fused (default), or one of them."""
    where: dict[str, Any] | None = None
    """Metadata filter (the context engine's language, e.g. ``{kind: markdown}`` or
    ``{source: {$in: [a.md, b.md]}}``)."""
    can_fail: ClassVar[bool] = True


PiiEntity = Literal["credit_card", "email", "phone", "iban", "us_ssn", "ip_address"]
PII_ENTITIES: tuple[str, ...] = ("credit_card", "email", "phone", "iban", "us_ssn", "ip_address")
ModerationCategory = Literal["violence", "self_harm", "hate", "sexual", "harassment", "illicit"]
MODERATION_CATEGORIES: tuple[str, ...] = ("violence", "self_harm", "hate", "sexual", "harassment", "illicit")


class PiiCheck(_Spec):
    """Personal data, found by patterns and validated (Luhn for cards, mod-97 for IBANs...)."""

    type: Literal["pii"] = "pii"
    entities: list[PiiEntity] = Field(default_factory=lambda: list(PII_ENTITIES))
    """Kinds of personal data that fail the check."""


class JailbreakCheck(_Spec):
    """Jailbreak and prompt-injection attempts: local heuristics, then a model judge if configured."""

    type: Literal["jailbreak"] = "jailbreak"
    threshold: float = Field(default=1.0, gt=0)
    """Heuristic score at which the text fails (one strong signal scores 1)."""
    model: str | None = None
    """Model that judges text the heuristics let through (none: heuristics only)."""


class ModerationCheck(_Spec):
    """Harmful content: local category word lists, then a model judge if configured."""

    type: Literal["moderation"] = "moderation"
    categories: list[ModerationCategory] = Field(default_factory=lambda: list(MODERATION_CATEGORIES))
    """Categories that fail the check."""
    blocklist: list[str] = Field(default_factory=list)
    """Extra words or phrases that fail the check (matched case-insensitively, whole words)."""
    model: str | None = None
    """Model that judges text the word lists let through (none: word lists only)."""


class HallucinationCheck(_Spec):
    """Is the text supported by its sources? Each sentence is checked against the sources it cites
    (``[1]``, ``[2]``... by position, or every source when it cites none)."""

    type: Literal["hallucination"] = "hallucination"
    sources: str
    """CEL expression for the sources: a list of strings, or of objects with a ``text`` (or
    ``content``) field, e.g. ``nodes.search.output_parsed.results``."""
    min_overlap: float = Field(default=0.5, ge=0, le=1)
    """Share of a sentence's content words that must appear in its sources."""
    model: str | None = None
    """Model that judges an answer the lexical check let through (none: lexical check only)."""


class CustomCheck(_Spec):
    """A check you describe in words, judged by a model with a strict structured output."""

    type: Literal["custom"] = "custom"
    name: str = Field(pattern=_ID)
    """Name shown in the node's output when the check fails."""
    model: str
    """The judge model."""
    instructions: str
    """What the text must satisfy to pass, e.g. "The reply only discusses our products."."""


CHECK_TYPES: tuple[str, ...] = ("pii", "jailbreak", "moderation", "hallucination", "custom")
"""The ``type`` of every Guardrails check; the first three may also be given by name alone."""

GuardrailCheck = Annotated[
    PiiCheck | JailbreakCheck | ModerationCheck | HallucinationCheck | CustomCheck, Field(discriminator="type")]
"""One check of a Guardrails node, told apart by its ``type``."""


class GuardrailsNode(_NodeBase):
    """Check text for PII, jailbreaks, harmful content, unsupported claims, or a custom rule;
    leave through ``pass`` or ``fail``. Local checks run first; model judges run only when every
    local check passed. ``output_parsed``: ``{passed, failed: [names], reason, checks: [...]}``;
    ``output_text``: the text checked."""

    type: Literal["guardrails"] = "guardrails"
    checks: list[Literal["pii", "jailbreak", "moderation"] | GuardrailCheck] = Field(min_length=1)
    """Checks to run: a name (``pii``, ``jailbreak``, ``moderation``) for the defaults, or an
    object with a ``type`` and options."""
    text: str = "input.output_text"
    """CEL expression for the text to check."""
    ports: ClassVar[tuple[str, ...]] = ("pass", "fail")
    can_fail: ClassVar[bool] = True

    def resolved_checks(self) -> list[Any]:
        """The checks as objects (names become their default check)."""
        named = {"pii": PiiCheck, "jailbreak": JailbreakCheck, "moderation": ModerationCheck}
        return [named[c]() if isinstance(c, str) else c for c in self.checks]


class McpNode(_NodeBase):
    """Call one tool on an MCP server. Output: the tool's text as ``output_text`` and its
    structured content (or its text parsed as JSON) as ``output_parsed``."""

    type: Literal["mcp"] = "mcp"
    server: str | None = None
    """``stdio:COMMAND ARGS`` or an ``http(s)://`` streamable-HTTP URL (or name a ``connector``)."""
    tool: str
    """Name of the tool on that server."""
    arguments: dict[str, str] = Field(default_factory=dict)
    """Tool argument name -> CEL expression."""
    approval: ApprovalPolicy = "never"
    """``always``: wait for a person to approve the call first (a rejection fails the node)."""
    approval_timeout: float | None = Field(default=None, gt=0)
    """Seconds the approval may wait before it counts as rejected (None waits forever)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables for a ``stdio:`` server."""
    timeout: float = Field(default=60, gt=0)
    """Seconds the tool call may take."""
    connector: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    """A connector of the registry (``keel connectors add``) instead of ``server`` and ``env``:
    ``tool`` must be in its allow-list, and the call needs approval if the connector says so."""
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
    allow_requester: bool = False
    """Whether whoever started the run (under ``keel serve``: the same API key, for the same end
    user) may decide this approval, e.g. a person confirming their own request. By default only
    an approver or admin key other than the requester's may (docs/security.md)."""
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


class Limits(_Spec):
    """What one run of the workflow may use before it is stopped as ``failed`` (every run obeys
    them; a While node's ``max_iterations`` applies as well). The error names the limit, the node
    and this field, so it can be raised where a workflow legitimately needs more."""

    max_steps: int = Field(default=1_000, ge=1, le=10_000_000)
    """Node steps a run may take in all (loops included)."""
    max_seconds: float = Field(default=3_600, gt=0, le=31_536_000)
    """Seconds a run may spend being executed. Time waiting for an approval does not count, nor
    time between a crash and the resume; a step still running at the limit is cancelled."""
    max_state_bytes: int = Field(default=4_000_000, ge=1_000, le=1_000_000_000)
    """Size of the run's workflow state (``state.*``) and chat history together, as JSON."""
    max_output_bytes: int = Field(default=1_000_000, ge=1_000, le=1_000_000_000)
    """Size of one node's output, as JSON (the Start node's output is the run's input, which is
    not limited here)."""
    max_agent_depth: int = Field(default=3, ge=1, le=20)
    """How deep agents may call agents as tools: a conductor calling a specialist is depth 1, the
    specialist calling another agent depth 2."""
    max_agent_turns: int = Field(default=1_000, ge=1, le=1_000_000)
    """Model calls all agents of a run may make together (Agent nodes, the agents they call as
    tools and the agents they hand off to). Set it to allow a handoff cycle."""


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
    limits: Limits | None = None
    """What one run may use (steps, seconds, state and output sizes); unset: the defaults of
    :class:`Limits`."""
    layout: Layout | None = None
    """Where a canvas draws each node (``layout: {nodes: {ID: {x, y}}, viewport: {x, y, zoom}}``).
    Kept apart from the nodes so the YAML stays readable and moving a node is a small diff; not
    part of the version's meaning."""

    def run_limits(self) -> Limits:
        """The limits every run of this spec obeys (the defaults where ``limits`` is unset)."""
        return self.limits if self.limits is not None else Limits()

    def node(self, node_id: str) -> Any:
        """The node with id ``node_id`` (KeyError if none)."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)


def compact(model: BaseModel) -> dict[str, Any]:
    """``model`` as plain data with fields at their defaults left out, keeping every ``type``
    (the discriminator a reader needs to tell nodes and checks apart)."""

    def plain(v: Any) -> Any:
        if isinstance(v, BaseModel):
            return compact(v)
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if name != "type" and not info.is_required() and value == info.get_default(call_default_factory=True):
            continue
        out[info.alias or name] = plain(value)
    return out
