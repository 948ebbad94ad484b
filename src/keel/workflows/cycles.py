"""Cycles of a workflow graph, for the validation warning about loops no While node bounds.

:func:`unbounded_cycles` takes the graph's edges without the While ``body`` edges (a cycle
through one of those is counted by its While node's ``max_iterations``) and returns one cycle
per strongly connected component that still has one: what remains can only be stopped by the
run's ``limits``.
"""

from __future__ import annotations

from collections import deque

__all__ = ["unbounded_cycles"]


def unbounded_cycles(edges: list[tuple[str, str]], *, order: list[str]) -> list[list[str]]:
    """One cycle (its nodes, in edge order, starting at the first node of ``order`` in it) for
    each strongly connected component of ``edges`` that has a cycle, in ``order``."""
    succ: dict[str, list[str]] = {}
    for src, dst in edges:
        succ.setdefault(src, []).append(dst)
    rank = {n: i for i, n in enumerate(order)}
    cycles = []
    for comp in _components(succ, order):
        first = min(comp, key=lambda n: rank.get(n, len(rank)))
        if len(comp) == 1 and first not in succ.get(first, ()):
            continue
        cycles.append(_cycle_through(first, comp, succ))
    cycles.sort(key=lambda c: rank.get(c[0], len(rank)))
    return cycles


def _components(succ: dict[str, list[str]], order: list[str]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively (a spec may have many nodes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    nodes = list(dict.fromkeys([*order, *succ, *(d for ds in succ.values() for d in ds)]))
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            nexts = succ.get(node, [])
            if i < len(nexts):
                work.append((node, i + 1))
                child = nexts[i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                comp = set()
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.add(top)
                    if top == node:
                        break
                out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def _cycle_through(first: str, comp: set[str], succ: dict[str, list[str]]) -> list[str]:
    """A shortest cycle from ``first`` back to itself inside ``comp``."""
    prev: dict[str, str] = {}
    todo = deque([first])
    while todo:
        cur = todo.popleft()
        for nxt in succ.get(cur, []):
            if nxt not in comp:
                continue
            if nxt == first:
                path = [cur]
                while path[-1] != first:
                    path.append(prev[path[-1]])
                return path[::-1]
            if nxt not in prev:
                prev[nxt] = cur
                todo.append(nxt)
    return [first]
