"""Which Agent nodes write a run's answer word for word, so their tokens may stream as the answer.

A client of the OpenAI-compatible or ChatKit endpoints sees a run's answer (its End output)
as text it cannot take back. An Agent node's tokens can be sent live only when that text
*is* the answer whichever way the run goes on: the node has no output schema (it writes
text), and every path from its ``next`` port reaches an End node that keeps the default
output (the previous node's output) through nodes that pass ``last`` on unchanged
(If/else, While, Set state). A node whose answer a Guardrails check or a Transform
may still replace does not qualify; its run's answer is sent when the run ends.

An Agent node with tools may write text before calling a tool; the engine then emits
``text_restart`` (those words were not the answer) and a client that has already shown
them keeps them, the way OpenAI's own streams show text that precedes tool calls.
"""

from __future__ import annotations

from keel.workflows.spec import AgentNode, EndNode, IfElseNode, SetStateNode, WhileNode
from keel.workflows.validate import CompiledWorkflow

__all__ = ["answer_nodes"]

_PASS_THROUGH = (IfElseNode, WhileNode, SetStateNode)
"""Node types whose output is their input (``last``) unchanged."""


def answer_nodes(wf: CompiledWorkflow) -> frozenset[str]:
    """Ids of the Agent nodes whose text is the run's answer on every path (see the module doc)."""
    out = set()
    for node in wf.spec.nodes:
        if isinstance(node, AgentNode) and node.output_schema is None and _ends_as_is(wf, node.id):
            out.add(node.id)
    return frozenset(out)


def _ends_as_is(wf: CompiledWorkflow, agent_id: str) -> bool:
    first = wf.target(agent_id, "next")
    if first is None:
        return False
    seen: set[str] = set()
    todo = [first]
    while todo:
        node_id = todo.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = wf.nodes[node_id]
        if isinstance(node, EndNode):
            if node.output is not None:
                return False
            continue
        if not isinstance(node, _PASS_THROUGH):
            return False
        todo.extend(to for (src, _port), to in wf.edges.items() if src == node_id)
    return True
