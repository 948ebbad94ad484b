"""promptfoo's assertions, with promptfoo's semantics (its ``src/assertions/*.ts``, v0.121).

Each assertion gives ``(passed, score, reason)``. A ``not-`` prefix inverts the check (and,
for the scored ones, the score: ``1 - score``). A test passes when every assertion passes;
its score is the mean of the assertion scores weighted by ``weight`` (default 1), as in
promptfoo. Deterministic ones are decided here; ``similar``, ``llm-rubric`` and ``python``
need an embedder, a judge or a subprocess, which the caller supplies.

========================  ===================================================================
``equals``                output == value (exactly); an object/list value: the output parsed
                          as JSON equals it
``contains``              value is a substring; ``icontains`` ignoring case
``starts-with``           output starts with value
``regex``                 the pattern (JavaScript's syntax, read by Python's ``re``) is found
``is-json``               the output is JSON (and matches the JSON schema in value, if any)
``contains-json``         a ``{...}`` in the output is JSON (matching the schema, if any)
``levenshtein``           edit distance <= threshold (default 5)
``rouge-n``               ROUGE-1 F-measure on lowercased treebank-style tokens >= threshold
                          (default 0.75)
``similar``               cosine similarity of embeddings >= threshold (default 0.75)
``llm-rubric``            a judge model decides whether the output meets the rubric
``python``                inline expression, function body, or ``file://x.py[:fn]``
========================  ===================================================================
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from typing import Any

__all__ = ["DETERMINISTIC", "SUPPORTED", "check", "extract_json_objects", "levenshtein", "render_vars", "rouge_n",
           "split_type"]

_VAR = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")

DETERMINISTIC = ("equals", "contains", "icontains", "starts-with", "regex", "is-json", "contains-json",
                 "levenshtein", "rouge-n")
SUPPORTED = (*DETERMINISTIC, "similar", "llm-rubric", "python")


def split_type(kind: str) -> tuple[str, bool]:
    """``("contains", True)`` for ``not-contains``."""
    return (kind[4:], True) if kind.startswith("not-") else (kind, False)


def levenshtein(a: str, b: str) -> int:
    """Edit distance over characters (promptfoo counts UTF-16 code units: the same outside emoji)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _opening_quote(text: str, i: int, was_open: bool) -> bool:
    prev = text[i - 1] if i else ""
    after_break = not prev or prev.isspace() or unicodedata.category(prev).startswith("P") or prev == "<"
    return not was_open and after_break and prev not in ".!?"


def _tokens(text: str) -> list[str]:
    """js-rouge's ``treeBankTokenize`` (Penn Treebank rules), the tokenizer promptfoo's ROUGE uses."""
    t = re.sub(r"\s+", " ", text).strip()
    if not t:
        return []
    out, was_open, i = [], False, 0
    while i < len(t):  # quotes become `` (opening) or '' (closing) tokens
        two = t[i:i + 2]
        if two in ("``", "''") or t[i] == '"':
            width = 2 if two in ("``", "''") else 1
            was_open = two == "``" or _opening_quote(t, i, was_open)
            out.append(" `` " if was_open else " '' ")
            i += width
        else:
            out.append(t[i])
            i += 1
    t = "".join(out).replace("...", " ... ")
    t = re.sub(r"[:,](?![0-9])", r" \g<0> ", t)
    t = re.sub(r"[;@#$%&]", r" \g<0> ", t)
    t = re.sub(r"([^.])(?<!\b[A-Za-z]\.[A-Za-z])(\.)([\])}>'\s]*)$", r"\1 \2\3 ", t)
    t = re.sub(r"[?!]", r" \g<0> ", t)
    t = re.sub(r"[\][(){}<>]", r" \g<0> ", t)
    t = f" {t.replace('--', ' -- ')} "
    t = re.sub(r"([^'])' ", r"\1 ' ", t)
    t = re.sub(r"'([sSmMdD]) ", r" '\1 ", t)
    t = re.sub(r"('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", r" \1 ", t)
    for pair in ("(can)(not)", "(d)('ye)", "(gim)(me)", "(gon)(na)", "(got)(ta)", "(lem)(me)", "(more)('n)",
                 "('t)(is)", "('t)(was)"):
        t = re.sub(rf"(?<!\w){pair}(?!\w)", r" \1 \2 ", t, flags=re.I)
    t = re.sub(r"(?<!\w)(wan)(na)(?= )", r" \1 \2 ", t, flags=re.I)
    return t.split()


