"""promptfoo configs (``promptfooconfig.yaml``) as Keel evals: the other half of leaving OpenAI Evals.

OpenAI's own migration guide sent Evals users to promptfoo, so ``keel eval run
promptfooconfig.yaml`` runs such a suite as it is:

- ``prompts``: strings, ``{raw, label}`` objects, ``file://`` text files (``---`` between
  prompts) or chat prompts (a JSON list of ``{role, content}``); ``{{ var }}`` becomes
  ``{{item.vars.var}}``;
- ``providers``: ``echo``, ``openai:[chat:|responses:]MODEL``, ``ollama:[chat:]MODEL``,
  ``anthropic:messages:MODEL``, or any Keel model string; ``config`` temperature, top_p,
  max_tokens and seed are kept; ``--model`` replaces them all;
- ``tests``: a list, ``file://`` CSV (``__expected``, ``__description`` columns), JSONL,
  JSON or YAML files, with ``vars`` (``file://`` values read in) and ``assert``;
  ``defaultTest`` vars, assertions and ``options.provider`` (the ``llm-rubric`` judge)
  apply to every test;
- assertions: see :mod:`keel.evals.graders.promptfoo_asserts`. Anything else (another
  assertion type, ``scenarios``, transforms, nunjucks tags and filters) is refused,
  each one named, before anything runs.

Every test becomes one dataset item ``{"vars", "assert", "description"}``; every
(provider, prompt) pair a model target; one ``promptfoo`` grader checks each item's
assertions.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from keel.evals.errors import EvalSpecError
from keel.evals.graders.promptfoo_asserts import SUPPORTED, split_type
from keel.evals.spec import EvalSpec, parse_eval

__all__ = ["is_promptfoo_config", "load_promptfoo"]

_KNOWN_KEYS = {"description", "prompts", "providers", "tests", "defaultTest", "outputPath", "sharing",
               "evaluateOptions", "env", "tags", "writeLatestResults", "metadata", "commandLineOptions"}
_VAR = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
_NUNJUCKS = re.compile(r"\{%|\{\{[^}]*\|")
_PROVIDERS = {"openai": "openai", "ollama": "ollama", "anthropic": "anthropic"}
_API_KINDS = ("chat", "responses", "completion", "messages", "embedding", "embeddings")


def is_promptfoo_config(path: Path, data: dict[str, Any]) -> bool:
    """A promptfoo config: its usual file name, or ``prompts`` with ``providers`` or ``tests``."""
    return path.stem == "promptfooconfig" or ("prompts" in data and ("providers" in data or "tests" in data)
                                              and "dataset" not in data)


def _read(base: Path, ref: str, where: str) -> tuple[Path, str]:
    p = base / ref.removeprefix("file://")
    try:
        return p, p.read_text(encoding="utf-8")
    except OSError as e:
        raise EvalSpecError(f"{where}: cannot read {p}: {e.strerror or e}", hint="check the path (relative to the config)") \
            from None


def _structured(path: Path, text: str, where: str) -> Any:
    from keel.safeload import load_json, load_yaml

    try:
        if path.suffix == ".json":
            return load_json(text, where=str(path))
        if path.suffix == ".jsonl":
            return [load_json(line, where=f"{path}:{i}") for i, line in enumerate(text.splitlines(), 1)
                    if line.strip()]
        return load_yaml(text, where=str(path))
    except ValueError as e:
        raise EvalSpecError(f"{where}: {path} is not valid {path.suffix.lstrip('.').upper()}: {e}") from None


def _keel_template(text: str, where: str) -> str:
    bad = _NUNJUCKS.search(text)
    if bad:
        raise EvalSpecError(f"{where}: nunjucks tags and filters ({text[bad.start():bad.start() + 20]!r}...) "
                            "are not supported", hint="use plain {{ var }} references")
    return _VAR.sub(lambda m: "{{item.vars." + m.group(1) + "}}", text)


def _prompts(raw: Any, base: Path) -> list[tuple[str, Any]]:
    """``(label, prompt)`` pairs; a prompt is a Keel template or a list of messages."""
    entries = raw if isinstance(raw, list) else [raw]
    out: list[tuple[str, Any]] = []
    for i, entry in enumerate(entries):
        where = f"prompts[{i}]"
        label = None
        if isinstance(entry, dict):
            label, entry = entry.get("label") or entry.get("id"), entry.get("raw")
        if not isinstance(entry, str):
            raise EvalSpecError(f"{where}: a prompt is text, {{raw: ...}}, or file://path")
        texts = [entry]
        if entry.startswith("file://"):
            path, text = _read(base, entry, where)
            if path.suffix not in (".txt", ".md", ".json", ".j2", ".prompt", ""):
                raise EvalSpecError(f"{where}: prompt files of type {path.suffix!r} (code that builds prompts) "
                                    "are not supported", hint="write the prompt as text, or as a JSON chat prompt")
            texts = [t.strip() for t in re.split(r"^---$", text, flags=re.M)] if path.suffix != ".json" else [text]
            label = label or path.name
        for j, text in enumerate(texts):
            name = label or (text if len(text) <= 40 else text[:37] + "...")
            if len(texts) > 1:
                name = f"{name}#{j + 1}"
            out.append((name, _prompt_value(text, where)))
    return out


def _prompt_value(text: str, where: str) -> Any:
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            messages = json.loads(stripped)
        except ValueError:
            messages = None
        if isinstance(messages, list) and all(isinstance(m, dict) and "role" in m for m in messages):
            return [{"role": m["role"], "content": _keel_template(str(m.get("content", "")), where)}
                    for m in messages]
    return _keel_template(text, where)


def _model_string(provider: str, where: str) -> str:
    from keel.models import parse_model_string

    if provider == "echo":
        return "scripted:echo"
    head, _, rest = provider.partition(":")
    if head in _PROVIDERS and rest:
        kind, _, model = rest.partition(":")
        if kind in _API_KINDS and model:
            rest = model
        return f"{_PROVIDERS[head]}:{rest}"
    try:
        parse_model_string(provider)
    except Exception:
        raise EvalSpecError(f"{where}: provider {provider!r} has no Keel equivalent",
                            hint="pass --model PROVIDER:MODEL (e.g. openai:gpt-4.1-mini, ollama:llama3.2)") from None
    return provider


def _providers(raw: Any, model: str | None) -> list[dict[str, Any]]:
    if model:
        return [{"model": model, "label": model}]
    entries = raw if isinstance(raw, list) else [raw]
    out = []
    for i, entry in enumerate(entries):
        where = f"providers[{i}]"
        config: dict[str, Any] = {}
        label = None
        if isinstance(entry, dict):
            config, label, entry = entry.get("config") or {}, entry.get("label"), entry.get("id")
        if not isinstance(entry, str) or entry.startswith("file://") or entry.startswith(("python:", "exec:")):
            raise EvalSpecError(f"{where}: custom providers (code, scripts) are not supported",
                                hint="pass --model PROVIDER:MODEL, or a Keel workflow eval (docs/evals.md)")
        out.append({"model": _model_string(entry, where), "label": label or entry,
                    **{k: config[k] for k in ("temperature", "top_p", "seed") if config.get(k) is not None},
                    **({"max_tokens": config["max_tokens"]} if config.get("max_tokens") else {})})
    return out


def _expected(cell: str) -> dict[str, Any]:
    """promptfoo's ``__expected`` CSV column: ``contains: x``, ``not-regex: y``, ``is-json``, or a plain
    value (``equals``)."""
    cell = cell.strip()
    for prefix, kind in (("grade:", "llm-rubric"), ("fn:", "javascript"), ("eval:", "javascript")):
        if cell.startswith(prefix):
            return {"type": kind, "value": cell[len(prefix):].strip()}
    m = re.match(r"^(not-)?([a-z][a-z0-9-]*)(?::\s*(.*))?$", cell, re.S)
    if m and (m.group(2) in SUPPORTED or m.group(2) in ("javascript", "contains-any", "contains-all")) \
            and (m.group(3) is not None or m.group(2) in ("is-json", "contains-json")):
        return {"type": (m.group(1) or "") + m.group(2), **({"value": m.group(3)} if m.group(3) else {})}
    return {"type": "equals", "value": cell}


def _tests_from(raw: Any, base: Path, where: str) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        if not raw.startswith("file://"):
            raise EvalSpecError(f"{where}: tests are a list or file://path")
        path, text = _read(base, raw, where)
        if path.suffix in (".csv", ".tsv"):
            rows = csv.DictReader(io.StringIO(text), delimiter="\t" if path.suffix == ".tsv" else ",")
            tests = []
            for row in rows:
                vars_ = {k: v for k, v in row.items() if k and not k.startswith("__")}
                asserts = [_expected(v) for k, v in row.items() if k and k.startswith("__expected") and v]
                tests.append({"vars": vars_, "assert": asserts,
                              **({"description": row["__description"]} if row.get("__description") else {})})
            return tests
        value = _structured(path, text, where)
        return _tests_from(value if isinstance(value, list) else [value], path.parent, f"{where} ({path.name})")
    if not isinstance(raw, list):
        raise EvalSpecError(f"{where}: tests are a list or file://path")
    out: list[dict[str, Any]] = []
    for i, t in enumerate(raw):
        if isinstance(t, str):
            out += _tests_from(t, base, f"{where}[{i}]")
        elif isinstance(t, dict):
            out.append(t)
        else:
            raise EvalSpecError(f"{where}[{i}]: a test is an object with vars and assert")
    return out


def _vars(value: Any, base: Path, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EvalSpecError(f"{where}: vars must be a mapping")
    out = {}
    for k, v in value.items():
        if isinstance(v, str) and v.startswith("file://"):
            path, text = _read(base, v, f"{where}.{k}")
            v = _structured(path, text, f"{where}.{k}") if path.suffix in (".json", ".yaml", ".yml") else text
        out[k] = v
    return out


def _judge(default: dict[str, Any], judge_model: str | None) -> str | None:
    if judge_model:
        return judge_model
    provider = (default.get("options") or {}).get("provider")
    if isinstance(provider, dict):
        provider = provider.get("id") or (provider.get("text") or {}).get("id")
    return _model_string(provider, "defaultTest.options.provider") if isinstance(provider, str) else None


def _cache_file(rows: list[dict[str, Any]]) -> str:
    from keel.config import get_settings
    from keel.evals.openai_inputs import rows_file

    return rows_file([{"item": r} for r in rows], get_settings().home / "evals" / "sources", "promptfoo")


def load_promptfoo(path: Path, data: dict[str, Any], *, model: str | None = None, judge_model: str | None = None,
                   name: str | None = None, **_ignored: Any) -> EvalSpec:
    """The Keel eval a promptfoo config describes (see the module docs); every unsupported piece is
    named in one :class:`EvalSpecError`."""
    base = path.parent
    unsupported = sorted(k for k in data if k not in _KNOWN_KEYS)
    if unsupported:
        raise EvalSpecError(f"{path}: promptfoo config keys Keel does not run: {', '.join(unsupported)}",
                            hint="remove them (supported: prompts, providers, tests, defaultTest)")
    if "prompts" not in data or "tests" not in data:
        raise EvalSpecError(f"{path}: a promptfoo config needs prompts and tests")
    default = data.get("defaultTest") or {}
    if isinstance(default, str):
        p, text = _read(base, default, "defaultTest")
        default = _structured(p, text, "defaultTest") or {}
    prompts = _prompts(data["prompts"], base)
    providers = _providers(data.get("providers", []), model)
    if not providers:
        raise EvalSpecError(f"{path}: no providers", hint="add providers: [openai:gpt-4.1-mini], or pass --model")
    default_vars = _vars(default.get("vars"), base, "defaultTest.vars")
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for i, test in enumerate(_tests_from(data["tests"], base, "tests")):
        for key in ("options", "provider", "providerOutput"):
            if key in test and (key != "options" or set(test[key] or {}) - {"provider"}):
                problems.append(f"tests[{i}].{key}")
        asserts = [*(default.get("assert") or []), *(test.get("assert") or [])]
        for j, a in enumerate(asserts):
            kind = a.get("type") if isinstance(a, dict) else None
            if not isinstance(kind, str) or split_type(kind)[0] not in SUPPORTED:
                problems.append(f"tests[{i}].assert[{j}] type {kind!r}")
            elif "transform" in a:
                problems.append(f"tests[{i}].assert[{j}].transform")
        rows.append({"vars": {**default_vars, **_vars(test.get("vars"), base, f"tests[{i}].vars")},
                     "assert": asserts, "description": test.get("description") or f"test {i + 1}"})
    if problems:
        shown = "; ".join(problems[:12]) + (f"; and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise EvalSpecError(f"{path}: not supported by Keel: {shown}",
                            hint=f"remove them; supported assertions: {', '.join(SUPPORTED)} (and their not- forms)")
    if not rows:
        raise EvalSpecError(f"{path}: no tests")
    many = len(prompts) > 1
    targets = [{"type": "model", "model": p["model"], "prompt": prompt,
                "name": f"{p['label']} · {label}" if many else p["label"],
                **{k: v for k, v in p.items() if k not in ("model", "label")}}
               for p in providers for label, prompt in prompts]
    spec = {"name": name or data.get("description") or path.parent.name or "promptfoo",
            "dataset": _cache_file(rows), "targets": targets,
            "graders": [{"type": "promptfoo", "name": "assertions", "judge_model": _judge(default, judge_model),
                         "base_dir": str(base.resolve())}]}
    return parse_eval(spec, where=str(path))
