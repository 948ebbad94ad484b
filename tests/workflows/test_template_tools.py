"""The structured-data-qa template's `run_sql` tool (a `@keel.tool` over the CSV files in data/): it
answers SELECTs from the sample data and can never change it, whatever SQL the model sends."""

from __future__ import annotations

import asyncio
import importlib
import sys

import pytest

from keel.workflows.templates import create_project
from keel.workflows.tools import ToolContext, resolve_tool


@pytest.fixture
def run_sql(tmp_path, monkeypatch):
    project = create_project("structured-data-qa", tmp_path / "p")
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))
    sys.modules.pop("table_tools", None)
    importlib.invalidate_caches()
    tool = resolve_tool("table_tools:run_sql")
    yield lambda query: asyncio.run(tool.call({"query": query}, ToolContext("r", "n", "k", "c")))
    sys.modules.pop("table_tools", None)


def test_run_sql_answers_from_the_csv_and_cannot_write(run_sql, tmp_path) -> None:
    before = (tmp_path / "p" / "data" / "orders.csv").read_bytes()
    got = run_sql("SELECT country, SUM(quantity) AS units FROM orders WHERE product = 'espresso beans' "
                  "GROUP BY country ORDER BY units DESC")
    assert got["columns"] == ["country", "units"] and got["rows"][0] == ["Germany", 42]  # numbers stay numbers
    assert run_sql("DELETE FROM orders") == "error: only SELECT queries are allowed"
    assert run_sql("SELECT 1; DROP TABLE orders").startswith("error: ")  # one statement per call
    assert run_sql("WITH x AS (SELECT 1) INSERT INTO orders (order_id) SELECT * FROM x").startswith(
        "error: attempt to write a readonly database")  # query_only holds behind a SELECT-looking prefix
    assert run_sql("SELECT nope FROM orders") == "error: no such column: nope"
    assert run_sql("SELECT COUNT(*) FROM orders")["rows"] == [[16]]  # nothing changed
    assert (tmp_path / "p" / "data" / "orders.csv").read_bytes() == before
    big = run_sql("SELECT a.order_id FROM orders a, orders b")  # 256 rows: at most 50 come back
    assert len(big["rows"]) == 50 and big["truncated"] is True


def test_run_sql_schema_comes_from_its_docstring() -> None:
    from keel.workflows.templates import template_dir

    sys.path.insert(0, str(template_dir("structured-data-qa")))
    try:
        sys.modules.pop("table_tools", None)
        t = resolve_tool("table_tools:run_sql")
    finally:
        sys.path.pop(0)
        sys.modules.pop("table_tools", None)
    assert t.tool.description.startswith("Run one read-only SQL query")
    assert t.tool.parameters["properties"]["query"]["description"].startswith("a single SELECT statement")