def rouge_n(candidate: str, reference: str, n: int = 1) -> float:
    """promptfoo's ``rougeNScore``: F1 of clipped n-gram overlap, on lowercased text."""
    cand, ref = _tokens(candidate.lower()), _tokens(reference.lower())
    if len(cand) < n or len(ref) < n:
        return 0.0
    cgrams = Counter(tuple(cand[i:i + n]) for i in range(len(cand) - n + 1))
    rgrams = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
    overlap = sum(min(c, rgrams.get(g, 0)) for g, c in cgrams.items())
    if overlap == 0:
        return 0.0
    precision = overlap / sum(cgrams.values())
    recall = overlap / sum(rgrams.values())
    # js-rouge's fMeasure (beta 1), step for step: the same float at a threshold's edge (0.2, 0.5)
    if precision == recall:
        return precision
    if precision > recall:
        return min(precision, recall * (2 / (1 + recall / precision)))
    return min(recall, precision * (2 / (1 + precision / recall)))


def _jsonish(candidate: str) -> Any:
    """promptfoo reads each candidate with js-yaml in JSON mode: YAML flow syntax is accepted
    (``{"n": }`` is ``{"n": null}``)."""
    try:
        return json.loads(candidate)
    except ValueError:
        pass
    from keel.safeload import load_yaml

    return load_yaml(re.sub(r"(?m)^(\s*)//", r"\1#", candidate))


def extract_json_objects(text: str) -> list[Any]:
    """promptfoo's ``extractJsonObjects``: from each ``{``, the shortest balanced stretch (or the rest
    of the text, its open braces closed) that parses as an object; scanning goes on after it."""
    found: list[Any] = []
    limit = 100_000
    i = 0
    while i < len(text):
        if text[i] == "{":
            opened, closed, j = 1, 0, i + 1
            while j < min(i + limit, len(text)) and opened > closed:
                opened += text[j] == "{"
                closed += text[j] == "}"
                j += 1
                if opened == closed or j == len(text) or j == i + limit:
                    candidate = text[i:j] + "}" * max(0, opened - closed)
                    try:
                        value = _jsonish(candidate)
                    except Exception:
                        if opened == closed:
                            break
                        continue
                    if isinstance(value, dict):
                        found.append(value)
                        i = j - 1
                        break
        i += 1
    return found


def _schema_ok(value: Any, schema: Any) -> tuple[bool, str]:
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import best_match

    if isinstance(schema, str):
        import yaml

        schema = yaml.safe_load(schema)
    error = best_match(Draft7Validator(schema).iter_errors(value))
    return (error is None, "" if error is None else f"JSON does not conform to the schema: {error.message}")


_PY_ONLY = re.compile(r"\(\?[aiLmsux-]+[):]|\(\?P[<=>]|\\[AZ]")


def _js_regex(pattern: str) -> re.Pattern[str]:
    """``new RegExp(pattern)`` (no flags) in Python: ``\\d \\w \\b`` are ASCII, ``$`` is the very end;
    what JavaScript refuses (inline flags such as ``(?i)``, ``(?P<name>``) is refused."""
    if _PY_ONLY.search(pattern):
        raise re.error("not valid in a JavaScript regular expression")
    out, in_class, i = [], False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        elif c == "$" and not in_class:
            c = r"\Z"
        elif pattern.startswith("(?<", i) and not in_class and pattern[i + 3:i + 4] not in ("=", "!"):
            c, i = "(?P<", i + 2
        out.append(c)
        i += 1
    return re.compile("".join(out), re.ASCII)


