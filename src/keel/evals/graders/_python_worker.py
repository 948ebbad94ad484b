"""The process a python grader runs in (started by :mod:`keel.evals.graders.python_grader`).

Protocol, one JSON document per line: the first line on stdin is
``{"source": ..., "limits": {...}}`` (the worker sets the resource limits on itself
before it loads the source); each later line is ``{"sample": ..., "item": ...}`` and is
answered on the real stdout with ``{"score": x}`` or ``{"error": "..."}``. The
grader's own prints go to stderr so they cannot break the protocol. This file
imports nothing from Keel: it starts fast and runs under resource limits.
"""

import json
import math
import sys
import traceback


def _limit(limits: dict) -> None:
    """Limit this process (and what it starts) before the grader's code runs."""
    import resource

    mb = 1024 * 1024
    for name, value in (("RLIMIT_AS", limits["memory_mb"] * mb), ("RLIMIT_FSIZE", limits["fsize_mb"] * mb),
                        ("RLIMIT_NOFILE", limits["nofile"]), ("RLIMIT_NPROC", limits["nproc"]),
                        ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))
    # CPU time is a backstop for a worker the wall-clock timeout somehow misses.
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 5))


def main() -> None:
    out = sys.stdout
    sys.stdout = sys.stderr
    setup = json.loads(sys.stdin.readline())
    if setup.get("limits"):
        _limit(setup["limits"])
    namespace = {"__name__": "keel_python_grader"}
    try:
        exec(compile(setup["source"], "<grader>", "exec"), namespace)
        grade = namespace["grade"]
        if not callable(grade):
            raise TypeError("grade is not a function")
        ready = {"ready": True}
    except KeyError:
        ready = {"fatal": "the source defines no grade(sample, item) function"}
    except BaseException as e:
        ready = {"fatal": f"the source failed to load: {type(e).__name__}: {e}"}
    out.write(json.dumps(ready) + "\n")
    out.flush()
    if "fatal" in ready:
        return
    for line in sys.stdin:
        request = json.loads(line)
        try:
            value = grade(request["sample"], request["item"])
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"grade() returned {type(value).__name__}, not a number")
            value = float(value)
            if math.isnan(value) or math.isinf(value):
                raise ValueError(f"grade() returned {value}")
            answer = {"score": value}
        except MemoryError:
            answer = {"error": "MemoryError: the grader exceeded its memory limit"}
        except BaseException as e:
            frames = traceback.extract_tb(e.__traceback__)
            where = next((f"line {f.lineno}" for f in reversed(frames) if f.filename == "<grader>"), "")
            answer = {"error": f"{type(e).__name__}: {e}" + (f" ({where} of the grader)" if where else ""),
                      "raised": True}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
