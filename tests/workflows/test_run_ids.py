"""Looking runs and approvals up by id: the full id, or a unique hex prefix of at least 8
digits; never a LIKE pattern (``%`` and ``_`` once matched any id)."""

from __future__ import annotations

import pytest

from keel.workflows import RunNotFoundError, Runs, arun

APPROVAL = """
name: ask
nodes:
  - {id: start, type: start}
  - {id: ask, type: human_approval, message: "Refund?"}
  - {id: ok, type: end}
edges:
  - {from: start, to: ask}
  - {from: ask, port: approved, to: ok}
  - {from: ask, port: rejected, to: ok}
"""

WILDCARDS = ["%", "_", "%%", "_%", "%_", "a%", "0%", "f%", "________%", "%" * 16, "_" * 32, "0_______%",
             "%0", "[0-9]%", "*", ""]


async def test_ids_are_matched_exactly_or_by_a_safe_prefix(spec_file, store) -> None:
    waiting = await arun(spec_file(APPROVAL), "x", store=store)
    runs, approval = Runs(store), waiting.approval
    assert runs.approval(approval.id).id == approval.id
    assert runs.approval(approval.id[:8]).id == approval.id  # a unique prefix of 8 hex digits
    assert runs.get(waiting.run_id[:8]).id == waiting.run_id
    # The only approval and the only run in the store: any pattern would have matched them.
    for pattern in [*WILDCARDS, approval.id[:7], approval.id[:10] + "%", approval.id.upper()]:
        assert runs.approval(pattern) is None, pattern
        with pytest.raises(RunNotFoundError):
            runs.get(pattern)
    # Exact only (the web UI's routes): no prefix at all.
    assert runs.approval(approval.id[:8], prefix=False) is None
    with pytest.raises(RunNotFoundError, match="no run with id"):
        runs.get(waiting.run_id[:8], prefix=False)
    assert runs.get(waiting.run_id, prefix=False).id == waiting.run_id


async def test_an_ambiguous_prefix_says_so(spec_file, store) -> None:
    path = spec_file(APPROVAL)
    first = await arun(path, "a", store=store)
    second = await arun(path, "b", store=store)
    # Time-ordered run ids: two runs a moment apart share their first 8 digits.
    common = 0
    while first.run_id[common] == second.run_id[common]:
        common += 1
    if common < 8:
        pytest.skip("the two runs' ids differ within 8 digits (a clock tick of 65 s fell between them)")
    with pytest.raises(RunNotFoundError, match="more than one run") as e:
        Runs(store).get(first.run_id[:8])
    assert "unique prefix of at least 8 hex digits" in e.value.hint
