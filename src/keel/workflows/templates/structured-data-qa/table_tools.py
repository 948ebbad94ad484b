"""The tool of the structured-data-qa workflow: read-only SQL over the CSV files in ``data/``.

Each ``data/NAME.csv`` is a table ``NAME`` (columns from its header row; numbers stay numbers).
Replace the sample with your own CSV files, or point ``TABLES_DIR`` at another folder. Keel
imports the tool by path (``table_tools:run_sql``) from the project directory.

The database is an in-memory SQLite copy opened read-only (``PRAGMA query_only``) for each
call, so a query can never change your data; one statement per call, at most ``MAX_ROWS`` rows
back. A bad query comes back to the model as ``error: ...`` so it can fix it and ask again.
"""

from __future__ import annotations

import csv
import os
import sqlite3
from pathlib import Path

import keel

MAX_ROWS = 50


def _number(value: str) -> object:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _database() -> sqlite3.Connection:
    folder = Path(os.environ.get("TABLES_DIR", Path(__file__).parent / "data"))
    db = sqlite3.connect(":memory:")
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if not rows:
            continue
        header, body = rows[0], rows[1:]
        columns = ", ".join(f'"{c}"' for c in header)
        db.execute(f'CREATE TABLE "{path.stem}" ({columns})')
        db.executemany(f'INSERT INTO "{path.stem}" VALUES ({", ".join("?" * len(header))})',
                       [[_number(v) for v in row] for row in body])
    db.execute("PRAGMA query_only = ON")
    return db


@keel.tool
def run_sql(query: str) -> dict | str:
    """Run one read-only SQL query (SQLite dialect) over the tables and return the rows.

    Args:
        query: a single SELECT statement, e.g. SELECT country, SUM(quantity * unit_price) FROM orders GROUP BY country
    """
    if not query.lstrip().lower().startswith(("select", "with")):
        return "error: only SELECT queries are allowed"
    db = _database()
    try:
        cursor = db.execute(query)
        rows = cursor.fetchmany(MAX_ROWS + 1)
    except sqlite3.Error as e:
        return f"error: {e}"
    finally:
        db.close()
    columns = [d[0] for d in cursor.description or ()]
    return {"columns": columns, "rows": [list(r) for r in rows[:MAX_ROWS]], "truncated": len(rows) > MAX_ROWS}
