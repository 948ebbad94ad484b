"""Compare two files with the document-comparison workflow: python compare.py OLD NEW [FOCUS]

Prints the changes as JSON. Run it from this folder (it reads keel.toml for the model).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from keel.workflows import run


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    data = {"before": Path(argv[1]).read_text(encoding="utf-8"), "after": Path(argv[2]).read_text(encoding="utf-8")}
    if len(argv) == 4:
        data["focus"] = argv[3]
    result = run("workflow.yaml", data)
    if result.status != "succeeded":
        print(f"error: the run {result.run_id} {result.status}: {result.error}", file=sys.stderr)
        return 1
    print(json.dumps(result.output, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