def check(kind: str, output: str, value: Any, threshold: float | None) -> tuple[bool, float, str]:
    """A deterministic assertion (``kind`` may start with ``not-``): ``(passed, score, reason)``."""
    base, inverse = split_type(kind)
    if base == "equals":
        if isinstance(value, dict | list):
            try:
                holds = json.loads(output) == value
            except ValueError:
                holds = False
        else:
            holds = _js_string(value) == output
        return _binary(holds, inverse, f"expected output to {'not ' if inverse else ''}equal {_js_string(value)!r}")
    if base in ("contains", "icontains"):
        needle = _js_string(value)
        holds = needle.lower() in output.lower() if base == "icontains" else needle in output
        return _binary(holds, inverse, f"expected output to {'not ' if inverse else ''}contain {needle!r}")
    if base == "starts-with":
        return _binary(output.startswith(_js_string(value)), inverse,
                       f"expected output to {'not ' if inverse else ''}start with {value!r}")
    if base == "regex":
        try:
            pattern = _js_regex(str(value))
        except re.error as e:
            return False, 0.0, f"invalid regex {value!r}: {e}"
        return _binary(pattern.search(output) is not None, inverse,
                       f"expected output to {'not ' if inverse else ''}match /{value}/")
    if base == "is-json":
        try:  # JSON.parse: no NaN or Infinity
            parsed = json.loads(output, parse_constant=_no_constant)
        except ValueError:
            return _binary(False, inverse, "expected output to be valid JSON")
        if value:
            ok, why = _schema_ok(parsed, value)
            return _binary(ok, inverse, why or "output is JSON that conforms to the schema")
        return _binary(True, inverse, "output is valid JSON")
    if base == "contains-json":
        objects = extract_json_objects(output)
        if not value:
            return _binary(bool(objects), inverse, "expected output to contain valid JSON")
        why = "expected output to contain valid JSON"
        for obj in objects:
            ok, why = _schema_ok(obj, value)
            if ok:
                return _binary(True, inverse, "output contains JSON conforming to the schema")
        return _binary(False, inverse, why)
    if base == "levenshtein":
        limit = 5 if threshold is None else threshold
        distance = levenshtein(output, str(value))
        return _binary(distance <= limit, inverse, f"Levenshtein distance {distance}, threshold {limit:g}")
    if base == "rouge-n":
        limit = 0.75 if threshold is None else threshold
        score = rouge_n(output, str(value))
        holds = (score >= limit) != inverse
        return holds, (1 - score if inverse else score), f"ROUGE-N score {score:.2f}, threshold {limit:g}"
    raise ValueError(f"not a deterministic assertion: {kind!r}")


def render_vars(value: Any, variables: dict[str, Any]) -> Any:
    """promptfoo renders assertion values (and prompts) with the test's vars: ``{{ name }}`` and
    ``{{ name.field }}`` (strings as they are, other values as JSON). Lists and objects are
    rendered inside; anything else is returned as it is."""
    if isinstance(value, str):
        def one(m: re.Match[str]) -> str:
            head, *path = m.group(1).split(".")
            if head not in variables:
                return ""  # nunjucks renders an undefined variable as empty text
            v = variables[head]
            for key in path:
                v = v.get(key) if isinstance(v, dict) else None
            return v if isinstance(v, str) else ("" if v is None else json.dumps(v, ensure_ascii=False))
        whole = _VAR.fullmatch(value.strip())
        if whole and "." not in whole.group(1) and not isinstance(variables.get(whole.group(1)), str) \
                and whole.group(1) in variables:
            return variables[whole.group(1)]  # an object var used whole stays an object
        return _VAR.sub(one, value)
    if isinstance(value, list):
        return [render_vars(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: render_vars(v, variables) for k, v in value.items()}
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _binary(holds: bool, inverse: bool, reason: str) -> tuple[bool, float, str]:
    passed = holds != inverse
    return passed, float(passed), "assertion passed" if passed else reason


def _js_string(value: Any) -> str:
    """``String(value)`` as JavaScript writes it (numbers without a trailing ``.0``, booleans lowercase)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value is None:
        return "null"
    return str(value)
